// Command simulate runs seeded, deterministic multi-node clinic
// simulations with faults and checks the sync invariants. See
// `simulate --help` and the sim package documentation.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/clinicsync/clinicsync/cmd/simulate/sim"
	"github.com/clinicsync/clinicsync/metrics"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := runContext(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run parses the command line, runs the simulation(s) and returns the
// exit code: 0 all invariants held, 1 a violation, 2 a usage error.
func run(args []string, stdout, stderr io.Writer) int {
	return runContext(context.Background(), args, stdout, stderr)
}

// runContext is run; with --metrics it serves them until ctx ends.
func runContext(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("simulate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	d := sim.Defaults()
	seed := fs.Uint64("seed", d.Seed, "the seed (the first one with --seeds)")
	seeds := fs.Int("seeds", 1, "run this many seeds in parallel, from --seed on, and list the failing ones")
	fs.IntVar(&d.Clinics, "clinics", d.Clinics, "clinics, each with one hub")
	fs.IntVar(&d.Devices, "devices", d.Devices, "devices per clinic")
	fs.IntVar(&d.Days, "days", d.Days, "simulated clinic days")
	fs.IntVar(&d.WDB, "wdb", d.WDB, "devices per clinic that are WatermelonDB apps (JSON over the cloud's HTTP API)")
	faults := fs.String("faults", "all", "faults to inject: all, none, or a comma list of "+strings.Join(sim.AllFaults, ","))
	mode := fs.String("mode", "sim", "sim (deterministic, one process) or process (real node processes)")
	fs.StringVar(&d.Store, "store", d.Store, "memory or bolt (bbolt files in a temporary directory)")
	report := fs.String("report", "", "write an HTML report to this file")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	trace := fs.Bool("trace", false, "print every event of the run to stderr")
	metricsAddr := fs.String("metrics", "", "serve Prometheus metrics at http://ADDR/metrics while the runs go on and after, until interrupted")
	logFormat := fs.String("log-format", "text", "log lines (one per run, on stderr) as text or json")
	logLevel := fs.String("log-level", "warn", "the least level logged: debug, info (a line per run), warn (runs with violations) or error")
	nodeBin := fs.String("node-bin", "", "process mode: the bin/node executable (default: node beside this program)")
	// Test-only: planted bugs, to show the checks bite (hidden).
	for _, b := range sim.BreakNames {
		fs.BoolVar(d.Break(b), "break-"+b, false, "")
	}
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: simulate [--seed N | --seeds K] [--clinics C] [--devices D] [--wdb W] [--days N] [--faults LIST|all|none] [--mode sim|process] [--node-bin PATH] [--store memory|bolt] [--report FILE.html] [--json] [--metrics ADDR] [--log-format text|json] [--log-level L]\n")
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
		return runProcess(ctx, fs, d, *seed, *seeds, *faults, *nodeBin, *report, *asJSON, stdout, stderr)
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
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(stderr, "simulate: --log-level %q: want debug, info, warn or error\n", *logLevel)
		return 2
	}
	var log *slog.Logger
	switch opts := (&slog.HandlerOptions{Level: level}); *logFormat {
	case "text":
		log = slog.New(slog.NewTextHandler(stderr, opts))
	case "json":
		log = slog.New(slog.NewJSONHandler(stderr, opts))
	default:
		fmt.Fprintf(stderr, "simulate: --log-format %q: want text or json\n", *logFormat)
		return 2
	}
	var m *simMetrics
	d.OnRun = func(r *sim.Report) {
		if m != nil {
			m.observe(r)
		}
		attrs := []any{"seed", r.Seed, "syncs", r.Syncs, "rows_written", r.RowsWritten, "violations", len(r.Violations) + r.Dropped,
			"clinic_days", r.Options.Clinics * r.Options.Days, "wall_seconds", r.WallSeconds}
		if r.OK() {
			log.Info("simulation run", attrs...)
		} else {
			log.Warn("simulation run broke invariants", append(attrs, "replay", r.Replay)...)
		}
	}
	if err := d.Check(); err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	if *seeds < 1 {
		fmt.Fprintf(stderr, "simulate: --seeds %d: want at least 1\n", *seeds)
		return 2
	}
	metricsDone := make(chan error, 1)
	if *metricsAddr != "" {
		l, err := net.Listen("tcp", *metricsAddr)
		if err != nil {
			fmt.Fprintln(stderr, "simulate: serving metrics:", err)
			return 2
		}
		m = newSimMetrics()
		fmt.Fprintf(stderr, "listening on http://%s%s (Prometheus metrics)\n", l.Addr(), metrics.Path)
		go func() { metricsDone <- metrics.Serve(ctx, l, m.reg) }()
	}
	done := make(chan int, 1)
	go func() { done <- simulateAll(ctx, d, *seeds, *report, *asJSON, stdout, stderr) }()
	var code int
	select {
	case code = <-done:
	case <-ctx.Done(): // a run holds no state worth a clean stop
	}
	if ctx.Err() != nil {
		fmt.Fprintln(stderr, "simulate: interrupted")
		return 130
	}
	if m != nil {
		fmt.Fprintln(stderr, "simulate: done; serving metrics until interrupted")
		if err := <-metricsDone; err != nil {
			fmt.Fprintln(stderr, "simulate: serving metrics:", err)
		}
	}
	return code
}

// simulateAll runs the simulations, writes the report and returns the
// exit code.
func simulateAll(ctx context.Context, d sim.Options, seeds int, report string, asJSON bool, stdout, stderr io.Writer) int {
	var reports []*sim.Report
	var err error
	if seeds == 1 {
		r, err := sim.Run(d)
		if err != nil {
			fmt.Fprintln(stderr, "simulate:", err)
			return 2
		}
		reports = []*sim.Report{r}
	} else if reports, err = sim.RunSeeds(ctx, d, seeds); err != nil {
		if ctx.Err() == nil {
			fmt.Fprintln(stderr, "simulate:", err)
		}
		return 2
	}
	if report != "" {
		if err := os.WriteFile(report, sim.HTML(reports), 0o644); err != nil {
			fmt.Fprintln(stderr, "simulate:", err)
			return 2
		}
	}
	failed := print(reports, asJSON, stdout)
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
