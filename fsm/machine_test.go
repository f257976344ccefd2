package fsm_test

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clinicsync/clinicsync/fsm"
)

var rewrite = flag.Bool("rewrite", false, "rewrite golden files")

// drive fires events from idle to reach a state.
func drive(t *testing.T, m *fsm.Machine, to fsm.State) {
	t.Helper()
	steps := map[fsm.State][]fsm.Event{
		fsm.Idle:      nil,
		fsm.Fetching:  {fsm.StartSync},
		fsm.Resolving: {fsm.StartSync, fsm.StartResolve},
		fsm.Pushing:   {fsm.StartSync, fsm.StartResolve, fsm.StartPush},
		fsm.Failed:    {fsm.StartSync, fsm.ErrorSync},
	}
	for _, ev := range steps[to] {
		if err := m.Fire(ev, 3, "boom"); err != nil {
			t.Fatal(err)
		}
	}
}

func TestMachineTable(t *testing.T) {
	states := []fsm.State{fsm.Idle, fsm.Fetching, fsm.Resolving, fsm.Pushing, fsm.Failed}
	events := []fsm.Event{fsm.StartSync, fsm.StartResolve, fsm.StartPush, fsm.FinishSync, fsm.ErrorSync, fsm.ClearError, fsm.ForceReset}
	var b strings.Builder
	for _, s := range states {
		for _, ev := range events {
			m := fsm.NewMachine()
			drive(t, m, s)
			err := m.Fire(ev, 7, "cause")
			switch {
			case errors.Is(err, fsm.ErrBadEvent):
				b.WriteString(string(s) + " " + string(ev) + " -> refused\n")
				if m.State() != s {
					t.Errorf("refused %s moved %s to %s", ev, s, m.State())
				}
			case err != nil:
				t.Fatal(err)
			default:
				b.WriteString(string(s) + " " + string(ev) + " -> " + string(m.State()) + "\n")
			}
		}
	}
	golden(t, "transitions.golden", b.String())
}

func TestForceResetFromEveryState(t *testing.T) {
	for _, s := range []fsm.State{fsm.Idle, fsm.Fetching, fsm.Resolving, fsm.Pushing, fsm.Failed} {
		m := fsm.NewMachine()
		drive(t, m, s)
		if err := m.Fire(fsm.ForceReset, 0, ""); err != nil {
			t.Fatalf("force reset from %s: %v", s, err)
		}
		if m.State() != fsm.Idle || m.Err() != "" || m.Stats() != (fsm.Stats{}) {
			t.Fatalf("force reset from %s left %s %q %+v", s, m.State(), m.Err(), m.Stats())
		}
	}
}

func TestSubscribersSeeStatsAndErrors(t *testing.T) {
	m := fsm.NewMachine()
	var seen []string
	m.Subscribe(func(tr fsm.Transition) { seen = append(seen, tr.String()) })
	for _, step := range []struct {
		ev  fsm.Event
		n   int
		msg string
	}{{fsm.StartSync, 0, ""}, {fsm.StartResolve, 12, ""}, {fsm.StartPush, 4, ""}, {fsm.FinishSync, 0, ""},
		{fsm.StartSync, 0, ""}, {fsm.ErrorSync, 0, "Please make sure you have internet or contact your administrator."},
		{fsm.ErrorSync, 0, "again"}, {fsm.ClearError, 0, ""}} {
		if err := m.Fire(step.ev, step.n, step.msg); err != nil {
			t.Fatal(err)
		}
	}
	golden(t, "subscriber.golden", strings.Join(seen, "\n")+"\n")
}

func TestDiagram(t *testing.T) { golden(t, "machine.dot", fsm.Diagram()) }

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *rewrite {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -rewrite to create)", err)
	}
	if string(want) != got {
		t.Fatalf("%s differs (run with -rewrite and read the diff):\n--- want\n%s\n--- got\n%s", name, want, got)
	}
}
