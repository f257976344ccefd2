package pgstore_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clinicsync/clinicsync/codec"
	"github.com/clinicsync/clinicsync/internal/pgtest"
	"github.com/clinicsync/clinicsync/kv"
	"github.com/clinicsync/clinicsync/pgstore"
	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func open(t *testing.T, url string) *pgstore.Backend {
	t.Helper()
	be, err := pgstore.Open(context.Background(), url, pgstore.Options{MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { be.Close() })
	return be
}

func exec(t *testing.T, url, sql string, args ...any) {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), sql, args...); err != nil {
		t.Fatal(err)
	}
}

// TestUnavailable: no database at the address is an error that says so.
func TestUnavailable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, err = pgstore.Open(context.Background(), "postgres://postgres@"+addr+"/none?sslmode=disable", pgstore.Options{ConnectTimeout: 2 * time.Second})
	if !errors.Is(err, pgstore.ErrUnavailable) {
		t.Fatalf("open with nothing listening: %v, want ErrUnavailable", err)
	}
}

// TestMigrations: nodes opening a new database together migrate it once;
// a database newer than the build is refused.
func TestMigrations(t *testing.T) {
	url := pgtest.Shared(t)
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			be, err := pgstore.Open(context.Background(), url, pgstore.Options{MaxConns: 2})
			if err == nil {
				be.Close()
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	be := open(t, url)
	if v, err := be.Version(context.Background()); err != nil || v != pgstore.SchemaVersion() {
		t.Fatalf("schema version %d, %v; want %d", v, err, pgstore.SchemaVersion())
	}
	exec(t, url, "INSERT INTO clinicsync_schema (version) VALUES ($1)", pgstore.SchemaVersion()+1)
	_, err := pgstore.Open(context.Background(), url, pgstore.Options{})
	if err == nil || !strings.Contains(err.Error(), "newer than this build") {
		t.Fatalf("open of a newer schema: %v", err)
	}
}

// TestAscend: an ascending read crosses its batches in key order, and
// its callback may read and write in the same transaction.
func TestAscend(t *testing.T) {
	be := open(t, pgtest.Shared(t))
	const n = 1300
	key := func(i int) []byte { return []byte(fmt.Sprintf("k%05d", i)) }
	err := be.Update(func(tx kv.Tx) error {
		b, err := tx.Bucket("a")
		if err != nil {
			return err
		}
		for i := range n {
			if err := b.Put(key(i), []byte{byte(i)}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = be.Update(func(tx kv.Tx) error {
		b, _ := tx.Bucket("a")
		c, _ := tx.Bucket("copy")
		i := 100
		err := b.Ascend(key(100), func(k, v []byte) (bool, error) {
			if string(k) != string(key(i)) || string(b.Get(k)) != string(v) {
				return false, fmt.Errorf("at %d: key %s", i, k)
			}
			i++
			return i < 1200, c.Put(k, v)
		})
		if err == nil && (i != 1200 || c.Len() != 1100) {
			err = fmt.Errorf("stopped at %d, copied %d", i, c.Len())
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	be.View(func(tx kv.Tx) error {
		if got := tx.Buckets(""); len(got) != 2 || got[0] != "a" || got[1] != "copy" {
			t.Errorf("buckets %v", got)
		}
		if got := tx.Buckets("co"); len(got) != 1 {
			t.Errorf("buckets co %v", got)
		}
		return nil
	})
}

// TestLostConnection: a transaction whose connection dies writes
// nothing and fails with ErrUnavailable, and the next one works.
func TestLostConnection(t *testing.T) {
	url := pgtest.Shared(t)
	be := open(t, url)
	err := be.Update(func(tx kv.Tx) error {
		b, _ := tx.Bucket("a")
		if err := b.Put([]byte("k1"), []byte("v1")); err != nil {
			return err
		}
		exec(t, url, `SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid()`)
		if v := b.Get([]byte("k0")); v != nil {
			return fmt.Errorf("read %q after the connection died", v)
		}
		return b.Put([]byte("k2"), []byte("v2"))
	})
	if !errors.Is(err, pgstore.ErrUnavailable) {
		t.Fatalf("update over a dead connection: %v, want ErrUnavailable", err)
	}
	err = be.Update(func(tx kv.Tx) error {
		b, _ := tx.Bucket("a")
		if n := b.Len(); n != 0 {
			return fmt.Errorf("%d keys written by the failed transaction", n)
		}
		return b.Put([]byte("k3"), []byte("v3"))
	})
	if err != nil {
		t.Fatal(err)
	}
}

// pausing is a Backend whose next read-write transaction waits, after
// its function ran and before it commits, for release.
type pausing struct {
	kv.Backend
	mu      sync.Mutex
	written chan struct{} // closed when the paused transaction has written
	release chan struct{}
}

func (p *pausing) arm() (written, release chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.written, p.release = make(chan struct{}), make(chan struct{})
	return p.written, p.release
}

func (p *pausing) Update(fn func(kv.Tx) error) error {
	return p.Backend.Update(func(tx kv.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		p.mu.Lock()
		written, release := p.written, p.release
		p.written = nil
		p.mu.Unlock()
		if written != nil {
			close(written)
			<-release
		}
		return nil
	})
}

// interleaving runs the case that loses rows when cursors are not
// issued in commit order: writer A takes a cursor and pauses before
// committing; writer B writes, and commits unless it must wait for A;
// a reader pulls once bReady is closed (B committed, or about to wait
// for A); A commits; the reader pulls again from where it got. It
// returns the rows the reader saw.
func interleaving(t *testing.T, a, b func(), bReady chan struct{}, arm func() (written, release chan struct{}), pull func() []string) []string {
	written, release := arm()
	aDone, bDone := make(chan struct{}), make(chan struct{})
	go func() { defer close(aDone); a() }()
	select {
	case <-written:
	case <-aDone:
		t.Fatal("writer A committed without pausing")
	}
	go func() { defer close(bDone); b() }()
	select {
	case <-bReady:
	case <-bDone:
	}
	seen := pull()
	close(release)
	<-aDone
	<-bDone
	return append(seen, pull()...)
}

// TestCursorsInCommitOrder: two cloud nodes' stores over one database
// and a third that pulls by cursor: the pull misses no row, whatever
// the order of commits. The same interleaving over a plain sequence of
// cursors (the naive design) loses A's row, which shows that the
// interleaving is the one that matters.
func TestCursorsInCommitOrder(t *testing.T) {
	url := pgtest.Shared(t)
	clock := kv.NewManualClock(time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC))
	store := func(be kv.Backend) *kv.Store {
		s, err := kv.New(be, kv.Options{Clock: clock, KeepTombstones: true, Root: true})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	pa := &pausing{Backend: open(t, url)}
	a, b, reader := store(pa), store(open(t, url)), store(open(t, url))
	put := func(s *kv.Store, id string) func() {
		return func() {
			if _, err := s.Put("patients", id, patient(id)); err != nil {
				t.Error(err)
			}
		}
	}
	var since int64
	pull := func() []string {
		p, err := reader.ChangesSince(since, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		since = p.Timestamp
		var ids []string
		for _, r := range p.Records {
			ids = append(ids, r.ID)
		}
		return ids
	}
	// B starts its write while A holds the writers' lock: it cannot
	// commit before A, whenever the reader pulls.
	bWriting := make(chan struct{})
	bWrite := func() { close(bWriting); put(b, "pb")() }
	if seen := interleaving(t, put(a, "pa"), bWrite, bWriting, pa.arm, pull); !sameSet(seen, "pa", "pb") {
		t.Errorf("the store's pulls saw %v, want pa and pb", seen)
	}
	ra, _ := reader.Get("patients", "pa")
	rb, _ := reader.Get("patients", "pb")
	if ra.Cursor <= 0 || ra.Cursor >= rb.Cursor {
		t.Errorf("cursors pa %d, pb %d: want pa's first, as it committed first", ra.Cursor, rb.Cursor)
	}

	// The naive design: cursors from a sequence, writers not serialized.
	exec(t, url, "CREATE SEQUENCE naive_cursor; CREATE TABLE naive (id text, cursor bigint)")
	conn := func() *pgx.Conn {
		c, err := pgx.Connect(context.Background(), url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(context.Background()) })
		return c
	}
	ca, cb, cr := conn(), conn(), conn()
	var written, release chan struct{}
	naivePut := func(c *pgx.Conn, id string, pause bool) func() {
		return func() {
			ctx := context.Background()
			err := pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, "INSERT INTO naive VALUES ($1, nextval('naive_cursor'))", id); err != nil {
					return err
				}
				if pause {
					close(written)
					<-release
				}
				return nil
			})
			if err != nil {
				t.Error(err)
			}
		}
	}
	var naiveSince int64
	naivePull := func() []string {
		rows, _ := cr.Query(context.Background(), "SELECT id, cursor FROM naive WHERE cursor > $1 ORDER BY cursor", naiveSince)
		var ids []string
		for rows.Next() {
			var id string
			var c int64
			rows.Scan(&id, &c)
			ids, naiveSince = append(ids, id), max(naiveSince, c)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return ids
	}
	arm := func() (chan struct{}, chan struct{}) {
		written, release = make(chan struct{}), make(chan struct{})
		return written, release
	}
	// B waits for nothing: the reader pulls once it committed.
	if seen := interleaving(t, naivePut(ca, "pa", true), naivePut(cb, "pb", false), nil, arm, naivePull); sameSet(seen, "pa", "pb") {
		t.Errorf("a plain sequence of cursors lost nothing (%v): the interleaving no longer shows the bug it guards against", seen)
	}
}

func patient(name string) map[string]codec.Value {
	return map[string]codec.Value{
		"given_name": codec.String(name), "surname": codec.String("Doe"),
		"date_of_birth": codec.String("1990-04-01"), "citizenship": codec.String("JO"),
		"hometown": codec.String("Amman"), "phone": codec.String("1"), "sex": codec.String("female"),
		"additional_data": codec.JSONText(`{}`), "metadata": codec.JSONText(`{}`),
		"is_deleted": codec.Bool(false), "government_id": codec.String("G1"),
		"external_patient_id": codec.String("E1"),
	}
}

func sameSet(got []string, want ...string) bool {
	if len(got) != len(want) {
		return false
	}
	for _, w := range want {
		found := false
		for _, g := range got {
			found = found || g == w
		}
		if !found {
			return false
		}
	}
	return true
}
