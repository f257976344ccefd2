package kv_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/clinicsync/clinicsync/codec"
	"github.com/clinicsync/clinicsync/internal/pgtest"
	"github.com/clinicsync/clinicsync/kv"
	"github.com/clinicsync/clinicsync/pgstore"
)

func newClock() *kv.ManualClock {
	return kv.NewManualClock(time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC))
}

// harness is one store under test, on one backend, that can be
// reopened (as after a crash: the backend keeps what was committed).
type harness struct {
	t      *testing.T
	clock  *kv.ManualClock
	opts   kv.Options
	s      *kv.Store
	reopen func() *kv.Store
}

// eachBackend runs a conformance test against bbolt, the in-memory
// twin and PostgreSQL (pgstore, on a throwaway cluster).
func eachBackend(t *testing.T, keepTombstones bool, test func(t *testing.T, h *harness)) {
	t.Run("bolt", func(t *testing.T) {
		dir := t.TempDir()
		withStore(t, keepTombstones, test, func(opts kv.Options) (*kv.Store, error) { return kv.Open(dir, opts) })
	})
	t.Run("memory", func(t *testing.T) {
		be := keepOpen{kv.NewMemory()} // a reopen finds the same memory
		withStore(t, keepTombstones, test, func(opts kv.Options) (*kv.Store, error) { return kv.New(be, opts) })
	})
	t.Run("postgres", func(t *testing.T) {
		url := pgtest.Shared(t)
		withStore(t, keepTombstones, test, func(opts kv.Options) (*kv.Store, error) {
			be, err := pgstore.Open(context.Background(), url, pgstore.Options{MaxConns: 4})
			if err != nil {
				return nil, err
			}
			return kv.New(be, opts)
		})
	})
}

// withStore runs test on the store open opens; the harness's reopen
// closes it and opens it again.
func withStore(t *testing.T, keepTombstones bool, test func(t *testing.T, h *harness), open func(kv.Options) (*kv.Store, error)) {
	h := &harness{t: t, clock: newClock()}
	h.opts = kv.Options{Clock: h.clock, KeepTombstones: keepTombstones}
	mustOpen := func() *kv.Store {
		s, err := open(h.opts)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	h.s = mustOpen()
	h.reopen = func() *kv.Store {
		if err := h.s.Close(); err != nil {
			t.Fatal(err)
		}
		h.s = mustOpen()
		return h.s
	}
	t.Cleanup(func() { h.s.Close() })
	test(t, h)
}

// keepOpen is a backend that closing leaves open.
type keepOpen struct{ kv.Backend }

func (keepOpen) Close() error { return nil }

func TestMain(m *testing.M) { pgtest.Main(m) }

func patient(given, phone string) map[string]codec.Value {
	return map[string]codec.Value{
		"given_name": codec.String(given), "surname": codec.String("Doe"),
		"date_of_birth": codec.String("1990-04-01"), "citizenship": codec.String("JO"),
		"hometown": codec.String("Amman"), "phone": codec.String(phone), "sex": codec.String("female"),
		"additional_data": codec.JSONText(`{}`), "metadata": codec.JSONText(`{}`),
		"is_deleted": codec.Bool(false), "government_id": codec.String("G1"),
		"external_patient_id": codec.String("E1"),
	}
}

func (h *harness) put(table, id string, cols map[string]codec.Value) kv.Record {
	h.t.Helper()
	r, err := h.s.Put(table, id, cols)
	if err != nil {
		h.t.Fatalf("put %s/%s: %v", table, id, err)
	}
	return r
}

func (h *harness) get(table, id string) kv.Record {
	h.t.Helper()
	r, err := h.s.Get(table, id)
	if err != nil {
		h.t.Fatalf("get %s/%s: %v", table, id, err)
	}
	return r
}

// dump renders every row of a table and the pending and cursor state,
// to compare whole stores before and after a refused operation.
func (h *harness) dump(tables ...string) string {
	h.t.Helper()
	var b strings.Builder
	for _, table := range tables {
		err := h.s.Rows(table, func(r kv.Record) error {
			fmt.Fprintf(&b, "%s status=%s changed=%v deleted=%v cursor=%d v=%d\n", r.Row, r.Status, r.Changed, r.Deleted, r.Cursor, r.Version)
			return nil
		})
		if err != nil {
			h.t.Fatal(err)
		}
	}
	n, err := h.s.PendingCount()
	if err != nil {
		h.t.Fatal(err)
	}
	c, err := h.s.LastCursor()
	if err != nil {
		h.t.Fatal(err)
	}
	fmt.Fprintf(&b, "pending=%d cursor=%d\n", n, c)
	return b.String()
}

func TestChangeTracking(t *testing.T) {
	eachBackend(t, false, func(t *testing.T, h *harness) {
		r := h.put("patients", "p1", patient("Amina", "111"))
		if r.Status != kv.Created || r.Cols["created_at"].Num != float64(h.clock.Now().UnixMilli()) {
			t.Fatalf("create: status %s, created_at %v", r.Status, r.Cols["created_at"])
		}
		// A created row stays created when edited before its first push.
		h.clock.Add(time.Second)
		r = h.put("patients", "p1", map[string]codec.Value{"phone": codec.String("222")})
		if r.Status != kv.Created || r.Cols["phone"].Str != "222" || r.Cols["given_name"].Str != "Amina" {
			t.Fatalf("edit of created row: %+v", r)
		}
		refs := collect(t, h.s)
		if _, err := h.s.MarkSynced(refs); err != nil {
			t.Fatal(err)
		}
		if r = h.get("patients", "p1"); r.Status != kv.Synced || len(r.Changed) != 0 {
			t.Fatalf("after mark synced: %s %v", r.Status, r.Changed)
		}
		// An update tracks exactly the written columns (plus updated_at).
		h.put("patients", "p1", map[string]codec.Value{"phone": codec.String("333")})
		r = h.get("patients", "p1")
		if r.Status != kv.Updated || strings.Join(r.Changed, ",") != "phone,updated_at" {
			t.Fatalf("update: %s %v", r.Status, r.Changed)
		}
		h.put("patients", "p1", map[string]codec.Value{"surname": codec.String("Roe")})
		if r = h.get("patients", "p1"); strings.Join(r.Changed, ",") != "phone,updated_at,surname" {
			t.Fatalf("second update: changed %v", r.Changed)
		}
		// A delete leaves a pending tombstone without columns.
		if err := h.s.Delete("patients", "p1"); err != nil {
			t.Fatal(err)
		}
		r = h.get("patients", "p1")
		if r.Status != kv.Deleted || !r.Deleted || len(r.Cols) != 0 {
			t.Fatalf("delete: %+v", r)
		}
		if err := h.s.Delete("patients", "p1"); err != nil {
			t.Fatalf("second delete is a no-op, got %v", err)
		}
		if _, err := h.s.Put("patients", "p1", map[string]codec.Value{"phone": codec.String("9")}); !errors.Is(err, kv.ErrDeleted) {
			t.Fatalf("write to deleted row: %v", err)
		}
		// The pushed tombstone is purged on a device.
		if _, err := h.s.MarkSynced(collect(t, h.s)); err != nil {
			t.Fatal(err)
		}
		if _, err := h.s.Get("patients", "p1"); !errors.Is(err, kv.ErrNotFound) {
			t.Fatalf("tombstone not purged: %v", err)
		}
		var actions []string
		h.s.Log(0, func(e kv.LogEntry) error { actions = append(actions, e.Action); return nil })
		if got := strings.Join(actions, ","); got != "CREATE,UPDATE,UPDATE,UPDATE,SOFT_DELETE" {
			t.Fatalf("event log: %s", got)
		}
	})
}

func TestTombstonesKeptOnServingNodes(t *testing.T) {
	eachBackend(t, true, func(t *testing.T, h *harness) {
		h.put("patients", "p1", patient("Amina", "111"))
		h.s.MarkSynced(collect(t, h.s))
		if err := h.s.Delete("patients", "p1"); err != nil {
			t.Fatal(err)
		}
		h.s.MarkSynced(collect(t, h.s))
		r := h.get("patients", "p1")
		if !r.Deleted || r.Status != kv.Synced {
			t.Fatalf("serving tombstone: %+v", r)
		}
		p, err := h.s.ChangesSince(0, 0, 0)
		if err != nil || len(p.Records) != 1 || !p.Records[0].Deleted {
			t.Fatalf("tombstone not served: %+v %v", p, err)
		}
	})
}

func collect(t *testing.T, s *kv.Store) []kv.Ref {
	t.Helper()
	recs, err := s.Collect(0)
	if err != nil {
		t.Fatal(err)
	}
	refs := make([]kv.Ref, len(recs))
	for i, r := range recs {
		refs[i] = kv.RefOf(r)
	}
	return refs
}

func TestWriteDuringPushSurvives(t *testing.T) {
	eachBackend(t, false, func(t *testing.T, h *harness) {
		h.put("patients", "p1", patient("Amina", "111"))
		h.put("patients", "p2", patient("Badr", "222"))
		h.put("visits", "v1", map[string]codec.Value{"patient_id": codec.String("p1"),
			"clinic_id": codec.String("c1"), "provider_id": codec.String("u1"), "provider_name": codec.String("Dr"),
			"check_in_timestamp": codec.Int(h.clock.Now().UnixMilli()), "metadata": codec.JSONText("{}"), "is_deleted": codec.Bool(false)})
		if by, err := h.s.PendingByTable(); err != nil || !reflect.DeepEqual(by, map[string]int{"patients": 2, "visits": 1}) {
			t.Fatalf("pending by table %v %v, want patients 2, visits 1", by, err)
		}
		refs := collect(t, h.s)
		if len(refs) != 3 {
			t.Fatalf("collected %d rows, want 3", len(refs))
		}
		// While the push is in flight: p1 is edited, p2 deleted.
		h.put("patients", "p1", map[string]codec.Value{"phone": codec.String("999")})
		if err := h.s.Delete("patients", "p2"); err != nil {
			t.Fatal(err)
		}
		n, err := h.s.MarkSynced(refs)
		if err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Fatalf("marked %d, want only v1", n)
		}
		if r := h.get("patients", "p1"); r.Status != kv.Created || r.Cols["phone"].Str != "999" {
			t.Fatalf("p1 lost its in-flight write: %s %v", r.Status, r.Cols["phone"])
		}
		if r := h.get("patients", "p2"); r.Status != kv.Deleted {
			t.Fatalf("p2 lost its in-flight delete: %s", r.Status)
		}
		if r := h.get("visits", "v1"); r.Status != kv.Synced {
			t.Fatalf("v1: %s", r.Status)
		}
		if n, _ := h.s.PendingCount(); n != 2 {
			t.Fatalf("pending %d, want 2", n)
		}
		// Per table: p1 (edited) and p2 (deleted) are patients; v1 went.
		if by, err := h.s.PendingByTable(); err != nil || !reflect.DeepEqual(by, map[string]int{"patients": 2}) {
			t.Fatalf("pending by table %v %v, want patients 2", by, err)
		}
	})
}

// replace is a merge that takes the incoming change as is.
func replace(cur *kv.Record, in kv.Change) (kv.Outcome, error) {
	if in.Delete {
		return kv.Outcome{Op: kv.Purge}, nil
	}
	return kv.Outcome{Op: kv.Write, Record: kv.Record{Row: in.Row}}, nil
}

func TestFailedBatchLeavesNothing(t *testing.T) {
	eachBackend(t, false, func(t *testing.T, h *harness) {
		h.put("patients", "p1", patient("Amina", "111"))
		if err := h.s.PutPeer(kv.Peer{ID: "cloud", Type: kv.PeerCloud, PullCursor: 5}); err != nil {
			t.Fatal(err)
		}
		before := h.dump("patients")
		boom := errors.New("conflict")
		changes := []kv.Change{
			{Row: codec.Row{Table: "patients", ID: "p2", Cols: patient("B", "2")}},
			{Row: codec.Row{Table: "patients", ID: "p1", Cols: patient("A2", "3")}},
			{Row: codec.Row{Table: "patients", ID: "p3", Cols: patient("C", "4")}},
		}
		n := 0
		_, err := h.s.Apply(kv.Batch{Changes: changes, Peer: "cloud", PullCursor: 99}, func(cur *kv.Record, in kv.Change) (kv.Outcome, error) {
			if n++; n == 3 {
				return kv.Outcome{}, boom
			}
			return replace(cur, in)
		})
		if !errors.Is(err, boom) {
			t.Fatalf("apply: %v", err)
		}
		if after := h.dump("patients"); after != before {
			t.Fatalf("failed batch changed the store:\nbefore:\n%s\nafter:\n%s", before, after)
		}
		if p, _ := h.s.Peer("cloud"); p.PullCursor != 5 {
			t.Fatalf("pull cursor moved to %d", p.PullCursor)
		}
		// An invalid change refuses the whole batch up front.
		bad := append(changes[:1:1], kv.Change{Row: codec.Row{Table: "nope", ID: "x"}})
		if _, err := h.s.Apply(kv.Batch{Changes: bad}, replace); !errors.Is(err, kv.ErrUnknownTable) {
			t.Fatalf("unknown table: %v", err)
		}
		if after := h.dump("patients"); after != before {
			t.Fatal("refused batch changed the store")
		}
		// The same batch without the failure commits with its cursor.
		res, err := h.s.Apply(kv.Batch{Changes: changes, Peer: "cloud", PullCursor: 99}, replace)
		if err != nil || res.Written != 3 {
			t.Fatalf("apply: %+v %v", res, err)
		}
		if p, _ := h.s.Peer("cloud"); p.PullCursor != 99 {
			t.Fatalf("pull cursor %d, want 99", p.PullCursor)
		}
		if h.reopen(); h.get("patients", "p3").Cols["given_name"].Str != "C" {
			t.Fatal("applied batch did not survive reopen")
		}
	})
}

func TestCursorMonotonic(t *testing.T) {
	eachBackend(t, false, func(t *testing.T, h *harness) {
		var last int64
		check := func(r kv.Record) {
			t.Helper()
			if r.Cursor <= last {
				t.Fatalf("cursor %d after %d", r.Cursor, last)
			}
			last = r.Cursor
		}
		// Opening issued one cursor; many writes in the same millisecond
		// still get unique ones.
		for i := range 5 {
			check(h.put("patients", fmt.Sprintf("p%d", i), patient("A", "1")))
		}
		if last != h.clock.Now().UnixMilli()+5 {
			t.Fatalf("cursor %d: want now+5", last)
		}
		h.reopen()
		check(h.put("patients", "p9", patient("A", "1")))
		h.clock.Add(-time.Hour)
		check(h.put("patients", "p10", patient("A", "1")))
		h.reopen()
		check(h.put("patients", "p11", patient("A", "1")))
		if c, _ := h.s.LastCursor(); c != last {
			t.Fatalf("LastCursor %d, want %d", c, last)
		}
		// Once the clock passes the high-water mark, cursors follow it.
		h.clock.Add(2 * time.Hour)
		check(h.put("patients", "p12", patient("A", "1")))
		if last != h.clock.Now().UnixMilli() {
			t.Fatalf("cursor %d does not follow the clock %d", last, h.clock.Now().UnixMilli())
		}
	})
}

func TestChangesSince(t *testing.T) {
	eachBackend(t, true, func(t *testing.T, h *harness) {
		for i := range 10 {
			h.put("patients", fmt.Sprintf("p%d", i), patient("A", "1"))
		}
		mid, _ := h.s.LastCursor()
		h.put("patients", "p3", map[string]codec.Value{"phone": codec.String("2")})
		h.s.Delete("patients", "p4")
		p, err := h.s.ChangesSince(mid, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Records) != 2 || p.Records[0].ID != "p3" || p.Records[1].ID != "p4" || !p.Records[1].Deleted {
			t.Fatalf("changes since mid: %+v", p.Records)
		}
		if last, _ := h.s.LastCursor(); p.Timestamp != last || p.More {
			t.Fatalf("timestamp %d more %v", p.Timestamp, p.More)
		}
		// ValuesSince: the same page without the column versions.
		v, err := h.s.ValuesSince(mid, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		want := slices.Clone(p.Records)
		for i := range want {
			if want[i].Versions == nil && !want[i].Deleted {
				t.Fatalf("%s: no column versions to leave out", want[i].ID)
			}
			want[i].Versions = nil
		}
		if !reflect.DeepEqual(v, kv.Page{Records: want, Next: p.Next, Timestamp: p.Timestamp}) {
			t.Fatalf("values since mid: %+v, want %+v", v, want)
		}
		// Paging walks every row once, each at its latest change.
		seen := map[string]int{}
		var since int64
		for pages := 0; ; pages++ {
			p, err := h.s.ChangesSince(since, 0, 3)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range p.Records {
				seen[r.ID]++
			}
			since = p.Next
			if !p.More {
				if pages != 3 {
					t.Fatalf("%d pages, want 4", pages+1)
				}
				break
			}
		}
		if len(seen) != 10 {
			t.Fatalf("paging saw %d rows", len(seen))
		}
		for id, n := range seen {
			if n != 1 {
				t.Fatalf("%s seen %d times", id, n)
			}
		}
	})
}

func TestBadLocalWritesChangeNothing(t *testing.T) {
	eachBackend(t, false, func(t *testing.T, h *harness) {
		h.put("patients", "p1", patient("Amina", "111"))
		before := h.dump("patients")
		cases := []struct {
			name  string
			table string
			id    string
			cols  map[string]codec.Value
			want  error
		}{
			{"unknown table", "patientz", "p1", patient("A", "1"), kv.ErrUnknownTable},
			{"unknown column", "patients", "p1", map[string]codec.Value{"phnoe": codec.String("1")}, kv.ErrUnknownColumn},
			{"wrong type", "patients", "p1", map[string]codec.Value{"phone": codec.Int(5)}, kv.ErrInvalidValue},
			{"bad JSON", "patients", "p1", map[string]codec.Value{"metadata": codec.JSONText("{")}, kv.ErrInvalidValue},
			{"bad date", "patients", "p1", map[string]codec.Value{"date_of_birth": codec.String("1990-02-30")}, kv.ErrInvalidValue},
			{"absurd timestamp", "patients", "p1", map[string]codec.Value{"updated_at": codec.Int(99999999999999)}, kv.ErrInvalidValue},
			{"null in required", "patients", "p1", map[string]codec.Value{"surname": codec.Null()}, kv.ErrInvalidValue},
			{"oversized", "patients", "p1", map[string]codec.Value{"phone": codec.String(strings.Repeat("x", kv.MaxValueBytes+1))}, kv.ErrInvalidValue},
			{"invalid id", "patients", "a/b", patient("A", "1"), kv.ErrInvalidID},
			{"missing required on create", "patients", "p2", map[string]codec.Value{"phone": codec.String("1")}, kv.ErrInvalidValue},
		}
		for _, c := range cases {
			_, err := h.s.Put(c.table, c.id, c.cols)
			if !errors.Is(err, c.want) {
				t.Errorf("%s: got %v, want %v", c.name, err, c.want)
			}
		}
		if err := h.s.Delete("patients", "nope"); !errors.Is(err, kv.ErrNotFound) {
			t.Errorf("delete unknown: %v", err)
		}
		if after := h.dump("patients"); after != before {
			t.Fatalf("refused writes changed the store:\n%s\n%s", before, after)
		}
	})
}

func TestPeersDevicesConfig(t *testing.T) {
	eachBackend(t, false, func(t *testing.T, h *harness) {
		paired := kv.Peer{ID: "hub1", Type: kv.PeerHub, URL: "rpc://127.0.0.1:4003", PublicKey: []byte("k32"),
			TLSFingerprint: "fp", NodeID: "hub-node", Discovery: "127.0.0.1:4002", APIKey: "key", Name: "North"}
		if err := h.s.PutPeer(paired); err != nil {
			t.Fatal(err)
		}
		h.clock.Add(time.Second)
		if err := h.s.PutPeer(kv.Peer{ID: "cloud", Type: kv.PeerCloud}); err != nil {
			t.Fatal(err)
		}
		if err := h.s.PutPeer(kv.Peer{ID: "x", Type: "laptop"}); err == nil {
			t.Fatal("bad peer type accepted")
		}
		if err := h.s.UpdatePeer("hub1", func(p *kv.Peer) { p.Status = kv.StatusRevoked }); err != nil {
			t.Fatal(err)
		}
		h.reopen()
		ps, err := h.s.Peers()
		if err != nil || len(ps) != 2 || ps[0].ID != "hub1" || ps[0].Status != kv.StatusRevoked || ps[1].Status != kv.StatusActive {
			t.Fatalf("peers: %+v %v", ps, err)
		}
		got := ps[0]
		got.Status, got.CreatedAt, got.UpdatedAt = "", 0, 0
		paired.Status = ""
		if !reflect.DeepEqual(got, paired) {
			t.Errorf("peer after reopening: %+v, want %+v", got, paired)
		}
		if err := h.s.PutDevice(kv.Device{ID: "d1", Name: "hub", KeyHash: []byte("hash1")}); err != nil {
			t.Fatal(err)
		}
		if d, err := h.s.DeviceByKeyHash([]byte("hash1")); err != nil || d.ID != "d1" || d.Status != kv.StatusActive {
			t.Fatalf("device: %+v %v", d, err)
		}
		if _, err := h.s.DeviceByKeyHash([]byte("hash2")); !errors.Is(err, kv.ErrNotFound) {
			t.Fatalf("unknown key: %v", err)
		}
		if _, err := h.s.Config("node_id"); !errors.Is(err, kv.ErrNotFound) {
			t.Fatal(err)
		}
		h.s.SetConfig("node_id", "n1")
		if v, err := h.s.Config("node_id"); v != "n1" || err != nil {
			t.Fatalf("config: %q %v", v, err)
		}
		for _, k := range []string{"node/a", "node/b", "nodes", "node0"} {
			h.s.SetConfig(k, "v "+k)
		}
		if m, err := h.s.ConfigPrefix("node/"); err != nil || !reflect.DeepEqual(m, map[string]string{"node/a": "v node/a", "node/b": "v node/b"}) {
			t.Fatalf("config with prefix node/: %v %v", m, err)
		}
	})
}

func TestBoltLockedByAnotherOpen(t *testing.T) {
	dir := t.TempDir()
	opts := kv.Options{Clock: newClock()}
	s, err := kv.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := kv.Open(filepath.Join(dir), opts); !errors.Is(err, kv.ErrLocked) {
		t.Fatalf("second open: %v", err)
	}
}

func mkdir(tb testing.TB, dir string) string {
	tb.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		tb.Fatal(err)
	}
	return dir
}

func TestMirrorInsideTheBatch(t *testing.T) {
	eachBackend(t, false, func(t *testing.T, h *harness) {
		h.put("patients", "p1", patient("Amina", "111"))
		h.put("patients", "p2", patient("Badr", "222"))
		if _, err := h.s.MarkSynced(collect(t, h.s)); err != nil {
			t.Fatal(err)
		}
		h.put("patients", "p2", map[string]codec.Value{"phone": codec.String("999")}) // a local edit
		in := codec.Row{Table: "patients", ID: "p3", Cols: patient("Carim", "333")}
		seen := map[string]bool{"p3": true}
		res, err := h.s.Apply(kv.Batch{Changes: []kv.Change{{Row: in}},
			Mirror: func(r kv.Record) bool { return r.Status == kv.Synced && !seen[r.ID] }}, replace)
		if err != nil || res.Written != 1 || res.Purged != 1 {
			t.Fatalf("apply: %+v, %v", res, err)
		}
		if _, err := h.s.Get("patients", "p1"); !errors.Is(err, kv.ErrNotFound) {
			t.Errorf("p1, synced and not brought: %v", err)
		}
		if r := h.get("patients", "p2"); r.Cols["phone"].Str != "999" {
			t.Errorf("p2's local edit: %v", r.Cols["phone"])
		}
		h.get("patients", "p3")
	})
}

// TestReceiptsKept: the receipts a merge gives a row are stored with it
// and read back, across a reopen.
func TestReceiptsKept(t *testing.T) {
	eachBackend(t, false, func(t *testing.T, h *harness) {
		want := map[string]codec.Receipt{codec.ReceiptKey("user:u1", "phone"): {Hash: 42, Version: codec.Version{Wall: 7, Counter: 1, Node: "user:u1"}}}
		withReceipts := func(cur *kv.Record, in kv.Change) (kv.Outcome, error) {
			return kv.Outcome{Op: kv.Write, Record: kv.Record{Row: in.Row, Receipts: want}}, nil
		}
		in := codec.Row{Table: "patients", ID: "p1", Cols: patient("Amina", "111")}
		if _, err := h.s.Apply(kv.Batch{Changes: []kv.Change{{Row: in}}}, withReceipts); err != nil {
			t.Fatal(err)
		}
		h.reopen()
		if got := h.get("patients", "p1").Receipts; !maps.Equal(got, want) {
			t.Errorf("receipts read back %v, want %v", got, want)
		}
	})
}

// TestPendingRows: a push lists the pending rows (tombstones marked,
// with their stored size) without reading them, then reads a chunk of
// them by name; a row gone meanwhile is left out.
func TestPendingRows(t *testing.T) {
	eachBackend(t, false, func(t *testing.T, h *harness) {
		h.put("patients", "p1", patient("Amina", "111"))
		h.put("patients", "p2", patient("Badr", "222"))
		if err := h.s.Delete("patients", "p2"); err != nil {
			t.Fatal(err)
		}
		rows, err := h.s.PendingRows()
		if err != nil || len(rows) != 2 {
			t.Fatalf("pending rows %+v, %v", rows, err)
		}
		if p := rows[0]; p.Table != "patients" || p.ID != "p1" || p.Deleted || p.Size < 50 {
			t.Errorf("p1: %+v", p)
		}
		if p := rows[1]; p.ID != "p2" || !p.Deleted {
			t.Errorf("p2: %+v, want a tombstone", p)
		}
		recs, err := h.s.Records(append(rows, codec.Pending{Table: "patients", ID: "never"}))
		if err != nil || len(recs) != 2 || recs[0].Cols["given_name"].Str != "Amina" || !recs[1].Deleted {
			t.Fatalf("records %+v, %v", recs, err)
		}
		if _, err := h.s.Records([]codec.Pending{{Table: "nope", ID: "x"}}); !errors.Is(err, kv.ErrUnknownTable) {
			t.Errorf("an unknown table: %v", err)
		}
	})
}
