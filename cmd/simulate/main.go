// Command simulate runs seeded, deterministic multi-node clinic
// simulations with faults and checks the sync invariants. See
// `simulate --help` and the sim package documentation.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/clinicsync/clinicsync/cmd/simulate/sim"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// run parses the command line, runs the simulation(s) and returns the
// exit code: 0 all invariants held, 1 a violation, 2 a usage error.
func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("simulate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	d := sim.Defaults()
	seed := fs.Uint64("seed", d.Seed, "the seed (the first one with --seeds)")
	seeds := fs.Int("seeds", 1, "run this many seeds in parallel, from --seed on, and list the failing ones")
	fs.IntVar(&d.Clinics, "clinics", d.Clinics, "clinics, each with one hub")
	fs.IntVar(&d.Devices, "devices", d.Devices, "devices per clinic")
	fs.IntVar(&d.Days, "days", d.Days, "simulated clinic days")
	faults := fs.String("faults", "all", "faults to inject: all, none, or a comma list of "+strings.Join(sim.AllFaults, ","))
	mode := fs.String("mode", "sim", "sim (deterministic, one process) or process (real node processes)")
	fs.StringVar(&d.Store, "store", d.Store, "memory or bolt (bbolt files in a temporary directory)")
	report := fs.String("report", "", "write an HTML report to this file")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	trace := fs.Bool("trace", false, "print every event of the run to stderr")
	// Test-only: planted bugs, to show the checks bite (hidden).
	for _, b := range sim.BreakNames {
		fs.BoolVar(d.Break(b), "break-"+b, false, "")
	}
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: simulate [--seed N | --seeds K] [--clinics C] [--devices D] [--days N] [--faults LIST|all|none] [--mode sim|process] [--store memory|bolt] [--report FILE.html] [--json]\n")
		fs.VisitAll(func(f *flag.Flag) {
			if f.Usage != "" {
				fmt.Fprintf(stderr, "  --%s\t%s (default %q)\n", f.Name, f.Usage, f.DefValue)
			}
		})
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "simulate: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	switch *mode {
	case "sim":
	case "process":
		fmt.Fprintln(stderr, "simulate: --mode process is not available yet")
		return 2
	default:
		fmt.Fprintf(stderr, "simulate: --mode %q: want sim or process\n", *mode)
		return 2
	}
	var err error
	if d.Faults, err = sim.ParseFaults(*faults); err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	d.Seed = *seed
	if *trace {
		d.Trace = stderr
	}
	if err := d.Check(); err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	if *seeds < 1 {
		fmt.Fprintf(stderr, "simulate: --seeds %d: want at least 1\n", *seeds)
		return 2
	}
	var reports []*sim.Report
	if *seeds == 1 {
		r, err := sim.Run(d)
		if err != nil {
			fmt.Fprintln(stderr, "simulate:", err)
			return 2
		}
		reports = []*sim.Report{r}
	} else if reports, err = sim.RunSeeds(d, *seeds); err != nil {
		fmt.Fprintln(stderr, "simulate:", err)
		return 2
	}
	if *report != "" {
		if err := os.WriteFile(*report, sim.HTML(reports), 0o644); err != nil {
			fmt.Fprintln(stderr, "simulate:", err)
			return 2
		}
	}
	failed := print(reports, *asJSON, stdout)
	if failed > 0 {
		return 1
	}
	return 0
}

// print writes the reports and returns how many runs failed.
func print(reports []*sim.Report, asJSON bool, out io.Writer) int {
	var failed []uint64
	for _, r := range reports {
		if !r.OK() {
			failed = append(failed, r.Seed)
		}
	}
	if asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if len(reports) == 1 {
			enc.Encode(reports[0])
		} else {
			if failed == nil {
				failed = []uint64{}
			}
			enc.Encode(struct {
				Seeds  int           `json:"seeds"`
				Failed []uint64      `json:"failed"`
				Runs   []*sim.Report `json:"runs"`
			}{len(reports), failed, reports})
		}
		return len(failed)
	}
	if len(reports) == 1 {
		reports[0].WriteText(out)
		return len(failed)
	}
	sim.WriteSummary(out, reports)
	return len(failed)
}
