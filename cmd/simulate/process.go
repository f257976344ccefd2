package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/clinicsync/clinicsync/cmd/simulate/proc"
	"github.com/clinicsync/clinicsync/cmd/simulate/sim"
)

// runProcess runs --mode process: one run of real node processes
// (package proc). The deployment defaults to one clinic.
func runProcess(ctx context.Context, fs *flag.FlagSet, d sim.Options, seed uint64, seeds int, faults, nodeBin, report string, asJSON bool, stdout, stderr io.Writer) int {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	switch {
	case seeds != 1:
		fmt.Fprintln(stderr, "simulate: --mode process runs one seed at a time (no --seeds)")
		return 2
	case report != "":
		fmt.Fprintln(stderr, "simulate: --mode process writes no HTML report (use --json)")
		return 2
	}
	o := proc.Options{Seed: seed, Clinics: 1, Devices: d.Devices, Ops: proc.DefaultOps, NodeBin: nodeBin, BreakMerge: d.BreakMerge}
	if set["clinics"] {
		o.Clinics = d.Clinics
	}
	for _, b := range d.Breaks() {
		if b != "merge" {
			fmt.Fprintf(stderr, "simulate: --break-%s is not planted in process mode (only --break-merge)\n", b)
			return 2
		}
	}
	if faults == "all" {
		o.Faults = slices.Clone(proc.Faults)
	} else {
		fs, err := sim.ParseFaults(faults)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 2
		}
		o.Faults = fs
	}
	if o.NodeBin == "" {
		exe, err := os.Executable()
		if err != nil {
			fmt.Fprintln(stderr, "simulate: finding bin/node:", err)
			return 2
		}
		o.NodeBin = filepath.Join(filepath.Dir(exe), "node")
	}
	if _, err := os.Stat(o.NodeBin); err != nil {
		fmt.Fprintf(stderr, "simulate: --mode process needs bin/node: %v (build it, or give --node-bin)\n", err)
		return 2
	}
	if err := o.Check(); err != nil {
		fmt.Fprintln(stderr, "simulate:", err)
		return 2
	}
	rep, err := proc.Run(ctx, o)
	if err != nil {
		fmt.Fprintln(stderr, "simulate:", err)
		return 2
	}
	if asJSON {
		stdout.Write(rep.JSON())
	} else {
		rep.WriteText(stdout)
	}
	if !rep.OK() {
		return 1
	}
	return 0
}
