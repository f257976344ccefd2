package main

// Test-only hooks, read from the environment so that they stay out of
// `node help`: bin/simulate --mode process sets them on the node
// processes it starts. Nothing else should.

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/pprof"
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
	// EnvCPUProfile=DIR writes the process's CPU profile to
	// DIR/node-COMMAND-PID.prof when it exits (go tool pprof reads it):
	// how BENCHMARKS.md's profiles of real processes are taken.
	EnvCPUProfile = "CLINICSYNC_CPUPROFILE"
	// EnvMemProfile=DIR writes the process's allocation profile to
	// DIR/node-COMMAND-PID.heap when it exits (alloc_space shows what
	// allocated most; inuse_space what was live at exit).
	EnvMemProfile = "CLINICSYNC_MEMPROFILE"
)

// profiles starts the CPU profile EnvCPUProfile asks for; the returned
// function writes it, and the allocation profile EnvMemProfile asks for.
func profiles(args []string, stderr io.Writer) (stop func()) {
	if len(args) == 0 {
		return func() {}
	}
	create := func(env, ext string) *os.File {
		dir := os.Getenv(env)
		if dir == "" {
			return nil
		}
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("node-%s-%d.%s", args[0], os.Getpid(), ext)))
		if err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", env, err)
			return nil
		}
		return f
	}
	cpu := create(EnvCPUProfile, "prof")
	if cpu != nil {
		if err := pprof.StartCPUProfile(cpu); err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", EnvCPUProfile, err)
			cpu.Close()
			cpu = nil
		}
	}
	return func() {
		if cpu != nil {
			pprof.StopCPUProfile()
			cpu.Close()
		}
		if mem := create(EnvMemProfile, "heap"); mem != nil {
			pprof.Lookup("allocs").WriteTo(mem, 0)
			mem.Close()
		}
	}
}

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
