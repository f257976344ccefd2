package kv

import (
	"sync"
	"time"
)

// ManualClock is a Clock that moves only when told to: for tests and
// anything that replays time. It is safe for concurrent use.
type ManualClock struct {
	mu sync.Mutex // guards t
	t  time.Time
}

// NewManualClock returns a clock reading t.
func NewManualClock(t time.Time) *ManualClock { return &ManualClock{t: t} }

// Now returns the clock's time.
func (c *ManualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Add moves the clock by d (back, when d is negative).
func (c *ManualClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}
