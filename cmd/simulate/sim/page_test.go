package sim

import (
	"bytes"
	"context"
	"html"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestPageDraws renders report pages in headless Chromium (Debian's
// chromium package; without it the test fails, saying so) and reads back what the page's script recorded in
// the DOM: every chart drew marks of non-zero size, violations are on
// the timeline, and no script error or console message occurred.
func TestPageDraws(t *testing.T) {
	bin := ""
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			bin = p
			break
		}
	}
	if bin == "" {
		t.Fatal("headless Chromium not found: install the chromium package (apt-get install chromium; .ci/run does)")
	}
	clean := small(4)
	clean.Devices = 2
	broken := small(1)
	broken.BreakServeCreated = true
	rc, rb := run(t, clean), run(t, broken)
	if rb.OK() {
		t.Fatal("--break-serve-created at seed 1 broke nothing: pick another seed")
	}
	for _, c := range []struct {
		name    string
		reports []*Report
		charts  []string
	}{
		{"one run", []*Report{rc}, []string{"timeline", "latency", "convergence", "faults", "rows"}},
		{"violations", []*Report{rb}, []string{"timeline", "latency", "convergence", "faults", "rows"}},
		{"many runs", []*Report{rc, rb}, []string{"latency", "rounds", "faults"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			body, console := render(t, bin, HTML(c.reports))
			for _, l := range console {
				t.Errorf("console: %s", l)
			}
			if e := body["data-errors"]; e != "" {
				t.Errorf("script errors: %s", e)
			}
			drawn := map[string]int{}
			for _, f := range strings.Fields(body["data-charts"]) {
				name, n, _ := strings.Cut(f, ":")
				drawn[name], _ = strconv.Atoi(n)
			}
			for _, ch := range c.charts {
				if drawn[ch] == 0 {
					t.Errorf("chart %s drew nothing (charts: %q)", ch, body["data-charts"])
				}
			}
			if len(drawn) != len(c.charts) {
				t.Errorf("charts drawn: %q, want %v", body["data-charts"], c.charts)
			}
			if body["data-ok"] != "1" {
				t.Errorf("the page's script did not finish: body %v", body)
			}
			if len(c.reports) == 1 && !c.reports[0].OK() && body["data-violations"] == "0" {
				t.Errorf("%d violations, none on the timeline", len(c.reports[0].Violations))
			}
		})
	}
}

var bodyAttr = regexp.MustCompile(`(data-[a-z]+)="([^"]*)"`)

// render loads a page in headless Chromium and returns the attributes
// of its <body> after the scripts ran, and the console lines logged.
func render(t *testing.T, bin string, page []byte) (map[string]string, []string) {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, "report.html")
	if err := os.WriteFile(file, page, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// --no-sandbox: Chromium refuses to run as root without it.
	cmd := exec.CommandContext(ctx, bin, "--headless", "--no-sandbox", "--disable-gpu",
		"--user-data-dir="+filepath.Join(dir, "profile"), "--enable-logging=stderr", "--v=0",
		"--dump-dom", "file://"+file)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\n%s", bin, err, stderr.String())
	}
	dom := stdout.String()
	start := strings.Index(dom, "<body")
	if start < 0 {
		t.Fatalf("no <body> in the DOM dump:\n%s", dom)
	}
	end := strings.IndexByte(dom[start:], '>')
	body := map[string]string{}
	for _, m := range bodyAttr.FindAllStringSubmatch(dom[start:start+end], -1) {
		body[m[1]] = html.UnescapeString(m[2])
	}
	var console []string
	for _, l := range strings.Split(stderr.String(), "\n") {
		if strings.Contains(l, ":CONSOLE") {
			console = append(console, l)
		}
	}
	return body, console
}
