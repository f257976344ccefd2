package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// TestServeMetricsAndLogs: `serve --metrics 127.0.0.1:0 --log-format
// json` prints where its metrics are and logs JSON lines; a phone's
// `sync --log-format json` logs its sync's one end line with the sync's
// fields, and --log-level warn hides it; the cloud's /metrics, parsed as
// Prometheus text, counts the phone's push and a push with a row the
// cloud refused.
func TestServeMetricsAndLogs(t *testing.T) {
	root := t.TempDir()
	cloud, phone := filepath.Join(root, "cloud"), filepath.Join(root, "phone")
	ok(t, "init", "--data", cloud, "--kind", "cloud", "--clinic", "c1")
	ok(t, "user", "add", "--data", cloud, "--email", "nurse@example.org", "--password", "correct horse", "--clinic", "c1")
	fails(t, 2, `--log-level "loud": want debug, info, warn or error`, "status", "--data", cloud, "--log-level", "loud")
	fails(t, 2, `--log-format "xml": want text or json`, "status", "--data", cloud, "--log-format", "xml")

	p := startProc(t, "serve", "--data", cloud, "--http", "127.0.0.1:0", "--metrics", "127.0.0.1:0", "--log-format", "json")
	line, err := p.stdout.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "listening on http://127.0.0.1:") {
		t.Fatalf("serve: %q %v; stderr %s", line, err, p.stderr)
	}
	cloudURL := strings.TrimSpace(strings.TrimPrefix(line, "listening on "))
	line, err = p.stdout.ReadString('\n')
	metricsURL, rest, _ := strings.Cut(strings.TrimPrefix(line, "listening on "), " ")
	if err != nil || !strings.HasPrefix(metricsURL, "http://127.0.0.1:") || !strings.HasSuffix(metricsURL, "/metrics") || rest != "(Prometheus metrics)\n" {
		t.Fatalf("serve: second line %q %v; stderr %s", line, err, p.stderr)
	}

	ok(t, "init", "--data", phone, "--kind", "mobile")
	ok(t, "peer", "add", "--data", phone, "--type", "cloud_server", "--url", cloudURL)
	ok(t, "login", "--data", phone, "--email", "nurse@example.org", "--password", "correct horse") // nothing to push yet
	ok(t, append([]string{"put", "--data", phone, "--table", "patients", "--id", "p1", "primary_clinic_id=c1"}, patient...)...)

	// Without --log-level a command logs nothing: its outcome is what
	// it prints. With it, the sync's one end line, as JSON.
	r := runCLI("sync", "--data", phone, "--log-format", "json", "--log-level", "info")
	if r.code != 0 {
		t.Fatalf("sync: %+v", r)
	}
	var ends []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(r.stderr), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("sync --log-format json: a line that is not JSON: %q (%v)", l, err)
		}
		switch m["msg"] {
		case "sync finished", "sync failed", "sync skipped":
			ends = append(ends, m)
		}
	}
	if len(ends) != 1 {
		t.Fatalf("sync: %d end lines, want 1:\n%s", len(ends), r.stderr)
	}
	end := ends[0]
	if end["msg"] != "sync finished" || end["outcome"] != "ok" || end["pushed"] != 1.0 || end["peer_type"] != "cloud_server" || end["trigger"] != "manual" ||
		end["level"] != "INFO" || end["sync"] == "" || end["peer"] == "" {
		t.Errorf("sync end line %v", end)
	}
	if d, isNum := end["duration_ms"].(float64); !isNum || d <= 0 {
		t.Errorf("sync end line: duration_ms %v, want > 0", end["duration_ms"])
	}
	for _, args := range [][]string{{}, {"--log-level", "warn"}} {
		if r := runCLI(append([]string{"sync", "--data", phone}, args...)...); r.code != 0 || r.stderr != "" {
			t.Errorf("sync %v: %+v, want nothing on stderr", args, r)
		}
	}

	// A push with a row the cloud refuses (garbage in a bool column).
	body, _ := json.Marshal(map[string]any{"lastPulledAt": 0, "changes": map[string]any{
		"patients": map[string]any{"created": []any{
			map[string]any{"id": "p2", "primary_clinic_id": "c1", "is_deleted": "maybe"},
		}, "updated": []any{}, "deleted": []any{}}}})
	req, _ := http.NewRequest(http.MethodPost, cloudURL+"/api/v2/sync", bytes.NewReader(body))
	req.SetBasicAuth("nurse@example.org", "correct horse")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("push: %s", resp.Status)
	}

	fams := scrapeMetrics(t, metricsURL)
	for name, want := range map[string]float64{
		"clinicsync_pushes_accepted_total":    2, // the phone's, and the one refused
		"clinicsync_push_rows_applied_total":  1,
		"clinicsync_push_rows_rejected_total": 1,
	} {
		if got := counter(fams, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}

	if err := p.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if _, err := p.exit(); err != nil {
		t.Fatalf("serve after SIGINT: %v\n%s", err, p.stderr)
	}
	// Every line the cloud logged is JSON; its requests are among them.
	requests := 0
	for _, l := range strings.Split(strings.TrimSpace(p.stderr.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("serve --log-format json: a line that is not JSON: %q (%v)", l, err)
		}
		if m["msg"] == "sync request" {
			requests++
		}
	}
	if requests < 3 {
		t.Errorf("serve logged %d sync requests, want at least 3:\n%s", requests, p.stderr)
	}
}

func scrapeMetrics(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing %s: %v", url, err)
	}
	return fams
}

// counter is the value of a counter without labels (0 when absent).
func counter(fams map[string]*dto.MetricFamily, name string) float64 {
	f := fams[name]
	if f == nil || len(f.GetMetric()) != 1 {
		return 0
	}
	return f.GetMetric()[0].GetCounter().GetValue()
}
