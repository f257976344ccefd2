package actors

// The push budget: how many push body bytes a CloudHandler holds at
// once, across concurrent pushes.

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// DefaultPushBudgetFactor sizes the push budget when
// CloudConfig.PushBudgetBytes is 0: this many maximum-size bodies in
// flight at once.
const DefaultPushBudgetFactor = 4

// PushRetryAfter is what a push refused for want of budget is told to
// wait (503 with Retry-After): pushes in flight finish in about that
// time, and clients add jitter.
const PushRetryAfter = 2 * time.Second

// PushBudget is a snapshot of a handler's push budget.
type PushBudget struct {
	// Limit is the most push body bytes in flight at once.
	Limit int64
	// InFlight is the bytes held now, Peak the most ever held at once.
	InFlight, Peak int64
	// Requests is the requests holding bytes now.
	Requests int
}

// budget counts the bytes pushes in flight hold against a limit. A
// push reserves its body's size (its Content-Length, or the body limit
// when the length is not announced) before reading it, and gives it
// back when it is done. One caller may hold at most half the limit
// while it has pushes in flight (its first push always fits, when the
// limit does): a caller with many slow pushes cannot take all of it.
type budget struct {
	mu       sync.Mutex // guards the fields below
	limit    int64
	used     int64
	peak     int64
	holds    int // requests holding bytes: takes not given back yet
	byCaller map[string]int64
}

func newBudget(limit int64) *budget { return &budget{limit: limit, byCaller: map[string]int64{}} }

// budgetLimit is CloudConfig.PushBudgetBytes with its default and
// floor: a push of the largest body always fits when it is alone.
func budgetLimit(cfg, maxBody int64) int64 {
	if cfg <= 0 {
		return DefaultPushBudgetFactor * maxBody
	}
	return max(cfg, maxBody)
}

// take reserves n bytes for caller, or reports that they would overrun
// the limit or the caller's share.
func (b *budget) take(caller string, n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	held := b.byCaller[caller]
	if b.used+n > b.limit || held > 0 && held+n > b.limit/2 {
		return false
	}
	b.used += n
	b.holds++
	b.byCaller[caller] = held + n
	b.peak = max(b.peak, b.used)
	return true
}

// give returns what one request of caller still holds, n bytes: its
// take is over.
func (b *budget) give(caller string, n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.holds--
	b.put(caller, n)
}

// shrink returns n of the bytes a request of caller holds; it goes on
// holding the rest.
func (b *budget) shrink(caller string, n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.put(caller, n)
}

// put returns n bytes of caller's; b.mu is held.
func (b *budget) put(caller string, n int64) {
	held := b.byCaller[caller]
	if n < 0 || n > held {
		panic(fmt.Sprintf("actors: push budget: %s gives back %d bytes of %d held", caller, n, held))
	}
	b.used -= n
	if held == n {
		delete(b.byCaller, caller)
	} else {
		b.byCaller[caller] = held - n
	}
}

func (b *budget) snapshot() PushBudget {
	b.mu.Lock()
	defer b.mu.Unlock()
	return PushBudget{Limit: b.limit, InFlight: b.used, Peak: b.peak, Requests: b.holds}
}

// PushBudget reports the handler's push budget: its limit, the body
// bytes pushes hold now, and the most they ever held at once.
func (h *CloudHandler) PushBudget() PushBudget { return h.budget.snapshot() }

// readAll reads a body of n bytes (n < 0: unknown) into one buffer of
// its size when n is known, so that a push costs its body once, not the
// doublings of a growing buffer.
func readAll(r io.Reader, n int64) ([]byte, error) {
	if n < 0 {
		return io.ReadAll(r)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return buf, nil
}

// timedOut reports whether a read failed on its deadline (Serve's body
// timeout).
func timedOut(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }
