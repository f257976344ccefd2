package main

// Test-only hooks, read from the environment so that they stay out of
// `node help`: bin/simulate --mode process sets them on the node
// processes it starts. Nothing else should.

import (
	"fmt"
	"os"
	"time"

	"github.com/clinicsync/clinicsync/actors"
	"github.com/clinicsync/clinicsync/internal/planted"
	"github.com/clinicsync/clinicsync/kv"
)

// Environment variables of the test hooks.
const (
	// EnvClockOffset (a Go duration, e.g. -90s) offsets the node's
	// clock from the wall clock: clock skew between processes.
	EnvClockOffset = "CLINICSYNC_TEST_CLOCK_OFFSET"
	// EnvBreak=merge plants a bug in the sync engine: pulled values win
	// over the device's unpushed edits, which are then lost.
	EnvBreak = "CLINICSYNC_TEST_BREAK"
)

// offsetClock is the wall clock shifted by a fixed offset.
type offsetClock time.Duration

func (c offsetClock) Now() time.Time { return time.Now().Add(time.Duration(c)) }

// nodeClock is the clock a node opens with: the wall clock, offset by
// EnvClockOffset when set.
func nodeClock() (kv.Clock, error) {
	s := os.Getenv(EnvClockOffset)
	if s == "" {
		return actors.SystemClock{}, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return nil, fmt.Errorf("%s=%q: %v", EnvClockOffset, s, err)
	}
	return offsetClock(d), nil
}

// testMerge is the pull merge EnvBreak asks for (nil: the engine's).
func testMerge() (kv.Merge, error) {
	switch s := os.Getenv(EnvBreak); s {
	case "":
		return nil, nil
	case "merge":
		return planted.Merge, nil
	default:
		return nil, fmt.Errorf("%s=%q: want merge", EnvBreak, s)
	}
}
