package sim

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/clinicsync/clinicsync/actors"
	"github.com/clinicsync/clinicsync/codec"
	"github.com/clinicsync/clinicsync/fsm"
	"github.com/clinicsync/clinicsync/kv"
)

// expectClean fails the test on a violation, printing the report with
// its replay command. No class of violation is excused.
func expectClean(t *testing.T, r *Report) {
	t.Helper()
	if r.OK() {
		return
	}
	var b strings.Builder
	r.WriteText(&b)
	t.Errorf("seed %d broke invariants:\n%s", r.Seed, b.String())
}

func run(t *testing.T, o Options) *Report {
	t.Helper()
	r, err := Run(o)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// small is a quick deployment for the tests that run several times.
func small(seed uint64) Options {
	o := Defaults()
	o.Seed, o.Clinics, o.Devices = seed, 1, 3
	return o
}

// TestFixedSeeds runs fixed seeds with every fault but switch, and one
// with every fault.
func TestFixedSeeds(t *testing.T) {
	noSwitch := slices.DeleteFunc(slices.Clone(AllFaults), func(f string) bool { return f == FaultSwitch })
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprint("seed-", seed), func(t *testing.T) {
			t.Parallel()
			o := Defaults()
			o.Seed = seed
			if seed != 3 {
				o.Faults = noSwitch
			}
			r := run(t, o)
			if r.RowsWritten < 500 || r.Syncs < 200 || sum(r.Faults) == 0 {
				t.Errorf("seed %d: a thin run: %d rows, %d syncs, faults %v", seed, r.RowsWritten, r.Syncs, r.Faults)
			}
			expectClean(t, r)
		})
	}
}

// TestRandomSeed runs one seed nobody chose; the log says how to
// replay it.
func TestRandomSeed(t *testing.T) {
	t.Parallel()
	o := Defaults()
	o.Seed = rand.Uint64N(1_000_000) // test-only randomness: the seed is logged
	t.Logf("seed %d; replay: %s", o.Seed, o.ReplayCommand())
	expectClean(t, run(t, o))
}

func TestNoFaults(t *testing.T) {
	t.Parallel()
	o := small(5)
	o.Faults = nil
	r := run(t, o)
	if r.Outcomes["error"] > 0 || r.ConvergenceRounds < 1 {
		t.Errorf("without faults: %v syncs, %d settling rounds", r.Outcomes, r.ConvergenceRounds)
	}
	expectClean(t, r)
}

func TestSameSeedSameDigest(t *testing.T) {
	t.Parallel()
	a, b, c := run(t, small(11)), run(t, small(11)), run(t, small(12))
	if a.Digest != b.Digest {
		t.Errorf("seed 11 twice: digests %s and %s", a.Digest, b.Digest)
	}
	if a.Digest == c.Digest {
		t.Errorf("seeds 11 and 12 share the digest %s", a.Digest)
	}
	rs, err := RunSeeds(context.Background(), small(11), 2)
	if err != nil {
		t.Fatal(err)
	}
	if rs[0].Digest != a.Digest || rs[1].Digest != c.Digest {
		t.Errorf("parallel runs differ from lone runs: %s %s vs %s %s", rs[0].Digest, rs[1].Digest, a.Digest, c.Digest)
	}
}

// TestBoltLikeMemory runs the same seed on bbolt files and on the
// in-memory twin: the replicas and the trace must be the same.
func TestBoltLikeMemory(t *testing.T) {
	t.Parallel()
	o := small(21)
	o.Devices, o.Faults = 2, []string{FaultCrash, FaultRestart, FaultLoss, FaultDelay}
	mem := run(t, o)
	o.Store, o.Dir = StoreBolt, t.TempDir()
	bolt := run(t, o)
	if mem.Digest != bolt.Digest {
		t.Errorf("memory digest %s, bolt digest %s", mem.Digest, bolt.Digest)
	}
	if bolt.Faults[FaultCrash]+bolt.Faults[FaultRestart] == 0 {
		t.Errorf("no restart exercised the bolt files: %v", bolt.Faults)
	}
}

// TestSyncsGoThroughEngines shows that hubs' and Go devices' syncs go
// through their started engines: each coordinator recorded its node's
// last sync, ok after the settling rounds, and skipped the concurrent
// triggers, with crashes replacing engines under way.
func TestSyncsGoThroughEngines(t *testing.T) {
	t.Parallel()
	o := small(6)
	o.WDB = 0
	o.Faults = []string{FaultConcurrent, FaultDelay, FaultCrash}
	w, err := newWorld(o)
	if err != nil {
		t.Fatal(err)
	}
	defer w.close()
	w.run()
	r := w.report(0)
	expectClean(t, r)
	if r.Faults[FaultConcurrent] == 0 || r.Faults[FaultCrash] == 0 || r.Outcomes[actors.OutcomeSkipped] < r.Faults[FaultConcurrent] {
		t.Errorf("faults %v, outcomes %v: want concurrent triggers, crashes, and a skipped sync per trigger", r.Faults, r.Outcomes)
	}
	for _, n := range w.all {
		if n.kind == kindCloud {
			continue
		}
		st, err := n.eng.node.Status()
		if err != nil {
			t.Fatal(err)
		}
		var last actors.LastSync
		for _, ls := range st.LastSync {
			if ls.Ended >= last.Ended {
				last = ls
			}
		}
		if last.Outcome != actors.OutcomeOK || st.State != string(fsm.Idle) {
			t.Errorf("%s: engine state %s, last sync %+v: want idle, ok", n.name, st.State, last)
		}
	}
}

// unbroken caches the reports of small runs without planted bugs, by
// seed, for the planted-bug tests that run in parallel.
var unbroken struct {
	sync.Mutex
	reports map[uint64]*Report
}

func unbrokenRun(t *testing.T, seed uint64) *Report {
	unbroken.Lock()
	defer unbroken.Unlock()
	if unbroken.reports == nil {
		unbroken.reports = map[uint64]*Report{}
	}
	if r, ok := unbroken.reports[seed]; ok {
		return r
	}
	r := run(t, small(seed))
	unbroken.reports[seed] = r
	return r
}

// TestPlantedBugsCaught shows the checks have teeth: each --break-*
// switch breaks one rule, and within 20 seeds a run reports a violation
// that the same seed without the switch does not have. The unbroken
// runs of the seeds tried must be clean.
func TestPlantedBugsCaught(t *testing.T) {
	for _, b := range BreakNames {
		t.Run(b, func(t *testing.T) {
			t.Parallel()
			for seed := uint64(1); seed <= 20; seed++ {
				o := small(seed)
				*o.Break(b) = true
				broken := run(t, o)
				if broken.OK() {
					continue
				}
				good := unbrokenRun(t, seed)
				expectClean(t, good)
				had := map[string]bool{}
				for _, v := range good.Violations {
					had[v.Kind+" "+v.Node+" "+v.Row] = true
				}
				for _, v := range broken.Violations {
					if !had[v.Kind+" "+v.Node+" "+v.Row] {
						t.Logf("--break-%s caught at seed %d: %s", b, seed, v)
						return
					}
				}
			}
			t.Errorf("--break-%s went unnoticed in 20 seeds", b)
		})
	}
}

// TestModelChecks feeds the final checks hand-made replicas.
func TestModelChecks(t *testing.T) {
	w := &World{model: newModel(), cloud: &node{name: cloudName}, clock: &Clock{}, stats: newStats(), traceOut: io.Discard}
	s := codec.String
	ver := func(wall int64, node string) codec.Version { return codec.Version{Wall: wall, Node: node} }
	vs := func(v codec.Version, cols ...string) map[string]codec.Version {
		out := map[string]codec.Version{}
		for _, c := range cols {
			out[c] = v
		}
		return out
	}
	m := w.model
	// p1: dev-1 creates, then changes the phone; dev-2, having pulled
	// the row, changes the camp.
	m.created("dev-1", 1, "patients", "p1", map[string]codec.Value{"phone": s("1"), "camp": s("A")}, vs(ver(1, "dev-1"), "phone", "camp"), "p1", "c")
	m.updated("dev-1", 2, "patients", "p1", map[string]codec.Value{"phone": s("2")}, vs(ver(2, "dev-1"), "phone"), map[string]int{"phone": 2})
	m.updated("dev-2", 3, "patients", "p1", map[string]codec.Value{"camp": s("B")}, vs(ver(3, "dev-2"), "camp"), map[string]int{"camp": 1})
	// p2: created, then deleted.
	m.created("dev-2", 4, "patients", "p2", map[string]codec.Value{"phone": s("9")}, vs(ver(4, "dev-2"), "phone"), "p2", "c")
	m.deletedRow("dev-1", 5, "patients", "p2")
	// p3: two devices change the phone concurrently (neither saw the
	// other's edit); dev-2's has the higher version.
	m.created("dev-3", 6, "patients", "p3", map[string]codec.Value{"phone": s("7")}, vs(ver(6, "dev-3"), "phone"), "p3", "c")
	first := m.seq
	m.updated("dev-1", 7, "patients", "p3", map[string]codec.Value{"phone": s("5")}, vs(ver(7, "dev-1"), "phone"), map[string]int{"phone": first})
	m.updated("dev-2", 8, "patients", "p3", map[string]codec.Value{"phone": s("6")}, vs(ver(8, "dev-2"), "phone"), map[string]int{"phone": first})
	p1 := key{"patients", "p1"}
	p3 := key{"patients", "p3"}
	good1 := map[string]codec.Value{"phone": s("2"), "camp": s("B")}
	good1v := map[string]codec.Version{"phone": ver(2, "dev-1"), "camp": ver(3, "dev-2")}
	lost5 := kv.Conflict{Table: "patients", ID: "p3", Column: "phone", Value: s("5"), Version: ver(7, "dev-1"), Winner: ver(8, "dev-2")}
	for _, tc := range []struct {
		name      string
		cloud     replica
		other     replica // dev-1's
		conflicts []kv.Conflict
		want      []string
	}{
		{"good", replica{
			cols: map[key]map[string]codec.Value{p1: good1, p3: {"phone": s("6")}},
			vers: map[key]map[string]codec.Version{p1: good1v, p3: {"phone": ver(8, "dev-2")}},
		}, replica{}, []kv.Conflict{lost5}, nil},
		{"the loser is in no conflict log", replica{
			cols: map[key]map[string]codec.Value{p1: good1, p3: {"phone": s("6")}},
			vers: map[key]map[string]codec.Version{p1: good1v, p3: {"phone": ver(8, "dev-2")}},
		}, replica{}, nil, []string{VLostWrite}},
		{"the lower version won", replica{
			cols: map[key]map[string]codec.Value{p1: good1, p3: {"phone": s("5")}},
			vers: map[key]map[string]codec.Version{p1: good1v, p3: {"phone": ver(7, "dev-1")}},
		}, replica{}, []kv.Conflict{lost5}, []string{VLostWrite}},
		{"a value its writer overwrote, an invented value", replica{
			cols: map[key]map[string]codec.Value{p1: {"phone": s("1"), "camp": s("C")}, p3: {"phone": s("6")}},
			vers: map[key]map[string]codec.Version{p1: {"phone": ver(1, "dev-1"), "camp": ver(9, "dev-9")}, p3: {"phone": ver(8, "dev-2")}},
		}, replica{}, []kv.Conflict{lost5}, []string{VLostWrite, VPhantom}},
		{"a camp edit made after the first one lost to it", replica{
			cols: map[key]map[string]codec.Value{p1: {"phone": s("2"), "camp": s("A")}, p3: {"phone": s("6")}},
			vers: map[key]map[string]codec.Version{p1: {"phone": ver(2, "dev-1"), "camp": ver(1, "dev-1")}, p3: {"phone": ver(8, "dev-2")}},
		}, replica{}, []kv.Conflict{lost5}, []string{VLostWrite}},
		{"replicas disagree", replica{
			cols: map[key]map[string]codec.Value{p1: good1, p3: {"phone": s("6")}},
			vers: map[key]map[string]codec.Version{p1: good1v, p3: {"phone": ver(8, "dev-2")}},
		}, replica{
			cols: map[key]map[string]codec.Value{p3: {"phone": s("5")}},
			vers: map[key]map[string]codec.Version{p3: {"phone": ver(7, "dev-1")}},
		}, []kv.Conflict{lost5}, []string{VConvergence}},
		{"lost, blanked, resurrected, phantom rows", replica{
			cols: map[key]map[string]codec.Value{p1: {"phone": s("2")}, {"patients", "p2"}: {"phone": s("9")}, {"patients", "p4"}: {"phone": s("0")}},
			vers: map[key]map[string]codec.Version{p1: {"phone": ver(2, "dev-1")}},
		}, replica{}, nil, []string{VBlanked, VLostRow, VPhantom, VResurrected}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w.violations = nil
			w.all = []*node{w.cloud}
			logs := map[colKey][]kv.Conflict{}
			for _, c := range tc.conflicts {
				ck := colKey{key{c.Table, c.ID}, c.Column}
				logs[ck] = append(logs[ck], c)
			}
			finals := map[string]replica{cloudName: tc.cloud}
			if tc.other.cols != nil {
				dev := &node{name: "dev-1"}
				w.all = append(w.all, dev)
				finals[dev.name] = tc.other
			}
			w.checkModel(finals, logs)
			var got []string
			for _, v := range w.violations {
				got = append(got, v.Kind)
			}
			slices.Sort(got)
			got = slices.Compact(got)
			if !slices.Equal(got, tc.want) {
				t.Errorf("violation kinds %v, want %v: %v", got, tc.want, w.violations)
			}
		})
	}
}

func TestParseFaults(t *testing.T) {
	for in, want := range map[string]string{"all": "all", "none": "none", "dup,loss": "loss,dup", "crash,crash": "crash"} {
		f, err := ParseFaults(in)
		if err != nil || FaultList(f) != want {
			t.Errorf("ParseFaults(%q) = %v, %v; want %s", in, f, err, want)
		}
	}
	if _, err := ParseFaults("loss,meteor"); err == nil {
		t.Error("an unknown fault was accepted")
	}
}
