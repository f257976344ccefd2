package main

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/clinicsync/clinicsync/actors"
	"github.com/clinicsync/clinicsync/fsm"
)

// syncProgress shows a sync's progress from the state machine's
// transitions, one phase (pull, push) at a time. On a terminal it
// redraws one line per phase in place (at most every progressEvery) and
// ends it at 100% when the phase completes. Elsewhere it prints plain
// lines, at most one per plainEvery, and a last one at 100% for each
// phase that printed any: a sync of one page and one chunk prints
// nothing.
type syncProgress struct {
	w   io.Writer
	tty bool
	now func() time.Time

	mu sync.Mutex // guards the fields below: transitions arrive on the subscription's goroutine
	// phase is "pull" or "push" while one is shown, "" between phases.
	phase       string
	start       time.Time // when the phase began
	done, total int       // total 0: unknown
	// The rate counts from the phase's first progress event (base
	// records at t0), since a resumed pull starts at the records an
	// earlier sync pulled; t0 is zero until then.
	base  int
	t0    time.Time
	drawn time.Time // the phase's last line; zero before it
	ended bool      // finish was called: later transitions are ignored
}

// plainEvery is the least time between two plain progress lines.
const plainEvery = time.Second

func newSyncProgress(w io.Writer, tty bool, now func() time.Time) *syncProgress {
	return &syncProgress{w: w, tty: tty, now: now}
}

// observe takes one transition (Node.Subscribe's callback).
func (p *syncProgress) observe(t fsm.Transition) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ended {
		return
	}
	switch {
	case t.Event == fsm.StartSync:
		p.cut()
		p.begin("pull", 0)
	case t.Event == fsm.Progress && t.To == fsm.Fetching && p.phase == "pull",
		t.Event == fsm.Progress && t.To == fsm.Pushing && p.phase == "push":
		p.done, p.total = t.Stats.Done, t.Stats.Total
		if p.t0.IsZero() {
			p.base, p.t0 = p.done, p.now()
		}
		p.draw(false)
	case t.Event == fsm.StartResolve && p.phase == "pull":
		p.complete(t.Stats.Fetched)
	case t.Event == fsm.StartPush:
		p.begin("push", t.Stats.Total)
	case t.Event == fsm.FinishSync && p.phase == "push":
		p.complete(p.total)
	case t.To == fsm.Failed || t.Event == fsm.ForceReset:
		p.cut()
	}
}

// finish ends the display once the sync's result is known: phases whose
// end the subscription had not delivered yet complete from the result
// when it is ok; otherwise a line left open is ended where it stands.
func (p *syncProgress) finish(res actors.Result) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ended {
		return
	}
	p.ended = true
	if res.Outcome != actors.OutcomeOK {
		p.cut()
		return
	}
	if p.phase == "pull" {
		p.complete(res.Pulled)
	}
	if p.phase == "push" {
		p.complete(max(p.total, res.Pushed))
	}
}

func (p *syncProgress) begin(phase string, total int) {
	p.phase, p.start, p.done, p.total = phase, p.now(), 0, total
	p.base, p.t0, p.drawn = 0, time.Time{}, time.Time{}
}

// complete shows the phase at 100% with n records and ends it.
func (p *syncProgress) complete(n int) {
	p.done, p.total = n, n
	if p.tty || !p.drawn.IsZero() {
		p.draw(true)
	}
	p.phase = ""
}

// cut ends a terminal line left open, without claiming it completed.
func (p *syncProgress) cut() {
	if p.tty && !p.drawn.IsZero() && p.phase != "" {
		fmt.Fprintln(p.w)
	}
	p.phase = ""
}

// draw shows the phase's line: always when last, else when the last
// one is old enough.
func (p *syncProgress) draw(last bool) {
	now := p.now()
	every := plainEvery
	if p.tty {
		every = progressEvery
	}
	if !last && !p.drawn.IsZero() && now.Sub(p.drawn) < every {
		return
	}
	p.drawn = now
	r := rate(p.done, now.Sub(p.start).Seconds()) // no progress event: one page or chunk
	if !p.t0.IsZero() {
		r = rate(p.done-p.base, now.Sub(p.t0).Seconds())
	}
	line := progressLine(p.phase, p.done, p.total, r, now.Sub(p.start), last)
	switch {
	case p.tty && last:
		fmt.Fprintf(p.w, "\r\x1b[K%s\n", line)
	case p.tty:
		fmt.Fprintf(p.w, "\r\x1b[K%s", line)
	default:
		fmt.Fprintln(p.w, line)
	}
}

// progressLine renders a phase: records done (of total when known),
// percent, rate (0: not known yet), and the time left (or, at the end,
// the phase's time).
func progressLine(phase string, done, total int, r float64, elapsed time.Duration, last bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d", phase, done)
	if total > 0 {
		fmt.Fprintf(&b, "/%d rows %3d%%", total, min(100, done*100/total))
	} else {
		b.WriteString(" rows")
	}
	if r > 0 {
		fmt.Fprintf(&b, ", %.0f rows/s", r)
	}
	switch {
	case last:
		fmt.Fprintf(&b, ", %s", elapsed.Round(100*time.Millisecond))
	case total > done && r > 0:
		eta := time.Duration(float64(total-done) / r * float64(time.Second))
		fmt.Fprintf(&b, ", ETA %s", eta.Round(time.Second))
	}
	return b.String()
}
