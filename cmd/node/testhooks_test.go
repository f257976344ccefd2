package main

import (
	"testing"
	"time"
)

// TestTestHooks: the clock offset and the planted bug are read from the
// environment, and a bad value is refused rather than ignored.
func TestTestHooks(t *testing.T) {
	t.Setenv(EnvClockOffset, "-90s")
	c, err := nodeClock()
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Until(c.Now()); d > -89*time.Second || d < -91*time.Second {
		t.Errorf("clock with %s=-90s is %s from the wall clock", EnvClockOffset, d)
	}
	t.Setenv(EnvClockOffset, "soon")
	if _, err := nodeClock(); err == nil {
		t.Errorf("%s=soon accepted", EnvClockOffset)
	}
	t.Setenv(EnvBreak, "merge")
	if m, err := testMerge(); err != nil || m == nil {
		t.Errorf("%s=merge: %v, merge set %t", EnvBreak, err, m != nil)
	}
	t.Setenv(EnvBreak, "everything")
	if _, err := testMerge(); err == nil {
		t.Errorf("%s=everything accepted", EnvBreak)
	}
	t.Setenv(EnvBreak, "")
	if m, err := testMerge(); err != nil || m != nil {
		t.Errorf("no %s: %v, merge set %t", EnvBreak, err, m != nil)
	}
}
