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
	// WDB is the number of devices per clinic that are WatermelonDB
	// apps (at most Devices): they sync with the cloud through its HTTP
	// handler, with Basic sign-in and JSON bodies.
	WDB    int
	Faults []string
	Store  string // StoreMemory or StoreBolt
	// Dir holds the bbolt stores (a temporary directory, removed after
	// the run, when empty).
	Dir string
	// Planted bugs (hidden --break-* switches), each breaking one rule
	// inside the simulator, to show the checks catch it:
	// BreakMerge: pulled values win over local unpushed edits.
	BreakMerge bool
	// BreakPullDelete: pulled deletes (and mirror deletions) are dropped.
	BreakPullDelete bool
	// BreakUnknownDelete: a pushed delete of a row the server does not
	// know leaves no tombstone (the network strips it from the push).
	BreakUnknownDelete bool
	// BreakSecondEdit: a device's second edit of a column it has not
	// pushed yet is not stored (the model still records it).
	BreakSecondEdit bool
	// BreakServeCreated: every pulled row is served as created.
	BreakServeCreated bool
	// BreakVersions: the pull merge ignores versions (sync order wins:
	// remote values over everything but local unpushed edits).
	BreakVersions bool
	// BreakMarkSynced: after a push, the pushed rows are marked synced
	// whatever was written to them during the push.
	BreakMarkSynced bool
	// Trace, when set, receives every event of the run, one per line.
	Trace io.Writer
	// OnRun, when set, gets each run's report as the run ends (RunSeeds
	// calls it from several goroutines at once).
	OnRun func(*Report)
}

// Defaults returns the options of a plain `bin/simulate`.
func Defaults() Options {
	return Options{Seed: 1, Clinics: 2, Devices: 3, Days: 1, WDB: 1, Faults: slices.Clone(AllFaults), Store: StoreMemory}
}

// Check reports whether the options describe a runnable simulation.
func (o Options) Check() error {
	switch {
	case o.Clinics < 1 || o.Clinics > 50:
		return fmt.Errorf("sim: --clinics %d: want 1 to 50", o.Clinics)
	case o.Devices < 1 || o.Devices > 50:
		return fmt.Errorf("sim: --devices %d: want 1 to 50", o.Devices)
	case o.WDB < 0 || o.WDB > o.Devices:
		return fmt.Errorf("sim: --wdb %d: want 0 to --devices (%d)", o.WDB, o.Devices)
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
	if o.WDB != Defaults().WDB {
		s += fmt.Sprintf(" --wdb %d", o.WDB)
	}
	if o.Store != StoreMemory {
		s += " --store " + o.Store
	}
	for _, b := range o.Breaks() {
		s += " --break-" + b
	}
	return s
}

// BreakNames lists the planted bugs, as --break-NAME switches name them.
var BreakNames = []string{"merge", "pull-delete", "unknown-delete", "second-edit", "serve-created", "versions", "mark-synced"}

// Break returns the option field of a planted bug by name (nil if none).
func (o *Options) Break(name string) *bool {
	switch name {
	case "merge":
		return &o.BreakMerge
	case "pull-delete":
		return &o.BreakPullDelete
	case "unknown-delete":
		return &o.BreakUnknownDelete
	case "second-edit":
		return &o.BreakSecondEdit
	case "serve-created":
		return &o.BreakServeCreated
	case "versions":
		return &o.BreakVersions
	case "mark-synced":
		return &o.BreakMarkSynced
	}
	return nil
}

// Breaks lists the planted bugs these options switch on.
func (o Options) Breaks() []string {
	var out []string
	for _, b := range BreakNames {
		if *o.Break(b) {
			out = append(out, b)
		}
	}
	return out
}
