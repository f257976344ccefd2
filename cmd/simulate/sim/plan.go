package sim

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/clinicsync/clinicsync/fsm"
)

// Plan is everything a run derives from its seed before it starts: the
// shape of the deployment beyond the counts, and the fault rates. A
// failing run prints it, so that a reader sees what the seed chose.
type Plan struct {
	// Route of each device: "hub", "cloud" (syncs straight to the
	// cloud) or "switch" (paired with both, moves between them).
	Route map[string]string
	// Policy of each serving node (merge or strict).
	Policy map[string]fsm.Policy
	// PageSize of each node's pulls and of each server's pages.
	PageSize map[string]int
	// Skew is each node's clock offset from the world clock, in ms.
	Skew map[string]int64
	// Offline is the device that goes offline for weeks ("" if none).
	Offline string
	// HealGap is how long after the last clinic day faults heal.
	HealGap time.Duration
	// Per-call probabilities of the network and crash faults.
	Loss, Dup, Delay, Crash, Concurrent float64
	// Late is the chance that a device's push is held back and delivered
	// after a newer push of the same client (delay: the original is lost
	// meanwhile, a reordering; dup: the original arrives too, a late
	// duplicate). MidPush is the chance that the user edits a row of a
	// push while it is in flight (workload, not a fault).
	Late, MidPush float64
	// Per-day counts of the scheduled faults.
	Partitions, OneWays, Restarts, Jumps int
	// WDB are the WatermelonDB devices (Options.WDB per clinic, never
	// a switching one): they sync with the cloud over its HTTP API.
	WDB map[string]bool
}

// Names of the nodes of a deployment.
const cloudName = "cloud"

func hubName(c int) string       { return fmt.Sprintf("hub-%d", c) }
func deviceName(c, d int) string { return fmt.Sprintf("dev-%d-%d", c, d) }
func clinicID(c int) string      { return fmt.Sprintf("clinic-%d", c) }

// derivePlan draws a plan from the seed's plan stream.
func derivePlan(o Options, rng *rand.Rand) Plan {
	p := Plan{Route: map[string]string{}, Policy: map[string]fsm.Policy{}, PageSize: map[string]int{}, Skew: map[string]int64{}}
	sizes := []int{0, 0, 5, 20, 100}
	policy := func() fsm.Policy {
		if rng.IntN(4) == 0 {
			return fsm.StrictPolicy
		}
		return fsm.MergePolicy
	}
	p.Policy[cloudName] = policy()
	p.PageSize[cloudName] = sizes[rng.IntN(len(sizes))]
	var devices []string
	for c := 1; c <= o.Clinics; c++ {
		p.Policy[hubName(c)] = policy()
		p.PageSize[hubName(c)] = sizes[rng.IntN(len(sizes))]
		for d := 1; d <= o.Devices; d++ {
			name := deviceName(c, d)
			devices = append(devices, name)
			p.Route[name] = "hub"
			p.PageSize[name] = sizes[rng.IntN(len(sizes))]
		}
		// The last device of a clinic may sync straight to the cloud
		// (a mobile team working outside the clinic's LAN).
		if o.Devices >= 2 && (c == 1 || rng.IntN(2) == 0) {
			p.Route[deviceName(c, o.Devices)] = "cloud"
		}
	}
	if o.has(FaultSwitch) && o.Devices >= 2 {
		// One device per deployment (two with many clinics) moves
		// between its hub and the cloud.
		for range 1 + o.Clinics/3 {
			c := 1 + rng.IntN(o.Clinics)
			p.Route[deviceName(c, 1+rng.IntN(o.Devices-1))] = "switch"
		}
	}
	if o.has(FaultSkew) {
		for _, n := range p.nodeNames(o) {
			p.Skew[n] = rng.Int64N(20*60_000) - 10*60_000
		}
		// One node is badly off: a device whose clock is hours wrong.
		far := devices[rng.IntN(len(devices))]
		p.Skew[far] = (1 + rng.Int64N(26)) * int64(time.Hour/time.Millisecond) * (1 - 2*rng.Int64N(2))
	}
	if o.has(FaultOffline) {
		p.Offline = devices[rng.IntN(len(devices))]
		p.HealGap = time.Duration(14+rng.IntN(21)) * 24 * time.Hour
	} else {
		p.HealGap = 12 * time.Hour
	}
	rate := func(fault string, lo, hi float64) float64 {
		if !o.has(fault) {
			return 0
		}
		return lo + rng.Float64()*(hi-lo)
	}
	p.Loss = rate(FaultLoss, 0.01, 0.06)
	p.Dup = rate(FaultDup, 0.03, 0.12)
	p.Delay = rate(FaultDelay, 0.03, 0.12)
	p.Crash = rate(FaultCrash, 0.003, 0.012)
	p.Concurrent = rate(FaultConcurrent, 0.02, 0.06)
	count := func(fault string, lo, hi int) int {
		if !o.has(fault) {
			return 0
		}
		return lo + rng.IntN(hi-lo+1)
	}
	p.Partitions = count(FaultPartition, 1, 4)
	p.OneWays = count(FaultOneWay, 1, 3)
	p.Restarts = count(FaultRestart, 1, 2)
	p.Jumps = count(FaultJump, 1, 3)
	p.Late = rate(FaultDelay, 0.03, 0.08)
	p.MidPush = 0.05 + rng.Float64()*0.10
	p.WDB = map[string]bool{}
	for c := 1; c <= o.Clinics; c++ {
		left := o.WDB
		for _, d := range rng.Perm(o.Devices) {
			if name := deviceName(c, d+1); left > 0 && p.Route[name] != "switch" {
				p.WDB[name], p.Route[name] = true, "cloud"
				left--
			}
		}
	}
	return p
}

// nodeNames lists a deployment's nodes: the cloud, then each clinic's
// hub and devices.
func (p Plan) nodeNames(o Options) []string {
	names := []string{cloudName}
	for c := 1; c <= o.Clinics; c++ {
		names = append(names, hubName(c))
		for d := 1; d <= o.Devices; d++ {
			names = append(names, deviceName(c, d))
		}
	}
	return names
}

// Lines renders the plan for people, one decision per line, in a
// stable order.
func (p Plan) Lines() []string {
	var out []string
	routes := map[string][]string{}
	for _, n := range sortedKeys(p.Route) {
		routes[p.Route[n]] = append(routes[p.Route[n]], n)
	}
	for _, r := range []string{"cloud", "switch"} {
		if len(routes[r]) > 0 {
			out = append(out, fmt.Sprintf("route %s: %s", r, strings.Join(routes[r], " ")))
		}
	}
	var strict, pages, skews []string
	for _, n := range sortedKeys(p.Policy) {
		if p.Policy[n] == fsm.StrictPolicy {
			strict = append(strict, n)
		}
	}
	for _, n := range sortedKeys(p.PageSize) {
		if p.PageSize[n] > 0 {
			pages = append(pages, fmt.Sprintf("%s=%d", n, p.PageSize[n]))
		}
	}
	for _, n := range sortedKeys(p.Skew) {
		if p.Skew[n] != 0 {
			skews = append(skews, fmt.Sprintf("%s=%+ds", n, p.Skew[n]/1000))
		}
	}
	if len(strict) > 0 {
		out = append(out, "strict policy: "+strings.Join(strict, " "))
	}
	if len(pages) > 0 {
		out = append(out, "page sizes: "+strings.Join(pages, " "))
	}
	if len(skews) > 0 {
		out = append(out, "clock skew: "+strings.Join(skews, " "))
	}
	if wdb := sortedKeys(p.WDB); len(wdb) > 0 {
		out = append(out, "watermelondb: "+strings.Join(wdb, " "))
	}
	if p.Offline != "" {
		out = append(out, fmt.Sprintf("offline: %s until the heal, %s after the last day", p.Offline, days(p.HealGap)))
	}
	out = append(out, fmt.Sprintf("per call: loss=%.3f dup=%.3f delay=%.3f crash=%.4f concurrent=%.3f late=%.3f midpush=%.3f", p.Loss, p.Dup, p.Delay, p.Crash, p.Concurrent, p.Late, p.MidPush))
	out = append(out, fmt.Sprintf("per day: partitions=%d oneway=%d restarts=%d jumps=%d", p.Partitions, p.OneWays, p.Restarts, p.Jumps))
	return out
}

func days(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.String()
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
