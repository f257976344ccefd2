package sim

import (
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/clinicsync/clinicsync/codec"
)

// knownLimit names the known engine limitation that explains a
// violation, "" if none. A device that moves between a hub and the cloud
// has two upstreams: an older write of its own still pending on a hub
// that is cut off from the cloud can reach the cloud after a newer write
// the device pushed there directly, and the per-column merge then takes
// the older value (the engine orders writes by sync, not by time). Only
// violations on such a device, or on a row it wrote, are put down to it.
func knownLimit(r *Report, v Violation) string {
	switching := func(name string) bool { return slices.Contains(r.switching, name) }
	if switching(v.Node) || slices.ContainsFunc(v.involved, switching) {
		return "a device switching between hub and cloud"
	}
	return ""
}

// expectClean fails the test on a violation, printing the report with
// its replay command. A run whose every violation the known limitation
// explains is skipped, not passed.
func expectClean(t *testing.T, r *Report) {
	t.Helper()
	if r.OK() {
		return
	}
	known := map[string]int{}
	for _, v := range r.Violations {
		known[knownLimit(r, v)]++
	}
	if known[""] == 0 {
		t.Skipf("seed %d: %d violations, all from the known limitation (%s); replay: %s",
			r.Seed, len(r.Violations), counts(known), r.Replay)
	}
	var b strings.Builder
	r.WriteText(&b)
	t.Errorf("seed %d broke invariants (%d not explained by the known limitation):\n%s", r.Seed, known[""], b.String())
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
	rs, err := RunSeeds(small(11), 2)
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

// TestBrokenMergeCaught shows the checks have teeth: a pull merge that
// lets remote values win over unpushed local edits loses writes, and
// the model says so.
func TestBrokenMergeCaught(t *testing.T) {
	t.Parallel()
	o := small(31)
	o.BreakMerge = true
	r := run(t, o)
	if !slices.ContainsFunc(r.Violations, func(v Violation) bool { return v.Kind == VLostWrite }) {
		var b strings.Builder
		r.WriteText(&b)
		t.Fatalf("the broken merge went unnoticed:\n%s", b.String())
	}
	o.BreakMerge = false
	if good := run(t, o); slices.ContainsFunc(good.Violations, func(v Violation) bool { return v.Kind == VLostWrite }) {
		t.Errorf("the correct merge also loses writes on this seed: %v", good.Violations)
	}
}

// TestModelChecks feeds the final checks hand-made cloud states.
func TestModelChecks(t *testing.T) {
	w := &World{model: newModel(), cloud: &node{name: cloudName}, clock: &Clock{}, stats: newStats(), traceOut: io.Discard}
	s := codec.String
	w.model.created("dev-1", 1, "patients", "p1", map[string]codec.Value{"phone": s("1"), "camp": s("A")}, "p1", "c")
	w.model.updated("dev-1", 2, "patients", "p1", map[string]codec.Value{"phone": s("2")})
	w.model.updated("dev-2", 3, "patients", "p1", map[string]codec.Value{"camp": s("B")})
	w.model.created("dev-2", 4, "patients", "p2", map[string]codec.Value{"phone": s("9")}, "p2", "c")
	w.model.deletedRow("dev-1", 5, "patients", "p2")
	w.model.created("dev-3", 6, "patients", "p3", map[string]codec.Value{"phone": s("7")}, "p3", "c")
	for _, tc := range []struct {
		name  string
		cloud map[key]map[string]codec.Value
		want  []string
	}{
		{"good", map[key]map[string]codec.Value{
			{"patients", "p1"}: {"phone": s("2"), "camp": s("B")},
			{"patients", "p3"}: {"phone": s("7")},
		}, nil},
		{"either writer's last value", map[key]map[string]codec.Value{
			{"patients", "p1"}: {"phone": s("2"), "camp": s("A")},
			{"patients", "p3"}: {"phone": s("7")},
		}, nil},
		{"superseded and invented values", map[key]map[string]codec.Value{
			{"patients", "p1"}: {"phone": s("1"), "camp": s("C")},
			{"patients", "p3"}: {"phone": s("7")},
		}, []string{VLostWrite, VPhantom}},
		{"lost, blanked, resurrected, phantom rows", map[key]map[string]codec.Value{
			{"patients", "p1"}: {"phone": s("2")},
			{"patients", "p2"}: {"phone": s("9")},
			{"patients", "p4"}: {"phone": s("0")},
		}, []string{VBlanked, VLostRow, VPhantom, VResurrected}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w.violations = nil
			w.all = []*node{w.cloud}
			w.checkModel(tc.cloud)
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
