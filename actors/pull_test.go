package actors_test

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/clinicsync/clinicsync/actors"
	"github.com/clinicsync/clinicsync/codec"
	"github.com/clinicsync/clinicsync/fsm"
	"github.com/clinicsync/clinicsync/kv"
)

// tableWalkPull is the document a JSON pull answered when each served
// table was walked in the cursor index on its own
// (kv.Store.TableChangesSince, up to the pull's timestamp ts) and
// encoded whole: the model the pull's one walk must match byte for
// byte. A migration's rows (at or below since) come first in their
// list; tables without rows are left out.
func tableWalkPull(t *testing.T, st *kv.Store, c fsm.Caller, since, ts int64, mig *codec.Migration) []byte {
	t.Helper()
	cat := st.Catalog()
	walk := func(table string, from, to int64) []codec.Record {
		p, err := st.TableChangesSince(table, from, to, 0)
		if err != nil || p.More {
			t.Fatalf("walking %s: %v (more: %v)", table, err, p.More)
		}
		return p.Records
	}
	cs := codec.NewChangeset()
	cs.Timestamp = ts
	for _, table := range cat.ServedTables(c.Hub) {
		var parts []*codec.Changeset
		if mig != nil {
			part, err := fsm.ServeMigration(walk(table, 0, since), mig, c, cat, st.Lookup)
			if err != nil {
				t.Fatal(err)
			}
			parts = append(parts, part)
		}
		part, err := fsm.ServeWith(walk(table, since, ts), since, c, cat, st.Lookup)
		if err != nil {
			t.Fatal(err)
		}
		for _, part := range append(parts, part) {
			if tc := part.Tables[table]; tc != nil {
				to := cs.Table(table)
				to.Created, to.Updated = append(to.Created, tc.Created...), append(to.Updated, tc.Updated...)
				to.Deleted = append(to.Deleted, tc.Deleted...)
			}
		}
	}
	var b bytes.Buffer
	if err := codec.EncodePullResponse(&b, cs, codec.Options{Catalog: cat, IncludeSecret: c.Hub}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestCloudPullMatchesTableWalks: a JSON pull, one walk of the changes
// grouped by a spool that spills, answers byte for byte what a walk of
// each table on its own answers: first pulls, changes since (new,
// updated, deleted and pushed-back rows), a hub's clinic scope, and a
// migration sync.
func TestCloudPullMatchesTableWalks(t *testing.T) {
	t.Parallel()
	c := newCloud(t, actors.CloudConfig{PageSize: 3, SpoolBytes: 2 << 10, SpoolDir: t.TempDir()})
	seedClinics(t, c.store)
	c.putPatients(30, "p")
	users := fsm.Caller{ID: "u1"}
	hub := fsm.Caller{ID: "hub1", Hub: true, Clinics: []string{"c1"}}
	auth := map[string]string{"u1": nurse, "hub1": "Bearer " + hubKey}
	pull := func(who fsm.Caller, since int64, migration string) int64 {
		t.Helper()
		q := fmt.Sprintf("?last_pulled_at=%d", since)
		if who.Hub {
			q += "&peerType=sync_hub"
		}
		var mig *codec.Migration
		if migration != "" {
			q += "&migration=" + url.QueryEscape(migration)
			var err error
			if mig, err = codec.ParseMigration(migration, c.store.Catalog()); err != nil {
				t.Fatal(err)
			}
		}
		r := c.call("GET", "/api/v2/sync"+q, auth[who.ID], "")
		if r.status != 200 {
			t.Fatalf("pull %s: %d %s", q, r.status, r.body)
		}
		ts := int64(r.json(t)["timestamp"].(float64))
		if want := tableWalkPull(t, c.store, who, since, ts, mig); !bytes.Equal(r.body, want) {
			t.Fatalf("pull %s by %s differs from a walk per table:\n got %s\nwant %s", q, who.ID, r.body, want)
		}
		return ts
	}
	t0, h0 := pull(users, 0, ""), pull(hub, 0, "")

	// Changes since: the nurse's push (served back to it as updated),
	// edits and deletes on the cloud, rows of both clinics.
	c.push(nurse, "", changes(t, t0, "patients", []map[string]any{patientRaw("n1", "c1", nil), patientRaw("n2", "c2", nil)}, nil))
	c.putPatients(4, "q")
	for _, id := range []string{"p003", "p017"} {
		if _, err := c.store.Put("patients", id, map[string]codec.Value{"phone": codec.String("0791234567")}); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"p005", "q001"} {
		if err := c.store.Delete("patients", id); err != nil {
			t.Fatal(err)
		}
	}
	seedClinics(t, c.store) // every clinic row again: updated
	pull(users, t0, "")
	pull(hub, h0, "")
	pull(users, t0, `{"from":8,"tables":["appointments"],"columns":[{"table":"patients","columns":["citizenship","phone"]}]}`)
	pull(hub, h0, `{"from":8,"tables":["visits"],"columns":[{"table":"patients","columns":["phone"]}]}`)
}

// TestCloudPullSpills: a JSON pull whose rows pass the spool's memory
// bound (CloudConfig.SpoolBytes) holds them in a temporary file in
// SpoolDir while it walks the changes, answers what a pull held in
// memory answers, and leaves no file behind, whether it succeeds or
// fails.
func TestCloudPullSpills(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	c := newCloud(t, actors.CloudConfig{PageSize: 7, SpoolBytes: 1 << 10, SpoolDir: dir})
	// The same store served with the default bound: nothing spilled.
	ref := actors.NewCloudHandler(c.store, actors.CloudConfig{RateLimit: -1, LoginFailures: -1, Clock: c.clock,
		Logger: slog.New(slog.DiscardHandler)})
	files := func() []string {
		t.Helper()
		es, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range es {
			out = append(out, e.Name())
		}
		return out
	}
	// Rows of every table that holds clinic data, the tables mixed in
	// the cursor index.
	tables := scopedTables(c.store.Catalog())
	write := func(round, n int) {
		for i := range n {
			for _, tb := range tables {
				if _, err := c.store.Put(tb.Name, fmt.Sprintf("%s-%d-%d", tb.Name, round, i), scopeRow(tb, "c1", false)); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	write(0, 20)
	spilled := regexp.MustCompile(`spilled=(\d+)`)
	// pull answers a pull of the spilling handler, checks it against
	// the reference and returns its timestamp.
	pull := func(auth, query string) int64 {
		t.Helper()
		got := c.call("GET", "/api/v2/sync"+query, auth, "")
		req := httptest.NewRequest("GET", actors.SyncPath+query, nil)
		req.Header.Set("Authorization", auth)
		want := httptest.NewRecorder()
		ref.ServeHTTP(want, req)
		if got.status != 200 || want.Code != 200 {
			t.Fatalf("pull %s: %d %s; reference %d", query, got.status, got.body, want.Code)
		}
		// Equal but for the timestamp, which each pull issues anew.
		g, w := got.body, want.Body.Bytes()
		g, w = g[:bytes.LastIndex(g, []byte(`},"timestamp":`))], w[:bytes.LastIndex(w, []byte(`},"timestamp":`))]
		if !bytes.Equal(g, w) {
			t.Fatalf("pull %s: a spilled pull differs from one held in memory:\n got %s\nwant %s", query, g, w)
		}
		n := 0
		if m := spilled.FindAllStringSubmatch(c.logs.String(), -1); len(m) > 0 {
			n, _ = strconv.Atoi(m[len(m)-1][1])
		}
		if n <= len(g)/2 {
			t.Errorf("pull %s: %d bytes spilled of %d", query, n, len(g))
		}
		if f := files(); len(f) != 0 {
			t.Errorf("pull %s left %v in the spool directory", query, f)
		}
		cs, rep, err := codec.DecodePullResponse(got.body, codec.Options{Catalog: c.store.Catalog()})
		if err != nil || len(rep.Rejected) != 0 {
			t.Fatalf("pull %s: %v %v", query, err, rep.Rejected)
		}
		return cs.Timestamp
	}

	// The spool file exists while the pull walks the changes: look
	// after the user lookup and 20 pages.
	var during []string
	c.be.set(func(b *hookBackend) { b.views, b.beforeAt, b.before = 0, 1+20+1, func() { during = files() } })
	hub := "Bearer " + hubKey
	t0 := pull(nurse, "")
	if len(during) != 1 {
		t.Errorf("spool directory during the pull: %v, want one file", during)
	}
	h0 := pull(hub, "?peerType=sync_hub")

	// Changes since: new rows, updates and deletes, of every table.
	write(1, 5)
	for _, tb := range tables {
		col := touchColumn(tb)
		if _, err := c.store.Put(tb.Name, tb.Name+"-0-3", map[string]codec.Value{col.Name: touched(col, "again")}); err != nil {
			t.Fatal(err)
		}
		if err := c.store.Delete(tb.Name, tb.Name+"-0-4"); err != nil {
			t.Fatal(err)
		}
	}
	pull(nurse, fmt.Sprintf("?last_pulled_at=%d", t0))
	pull(hub, fmt.Sprintf("?peerType=sync_hub&last_pulled_at=%d", h0))

	// A store that fails in the middle of the walk: a 500, and no file
	// left.
	c.be.set(func(b *hookBackend) {
		b.views, b.beforeAt = 0, 1+20+1
		b.before = func() {
			during = files()
			c.be.set(func(b *hookBackend) { b.failRead = "cursor" })
		}
	})
	r := c.call("GET", "/api/v2/sync", nurse, "")
	c.be.set(func(b *hookBackend) { b.failRead = "" })
	if r.status != 500 || len(during) != 1 {
		t.Errorf("pull with a store failing mid-walk: %d %s (spool directory then: %v)", r.status, r.body, during)
	}
	if f := files(); len(f) != 0 {
		t.Errorf("a failed pull left %v in the spool directory", f)
	}
}

// discardResponse is a response writer that counts the body and keeps
// none of it, so that a measure of the server's heap leaves out what
// the client would hold.
type discardResponse struct {
	header http.Header
	status int
	n      int64
	first  time.Time // of the first byte
}

func (d *discardResponse) Header() http.Header {
	if d.header == nil {
		d.header = http.Header{}
	}
	return d.header
}

func (d *discardResponse) WriteHeader(code int) {
	if d.status == 0 {
		d.status = code
	}
}

func (d *discardResponse) Write(p []byte) (int, error) {
	if d.status == 0 {
		d.status = http.StatusOK
	}
	if d.n == 0 {
		d.first = time.Now()
	}
	d.n += int64(len(p))
	return len(p), nil
}

// fillPatients pushes n patients (ids prefix-000000 on, a hometown of
// valueBytes) through h in pushes of at most 10,000 rows.
func fillPatients(tb testing.TB, h http.Handler, prefix string, n, valueBytes int) {
	tb.Helper()
	for i := 0; i < n; i += 10_000 {
		body := bigPush(tb, fmt.Sprintf("%s%d", prefix, i/10_000), min(10_000, n-i), valueBytes, 0)
		req := httptest.NewRequest("POST", actors.SyncPath, io.NopCloser(bytes.NewReader(body)))
		req.ContentLength = int64(len(body))
		req.Header.Set("Authorization", nurse)
		req.Header.Set("Content-Type", actors.ContentTypeJSON)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			tb.Fatalf("filling the store: %d %s", rec.Code, rec.Body)
		}
	}
}

// BenchmarkPullHeap measures the heap a JSON first pull of 100,000
// patients (about 60 MB of JSON) costs the server, over what it held
// before; the response goes to a writer that keeps nothing (the client
// holds the body, not the server). peak-MB is the most the heap held in
// objects during the pull, live-MB the largest live heap a GC found,
// first-byte-s the time the response took to start.
// The store is bbolt in a temporary directory. Run it with
// -benchtime=1x:
//
//	go test ./actors/ -run '^$' -bench BenchmarkPullHeap -benchtime=1x
func BenchmarkPullHeap(b *testing.B) {
	const rows = 100_000
	for _, page := range []int{actors.MaxPageSize, 1000} {
		b.Run(fmt.Sprintf("page=%d", page), func(b *testing.B) {
			st := newCloudStore(b, true)
			cfg := actors.CloudConfig{RateLimit: -1, PageSize: page, Logger: slog.New(slog.DiscardHandler)}
			h := actors.NewCloudHandler(st, cfg)
			fillPatients(b, h, "p", rows, 200)
			var peak, live, first float64
			var size int64
			b.ResetTimer()
			for range b.N {
				req := httptest.NewRequest("GET", actors.SyncPath, nil)
				req.Header.Set("Authorization", nurse)
				w := &discardResponse{}
				base := heapNow()
				s := sampleHeap()
				start := time.Now()
				h.ServeHTTP(w, req)
				objects, l := s.end()
				if w.status != http.StatusOK || w.n < rows*100 {
					b.Fatalf("pull: %d, %d bytes", w.status, w.n)
				}
				size = w.n
				first = max(first, w.first.Sub(start).Seconds())
				peak = max(peak, float64(objects-min(objects, base))/(1<<20))
				live = max(live, float64(l-min(l, base))/(1<<20))
			}
			b.ReportMetric(float64(size)/(1<<20), "body-MB")
			b.ReportMetric(peak, "peak-MB")
			b.ReportMetric(live, "live-MB")
			b.ReportMetric(first, "first-byte-s")
		})
	}
}
