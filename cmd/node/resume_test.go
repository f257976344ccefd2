package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clinicsync/clinicsync/actors"
	"github.com/clinicsync/clinicsync/codec"
	"github.com/clinicsync/clinicsync/fsm"
	"github.com/clinicsync/clinicsync/kv"
	pb "github.com/clinicsync/clinicsync/proto"
)

// TestMain lets the test binary stand in for bin/node: with
// CLINICSYNC_NODE_MAIN=1 it runs the command line, so tests can start
// real node processes and kill them.
func TestMain(m *testing.M) {
	if os.Getenv("CLINICSYNC_NODE_MAIN") == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// proc is a node process.
type proc struct {
	cmd    *exec.Cmd
	stdout *bufio.Reader
	stderr *lockedBuffer
	done   chan error
}

func startProc(t *testing.T, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "CLINICSYNC_NODE_MAIN=1")
	p := &proc{cmd: cmd, stderr: &lockedBuffer{}, done: make(chan error, 1)}
	cmd.Stderr = p.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.stdout = bufio.NewReader(out)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() { p.kill() })
	return p
}

// kill ends the process with SIGKILL, as a crash would, and waits.
func (p *proc) kill() {
	p.cmd.Process.Kill()
	if p.done != nil {
		<-p.done
		p.done = nil
	}
}

// exit waits for the process to exit on its own and returns its
// output and how it ended.
func (p *proc) exit() (string, error) {
	rest, _ := io.ReadAll(p.stdout)
	err := <-p.done
	p.done = nil
	return string(rest), err
}

// serveProc starts `node serve` on addr and returns it with its URL.
func serveProc(t *testing.T, dir, addr string) (*proc, string) {
	t.Helper()
	p := startProc(t, "serve", "--data", dir, "--http", addr)
	line, err := p.stdout.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "listening on ") {
		t.Fatalf("serve: %q %v; stderr %s", line, err, p.stderr)
	}
	return p, strings.TrimSpace(strings.TrimPrefix(line, "listening on "))
}

// pageProxy stands between the phones and the cloud, outliving the
// cloud's restarts, and counts the pull pages it delivered whole and the
// records in them: what a client was sent, whichever side dies.
type pageProxy struct {
	srv     *httptest.Server
	mu      sync.Mutex
	pages   int
	records int
	last    bool // the last page of a pull went through
	changed chan struct{}
}

func newPageProxy(t *testing.T, target string) *pageProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &pageProxy{changed: make(chan struct{})}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ModifyResponse = func(resp *http.Response) error {
		if resp.Request.Method != http.MethodGet || resp.StatusCode != http.StatusOK {
			return nil
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err // the cloud died mid-answer: the client gets a 502
		}
		resp.Body = io.NopCloser(bytes.NewReader(body))
		var page pb.PullResponse
		if err := codec.Unmarshal(body, &page); err != nil {
			return err
		}
		n := codec.CountChanges(page.GetChanges())
		p.mu.Lock()
		p.pages, p.records, p.last = p.pages+1, p.records+n, page.GetContinuation() == ""
		close(p.changed)
		p.changed = make(chan struct{})
		p.mu.Unlock()
		return nil
	}
	rp.ErrorLog = log.New(io.Discard, "", 0)
	p.srv = httptest.NewServer(rp)
	t.Cleanup(p.srv.Close)
	return p
}

// take returns the pages and records delivered since the last take.
func (p *pageProxy) take() (pages, records int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pages, records, p.pages, p.records, p.last = p.pages, p.records, 0, 0, false
	return pages, records
}

// wait waits (at most 30 minutes, a bound for a stuck process, not a
// speed test) until n pages went through since the last take, or (n 0)
// the last page of a pull.
func (p *pageProxy) wait(t *testing.T, n int) {
	t.Helper()
	bound := time.After(30 * time.Minute)
	for {
		p.mu.Lock()
		done, changed := n > 0 && p.pages >= n || n == 0 && p.last, p.changed
		p.mu.Unlock()
		if done {
			return
		}
		select {
		case <-changed:
		case <-bound:
			t.Fatalf("waited 30 minutes for %d pages", n)
		}
	}
}

// loadPatients writes n patients of clinic c1 into a node's store,
// 10k to a transaction, through the merge a push goes through.
func loadPatients(t *testing.T, dir string, n int) {
	t.Helper()
	node, err := actors.Open(dir, actors.SystemClock{})
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	st := node.Store()
	now := time.Now().UnixMilli()
	merge := fsm.Push{Caller: fsm.Caller{ID: "loader"}, Catalog: st.Catalog(), Now: now}.Merge()
	note := codec.String(strings.Repeat("history of present illness; ", 14))
	for start := 0; start < n; start += 10_000 {
		var batch []codec.Change
		for i := start; i < min(start+10_000, n); i++ {
			batch = append(batch, codec.Change{Created: true, Row: codec.Row{Table: "patients", ID: fmt.Sprintf("p%07d", i),
				Cols: map[string]codec.Value{
					"given_name": codec.String("Amina"), "surname": codec.String(fmt.Sprintf("Patient %d", i)),
					"date_of_birth": codec.String("1990-04-01"), "sex": codec.String("female"),
					"primary_clinic_id": codec.String("c1"), "hometown": note,
					"created_at": codec.Int(now), "updated_at": codec.Int(now),
				}}})
		}
		if res, err := st.Apply(kv.Batch{Changes: batch}, merge); err != nil || len(res.Rejected) > 0 {
			t.Fatalf("loading patients: %v %v", err, res.Rejected)
		}
	}
}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

// TestResumeAfterKill: a mobile node's initial sync against a cloud
// with default flags completes after a kill -9 of either side in the
// middle, and re-fetches at most two pages: the one being applied when
// the client died, and the one requested ahead of it (pipelined pulls). CLINICSYNC_RESUME_ROWS sets
// the clinic's size (`make resume-1m`: 1M rows).
func TestResumeAfterKill(t *testing.T) {
	rows := envInt("CLINICSYNC_RESUME_ROWS", 20_000)
	page := min(actors.DefaultPageSize, max(rows/20, 100))
	pages := (rows + page - 1) / page
	root := t.TempDir()
	cloud := root + "/cloud"
	ok(t, "init", "--data", cloud, "--kind", "cloud")
	ok(t, "user", "add", "--data", cloud, "--email", "nurse@example.org", "--password", "correct horse", "--clinic", "c1")
	start := time.Now()
	loadPatients(t, cloud, rows)
	t.Logf("loaded %d patients in %v", rows, time.Since(start).Round(time.Millisecond))
	srv, cloudURL := serveProc(t, cloud, "127.0.0.1:0")
	proxy := newPageProxy(t, cloudURL)

	phone := func(name string) string {
		dir := root + "/" + name
		ok(t, "init", "--data", dir, "--kind", "mobile")
		ok(t, "peer", "add", "--data", dir, "--type", "cloud_server", "--url", proxy.srv.URL)
		n, err := actors.Open(dir, actors.SystemClock{})
		if err != nil {
			t.Fatal(err)
		}
		defer n.Close()
		if err := n.SetCredentials("nurse@example.org", "correct horse"); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	stored := func(dir string) (patients, resumed int) {
		n, err := actors.Open(dir, actors.SystemClock{})
		if err != nil {
			t.Fatal(err)
		}
		defer n.Close()
		c, _ := n.Store().Config(fsm.ConfigResume)
		r, _ := fsm.ParseResume(c)
		err = n.Store().Rows("patients", func(kv.Record) error { patients++; return nil })
		if err != nil {
			t.Fatal(err)
		}
		return patients, r.Pulled
	}
	syncArgs := func(dir string) []string {
		return []string{"sync", "--data", dir, "--page-size", strconv.Itoa(page), "--json"}
	}

	// 1. The phone is killed mid-pull; the next sync goes on from its
	// last applied page.
	one := phone("phone1")
	client := startProc(t, syncArgs(one)...)
	proxy.wait(t, pages/3)
	client.kill()
	applied, pos := stored(one)
	if applied != pos || applied == 0 || applied >= rows {
		t.Fatalf("after the kill: %d patients stored, position says %d", applied, pos)
	}
	start = time.Now()
	out := okSync(t, syncArgs(one)...)
	took := time.Since(start)
	_, sent := proxy.take()
	if n, _ := stored(one); n != rows || !strings.Contains(out, `"outcome":"ok"`) {
		t.Fatalf("after the resumed sync: %d patients (want %d); %s", n, rows, out)
	}
	t.Logf("client killed after applying %d rows; %d rows sent in all (%d again); the resumed sync took %v (%.0f rows/s)",
		applied, sent, sent-rows, took.Round(time.Millisecond), float64(rows-applied)/took.Seconds())
	if again := sent - rows; again > 2*page || again < 0 {
		t.Errorf("%d rows sent again; want 0 to two pages (%d)", again, 2*page)
	}

	// 2. The cloud is killed mid-pull and restarted on the same address;
	// the phone's sync retries and goes on from its last applied page.
	two := phone("phone2")
	client = startProc(t, syncArgs(two)...)
	proxy.wait(t, pages/2)
	srv.kill()
	_, before := proxy.take()
	serveProc(t, cloud, strings.TrimPrefix(cloudURL, "http://"))
	if out, err := client.exit(); err != nil {
		// Its retries ran out before the cloud was back (a slow
		// machine): the next sync resumes all the same.
		t.Logf("the sync gave up while the cloud was down (%v: %s); syncing again", err, strings.TrimSpace(out))
		out = okSync(t, syncArgs(two)...)
	}
	_, after := proxy.take()
	if n, _ := stored(two); n != rows {
		t.Fatalf("after the cloud's restart: %d patients (want %d)\n%s", n, rows, client.stderr)
	}
	t.Logf("cloud killed after sending %d rows; after its restart it sent %d (%d again)", before, after, before+after-rows)
	if again := before + after - rows; again > 2*page || again < 0 {
		t.Errorf("%d rows sent again; want 0 to two pages (%d)", again, 2*page)
	}
}
