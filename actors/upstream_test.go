package actors_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/clinicsync/clinicsync/actors"
)

// fakeTimers hands the loop's waits to the test: each After is a
// request the test reads (in the order the loop made them) and fires
// when it wants.
type fakeTimers struct{ reqs chan fakeTimer }

type fakeTimer struct {
	d  time.Duration
	ch chan time.Time
}

func (f *fakeTimers) After(d time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	f.reqs <- fakeTimer{d, ch}
	return ch
}

// upstreamRig runs an Upstream whose syncs the test answers one by one.
type upstreamRig struct {
	t       *testing.T
	u       *actors.Upstream
	timers  *fakeTimers
	calls   chan struct{}   // a sync started
	answers chan syncAnswer // how it ends
	done    chan error
}

type syncAnswer struct {
	res actors.Result
	err error
}

func newUpstreamRig(t *testing.T) *upstreamRig {
	r := &upstreamRig{t: t, timers: &fakeTimers{reqs: make(chan fakeTimer, 100)},
		calls: make(chan struct{}), answers: make(chan syncAnswer), done: make(chan error, 1)}
	r.u = actors.NewUpstream(nil, actors.UpstreamConfig{Interval: time.Minute, Debounce: 2 * time.Second, Backoff: 10 * time.Second,
		After: r.timers.After, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Sync: func(ctx context.Context) (actors.Result, error) {
			select {
			case r.calls <- struct{}{}:
			case <-ctx.Done():
				return actors.Result{}, ctx.Err()
			}
			select {
			case a := <-r.answers:
				return a.res, a.err
			case <-ctx.Done():
				return actors.Result{}, ctx.Err()
			}
		}})
	ctx, cancel := context.WithCancel(context.Background())
	go func() { r.done <- r.u.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-r.done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(cloudWait):
			t.Error("Run did not return after its context ended")
		}
	})
	return r
}

// sync waits for a sync to start and ends it so.
func (r *upstreamRig) sync(outcome string, err error) {
	r.t.Helper()
	r.started()
	r.answer(outcome, err)
}

func (r *upstreamRig) started() {
	r.t.Helper()
	select {
	case <-r.calls:
	case <-time.After(cloudWait):
		r.t.Fatal("no sync started")
	}
}

func (r *upstreamRig) answer(outcome string, err error) {
	res := actors.Result{Outcome: outcome, Peer: "cloud", Err: err}
	if outcome == actors.OutcomeSkipped && err == nil {
		res.Err = actors.ErrSyncInProgress
	}
	r.answers <- syncAnswer{res: res}
}

// wait returns the loop's next timer, which must be of d.
func (r *upstreamRig) wait(d time.Duration) fakeTimer {
	r.t.Helper()
	select {
	case tm := <-r.timers.reqs:
		if tm.d != d {
			r.t.Fatalf("the loop waits %s, want %s", tm.d, d)
		}
		return tm
	case <-time.After(cloudWait):
		r.t.Fatalf("the loop asked for no wait (want %s)", d)
	}
	panic("unreachable")
}

func (tm fakeTimer) fire() { tm.ch <- time.Time{} }

// TestUpstreamLoop drives the loop through its cases with a fake clock:
// a sync at start, then by the interval; a push debounced (each push
// re-arms the wait); a push during a sync not lost; a sync skipped
// because another runs tried again; backoff doubling up to the interval
// while syncs fail, pushes not hurrying it.
func TestUpstreamLoop(t *testing.T) {
	t.Parallel()
	r := newUpstreamRig(t)
	r.sync(actors.OutcomeOK, nil) // at start
	tick := r.wait(time.Minute)
	tick.fire()
	r.sync(actors.OutcomeOK, nil)
	r.wait(time.Minute) // the next interval; left to run

	// Pushes: each re-arms the debounce; the sync comes after the last.
	r.u.OnPush(actors.PushResult{Accepted: 0}) // nothing stored: no sync
	r.u.OnPush(actors.PushResult{Accepted: 3})
	first := r.wait(2 * time.Second)
	r.u.Notify()
	last := r.wait(2 * time.Second)
	first.fire() // stale: the loop no longer waits on it
	last.fire()
	r.started()
	r.u.Notify() // during the sync: not lost
	r.answer(actors.OutcomeOK, nil)
	r.wait(time.Minute)
	r.wait(2 * time.Second).fire()
	r.sync(actors.OutcomeOK, nil)
	r.wait(time.Minute)

	// Another sync was running (node sync through the control socket):
	// the push's sync is tried again after the debounce.
	r.u.Notify()
	r.wait(2 * time.Second).fire()
	r.sync(actors.OutcomeSkipped, nil)
	r.wait(time.Minute)
	r.wait(2 * time.Second).fire()
	r.sync(actors.OutcomeOK, nil)
	r.wait(time.Minute)

	// Failures back off: 10s, 20s, 40s, then the interval; pushes in
	// between do not start syncs sooner.
	r.u.Notify()
	r.wait(2 * time.Second).fire()
	r.sync(actors.OutcomeError, errors.New("cloud unreachable"))
	for _, d := range []time.Duration{10 * time.Second, 20 * time.Second, 40 * time.Second, time.Minute} {
		tm := r.wait(d)
		r.u.Notify() // no debounce while failing: the next wait read is the backoff
		tm.fire()
		r.sync(actors.OutcomeError, nil)
	}
	r.wait(time.Minute).fire()
	r.started()
	r.answers <- syncAnswer{err: fmt.Errorf("%w", actors.ErrClosed)} // an error return counts as a failure too
	r.wait(time.Minute).fire()                                       // capped at the interval
	r.sync(actors.OutcomeOK, nil)
	r.wait(time.Minute) // recovered: back to the interval

	// No cloud peer yet: not a failure, the interval goes on.
	r.u.Notify()
	r.wait(2 * time.Second).fire()
	r.started()
	r.answers <- syncAnswer{res: actors.Result{Outcome: actors.OutcomeSkipped, Err: actors.ErrNoPeer}}
	r.wait(time.Minute)
}
