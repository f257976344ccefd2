package main

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/clinicsync/clinicsync/actors"
)

// progressWait bounds a sync of these tests: a bound for a stuck
// process, not a speed test.
const progressWait = 5 * time.Minute

// syncProgressFixture is a cloud of 10k patients served by a `node
// serve` process, and a fresh phone with its credentials.
func syncProgressFixture(t *testing.T) (phone string) {
	t.Helper()
	root := t.TempDir()
	cloud := filepath.Join(root, "cloud")
	ok(t, "init", "--data", cloud, "--kind", "cloud")
	ok(t, "user", "add", "--data", cloud, "--email", "nurse@example.org", "--password", "correct horse", "--clinic", "c1")
	loadPatients(t, cloud, 10_000)
	_, url := serveProc(t, cloud, "127.0.0.1:0")
	phone = filepath.Join(root, "phone")
	ok(t, "init", "--data", phone, "--kind", "mobile")
	ok(t, "peer", "add", "--data", phone, "--type", "cloud_server", "--url", url)
	n, err := actors.Open(phone, actors.SystemClock{})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if err := n.SetCredentials("nurse@example.org", "correct horse"); err != nil {
		t.Fatal(err)
	}
	return phone
}

// TestSyncProgressInTerminal: a 10k-row initial sync run in a
// pseudo-terminal redraws its pull line in place and ends it at 100%,
// then prints its report.
func TestSyncProgressInTerminal(t *testing.T) {
	phone := syncProgressFixture(t)
	cmd := exec.Command(os.Args[0], "sync", "--data", phone, "--page-size", "500")
	cmd.Env = append(os.Environ(), "CLINICSYNC_NODE_MAIN=1")
	tty, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 24, Cols: 120})
	if err != nil {
		t.Fatal(err)
	}
	defer tty.Close()
	var out bytes.Buffer
	copied := make(chan struct{})
	go func() {
		io.Copy(&out, tty) // until the process exits (EIO on Linux)
		close(copied)
	}()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err = <-exited:
	case <-time.After(progressWait):
		cmd.Process.Kill()
		t.Fatalf("sync in a terminal did not end within %v", progressWait)
	}
	<-copied
	got := out.String()
	t.Logf("terminal: %q", got)
	if err != nil {
		t.Fatalf("sync in a terminal: %v; output %q", err, got)
	}
	// The terminal turns \n into \r\n.
	if !strings.Contains(got, "\r\x1b[Kpull: 10000/10000 rows 100%,") {
		t.Errorf("no pull line at 100%% in %q", got)
	}
	if strings.Count(got, "\r\x1b[Kpull: ") < 2 {
		t.Errorf("the pull line was not redrawn during 20 pages: %q", got)
	}
	if !strings.Contains(got, "outcome  ok\r\n") || !strings.Contains(got, "pulled   10000\r\n") {
		t.Errorf("no report after the progress: %q", got)
	}
}

// Off a terminal the progress goes to stderr as plain lines, and
// --json's stdout stays the one result object.
func TestSyncProgressPlain10k(t *testing.T) {
	phone := syncProgressFixture(t)
	r := runCLI("sync", "--data", phone, "--page-size", "500", "--json")
	if r.code != 0 || r.stdout != `{"outcome":"ok","pulled":10000,"pushed":0,"error":null}`+"\n" {
		t.Fatalf("sync --json: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
	// (The cloud counts its user too, which it does not send a phone.)
	if len(lines) < 2 || !strings.HasPrefix(lines[0], "pull: ") || !strings.Contains(lines[0], "/10001 rows ") ||
		!strings.HasPrefix(lines[len(lines)-1], "pull: 10000/10000 rows 100%,") || strings.Contains(r.stderr, "\r") {
		t.Errorf("plain progress on stderr: %q", r.stderr)
	}
}
