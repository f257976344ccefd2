package main

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// lockedBuffer is an output safe to read while the simulator writes it.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// waitFor polls done every 50 ms, for at most 2 minutes.
func waitFor(t *testing.T, what string, done func() bool) {
	t.Helper()
	deadline := time.After(2 * time.Minute)
	for !done() {
		select {
		case <-deadline:
			t.Fatalf("waited 2m for %s", what)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// --metrics serves the runs' figures, which match the JSON report, until
// interrupted; --log-format json --log-level info logs one JSON line per
// run, a warning for a run with violations.
func TestMetricsAndLogs(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errs lockedBuffer
	exit := make(chan int, 1)
	go func() {
		exit <- runContext(ctx, []string{"--seed", "1", "--seeds", "3", "--clinics", "1", "--break-merge", "--json",
			"--metrics", "127.0.0.1:0", "--log-format", "json", "--log-level", "info"}, &out, &errs)
	}()
	var url string
	waitFor(t, "the metrics address", func() bool {
		line, _, _ := strings.Cut(errs.String(), "\n")
		url, _, _ = strings.Cut(strings.TrimPrefix(line, "listening on "), " ")
		return strings.HasSuffix(line, " (Prometheus metrics)") && strings.HasPrefix(url, "http://127.0.0.1:")
	})
	waitFor(t, "the runs' end", func() bool { return strings.Contains(errs.String(), "simulate: done") })

	var many struct {
		Runs []struct {
			Seed       uint64         `json:"seed"`
			Violations []any          `json:"violations"`
			Dropped    int            `json:"violations_dropped"`
			Outcomes   map[string]int `json:"sync_outcomes"`
			Rows       int            `json:"rows_written"`
		} `json:"runs"`
	}
	if err := json.Unmarshal([]byte(out.String()), &many); err != nil || len(many.Runs) != 3 {
		t.Fatalf("%v: %s", err, out.String())
	}
	want := map[string]float64{"clinicsync_sim_clinic_days_total": 3}
	bad := 0
	for _, r := range many.Runs {
		for o, n := range r.Outcomes {
			want["clinicsync_sim_syncs_total/"+o] += float64(n)
		}
		want["clinicsync_sim_rows_written_total"] += float64(r.Rows)
		want["clinicsync_sim_violations_total"] += float64(len(r.Violations) + r.Dropped)
		if len(r.Violations) > 0 {
			bad++
		}
	}
	want["clinicsync_sim_runs_total/violation"] = float64(bad)
	want["clinicsync_sim_runs_total/ok"] = float64(3 - bad)
	if bad == 0 || want["clinicsync_sim_rows_written_total"] == 0 {
		t.Fatalf("the broken merge broke nothing, or nothing was written: %v", want)
	}

	got := map[string]float64{}
	for name, f := range scrape(t, url) {
		for _, m := range f.GetMetric() {
			key := name
			for _, l := range m.GetLabel() {
				key += "/" + l.GetValue()
			}
			got[key] = m.GetCounter().GetValue()
		}
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}

	// One JSON line per run: info when it held, warn with the replay
	// command when it broke.
	runs, warned := 0, 0
	for _, l := range strings.Split(strings.TrimSpace(errs.String()), "\n") {
		if !strings.HasPrefix(l, "{") {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("a log line that is not JSON: %q", l)
		}
		runs++
		if m["level"] == "WARN" && strings.Contains(m["replay"].(string), "--seed") {
			warned++
		}
	}
	if runs != 3 || warned != bad {
		t.Errorf("%d run lines, %d warnings; want 3 and %d:\n%s", runs, warned, bad, errs.String())
	}

	cancel()
	if code := <-exit; code != 1 {
		t.Errorf("exit %d, want 1 (violations)", code)
	}
}

func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return fams
}
