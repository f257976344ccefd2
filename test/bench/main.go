// Command bench benchmarks real bin/node processes on 127.0.0.1, each
// benchmark against its floor (bbolt alone storing the same rows,
// measured in the same run), and prints one JSON object a line on
// stdout, one per benchmark (and transport or client); progress goes
// to stderr.
//
//	go run ./test/bench [-only NAME[,NAME]] [-node-bin PATH] [-simulate-bin PATH] [-keep]
//
// BENCH_ROWS (default 100000) scales the patients; `make bench` runs it
// after `make build`. Everything lives in a temporary directory,
// removed at the end unless -keep is given. BENCHMARKS.md describes the
// benchmarks and the keys of their lines.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() { os.Exit(run()) }

func run() int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	nodeBin := fs.String("node-bin", "bin/node", "the node binary (relative to the repository root)")
	simBin := fs.String("simulate-bin", "bin/simulate", "the simulator binary (relative to the repository root)")
	only := fs.String("only", "", "run only these benchmarks (comma-separated): "+strings.Join(benchNames(), ", "))
	keep := fs.Bool("keep", false, "keep the temporary directory (its path is printed)")
	fs.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: go run ./test/bench [-only NAME[,NAME]] [-node-bin PATH] [-simulate-bin PATH] [-keep]\n"+
			"BENCH_ROWS (default 100000) scales the patients.\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "bench: unexpected arguments %q\n", fs.Args())
		return 2
	}
	selected, err := selectBenches(*only)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		return 2
	}
	rows, err := benchRows()
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		return 2
	}
	root, err := repoRoot()
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		return 1
	}
	h := &harness{rows: rows, start: time.Now()}
	for _, b := range []struct {
		path *string
		flag string
	}{{nodeBin, "-node-bin"}, {simBin, "-simulate-bin"}} {
		if !filepath.IsAbs(*b.path) {
			*b.path = filepath.Join(root, *b.path)
		}
		if _, err := os.Stat(*b.path); err != nil {
			fmt.Fprintf(os.Stderr, "bench: %s %s: %v (run make build first)\n", b.flag, *b.path, err)
			return 1
		}
	}
	h.procs, h.simulateBin = newProcs(*nodeBin), *simBin
	if h.tmp, err = os.MkdirTemp("", "clinicsync-bench-"); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		return 1
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	h.say("BENCH_ROWS=%d, working in %s", rows, h.tmp)
	var results []result
	failed := false
	for _, b := range selected {
		if ctx.Err() != nil {
			break
		}
		h.say("== %s", b.name)
		res, err := b.run(ctx, h)
		results = append(results, res...)
		if err != nil {
			failed = true
			h.say("%s failed: %v", b.name, err)
		}
	}
	h.procs.killAll()
	if *keep {
		h.say("kept %s", h.tmp)
	} else if err := os.RemoveAll(h.tmp); err != nil {
		h.say("removing %s: %v", h.tmp, err)
	}

	enc := json.NewEncoder(os.Stdout)
	enc.SetEscapeHTML(false)
	for _, r := range results {
		if err := enc.Encode(r.line()); err != nil {
			fmt.Fprintf(os.Stderr, "bench: writing a result: %v\n", err)
			return 1
		}
	}
	switch {
	case ctx.Err() != nil:
		h.say("interrupted")
		return 130
	case failed:
		return 1
	}
	return 0
}

// harness is what the benchmarks share.
type harness struct {
	rows        int // BENCH_ROWS
	start       time.Time
	tmp         string
	procs       *procs
	simulateBin string
	main        *dataset // BENCH_ROWS patients and their related rows, made once
	dirs        int      // directories made, for unique names
}

// say prints a progress line on stderr.
func (h *harness) say(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "[%7.1fs] %s\n", time.Since(h.start).Seconds(), fmt.Sprintf(format, a...))
}

// dir returns a new directory path (not created) in the temporary
// directory, named after name.
func (h *harness) dir(name string) string {
	h.dirs++
	return filepath.Join(h.tmp, fmt.Sprintf("%02d-%s", h.dirs, name))
}

// mainData returns the dataset of BENCH_ROWS patients with their
// related rows, writing it the first time.
func (h *harness) mainData() (*dataset, error) {
	if h.main != nil {
		return h.main, nil
	}
	start := time.Now()
	d, err := writeDataset(h.dir("data"), h.rows, true, 1)
	if err != nil {
		return nil, fmt.Errorf("writing the rows: %w", err)
	}
	h.say("wrote %d rows (%.0f MB of ndjson, %d patients of %.0f bytes on average) in %.1fs",
		d.rows(), float64(d.bytes)/1e6, h.rows, avgBytes(d.only("patients")), time.Since(start).Seconds())
	h.main = d
	return d, nil
}

// timeout bounds a step handling rows: generous, to catch a stuck
// process, not to judge speed.
func timeout(rows int) time.Duration {
	return 5*time.Minute + time.Duration(rows)*3*time.Millisecond
}

// benchRows reads BENCH_ROWS.
func benchRows() (int, error) {
	s := os.Getenv("BENCH_ROWS")
	if s == "" {
		return 100_000, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 100 {
		return 0, fmt.Errorf("BENCH_ROWS=%q: want a whole number of at least 100", s)
	}
	return n, nil
}

// selectBenches returns the benchmarks -only names (all when empty).
func selectBenches(only string) ([]bench, error) {
	if only == "" {
		return benches, nil
	}
	var out []bench
	for _, name := range strings.Split(only, ",") {
		i := slices.IndexFunc(benches, func(b bench) bool { return b.name == strings.TrimSpace(name) })
		if i < 0 {
			return nil, fmt.Errorf("-only: no benchmark %q (have %s)", name, strings.Join(benchNames(), ", "))
		}
		out = append(out, benches[i])
	}
	return out, nil
}

func benchNames() []string {
	var names []string
	for _, b := range benches {
		names = append(names, b.name)
	}
	return names
}

// repoRoot is the directory of the clinicsync go.mod at or above the
// working directory.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.HasPrefix(string(b), "module github.com/clinicsync/clinicsync\n") {
			return dir, nil
		}
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return "", err
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the clinicsync repository (no go.mod of github.com/clinicsync/clinicsync above the working directory)")
		}
		dir = parent
	}
}
