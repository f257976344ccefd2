package proc

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
)

// WriteText writes the report for people: the figures, the fault
// schedule, and on a failure the violations, the seed and the replay
// command.
func (rep *Report) WriteText(w io.Writer) {
	o := rep.Options
	fmt.Fprintf(w, "process mode: seed %d, %d clinic(s) × %d device(s), faults %s\n", rep.Seed, o.Clinics, o.Devices, faultText(o.Faults))
	fmt.Fprintf(w, "workload: %d rows created, %d updates, %d deletes, %d syncs (%d failed); setup %.1fs, workload %.1fs, run %.1fs\n",
		rep.Creates, rep.Updates, rep.Deletes, rep.Counts["syncs"], rep.Counts["syncs failed"], rep.SetupSeconds, rep.WorkloadSeconds, rep.WallSeconds)
	var faults []string
	for _, k := range slices.Sorted(maps.Keys(rep.Faults)) {
		faults = append(faults, fmt.Sprintf("%s %d", k, rep.Faults[k]))
	}
	fmt.Fprintf(w, "faults injected: %s\n", strings.Join(faults, ", "))
	fmt.Fprintf(w, "settled in %d round(s); conflicts logged: %d; rows per node:", rep.SettleRounds, rep.Conflicts)
	for _, n := range slices.Sorted(maps.Keys(rep.RowsPerNode)) {
		fmt.Fprintf(w, " %s=%d", n, rep.RowsPerNode[n])
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "schedule (ms from the workload's start):")
	for _, e := range rep.Schedule {
		fmt.Fprintf(w, "  %7d %-8s %-12s %s\n", e.AtMs, e.Node, e.Kind, e.Detail)
	}
	if rep.OK() {
		fmt.Fprintln(w, "OK: every replica converged, nothing lost, no resurrection, every lost write logged")
		return
	}
	fmt.Fprintf(w, "FAILED: %d violation(s)\n", len(rep.Violations))
	for _, v := range rep.Violations {
		fmt.Fprintf(w, "  %s\n", v)
	}
	for _, l := range rep.Logs {
		fmt.Fprintf(w, "log %s\n", l)
	}
	if rep.Dir != "" {
		fmt.Fprintf(w, "data directories kept in %s\n", rep.Dir)
	}
	fmt.Fprintf(w, "seed %d; replay (best effort: real processes, the same plan, not the same interleaving):\n  %s\n", rep.Seed, rep.Replay)
}

func faultText(f []string) string {
	if len(f) == 0 {
		return "none"
	}
	return strings.Join(f, ",")
}
