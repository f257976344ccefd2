package sim

import (
	"time"

	"github.com/clinicsync/clinicsync/kv"
)

// Clock is the world's virtual time in epoch milliseconds. Only the
// simulator moves it: between events, and by the latency of each call.
// A World runs on one goroutine, so it needs no lock.
type Clock struct{ now int64 }

// Now returns the world time in ms.
func (c *Clock) Now() int64 { return c.now }

// advance moves the world time forward by ms (never back).
func (c *Clock) advance(ms int64) {
	if ms > 0 {
		c.now += ms
	}
}

// advanceTo moves the world time to t if t is later.
func (c *Clock) advanceTo(t int64) { c.now = max(c.now, t) }

// nodeClock is one node's view of time: the world time plus the node's
// offset (its skew, moved by clock jumps). It is the kv.Clock of the
// node's store and sync runs.
type nodeClock struct {
	world  *Clock
	offset int64 // ms
}

// Now returns the node's local time.
func (c *nodeClock) Now() time.Time { return time.UnixMilli(c.world.now + c.offset).UTC() }

// ms returns the node's local time in epoch ms.
func (c *nodeClock) ms() int64 { return c.world.now + c.offset }

var _ kv.Clock = (*nodeClock)(nil)
