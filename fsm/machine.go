package fsm

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	lfsm "github.com/looplab/fsm"
)

// State is a sync state, as a UI shows it.
type State string

const (
	Idle      State = "idle"
	Fetching  State = "fetching"
	Resolving State = "resolving"
	Pushing   State = "pushing"
	Failed    State = "error"
)

// Event is an input of the machine (Hikma's sync store events).
type Event string

const (
	StartSync    Event = "start_sync"    // idle → fetching
	StartResolve Event = "start_resolve" // fetching → resolving, with the fetched count
	StartPush    Event = "start_push"    // resolving → pushing, with the pushed count
	FinishSync   Event = "finish_sync"   // resolving|pushing|error → idle, keeping the error text
	ErrorSync    Event = "error_sync"    // any → error, with the message
	ClearError   Event = "clear_error"   // error → idle
	ForceReset   Event = "force_reset"   // any → idle, stats and error cleared
	// Progress is no transition: fetching or pushing goes on, with the
	// counts so far (Machine.Progress).
	Progress Event = "progress"
)

// Stats are the counts of the sync in progress.
type Stats struct {
	Fetched int
	Pushed  int
	// Done and Total are the progress of the phase under way: records
	// fetched or acknowledged so far, and how many there are (when the
	// peer knows; 0 otherwise).
	Done, Total int
}

// Transition is what subscribers see: every accepted event, with the
// state it left and entered, the stats and the error text after it.
type Transition struct {
	Event    Event
	From, To State
	Stats    Stats
	Err      string
}

func (t Transition) String() string {
	s := fmt.Sprintf("%s: %s -> %s fetched=%d pushed=%d", t.Event, t.From, t.To, t.Stats.Fetched, t.Stats.Pushed)
	if t.Event == Progress {
		s += fmt.Sprintf(" done=%d total=%d", t.Stats.Done, t.Stats.Total)
	}
	if t.Err != "" {
		s += fmt.Sprintf(" error=%q", t.Err)
	}
	return s
}

var transitions = lfsm.Events{
	{Name: string(StartSync), Src: []string{string(Idle)}, Dst: string(Fetching)},
	{Name: string(StartResolve), Src: []string{string(Fetching)}, Dst: string(Resolving)},
	{Name: string(StartPush), Src: []string{string(Resolving)}, Dst: string(Pushing)},
	{Name: string(FinishSync), Src: []string{string(Resolving), string(Pushing), string(Failed)}, Dst: string(Idle)},
	{Name: string(ErrorSync), Src: []string{string(Idle), string(Fetching), string(Resolving), string(Pushing), string(Failed)}, Dst: string(Failed)},
	{Name: string(ClearError), Src: []string{string(Failed)}, Dst: string(Idle)},
	{Name: string(ForceReset), Src: []string{string(Idle), string(Fetching), string(Resolving), string(Pushing), string(Failed)}, Dst: string(Idle)},
}

// Machine is the sync state machine of one node. It is not safe for
// concurrent use: its owner (the coordinator actor) drives it.
// Subscribers are called synchronously, inside Fire.
type Machine struct {
	f     *lfsm.FSM
	stats Stats
	err   string
	subs  []func(Transition)
}

// NewMachine returns a machine in the idle state.
func NewMachine() *Machine {
	return &Machine{f: lfsm.NewFSM(string(Idle), transitions, nil)}
}

// State returns the current state.
func (m *Machine) State() State { return State(m.f.Current()) }

// Stats returns the counts of the sync in progress.
func (m *Machine) Stats() Stats { return m.stats }

// Err returns the error text of the last failure ("" if none since the
// last start or reset).
func (m *Machine) Err() string { return m.err }

// Subscribe registers fn to see every transition.
func (m *Machine) Subscribe(fn func(Transition)) { m.subs = append(m.subs, fn) }

// Can reports whether ev is allowed in the current state.
func (m *Machine) Can(ev Event) bool { return m.f.Can(string(ev)) }

// Fire applies an event. n is the fetched count for StartResolve and
// the pushed count for StartPush; msg is the error text for ErrorSync.
// An event not allowed in the current state returns ErrBadEvent and
// changes nothing.
func (m *Machine) Fire(ev Event, n int, msg string) error {
	from := m.State()
	err := m.f.Event(context.Background(), string(ev))
	var noTransition lfsm.NoTransitionError
	if err != nil && !errors.As(err, &noTransition) {
		return fmt.Errorf("%w: %s in state %s", ErrBadEvent, ev, from)
	}
	switch ev {
	case StartSync:
		m.stats, m.err = Stats{}, ""
	case StartResolve:
		m.stats.Fetched = n
	case StartPush:
		m.stats = Stats{Pushed: n, Total: n}
	case FinishSync:
		m.stats = Stats{}
	case ClearError, ForceReset:
		m.stats, m.err = Stats{}, ""
	case ErrorSync:
		m.err = msg
	}
	m.notify(Transition{Event: ev, From: from, To: m.State(), Stats: m.stats, Err: m.err})
	return nil
}

// Progress reports how far the phase under way (fetching or pushing)
// is: done records of total (0: unknown). Subscribers see it as a
// Progress event; the state does not change.
func (m *Machine) Progress(done, total int) error {
	st := m.State()
	if st != Fetching && st != Pushing {
		return fmt.Errorf("%w: %s in state %s", ErrBadEvent, Progress, st)
	}
	m.stats.Done, m.stats.Total = done, total
	if st == Fetching {
		m.stats.Fetched = done
	}
	m.notify(Transition{Event: Progress, From: st, To: st, Stats: m.stats, Err: m.err})
	return nil
}

func (m *Machine) notify(t Transition) {
	for _, fn := range m.subs {
		fn(t)
	}
}

// Diagram renders the machine's transitions as Graphviz dot, sorted so
// that the output is stable.
func Diagram() string {
	var lines []string
	for _, t := range transitions {
		for _, src := range t.Src {
			lines = append(lines, fmt.Sprintf("    %q -> %q [label=%q];", src, t.Dst, t.Name))
		}
	}
	sort.Strings(lines)
	return "digraph sync {\n    \"idle\" [shape=doublecircle];\n" + strings.Join(lines, "\n") + "\n}\n"
}
