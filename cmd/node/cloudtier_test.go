package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/clinicsync/clinicsync/internal/pgtest"
)

// balancer stands for a load balancer in front of cloud nodes: each
// request goes to the next live node in turn, so a pull's pages go to
// different nodes. onPush, when set, runs for each push before it is
// forwarded and returns the node to forward it to.
type balancer struct {
	srv    *httptest.Server
	mu     sync.Mutex
	nodes  []*url.URL
	next   int
	onPush func(n int, r *http.Request) int // pushes so far, the push → node index
	pushes int
}

func newBalancer(t *testing.T, targets ...string) *balancer {
	t.Helper()
	b := &balancer{}
	for _, s := range targets {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		b.nodes = append(b.nodes, u)
	}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		i := b.next % len(b.nodes)
		b.next++
		if r.Method == http.MethodPost && b.onPush != nil {
			b.pushes++
			i = b.onPush(b.pushes, r)
		}
		target := b.nodes[i]
		b.mu.Unlock()
		rp := httputil.NewSingleHostReverseProxy(target)
		rp.ErrorLog = log.New(io.Discard, "", 0) // a dead node is part of the test
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(b.srv.Close)
	return b
}

// rowsOf returns a node's rows of a table, by id, without _status and
// _changed (which differ by node).
func rowsOf(t *testing.T, dir, table string) map[string]map[string]any {
	t.Helper()
	var m struct{ Rows []map[string]any }
	if err := json.Unmarshal([]byte(ok(t, "rows", "--data", dir, "--table", table, "--json")), &m); err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]any{}
	for _, r := range m.Rows {
		delete(r, "_status")
		delete(r, "_changed")
		out[r["id"].(string)] = r
	}
	return out
}

// TestCloudTier: three cloud node processes over one PostgreSQL
// database, behind load balancers; a hub and four mobiles sync with
// them, each request to any node (a pull's pages to different nodes),
// and converge with nothing lost. A cloud node killed with SIGKILL in
// the middle of a push loses nothing: the device's next sync, which the
// balancer sends to another node, pushes the rest.
func TestCloudTier(t *testing.T) {
	db := pgtest.Own(t)
	dbURL, err := db.NewDB(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	var clouds [3]string
	var nodeID string
	for i := range clouds {
		clouds[i] = filepath.Join(root, fmt.Sprintf("cloud%d", i+1))
		info := okJSON(t, "init", "--data", clouds[i], "--kind", "cloud", "--clinic", "c1", "--store", dbURL)
		if i > 0 && info["node_id"] != nodeID {
			t.Fatalf("cloud %d is node %v, the first %s", i+1, info["node_id"], nodeID)
		}
		nodeID, _ = info["node_id"].(string)
	}
	ok(t, "user", "add", "--data", clouds[0], "--email", "nurse@example.org", "--password", "correct horse", "--clinic", "c1")
	dev := okJSON(t, "device", "add", "--data", clouds[1], "--name", "North hub", "--clinic", "c1")
	var procs [3]*proc
	var urls [3]string
	for i, dir := range clouds {
		procs[i], urls[i] = serveProc(t, dir, "127.0.0.1:0")
	}
	st := okJSON(t, "status", "--data", clouds[2])
	if db, _ := st["database"].(map[string]any); db == nil || db["schema_version"] != float64(1) || len(db["nodes"].([]any)) != 3 {
		t.Errorf("status of a cloud node: database %v, want schema version 1 and 3 nodes serving", st["database"])
	}
	lb := newBalancer(t, urls[:]...)

	hub := filepath.Join(root, "hub")
	ok(t, "init", "--data", hub, "--kind", "hub", "--clinic", "c1")
	ok(t, "peer", "add", "--data", hub, "--type", "cloud_server", "--url", lb.srv.URL, "--api-key", dev["api_key"].(string))
	// Mobiles 1 and 2 go through the balancer; 3 and 4 each to a node
	// of their own.
	lb4 := newBalancer(t, urls[2], urls[0])
	mobileURL := []string{lb.srv.URL, lb.srv.URL, urls[1], lb4.srv.URL}
	var mobiles []string
	for i, u := range mobileURL {
		m := filepath.Join(root, fmt.Sprintf("mobile%d", i+1))
		ok(t, "init", "--data", m, "--kind", "mobile")
		ok(t, "peer", "add", "--data", m, "--type", "cloud_server", "--url", u)
		okSync(t, "login", "--data", m, "--email", "nurse@example.org", "--password", "correct horse")
		mobiles = append(mobiles, m)
	}
	put := func(dir, id, given string) {
		t.Helper()
		args := []string{"put", "--data", dir, "--table", "patients", "--id", id, "primary_clinic_id=c1"}
		for _, c := range patient {
			if strings.HasPrefix(c, "given_name=") {
				c = "given_name=" + given
			}
			args = append(args, c)
		}
		ok(t, args...)
	}
	for i, m := range mobiles {
		for j := range 3 {
			put(m, fmt.Sprintf("m%d-p%d", i+1, j), fmt.Sprintf("Mobile%d", i+1))
		}
	}
	put(hub, "hub-p0", "Hub")
	put(hub, "hub-p1", "Hub")
	nodes := append([]string{hub}, mobiles...)
	sync := func(dir string) { okSync(t, "sync", "--data", dir, "--page-size", "2") }
	for range 2 { // the second round brings each node what the others pushed after its pull
		for _, n := range nodes {
			sync(n)
		}
	}
	// Concurrent edits of one patient, different columns, on two
	// mobiles that reach different nodes: both survive.
	ok(t, "put", "--data", mobiles[0], "--table", "patients", "--id", "hub-p0", "phone=111")
	ok(t, "put", "--data", mobiles[2], "--table", "patients", "--id", "hub-p0", "hometown=Zarqa")
	for range 2 {
		for _, n := range nodes {
			sync(n)
		}
	}

	// A push of 2,500 rows; cloud 3 dies (SIGKILL) once it has read the
	// push's body, and the balancer sends the push again to cloud 1.
	var rows strings.Builder
	for i := range 2500 {
		fmt.Fprintf(&rows, `{"id":"bulk-%04d","given_name":"Bulk","surname":"Row","date_of_birth":"1990-01-01","citizenship":"JO","hometown":"Irbid","phone":"1","sex":"female","additional_data":"{}","metadata":"{}","is_deleted":false,"government_id":"G","external_patient_id":"E","primary_clinic_id":"c1"}`+"\n", i)
	}
	bulk := filepath.Join(root, "bulk.ndjson")
	if err := os.WriteFile(bulk, []byte(rows.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	ok(t, "import", "--data", mobiles[3], "--table", "patients", bulk)
	lb4.onPush = func(n int, r *http.Request) int {
		if n == 1 {
			r.Body = &afterBody{ReadCloser: r.Body, fn: procs[2].kill}
			return 0 // cloud 3, which dies with the push in hand
		}
		return 1 // cloud 1
	}
	r := runCLI("sync", "--data", mobiles[3])
	t.Logf("the sync during which cloud 3 died: exit %d, %s", r.code, strings.TrimSpace(r.stderr))
	if lb4.pushes < 2 || procs[2].cmd.ProcessState == nil {
		t.Fatalf("%d pushes reached the balancer, cloud 3 ended: %v; want it killed in the first and the push sent again",
			lb4.pushes, procs[2].cmd.ProcessState)
	}
	okSync(t, "sync", "--data", mobiles[3])
	if pending := okJSON(t, "status", "--data", mobiles[3])["pending"]; pending != float64(0) {
		t.Fatalf("mobile 4 still has %v rows to push", pending)
	}
	for _, n := range nodes {
		okSync(t, "sync", "--data", n)
	}

	want := rowsOf(t, clouds[0], "patients")
	if len(want) != 4*3+2+2500 {
		t.Fatalf("the cloud holds %d patients, want %d", len(want), 4*3+2+2500)
	}
	if p := want["hub-p0"]; p["phone"] != "111" || p["hometown"] != "Zarqa" {
		t.Errorf("the concurrently edited patient on the cloud: %v", p)
	}
	for _, n := range append([]string{clouds[1]}, nodes...) {
		got := rowsOf(t, n, "patients")
		if len(got) != len(want) {
			t.Errorf("%s holds %d patients, the cloud %d", filepath.Base(n), len(got), len(want))
			continue
		}
		for id, w := range want {
			if g, _ := json.Marshal(got[id]); string(g) != mustJSON(t, w) {
				t.Errorf("%s: %s is %s, the cloud's %s", filepath.Base(n), id, g, mustJSON(t, w))
				break
			}
		}
	}
}

// afterBody calls fn once the body has been read to its end.
type afterBody struct {
	io.ReadCloser
	fn   func()
	once sync.Once
}

func (b *afterBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.once.Do(b.fn)
	}
	return n, err
}

func mustJSON(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestServeDatabaseDown: a cloud node whose database does not answer at
// start exits with one line that says so; once the database is back it
// serves.
func TestServeDatabaseDown(t *testing.T) {
	db := pgtest.Own(t)
	dbURL, err := db.NewDB(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "cloud")
	ok(t, "init", "--data", dir, "--kind", "cloud", "--store", dbURL)
	if err := db.Pause(); err != nil {
		t.Fatal(err)
	}
	fails(t, 1, "database unavailable", "serve", "--data", dir, "--http", "127.0.0.1:0")
	fails(t, 1, "database unavailable", "status", "--data", dir)
	if err := db.Resume(); err != nil {
		t.Fatal(err)
	}
	p, _ := serveProc(t, dir, "127.0.0.1:0")
	p.kill()
}
