package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func simulate(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	return code, out.String(), errb.String()
}

type result struct {
	Seed       uint64 `json:"seed"`
	Violations []struct {
		Kind string `json:"kind"`
	} `json:"violations"`
	Digest         string         `json:"digest"`
	Faults         map[string]int `json:"faults"`
	Syncs          int            `json:"syncs"`
	RowsWritten    int            `json:"rows_written"`
	ClinicDaysPerS float64        `json:"clinic_days_per_s"`
	Replay         string         `json:"replay"`
}

func has(r result, kind string) bool {
	for _, v := range r.Violations {
		if v.Kind == kind {
			return true
		}
	}
	return false
}

// TestBrokenMergeReplays shows the checker's teeth end to end: with the
// broken merge, some seed of a small fixed set loses writes and exits
// 1; its printed replay command reproduces the same run (same digest);
// the correct merge on that seed loses none.
func TestBrokenMergeReplays(t *testing.T) {
	t.Parallel()
	code, out, errs := simulate(t, "--seed", "1", "--seeds", "3", "--clinics", "1", "--break-merge", "--json")
	if code != 1 {
		t.Fatalf("exit %d with the broken merge, want 1; stderr %s", code, errs)
	}
	var many struct {
		Failed []uint64 `json:"failed"`
		Runs   []result `json:"runs"`
	}
	if err := json.Unmarshal([]byte(out), &many); err != nil {
		t.Fatal(err)
	}
	var bad *result
	for i, r := range many.Runs {
		if has(r, "lost-write") {
			bad = &many.Runs[i]
			break
		}
	}
	if bad == nil {
		t.Fatalf("no seed of %v lost a write with the broken merge", many.Failed)
	}
	args := strings.Fields(bad.Replay)
	if args[0] != "bin/simulate" || !strings.Contains(bad.Replay, "--break-merge") {
		t.Fatalf("replay command %q", bad.Replay)
	}
	code, out, _ = simulate(t, append(args[1:], "--json")...)
	var again result
	if err := json.Unmarshal([]byte(out), &again); err != nil {
		t.Fatal(err)
	}
	if code != 1 || again.Digest != bad.Digest || len(again.Violations) != len(bad.Violations) {
		t.Errorf("replay %q: exit %d, digest %s, %d violations; first run: digest %s, %d violations",
			bad.Replay, code, again.Digest, len(again.Violations), bad.Digest, len(bad.Violations))
	}
	good := strings.Replace(bad.Replay, " --break-merge", "", 1)
	_, out, _ = simulate(t, append(strings.Fields(good)[1:], "--json")...)
	var fine result
	if err := json.Unmarshal([]byte(out), &fine); err != nil {
		t.Fatal(err)
	}
	if has(fine, "lost-write") {
		t.Errorf("%s loses writes with the correct merge too", good)
	}
}

// TestTextReport checks the human report and the HTML page of a small run.
func TestTextReport(t *testing.T) {
	t.Parallel()
	page := filepath.Join(t.TempDir(), "report.html")
	code, out, errs := simulate(t, "--seed", "4", "--clinics", "1", "--devices", "2", "--report", page)
	if code != 0 && code != 1 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{"seed 4", "rows written", "syncs", "faults injected", "conflicts merged", "violations", "digest", "clinic-days/s"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if code == 1 && !strings.Contains(out, "replay: bin/simulate --seed 4 --clinics 1 --devices 2 --days 1 --faults all") {
		t.Errorf("a failing report must print the replay command:\n%s", out)
	}
	html, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"<svg", "Timeline", "Sync latency", "Faults over time", "Live rows per node", "Convergence"} {
		if !bytes.Contains(html, []byte(want)) {
			t.Errorf("page lacks %q", want)
		}
	}
	if bytes.Count(html, []byte("<script")) != 1 || bytes.Contains(html, []byte(" src=")) || bytes.Contains(html, []byte(" href=\"http")) ||
		bytes.Contains(html, []byte("http://")) || bytes.Contains(html, []byte("https://")) {
		t.Error("the page must be self-contained: one inline script, nothing from the network")
	}
}

func TestJSONKeys(t *testing.T) {
	t.Parallel()
	_, out, errs := simulate(t, "--seed", "9", "--clinics", "1", "--devices", "1", "--faults", "none", "--json")
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("%v: %s %s", err, out, errs)
	}
	for _, k := range []string{"seed", "violations", "digest", "faults", "syncs", "rows_written", "clinic_days_per_s", "replay"} {
		if _, ok := m[k]; !ok {
			t.Errorf("--json lacks %q", k)
		}
	}
	if _, ok := m["violations"].([]any); !ok {
		t.Errorf("violations is %T, want a list", m["violations"])
	}
	// A run without violations logs nothing at the default level (warn).
	if errs != "" {
		t.Errorf("stderr %q, want nothing", errs)
	}
}

func TestUsage(t *testing.T) {
	if code, _, errs := simulate(t, "--mode", "process", "--node-bin", "/nonexistent/node"); code != 2 || !strings.Contains(errs, "/nonexistent/node") {
		t.Errorf("--mode process without bin/node: exit %d, %q", code, errs)
	}
	for _, args := range [][]string{{"--faults", "dup"}, {"--break-versions"}, {"--seeds", "2"}, {"--report", "x.html"}, {"--devices", "11"}} {
		args = append([]string{"--mode", "process", "--node-bin", os.Args[0]}, args...)
		if code, _, _ := simulate(t, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
	for _, args := range [][]string{{"--faults", "meteor"}, {"--store", "tape"}, {"--clinics", "0"}, {"--seeds", "0"}, {"extra"},
		{"--log-level", "loud"}, {"--log-format", "xml"}, {"--metrics", "x"}} {
		if code, _, _ := simulate(t, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}

// TestInterrupted: an interrupt (a done context) ends a sweep of seeds
// at once with exit 130, instead of after the last seed.
func TestInterrupted(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out, errb bytes.Buffer
	if code := runContext(ctx, []string{"--seeds", "1000"}, &out, &errb); code != 130 || !strings.Contains(errb.String(), "interrupted") {
		t.Errorf("interrupted sweep: exit %d, %q", code, errb.String())
	}
}
