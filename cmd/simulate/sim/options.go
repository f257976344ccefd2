package sim

import (
	"fmt"
	"io"
	"slices"
	"strings"
)

// Fault kinds, as --faults names them.
const (
	FaultPartition  = "partition"  // a node cut off both ways, or a clinic's uplink down
	FaultOneWay     = "oneway"     // messages toward (or from) a node lost
	FaultLoss       = "loss"       // a request or a response lost at random
	FaultDup        = "dup"        // a push delivered twice
	FaultDelay      = "delay"      // a call held while other nodes act (reordering)
	FaultCrash      = "crash"      // a node crashes at a sync step and restarts from its store
	FaultRestart    = "restart"    // a hub restarts between steps
	FaultSkew       = "skew"       // node clocks offset from each other
	FaultJump       = "jump"       // a node clock jumps forward or back
	FaultOffline    = "offline"    // a device offline for weeks, still used
	FaultConcurrent = "concurrent" // a second sync triggered while one runs
	FaultSwitch     = "switch"     // a device switching between its hub and the cloud
)

// AllFaults lists every fault kind, in the order reports show them.
var AllFaults = []string{
	FaultPartition, FaultOneWay, FaultLoss, FaultDup, FaultDelay, FaultCrash,
	FaultRestart, FaultSkew, FaultJump, FaultOffline, FaultConcurrent, FaultSwitch,
}

// ParseFaults reads a --faults value: "all", "none", or a comma list of
// fault kinds. The result is in AllFaults order, without duplicates.
func ParseFaults(s string) ([]string, error) {
	switch strings.TrimSpace(s) {
	case "all":
		return slices.Clone(AllFaults), nil
	case "none", "":
		return []string{}, nil
	}
	want := map[string]bool{}
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if !slices.Contains(AllFaults, f) {
			return nil, fmt.Errorf("sim: unknown fault %q (want all, none or a list of %s)", f, strings.Join(AllFaults, ","))
		}
		want[f] = true
	}
	var out []string
	for _, f := range AllFaults {
		if want[f] {
			out = append(out, f)
		}
	}
	return out, nil
}

// FaultList renders a fault list as --faults takes it.
func FaultList(faults []string) string {
	switch {
	case len(faults) == 0:
		return "none"
	case slices.Equal(faults, AllFaults):
		return "all"
	}
	return strings.Join(faults, ",")
}

// Store kinds.
const (
	StoreMemory = "memory"
	StoreBolt   = "bolt"
)

// Options configure one simulation. Everything the run does follows
// from them: the same options replay the same run, event for event.
type Options struct {
	Seed    uint64
	Clinics int // clinics, each with one hub
	Devices int // devices per clinic
	Days    int // simulated clinic days
	Faults  []string
	Store   string // StoreMemory or StoreBolt
	// Dir holds the bbolt stores (a temporary directory, removed after
	// the run, when empty).
	Dir string
	// BreakMerge swaps in a deliberately wrong pull merge (remote values
	// win over local unpushed edits), to show the checks catch it.
	BreakMerge bool
	// Trace, when set, receives every event of the run, one per line.
	Trace io.Writer
}

// Defaults returns the options of a plain `bin/simulate`.
func Defaults() Options {
	return Options{Seed: 1, Clinics: 2, Devices: 3, Days: 1, Faults: slices.Clone(AllFaults), Store: StoreMemory}
}

// Check reports whether the options describe a runnable simulation.
func (o Options) Check() error {
	switch {
	case o.Clinics < 1 || o.Clinics > 50:
		return fmt.Errorf("sim: --clinics %d: want 1 to 50", o.Clinics)
	case o.Devices < 1 || o.Devices > 50:
		return fmt.Errorf("sim: --devices %d: want 1 to 50", o.Devices)
	case o.Days < 1 || o.Days > 366:
		return fmt.Errorf("sim: --days %d: want 1 to 366", o.Days)
	case o.Store != StoreMemory && o.Store != StoreBolt:
		return fmt.Errorf("sim: --store %q: want memory or bolt", o.Store)
	}
	for _, f := range o.Faults {
		if !slices.Contains(AllFaults, f) {
			return fmt.Errorf("sim: unknown fault %q", f)
		}
	}
	return nil
}

// has reports whether a fault kind is enabled.
func (o Options) has(fault string) bool { return slices.Contains(o.Faults, fault) }

// ReplayCommand is the command line that replays this run exactly.
func (o Options) ReplayCommand() string {
	s := fmt.Sprintf("bin/simulate --seed %d --clinics %d --devices %d --days %d --faults %s",
		o.Seed, o.Clinics, o.Devices, o.Days, FaultList(o.Faults))
	if o.Store != StoreMemory {
		s += " --store " + o.Store
	}
	if o.BreakMerge {
		s += " --break-merge"
	}
	return s
}
