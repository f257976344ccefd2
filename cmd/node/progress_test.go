package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/clinicsync/clinicsync/actors"
	"github.com/clinicsync/clinicsync/fsm"
)

// fakeClock is a clock the test moves.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time      { return c.t }
func (c *fakeClock) add(d time.Duration) { c.t = c.t.Add(d) }
func progressAt(done, total int) fsm.Transition {
	return fsm.Transition{Event: fsm.Progress, From: fsm.Fetching, To: fsm.Fetching, Stats: fsm.Stats{Fetched: done, Done: done, Total: total}}
}

func TestProgressLine(t *testing.T) {
	for _, c := range []struct {
		done, total int
		rate        float64
		elapsed     time.Duration
		last        bool
		want        string
	}{
		{2500, 10000, 500, 5 * time.Second, false, "pull: 2500/10000 rows  25%, 500 rows/s, ETA 15s"},
		{10000, 10000, 1250, 8 * time.Second, true, "pull: 10000/10000 rows 100%, 1250 rows/s, 8s"},
		{3000, 0, 1500, 2 * time.Second, false, "pull: 3000 rows, 1500 rows/s"},                // total unknown: no percent, no ETA
		{2000, 10000, 0, time.Second, false, "pull: 2000/10000 rows  20%"},                     // no rate yet: no ETA
		{10050, 10000, 10050, time.Second, false, "pull: 10050/10000 rows 100%, 10050 rows/s"}, // past an estimate
	} {
		if got := progressLine("pull", c.done, c.total, c.rate, c.elapsed, c.last); got != c.want {
			t.Errorf("progressLine(%d, %d, %v, %v, %v) = %q, want %q", c.done, c.total, c.rate, c.elapsed, c.last, got, c.want)
		}
	}
}

// On a terminal: one line per phase redrawn in place, at most every
// progressEvery, ended at 100%; a failure ends the line where it stands.
func TestSyncProgressTerminal(t *testing.T) {
	clock := &fakeClock{time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	var out bytes.Buffer
	p := newSyncProgress(&out, true, clock.now)
	p.observe(fsm.Transition{Event: fsm.StartSync, From: fsm.Idle, To: fsm.Fetching})
	clock.add(time.Second)
	p.observe(progressAt(2000, 4000))
	clock.add(progressEvery / 2)
	p.observe(progressAt(3000, 4000)) // too soon: not drawn
	clock.add(time.Second)
	p.observe(fsm.Transition{Event: fsm.StartResolve, From: fsm.Fetching, To: fsm.Resolving, Stats: fsm.Stats{Fetched: 4000}})
	p.observe(fsm.Transition{Event: fsm.StartPush, From: fsm.Resolving, To: fsm.Pushing, Stats: fsm.Stats{Pushed: 10, Total: 10}})
	clock.add(500 * time.Millisecond)
	p.observe(fsm.Transition{Event: fsm.FinishSync, From: fsm.Pushing, To: fsm.Idle})
	p.finish(actors.Result{Outcome: actors.OutcomeOK, Pulled: 4000, Pushed: 10})
	// The rate counts from the first progress event (a resumed pull
	// starts at the rows an earlier sync pulled).
	want := "\r\x1b[Kpull: 2000/4000 rows  50%" +
		"\r\x1b[Kpull: 4000/4000 rows 100%, 1818 rows/s, 2.1s\n" +
		"\r\x1b[Kpush: 10/10 rows 100%, 20 rows/s, 500ms\n"
	if got := out.String(); got != want {
		t.Errorf("terminal output:\n%q\nwant\n%q", got, want)
	}

	out.Reset()
	p = newSyncProgress(&out, true, clock.now)
	p.observe(fsm.Transition{Event: fsm.StartSync, From: fsm.Idle, To: fsm.Fetching})
	clock.add(time.Second)
	p.observe(progressAt(100, 0))
	p.observe(fsm.Transition{Event: fsm.ErrorSync, From: fsm.Fetching, To: fsm.Failed, Err: "Sync failed"})
	p.finish(actors.Result{Outcome: actors.OutcomeError, Err: errors.New("unreachable")})
	if got, want := out.String(), "\r\x1b[Kpull: 100 rows\n"; got != want {
		t.Errorf("terminal output of a failed sync: %q, want %q", got, want)
	}
}

// Off a terminal: plain lines at most every plainEvery, and a last one
// per phase that printed any; phases whose end the subscription had not
// delivered complete from the result.
func TestSyncProgressPlain(t *testing.T) {
	clock := &fakeClock{time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	var out bytes.Buffer
	p := newSyncProgress(&out, false, clock.now)
	p.observe(fsm.Transition{Event: fsm.StartSync, From: fsm.Idle, To: fsm.Fetching})
	for done := 1000; done < 10000; done += 1000 {
		clock.add(300 * time.Millisecond)
		p.observe(progressAt(done, 10000))
	}
	clock.add(300 * time.Millisecond)
	p.finish(actors.Result{Outcome: actors.OutcomeOK, Pulled: 10000}) // StartResolve not delivered yet
	p.observe(fsm.Transition{Event: fsm.StartResolve, From: fsm.Fetching, To: fsm.Resolving, Stats: fsm.Stats{Fetched: 10000}})
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	want := []string{
		"pull: 1000/10000 rows  10%",
		"pull: 5000/10000 rows  50%, 3333 rows/s, ETA 2s",
		"pull: 9000/10000 rows  90%, 3333 rows/s, ETA 0s",
		"pull: 10000/10000 rows 100%, 3333 rows/s, 3s",
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("plain output:\n%s\nwant\n%s", out.String(), strings.Join(want, "\n"))
	}

	// A sync of one page and one chunk prints nothing off a terminal.
	out.Reset()
	p = newSyncProgress(&out, false, clock.now)
	p.observe(fsm.Transition{Event: fsm.StartSync, From: fsm.Idle, To: fsm.Fetching})
	p.observe(fsm.Transition{Event: fsm.StartResolve, From: fsm.Fetching, To: fsm.Resolving, Stats: fsm.Stats{Fetched: 5}})
	p.observe(fsm.Transition{Event: fsm.StartPush, From: fsm.Resolving, To: fsm.Pushing, Stats: fsm.Stats{Pushed: 1, Total: 1}})
	p.observe(fsm.Transition{Event: fsm.FinishSync, From: fsm.Pushing, To: fsm.Idle})
	p.finish(actors.Result{Outcome: actors.OutcomeOK, Pulled: 5, Pushed: 1})
	if out.Len() != 0 {
		t.Errorf("plain output of a small sync: %q, want none", out.String())
	}
}
