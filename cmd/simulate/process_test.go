package main

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/clinicsync/clinicsync/cmd/simulate/proc"
)

// buildNode builds bin/node into a temporary directory.
func buildNode(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "node")
	out, err := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", bin, "github.com/clinicsync/clinicsync/cmd/node").CombinedOutput()
	if err != nil {
		t.Fatalf("building bin/node: %v\n%s", err, out)
	}
	return bin
}

// TestProcessMode runs one short process-mode run of the default
// deployment (a cloud, a hub, three devices) with every fault on: it
// must pass, with faults of each planned kind injected.
func TestProcessMode(t *testing.T) {
	bin := buildNode(t)
	var out, errb bytes.Buffer
	code := run([]string{"--mode", "process", "--seed", "1", "--node-bin", bin, "--json"}, &out, &errb)
	var rep proc.Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("exit %d, stderr %s: reading the JSON report: %v\n%s", code, errb.String(), err, out.String())
	}
	if code != 0 || !rep.OK() {
		var text bytes.Buffer
		rep.WriteText(&text)
		t.Fatalf("exit %d, stderr %s:\n%s", code, errb.String(), text.String())
	}
	for _, kind := range []string{"kill", "restart", "skew"} {
		if rep.Faults[kind] == 0 {
			t.Errorf("no %s fault injected: %v", kind, rep.Faults)
		}
	}
	if rep.Creates == 0 || rep.Updates == 0 || rep.RowsPerNode["cloud"] == 0 {
		t.Errorf("the workload did little: %d creates, %d updates, rows %v", rep.Creates, rep.Updates, rep.RowsPerNode)
	}
	t.Logf("faults %v, %d creates, %d updates, %d deletes, %d conflicts logged, settled in %d rounds, %.1fs",
		rep.Faults, rep.Creates, rep.Updates, rep.Deletes, rep.Conflicts, rep.SettleRounds, rep.WallSeconds)
}

// TestProcessModeBreakMerge: with --break-merge every node process
// runs a pull merge that lets pulled values beat unpushed edits without
// a conflict logged; the run fails, printing the seed and the replay
// command.
func TestProcessModeBreakMerge(t *testing.T) {
	bin := buildNode(t)
	var out, errb bytes.Buffer
	code := run([]string{"--mode", "process", "--seed", "1", "--node-bin", bin, "--break-merge"}, &out, &errb)
	text := out.String()
	if code != 1 {
		t.Fatalf("exit %d, want 1 (violations); stderr %s\n%s", code, errb.String(), text)
	}
	for _, want := range []string{"FAILED", "seed 1;", "bin/simulate --mode process --seed 1 --clinics 1 --devices 3 --faults all --break-merge", "schedule"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	if !strings.Contains(text, "[lost-write]") && !strings.Contains(text, "[convergence]") {
		t.Errorf("no lost write or divergence reported:\n%s", text)
	}
}
