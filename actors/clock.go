package actors

import (
	"time"

	"github.com/clinicsync/clinicsync/kv"
)

// SystemClock is the wall clock. It is the one place real time enters
// clinicsync: everything else takes a kv.Clock, so that tests and the
// simulator can pass a virtual one.
type SystemClock struct{}

// Now returns the current wall-clock time.
func (SystemClock) Now() time.Time { return time.Now() }

var _ kv.Clock = SystemClock{}

// nowOf is c's time, the wall clock's when c is nil (a config left
// empty).
func nowOf(c kv.Clock) time.Time {
	if c == nil {
		return SystemClock{}.Now()
	}
	return c.Now()
}
