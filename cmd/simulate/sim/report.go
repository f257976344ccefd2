package sim

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// Stats are what a run counts as it goes.
type Stats struct {
	Syncs       int
	Outcomes    map[string]int // ok, error, skipped
	Triggers    map[string]int // manual, login, force-upload, force-download
	RowsWritten int
	Conflicts   int // pushed rows the server merged per column
	PullMerges  int // pulled rows merged with local unpushed edits
	Faults      map[string]int
	// FaultTimes are the world times (ms) of injected faults, by kind.
	FaultTimes map[string][]int64
	// Latencies are the virtual durations (ms) of the syncs that ended ok.
	Latencies     []int64
	SettleRounds  int   // -1 when the bound was hit
	SettleMs      int64 // virtual time from the heal to quiet
	SettlePending []int // rows pending at the heal, then after each settling round
	SettleMoved   []int // rows pulled and pushed in each settling round
	RowsPerNode   map[string]int
	TraceLines    int
	ForceRejected int // rows of non-pushable tables a force upload sent
	Dropped       int // violations beyond maxPerKind
	Timeline      Timeline
}

func newStats() Stats {
	return Stats{Outcomes: map[string]int{}, Triggers: map[string]int{}, Faults: map[string]int{}, FaultTimes: map[string][]int64{}}
}

// Report is the result of one run. Its JSON keys are stable.
type Report struct {
	Seed              uint64         `json:"seed"`
	Options           ReportOpts     `json:"options"`
	Plan              []string       `json:"plan"`
	Violations        []Violation    `json:"violations"`
	Dropped           int            `json:"violations_dropped"` // beyond the first 50 of each kind
	Digest            string         `json:"digest"`
	Faults            map[string]int `json:"faults"`
	Syncs             int            `json:"syncs"`
	Outcomes          map[string]int `json:"sync_outcomes"`
	Triggers          map[string]int `json:"sync_triggers"`
	RowsWritten       int            `json:"rows_written"`
	ConflictsMerged   int            `json:"conflicts_merged"`
	PullMerges        int            `json:"pull_merges"`
	ForceRejected     int            `json:"force_upload_rejected"`
	Nodes             int            `json:"nodes"`
	SimulatedMs       int64          `json:"simulated_ms"`
	ConvergenceRounds int            `json:"convergence_rounds"`
	ConvergenceMs     int64          `json:"convergence_ms"`
	LatencyP50Ms      int64          `json:"latency_p50_ms"`
	LatencyP99Ms      int64          `json:"latency_p99_ms"`
	RowsPerNode       map[string]int `json:"rows_per_node"`
	WallSeconds       float64        `json:"wall_seconds"`
	ClinicDaysPerS    float64        `json:"clinic_days_per_s"`
	Replay            string         `json:"replay"`

	stats     Stats
	switching []string // devices that move between hub and cloud
	start     int64    // world ms when the run began
	runEnd    int64    // world ms when the clinic days ended
	nodes     []string // in plan order: cloud, then each clinic's hub and devices
	// rows are the histories of the rows violations name, by row.
	rows map[string]*RowHistory
}

// ReportOpts are the options a report was produced with.
type ReportOpts struct {
	Clinics    int    `json:"clinics"`
	Devices    int    `json:"devices"`
	Days       int    `json:"days"`
	Faults     string `json:"faults"`
	Store      string `json:"store"`
	BreakMerge bool   `json:"break_merge,omitempty"`
	// Breaks are the planted bugs switched on (--break-NAME).
	Breaks []string `json:"breaks,omitempty"`
}

// OK reports whether every invariant held.
func (r *Report) OK() bool { return len(r.Violations) == 0 }

// report builds the run's report; wall is the wall-clock time it took.
func (w *World) report(wall time.Duration) *Report {
	o := w.opts
	r := &Report{
		Seed:       o.Seed,
		Options:    ReportOpts{o.Clinics, o.Devices, o.Days, FaultList(o.Faults), o.Store, o.BreakMerge, o.Breaks()},
		Plan:       w.plan.Lines(),
		Violations: slices.Clone(w.violations),
		Dropped:    w.stats.Dropped,
		Faults:     map[string]int{},
		Syncs:      w.stats.Syncs, Outcomes: w.stats.Outcomes, Triggers: w.stats.Triggers,
		RowsWritten: w.stats.RowsWritten, ConflictsMerged: w.stats.Conflicts, PullMerges: w.stats.PullMerges, ForceRejected: w.stats.ForceRejected,
		Nodes: len(w.all), SimulatedMs: w.clock.now - (w.base + 6*hourMs),
		ConvergenceRounds: w.stats.SettleRounds, ConvergenceMs: w.stats.SettleMs,
		RowsPerNode: w.stats.RowsPerNode,
		WallSeconds: wall.Seconds(),
		Replay:      o.ReplayCommand(),
		stats:       w.stats,
		start:       w.base + 6*hourMs,
		runEnd:      w.runEnd,
		rows:        w.rowHistories(),
	}
	for _, n := range w.all {
		r.nodes = append(r.nodes, n.name)
	}
	for _, n := range sortedKeys(w.plan.Route) {
		if w.plan.Route[n] == "switch" {
			r.switching = append(r.switching, n)
		}
	}
	if r.Violations == nil {
		r.Violations = []Violation{}
	}
	for _, f := range o.Faults {
		r.Faults[f] = w.stats.Faults[f]
	}
	lat := slices.Clone(w.stats.Latencies)
	slices.Sort(lat)
	r.LatencyP50Ms, r.LatencyP99Ms = quantile(lat, 0.5), quantile(lat, 0.99)
	if wall > 0 {
		r.ClinicDaysPerS = float64(o.Clinics*o.Days) / wall.Seconds()
	}
	r.Digest = w.digest()
	return r
}

func quantile(sorted []int64, q float64) int64 {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(q*float64(len(sorted))))]
}

// digest combines the hash of every replica (node by node in plan
// order, table by table, row by row in id order, with sync metadata;
// taken by the final checks) with the hash of the event trace: two runs
// with the same digest ended in the same state by the same path.
func (w *World) digest() string {
	h := sha256.New()
	h.Write(w.replicas.Sum(nil))
	h.Write(w.trace.Sum(nil))
	return hex.EncodeToString(h.Sum(nil))
}

// WriteText prints the report for people. On a violation it adds the
// seed, the options derived from it, the first divergent rows with the
// model's history, and the command that replays the run.
func (r *Report) WriteText(out io.Writer) {
	o := r.Options
	fmt.Fprintf(out, "clinicsync simulation, seed %d: %d clinics × (1 hub + %d devices), %d day(s), faults %s, %s store\n",
		r.Seed, o.Clinics, o.Devices, o.Days, o.Faults, o.Store)
	if len(o.Breaks) > 0 {
		fmt.Fprintf(out, "  (planted bugs: %s)\n", strings.Join(o.Breaks, ", "))
	}
	fmt.Fprintf(out, "  nodes              %d (1 cloud, %d hubs, %d devices)\n", r.Nodes, o.Clinics, o.Clinics*o.Devices)
	fmt.Fprintf(out, "  simulated time     %s\n", duration(r.SimulatedMs))
	fmt.Fprintf(out, "  rows written       %d\n", r.RowsWritten)
	fmt.Fprintf(out, "  syncs              %d (%s); latency p50 %d ms, p99 %d ms (virtual)\n",
		r.Syncs, counts(r.Outcomes), r.LatencyP50Ms, r.LatencyP99Ms)
	fmt.Fprintf(out, "  triggers           %s\n", counts(r.Triggers))
	fmt.Fprintf(out, "  faults injected    %s\n", counts(r.Faults))
	fmt.Fprintf(out, "  conflicts merged   %d on push (server, per column), %d on pull (local edits kept)\n", r.ConflictsMerged, r.PullMerges)
	if r.ForceRejected > 0 {
		fmt.Fprintf(out, "  note               force uploads sent %d rows of tables the peer does not accept (rejected; no status changes)\n", r.ForceRejected)
	}
	if r.ConvergenceRounds > 0 {
		fmt.Fprintf(out, "  converged          %d settling rounds, %s after the heal\n", r.ConvergenceRounds, duration(r.ConvergenceMs))
	} else {
		fmt.Fprintf(out, "  converged          no (not quiet within %d rounds)\n", maxRounds)
	}
	if r.Dropped > 0 {
		fmt.Fprintf(out, "  violations         %d listed, %d more of the same kinds\n", len(r.Violations), r.Dropped)
	} else {
		fmt.Fprintf(out, "  violations         %d\n", len(r.Violations))
	}
	fmt.Fprintf(out, "  digest             %s\n", r.Digest)
	fmt.Fprintf(out, "  speed              %.1f clinic-days/s (%.2f s wall)\n", r.ClinicDaysPerS, r.WallSeconds)
	if r.OK() {
		return
	}
	fmt.Fprintf(out, "\nVIOLATIONS (seed %d)\n", r.Seed)
	fmt.Fprintf(out, "options derived from the seed:\n")
	for _, l := range r.Plan {
		fmt.Fprintf(out, "  %s\n", l)
	}
	kinds := map[string]int{}
	for _, v := range r.Violations {
		kinds[v.Kind]++
	}
	fmt.Fprintf(out, "by kind: %s\n", counts(kinds))
	// The first few of each kind, the first two with the model's
	// history of the row.
	perKind := map[string]int{}
	for _, v := range r.Violations {
		perKind[v.Kind]++
		switch n := perKind[v.Kind]; {
		case n <= 5:
			fmt.Fprintf(out, "  %s\n", v)
			if v.History != "" && n <= 2 {
				fmt.Fprintf(out, "%s\n", v.History)
			}
		case n == 6:
			fmt.Fprintf(out, "  ... %d more %s\n", kinds[v.Kind]-5, v.Kind)
		}
	}
	fmt.Fprintf(out, "replay: %s\n", r.Replay)
}

// Line is a one-line summary, for runs of many seeds.
func (r *Report) Line() string {
	status := "ok"
	if !r.OK() {
		kinds := map[string]int{}
		for _, v := range r.Violations {
			kinds[v.Kind]++
		}
		status = "FAIL " + counts(kinds)
	}
	return fmt.Sprintf("seed %-6d %s  rows=%d syncs=%d faults=%d digest=%s", r.Seed, status, r.RowsWritten, r.Syncs, sum(r.Faults), r.Digest[:12])
}

func sum(m map[string]int) int {
	t := 0
	for _, v := range m {
		t += v
	}
	return t
}

func counts(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range sortedKeys(m) {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}

func duration(ms int64) string {
	d := time.Duration(ms) * time.Millisecond
	if d >= 24*time.Hour {
		return fmt.Sprintf("%dd%s", d/(24*time.Hour), (d % (24 * time.Hour)).Round(time.Second))
	}
	return d.Round(time.Millisecond).String()
}

// WriteSummary prints the result of many seeds: a line per failing
// seed with its replay command, and the totals.
func WriteSummary(out io.Writer, reports []*Report) {
	var failed []string
	rows, syncs, faults, days := 0, 0, 0, 0
	wall := 0.0
	for _, r := range reports {
		rows += r.RowsWritten
		syncs += r.Syncs
		faults += sum(r.Faults)
		days += r.Options.Clinics * r.Options.Days
		wall += r.WallSeconds
		if !r.OK() {
			failed = append(failed, fmt.Sprint(r.Seed))
			fmt.Fprintln(out, r.Line())
			fmt.Fprintf(out, "    first: %s\n", r.Violations[0])
			fmt.Fprintf(out, "    replay: %s\n", r.Replay)
		}
	}
	fmt.Fprintf(out, "%d seeds (%d to %d): %d ok, %d failed\n", len(reports), reports[0].Seed, reports[len(reports)-1].Seed, len(reports)-len(failed), len(failed))
	if len(failed) > 0 {
		fmt.Fprintf(out, "failing seeds: %s\n", strings.Join(failed, " "))
	}
	speed := 0.0
	if wall > 0 {
		speed = float64(days) / wall
	}
	fmt.Fprintf(out, "rows written %d, syncs %d, faults %d; %.1f clinic-days per core-second\n", rows, syncs, faults, speed)
}
