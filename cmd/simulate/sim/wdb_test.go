package sim

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// wdbDevices are the WatermelonDB devices the plan of o chooses.
func wdbDevices(o Options) map[string]bool {
	return derivePlan(o, rand.New(rand.NewPCG(o.Seed, streamPlan))).WDB
}

// TestWDBSameSeedSameDigest runs seeds with WatermelonDB devices twice:
// the same seed gives the same digest, and the devices did sync
// through the HTTP handler, and cleanly.
func TestWDBSameSeedSameDigest(t *testing.T) {
	for _, seed := range []uint64{1, 2} {
		t.Run(fmt.Sprint("seed-", seed), func(t *testing.T) {
			t.Parallel()
			o := small(seed)
			o.WDB = 2
			var digests []string
			for range 2 {
				var trace strings.Builder
				o.Trace = &trace
				r := run(t, o)
				expectClean(t, r)
				digests = append(digests, r.Digest)
				if ok := strings.Count(trace.String(), "(watermelondb) -> ok"); ok < 20 {
					t.Errorf("seed %d: only %d WatermelonDB syncs ended ok", seed, ok)
				}
			}
			if digests[0] != digests[1] {
				t.Errorf("seed %d: digests differ: %s and %s", seed, digests[0], digests[1])
			}
		})
	}
}

// TestWDBCatchesServeCreated plants --break-serve-created (every pulled
// row served as created) and shows the WatermelonDB devices catch it in
// the default deployment within 20 seeds: a record the device pushed
// comes back to it as created, and a record it deleted before its next
// sync comes back to life (applyRemoteChanges re-creates a locally
// deleted record pulled as created), so its delete is never pushed.
func TestWDBCatchesServeCreated(t *testing.T) {
	var served, resurrected uint64
	for seed := uint64(1); seed <= 20 && (served == 0 || resurrected == 0); seed++ {
		o := Defaults()
		o.Seed, o.BreakServeCreated = seed, true
		wdb := wdbDevices(o)
		r := run(t, o)
		for _, v := range r.Violations {
			switch {
			case v.Kind == VServedCreated && wdb[v.Node] && served == 0:
				served = seed
				t.Logf("seed %d: %s", seed, v)
			case v.Kind == VResurrected && v.deletedRow && resurrected == 0 && slices.ContainsFunc(v.involved[1:], func(u string) bool {
				return wdb[strings.TrimPrefix(u, "user.")]
			}):
				resurrected = seed
				t.Logf("seed %d: %s\n%s", seed, v, v.History)
			}
		}
	}
	if served == 0 {
		t.Error("no WatermelonDB device was served its own record as created within 20 seeds")
	}
	if resurrected == 0 {
		t.Error("no record a WatermelonDB device deleted came back within 20 seeds")
	}
}
