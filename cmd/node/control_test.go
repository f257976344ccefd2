package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/clinicsync/clinicsync/actors"
)

// captureServeLog sends the log of the serve processes the test starts
// to a buffer, until the test ends (after they have stopped).
func captureServeLog(t *testing.T) *lockedBuffer {
	t.Helper()
	old := serveLog
	logs := &lockedBuffer{}
	serveLog = logs
	t.Cleanup(func() { serveLog = old })
	return logs
}

// startServe runs `node serve --data dir --upstream-interval 0` in a
// goroutine and returns the URL it serves and stop, which ends it and
// returns how it ended. The test's end stops it too.
func startServe(t *testing.T, dir string) (url string, stop func() result) {
	t.Helper()
	lines, stop := startServeArgs(t, dir, 1)
	return lines[0], stop
}

// startServeArgs is startServe with more flags, returning the URLs of
// serve's first n lines (a hub with --https prints two, --rpc one more).
func startServeArgs(t *testing.T, dir string, n int, extra ...string) (urls []string, stop func() result) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	stderr := &lockedBuffer{}
	done := make(chan int, 1)
	go func() {
		// No upstream loop: these tests compare a served hub's syncs,
		// run on command, with an unserved twin's.
		code := runContext(ctx, append([]string{"serve", "--data", dir, "--http", "127.0.0.1:0", "--upstream-interval", "0"}, extra...), pw, stderr)
		pw.Close()
		done <- code
	}()
	var once sync.Once
	var res result
	stop = func() result {
		once.Do(func() {
			cancel()
			rest, _ := io.ReadAll(pr) // serve's stdout after its first line, if any
			res = result{<-done, string(rest), stderr.String()}
		})
		return res
	}
	t.Cleanup(func() { stop() })
	br := bufio.NewReader(pr)
	for i := range n {
		line, err := br.ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "listening on http") && !strings.HasPrefix(line, "listening on "+actors.RPCScheme) {
			t.Fatalf("serve %s: line %d %q (%v); stderr %q", dir, i+1, line, err, stderr)
		}
		url, _, _ := strings.Cut(strings.TrimSpace(strings.TrimPrefix(line, "listening on ")), " ")
		urls = append(urls, url)
	}
	return urls, stop
}

// copyNode copies a node's directory (not in use): the copy is the same
// node, with the same rows, peers and keys.
func copyNode(t *testing.T, from, to string) {
	t.Helper()
	if err := os.MkdirAll(to, 0o700); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err == nil {
			err = os.WriteFile(filepath.Join(to, e.Name()), b, 0o600)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// staleSocket leaves a socket file nothing answers on, as a serve
// process that was killed does.
func staleSocket(t *testing.T, dir string) {
	t.Helper()
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: actors.ControlPath(dir), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
}

// TestServeForwards: while `node serve` holds a hub's store, the hub's
// other commands go through its control socket and print exactly what
// they print on an unserved copy of the hub; the hub syncs upstream
// with the (served) cloud while it serves a phone.
func TestServeForwards(t *testing.T) {
	logs := captureServeLog(t)
	root := t.TempDir()
	cloud, hub, twin, phone := filepath.Join(root, "cloud"), filepath.Join(root, "hub"), filepath.Join(root, "twin"), filepath.Join(root, "phone")
	if p := actors.ControlPath(hub); len(p) >= 108 {
		t.Fatalf("control socket path %s is too long for a unix socket", p)
	}
	ok(t, "init", "--data", cloud, "--kind", "cloud", "--clinic", "c1")
	ok(t, "user", "add", "--data", cloud, "--email", "nurse@example.org", "--password", "correct horse")
	dev := okJSON(t, "device", "add", "--data", cloud, "--name", "North hub", "--clinic", "c1")
	cloudURL, stopCloud := startServe(t, cloud)
	ok(t, "init", "--data", hub, "--kind", "hub", "--clinic", "c1")
	ok(t, "peer", "add", "--data", hub, "--type", "cloud_server", "--url", cloudURL, "--api-key", dev["api_key"].(string))
	copyNode(t, hub, twin)
	staleSocket(t, hub)
	// The hub serves /api/v2/sync over TLS only; its devices pin its
	// certificate.
	hubURLs, stopHub := startServeArgs(t, hub, 2, "--https", "127.0.0.1:0")
	hubURL, hubTLS := hubURLs[0], hubURLs[1]

	fi, err := os.Stat(actors.ControlPath(hub))
	if err != nil || fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Fatalf("control socket: %v, %v: want a socket, mode 0600", fi, err)
	}

	// same runs a command on the twin, then on the served hub (DIR in
	// args is the node's directory), and wants the same result.
	same := func(args ...string) result {
		t.Helper()
		on := func(dir string) []string {
			a := make([]string, len(args))
			for i, s := range args {
				a[i] = strings.ReplaceAll(s, "DIR", dir)
			}
			return a
		}
		want, got := runCLI(on(twin)...), runCLI(on(hub)...)
		if got != want {
			t.Errorf("node %s: served:\n%+v\nnot served:\n%+v", strings.Join(args, " "), got, want)
		}
		return got
	}

	// status says the hub is served, with its pairing string, and is
	// otherwise the same.
	pairing := strings.TrimSpace(ok(t, "pairing", "--data", hub))
	pr, err := actors.ParsePairing(pairing)
	if err != nil || pr.URL != hubURL || pr.HTTPS != hubTLS || pr.FP == "" {
		t.Fatalf("pairing %q: %+v %v; want %s and %s", pairing, pr, err, hubURL, hubTLS)
	}
	wantJ, gotJ := okJSON(t, "status", "--data", twin), okJSON(t, "status", "--data", hub)
	wantSrv := map[string]any{"url": hubURL, "pid": float64(os.Getpid()), "https_url": hubTLS,
		"sessions": map[string]any{"hikma": float64(0), "rpc": float64(0)}}
	discLine := "" // discovery's default port may be taken on this machine
	if srv, _ := gotJ["serving"].(map[string]any); srv != nil && srv["discovery"] != nil {
		wantSrv["discovery"] = srv["discovery"]
		discLine = fmt.Sprintf("discovery    %s (UDP)\n", srv["discovery"])
	}
	if srv := gotJ["serving"]; !reflect.DeepEqual(srv, wantSrv) {
		t.Errorf("status --json: serving = %v, want %v", srv, wantSrv)
	}
	servingLines := fmt.Sprintf("serving      %s (pid %d)\nhttps        %s (certificate sha256 %s)\n%ssessions     0 Hikma app, 0 native RPC\npairing      %s\n",
		hubURL, os.Getpid(), hubTLS, pr.FP, discLine, pairing)
	want, got := runCLI("status", "--data", twin), runCLI("status", "--data", hub)
	if !strings.Contains(got.stdout, servingLines) || strings.Replace(got.stdout, servingLines, "", 1) != want.stdout ||
		got.code != 0 || got.stderr != "" {
		t.Errorf("status: served %+v, not served %+v; want the same but for %q", got, want, servingLines)
	}
	if gotJ["pairing"] != pairing {
		t.Errorf("status --json: pairing = %v, want %s", gotJ["pairing"], pairing)
	}
	delete(gotJ, "serving")
	delete(gotJ, "pairing")
	if !reflect.DeepEqual(gotJ, wantJ) {
		t.Errorf("status --json: served %v, not served %v", gotJ, wantJ)
	}

	same("peer", "list", "--data", "DIR")
	same("peer", "list", "--data", "DIR", "--json")
	// The first sync of each pulls the same row (the user) from the
	// cloud; then neither has anything new.
	if r := same("sync", "--data", "DIR", "--json"); r.stdout != `{"outcome":"ok","pulled":1,"pushed":0,"error":null}`+"\n" {
		t.Errorf("sync --json: %+v", r)
	}
	if r := same("sync", "--data", "DIR"); !strings.Contains(r.stdout, "outcome  ok\n") {
		t.Errorf("sync: %+v", r)
	}
	row := append([]string{"put", "--data", "DIR", "--table", "patients", "--id", "p1", "updated_at=2024-03-02"}, patient...)
	if r := same(append(row, "--json")...); r.stdout != `{"id":"p1","_status":"created"}`+"\n" {
		t.Errorf("put --json: %+v", r)
	}
	same("put", "--data", "DIR", "--table", "patients", "--id", "p1", "phone=0792222222", "updated_at=2024-03-03")
	same("rows", "--data", "DIR", "--table", "patients", "--json")
	same("rows", "--data", "DIR", "--table", "patients")
	same("rows", "--data", "DIR", "--table", "users", "--json")
	same("status", "--data", "DIR", "--json", "--peer-nope") // a usage error is not forwarded
	// A forwarded failure keeps its exit status and its one stderr line.
	for _, args := range [][]string{
		{"rows", "--data", "DIR", "--table", "patients", "--id", "nope"},
		{"put", "--data", "DIR", "--table", "patient", "phone=1"},
		{"peer", "use", "--data", "DIR", "nope"},
		{"login", "--data", "DIR", "--email", "a@b.org", "--password", "long enough"},
		{"device", "add", "--data", "DIR", "--name", "h"},
	} {
		if r := same(args...); r.code != 1 || strings.Count(r.stderr, "\n") != 1 || !strings.HasPrefix(r.stderr, "node ") {
			t.Errorf("node %s: %+v: want exit 1 and one line", strings.Join(args, " "), r)
		}
	}
	same("delete", "--data", "DIR", "--table", "patients", "--id", "p1", "--json")

	// Commands on a served node run at once.
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			id := fmt.Sprintf("c%d", i)
			if r := runCLI(append([]string{"put", "--data", hub, "--table", "patients", "--id", id}, patient...)...); r.code != 0 || r.stdout != "id       "+id+"\n_status  created\n" {
				t.Errorf("concurrent put %s: %+v", id, r)
			}
		})
	}
	wg.Wait()
	if rows := okJSON(t, "rows", "--data", hub, "--table", "patients")["rows"].([]any); len(rows) != 9 {
		t.Errorf("served hub has %d patients, want 9", len(rows))
	}

	// A phone syncs with the served hub, which syncs upstream with the
	// cloud on command.
	ok(t, "init", "--data", phone, "--kind", "mobile")
	if m := okJSON(t, "peer", "add", "--data", phone, "--type", "sync_hub", "--pairing", pairing); m["url"] != hubTLS || m["tls_fingerprint"] != pr.FP {
		t.Errorf("peer add --pairing: %v; want %s pinned to %s", m, hubTLS, pr.FP)
	}
	ok(t, append([]string{"put", "--data", phone, "--table", "patients", "--id", "from-phone"}, patient...)...)
	if m := okJSON(t, "login", "--data", phone, "--email", "nurse@example.org", "--password", "correct horse"); m["outcome"] != "ok" || m["pushed"] != float64(1) {
		t.Errorf("phone login --json = %v", m)
	}
	if m := okJSON(t, "sync", "--data", hub); m["outcome"] != "ok" || m["pushed"] != float64(10) {
		t.Errorf("served hub's sync --json = %v", m)
	}
	cloudRows := okJSON(t, "rows", "--data", cloud, "--table", "patients", "--id", "from-phone") // the cloud is served too
	if len(cloudRows["rows"].([]any)) != 1 {
		t.Errorf("the phone's row did not reach the cloud: %v", cloudRows)
	}

	// One serve per node; init refuses a served directory.
	fails(t, 1, fmt.Sprintf("node serve: %s is already served by pid %d", hub, os.Getpid()), "serve", "--data", hub, "--http", "127.0.0.1:0")
	fails(t, 1, fmt.Sprintf("node init: actors: directory already holds a node: %s is served by pid %d", hub, os.Getpid()), "init", "--data", hub, "--kind", "hub")

	for name, stop := range map[string]func() result{"hub": stopHub, "cloud": stopCloud} {
		if r := stop(); r.code != 0 || r.stdout != "" {
			t.Errorf("%s's serve: %+v", name, r)
		}
	}
	if _, err := os.Lstat(actors.ControlPath(hub)); !os.IsNotExist(err) {
		t.Errorf("control socket left after serve stopped: %v", err)
	}
	// Unserved again: the same node, in this process.
	if out := ok(t, "status", "--data", hub); strings.Contains(out, "serving") {
		t.Errorf("status after serve stopped:\n%s", out)
	}
	if m := okJSON(t, "rows", "--data", hub, "--table", "patients", "--id", "from-phone"); len(m["rows"].([]any)) != 1 {
		t.Errorf("hub rows after serve stopped: %v", m)
	}
	for _, want := range []string{"msg=command command=sync code=0", "msg=command command=rows code=1"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("serve log lacks %q:\n%s", want, logs)
		}
	}
	if strings.Contains(logs.String(), "correct horse") {
		t.Errorf("serve log shows a password:\n%s", logs)
	}
}

// TestServeControlRefusals: a command whose node is locked by something
// other than a serve process still fails as before; a broken answer is
// one line.
func TestServeControlRefusals(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "hub")
	ok(t, "init", "--data", dir, "--kind", "hub")
	n, err := actors.Open(dir, nil) // holds the store, serves nothing
	if err != nil {
		t.Fatal(err)
	}
	staleSocket(t, dir)
	fails(t, 1, "node status: kv: store is locked by another process", "status", "--data", dir)

	// Something answering on the socket that is not a serving node.
	os.Remove(actors.ControlPath(dir))
	l, err := net.Listen("unix", actors.ControlPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			json.NewDecoder(c).Decode(new(actors.ControlRequest))
			io.WriteString(c, "garbage\n")
			c.Close()
		}
	}()
	fails(t, 1, "node rows: actors: control socket: no answer", "rows", "--data", dir, "--table", "patients")
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
}
