package proc

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
)

// Fault kinds of process mode, as --faults names them (a subset of the
// simulator's: the others need its virtual network).
const (
	FaultsPartition = "partition" // a proxy refuses and resets connections for a while
	FaultsOneWay    = "oneway"    // a proxy discards one direction for a while
	FaultsLoss      = "loss"      // connections dropped at accept or reset after some bytes
	FaultsDelay     = "delay"     // connections whose every chunk is late
	FaultsCrash     = "crash"     // a device's sync process killed (-9) mid-sync
	FaultsRestart   = "restart"   // a serve process killed (-9) and restarted on its addresses
	FaultsSkew      = "skew"      // each node's clock offset (CLINICSYNC_TEST_CLOCK_OFFSET)
)

// Faults lists the fault kinds process mode injects.
var Faults = []string{FaultsPartition, FaultsOneWay, FaultsLoss, FaultsDelay, FaultsCrash, FaultsRestart, FaultsSkew}

// Options configure one process-mode run.
type Options struct {
	Seed    uint64
	Clinics int // clinics, each with one hub
	Devices int // devices per clinic
	// Ops is the workload's operations per device (writes and syncs).
	Ops    int
	Faults []string // of Faults
	// BreakMerge plants a bug in every node process
	// (CLINICSYNC_TEST_BREAK=merge): a pulled value beats a local
	// unpushed edit without a conflict logged.
	BreakMerge bool
	// NodeBin is the bin/node executable.
	NodeBin string
	// Dir holds the nodes' data directories (a temporary directory,
	// removed after a run that passed, when empty).
	Dir string
}

// DefaultOps is the workload's length per device.
const DefaultOps = 30

// Check reports whether the options describe a runnable deployment.
func (o Options) Check() error {
	switch {
	case o.Clinics < 1 || o.Clinics > 5:
		return fmt.Errorf("proc: --clinics %d: want 1 to 5 in process mode", o.Clinics)
	case o.Devices < 1 || o.Devices > 10:
		return fmt.Errorf("proc: --devices %d: want 1 to 10 in process mode", o.Devices)
	case o.Ops < 1:
		return fmt.Errorf("proc: %d operations per device: want at least 1", o.Ops)
	case o.NodeBin == "":
		return fmt.Errorf("proc: no bin/node executable given")
	}
	for _, f := range o.Faults {
		if !slices.Contains(Faults, f) {
			return fmt.Errorf("proc: fault %q is not injected in process mode (want some of %s)", f, strings.Join(Faults, ","))
		}
	}
	return nil
}

func (o Options) has(f string) bool { return slices.Contains(o.Faults, f) }

// ReplayCommand is the command line that replays this run, as far as
// real processes replay: the same plan, not the same interleaving.
func (o Options) ReplayCommand() string {
	faults := strings.Join(o.Faults, ",")
	switch {
	case len(o.Faults) == 0:
		faults = "none"
	case slices.Equal(o.Faults, Faults):
		faults = "all"
	}
	s := fmt.Sprintf("bin/simulate --mode process --seed %d --clinics %d --devices %d --faults %s", o.Seed, o.Clinics, o.Devices, faults)
	if o.BreakMerge {
		s += " --break-merge"
	}
	return s
}

// Plan is what the seed decides before the run: clock offsets, which
// devices also sync with the cloud, the proxies' intervals and fault
// rates, and when serve processes are killed.
type Plan struct {
	Skew         map[string]int64      `json:"skew_ms"` // clock offset by node, ms
	CloudDevices map[string]bool       `json:"cloud_devices"`
	Intervals    map[string][]Interval `json:"intervals"` // by proxy (node) name
	Rates        ConnFaults            `json:"rates"`
	Kills        []Kill                `json:"kills"`
	SyncKill     float64               `json:"sync_kill"` // chance a device's sync is killed
}

// Kill is a planned kill -9 of a serve process, restarted DownMs later.
type Kill struct {
	Node   string `json:"node"`
	AtMs   int64  `json:"at_ms"`
	DownMs int64  `json:"down_ms"`
}

// spanMs is the stretch of the run the plan spreads faults over.
func (o Options) spanMs() int64 { return int64(o.Ops) * 250 }

// plan draws the plan from the seed.
func plan(o Options, names []string, served []string, devices []string) Plan {
	rng := rand.New(rand.NewPCG(o.Seed, 0x706c616e))
	p := Plan{Skew: map[string]int64{}, CloudDevices: map[string]bool{}, Intervals: map[string][]Interval{}}
	span := o.spanMs()
	for _, n := range names {
		if o.has(FaultsSkew) {
			p.Skew[n] = rng.Int64N(240_001) - 120_000
		}
	}
	for i, d := range devices {
		if i == 0 || rng.IntN(3) == 0 {
			p.CloudDevices[d] = true
		}
	}
	for _, s := range served {
		var ivs []Interval
		if o.has(FaultsPartition) {
			for range 1 + rng.IntN(2) {
				from := rng.Int64N(span)
				ivs = append(ivs, Interval{Kind: FaultPartition, FromMs: from, UntilMs: from + 300 + rng.Int64N(1500)})
			}
		}
		if o.has(FaultsOneWay) {
			kind := FaultCutRequests
			if rng.IntN(2) == 0 {
				kind = FaultCutAnswers
			}
			from := rng.Int64N(span)
			ivs = append(ivs, Interval{Kind: kind, FromMs: from, UntilMs: from + 200 + rng.Int64N(1000)})
		}
		sort.Slice(ivs, func(i, j int) bool { return ivs[i].FromMs < ivs[j].FromMs })
		p.Intervals[s] = ivs
		if o.has(FaultsRestart) {
			for range 1 + rng.IntN(2) {
				p.Kills = append(p.Kills, Kill{Node: s, AtMs: rng.Int64N(span), DownMs: 100 + rng.Int64N(700)})
			}
		}
	}
	sort.Slice(p.Kills, func(i, j int) bool { return p.Kills[i].AtMs < p.Kills[j].AtMs })
	if o.has(FaultsLoss) {
		p.Rates.Drop, p.Rates.Reset = 0.04, 0.06
	}
	if o.has(FaultsDelay) {
		p.Rates.Delay = 0.15
	}
	if o.has(FaultsCrash) {
		p.SyncKill = 0.15
	}
	return p
}
