package actors_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/clinicsync/clinicsync/actors"
	"github.com/clinicsync/clinicsync/codec"
	"github.com/clinicsync/clinicsync/fsm"
	"github.com/clinicsync/clinicsync/kv"
)

// serveHandler serves h with scfg on 127.0.0.1:0 until the test ends,
// and returns the address.
func serveHandler(t *testing.T, h http.Handler, scfg actors.ServeConfig) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- scfg.Serve(ctx, l, h) }()
	t.Cleanup(func() {
		stop()
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(cloudWait):
			t.Error("Serve did not return")
		}
	})
	return l.Addr().String()
}

// waitUntil polls cond until it holds, failing the test after
// cloudWait.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(cloudWait)
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("still waiting for %s after %v", what, cloudWait)
		}
	}
}

// request sends a request's headers on conn (from an unread body of
// contentLength bytes on) and returns a channel that gets the status of
// its response, and its Retry-After, or status 0 when the connection
// was closed without one.
func request(conn net.Conn, head string, contentLength int) <-chan [2]int {
	got := make(chan [2]int, 1)
	go func() {
		if _, err := fmt.Fprintf(conn, "%sContent-Length: %d\r\n\r\n", head, contentLength); err != nil {
			got <- [2]int{}
			return
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			got <- [2]int{}
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		retry, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
		got <- [2]int{resp.StatusCode, retry}
	}()
	return got
}

// pushHead is the head of a JSON push, with auth as its Authorization
// ("": none).
func pushHead(auth, query string) string {
	if auth != "" {
		auth = "Authorization: " + auth + "\r\n"
	}
	return "POST " + actors.SyncPath + query + " HTTP/1.1\r\nHost: cloud\r\n" + auth + "Content-Type: application/json\r\n"
}

// TestStalledBodiesDoNotStopOthers: 300 connections from 127.0.0.2
// send a push's headers, with a hub's key or no credentials, promise a
// 1 MB body and never send it. The per-address cap closes those past
// it at once, the ones without credentials are answered 401, and those
// waiting for their bodies hold less of the push budget than there is;
// a client on 127.0.0.1 pulls and pushes meanwhile. When the stalled
// clients go away, their budget comes back.
func TestStalledBodiesDoNotStopOthers(t *testing.T) {
	t.Parallel()
	c := newCloud(t, actors.CloudConfig{})
	h := actors.NewCloudHandler(c.store, actors.CloudConfig{RateLimit: -1, Clock: c.clock, Logger: slog.New(slog.DiscardHandler)})
	addr := serveHandler(t, h, actors.ServeConfig{Logger: slog.New(slog.DiscardHandler)}) // the defaults
	other := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
	probe, err := other.Dial("tcp", addr)
	if err != nil {
		t.Skipf("cannot dial from 127.0.0.2 (Linux routes 127/8 to lo): %v", err)
	}
	probe.Close()

	const stalled, promised = 300, 1_000_000
	var conns []net.Conn
	defer func() {
		for _, conn := range conns {
			conn.Close()
		}
	}()
	var replies []<-chan [2]int
	for i := range stalled {
		conn, err := other.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("stalled connection %d: %v", i, err)
		}
		conns = append(conns, conn)
		auth := "Bearer " + hubKey
		if i%2 == 1 {
			auth = ""
		}
		replies = append(replies, request(conn, pushHead(auth, "?peerType=sync_hub"), promised))
	}
	// Every stalled connection ends up closed, answered or holding its
	// promised body in the budget.
	var closed, unauthorized int
	waitUntil(t, "the stalled connections to settle", func() bool {
		for i, ch := range replies {
			if ch == nil {
				continue
			}
			select {
			case r := <-ch:
				replies[i] = nil
				switch r[0] {
				case 0:
					closed++
				case http.StatusUnauthorized, http.StatusTooManyRequests:
					unauthorized++
				default:
					t.Errorf("stalled connection %d answered %d", i, r[0])
				}
			default:
			}
		}
		return closed+unauthorized+int(h.PushBudget().InFlight/promised) == stalled
	})
	holding := h.PushBudget().InFlight / promised
	t.Logf("stalled connections: %d closed at once, %d refused (401), %d waiting for their bodies", closed, unauthorized, holding)
	if holding == 0 || holding > actors.DefaultMaxConnsPerAddr || closed == 0 {
		t.Errorf("%d connections hold the budget, %d were closed: want 1-%d and some", holding, closed, actors.DefaultMaxConnsPerAddr)
	}

	// A client on 127.0.0.1 pulls and pushes meanwhile.
	base := "http://" + addr
	client := &http.Client{Timeout: cloudWait}
	do := func(method, path, body string) (int, []byte) {
		t.Helper()
		req, err := http.NewRequest(method, base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", nurse)
		req.Header.Set("Content-Type", actors.ContentTypeJSON)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, b
	}
	status, b := do("GET", actors.SyncPath, "")
	var pulled struct{ Timestamp int64 }
	if err := json.Unmarshal(b, &pulled); status != 200 || err != nil {
		t.Fatalf("pull: %d %s", status, b)
	}
	if status, b := do("POST", actors.SyncPath, changes(t, pulled.Timestamp, "patients", []map[string]any{patientRaw("p1", "c1", nil)}, nil)); status != 200 {
		t.Fatalf("push: %d %s", status, b)
	}
	if _, err := c.store.Get("patients", "p1"); err != nil {
		t.Fatalf("the push was not stored: %v", err)
	}
	if pb := h.PushBudget(); pb.Peak > actors.DefaultMaxConnsPerAddr*promised+10_000 {
		t.Errorf("budget peak %d: more than the per-address cap of stalled bodies", pb.Peak)
	}

	// Gone clients give their budget back.
	for _, conn := range conns {
		conn.Close()
	}
	waitUntil(t, "the push budget to come back", func() bool { return h.PushBudget().InFlight == 0 })
}

// TestLimitListener: past the global cap Accept waits for a connection
// to close; past the per-address cap a new connection is closed at once.
func TestLimitListener(t *testing.T) {
	t.Parallel()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := actors.LimitListener(inner, 3, 2, slog.New(slog.DiscardHandler))
	defer l.Close()
	accepted := make(chan net.Conn, 10)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	next := func() net.Conn {
		t.Helper()
		select {
		case c := <-accepted:
			return c
		case <-time.After(cloudWait):
			t.Fatal("no connection accepted")
		}
		return nil
	}
	dial := func(ip net.IP) net.Conn {
		t.Helper()
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}}
		c, err := d.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Skipf("dialing from %v: %v", ip, err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	a, b := net.IPv4(127, 0, 0, 1), net.IPv4(127, 0, 0, 2)
	dial(a)
	dial(a)
	first := next()
	next()
	// A third from a is over its cap: closed without a word.
	over := dial(a)
	over.SetReadDeadline(time.Now().Add(cloudWait))
	if n, err := over.Read(make([]byte, 1)); n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a connection over the per-address cap: read %d, %v", n, err)
	}
	dial(b)
	next()
	// Three open: the global cap. The next waits until one closes.
	dial(b)
	select {
	case c := <-accepted:
		t.Fatalf("accepted %v past the global cap", c.RemoteAddr())
	default:
	}
	first.Close()
	if c := next(); !strings.HasPrefix(c.RemoteAddr().String(), "127.0.0.2:") {
		t.Fatalf("accepted %v, want the waiting connection from 127.0.0.2", c.RemoteAddr())
	}
}

// TestBodyTimeout: a body that does not arrive within the body timeout
// is answered 408, and its push gives its budget back; a pull, which
// has no body, streams past it.
func TestBodyTimeout(t *testing.T) {
	t.Parallel()
	c := newCloud(t, actors.CloudConfig{})
	h := actors.NewCloudHandler(c.store, actors.CloudConfig{RateLimit: -1, Clock: c.clock, Logger: slog.New(slog.DiscardHandler)})
	addr := serveHandler(t, h, actors.ServeConfig{BodyTimeout: 50 * time.Millisecond})
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	select {
	case r := <-request(conn, pushHead(nurse, ""), 1000):
		if r[0] != http.StatusRequestTimeout {
			t.Fatalf("stalled body: %d, want 408", r[0])
		}
	case <-time.After(cloudWait):
		t.Fatal("stalled body: no answer")
	}
	waitUntil(t, "the push budget to come back", func() bool { return h.PushBudget().InFlight == 0 })
}

// TestPushBudget: 8 pushes of about 30 MB from two users arrive at
// once, their headers first. As many as the push budget holds are
// admitted and read, at most half the budget's worth per user; the
// others are answered 503 with Retry-After before any of their body is
// sent. The handler's bytes in flight never exceed the budget, the
// rows of the admitted pushes are stored, none of the refused ones.
func TestPushBudget(t *testing.T) {
	t.Parallel()
	c := newCloud(t, actors.CloudConfig{})
	hash, err := bcrypt.GenerateFromPassword([]byte(nursePassword), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	const second = "second@example.org"
	if _, err := c.store.Put("users", "u3", map[string]codec.Value{"clinic_id": codec.String("c1"), "name": codec.String("Nurse 2"),
		"role": codec.String("provider"), "email": codec.String(second), "is_deleted": codec.Bool(false),
		"hashed_password": codec.String(string(hash))}); err != nil {
		t.Fatal(err)
	}
	users := []string{nurse, basic(second, nursePassword)}
	h := actors.NewCloudHandler(c.store, actors.CloudConfig{RateLimit: -1, Clock: c.clock, Logger: slog.New(slog.DiscardHandler)})
	addr := serveHandler(t, h, actors.ServeConfig{})
	const pushes, value = 8, 256 << 10
	rows := rowsFor(t, 30<<20, value)
	body := func(k int) []byte { return bigPush(t, fmt.Sprintf("b%d", k), rows, value, 0) }
	size := len(body(0))
	limit := h.PushBudget().Limit
	admit := int(limit / int64(size))
	if limit != actors.DefaultPushBudgetFactor*actors.DefaultMaxBodyBytes || admit < 1 || admit >= pushes ||
		admit != len(users)*int(limit/2/int64(size)) {
		t.Fatalf("budget %d for %d pushes of %d bytes: the test needs some but not all to fit", limit, pushes, size)
	}
	conns := make([]net.Conn, pushes)
	replies := make([]<-chan [2]int, pushes)
	for k := range pushes {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conns[k] = conn
		replies[k] = request(conn, pushHead(users[k%len(users)], ""), size)
	}
	// The refused ones are answered before any body is sent.
	refused := map[int]bool{}
	waitUntil(t, "the pushes over the budget to be refused", func() bool {
		for k, ch := range replies {
			if refused[k] {
				continue
			}
			select {
			case r := <-ch:
				if r[0] != http.StatusServiceUnavailable || r[1] < 1 {
					t.Fatalf("push %d answered %d (Retry-After %d) before its body was sent; want 503 with Retry-After", k, r[0], r[1])
				}
				refused[k] = true
			default:
			}
		}
		return len(refused) == pushes-admit && h.PushBudget().InFlight == int64(admit*size)
	})
	sent := make(chan error, pushes)
	for k := range pushes {
		if !refused[k] {
			go func() {
				_, err := conns[k].Write(body(k))
				sent <- err
			}()
		}
	}
	// Decoding and applying 30 MB pushes takes long under the race
	// detector on a loaded machine: the bound is generous.
	answered := time.After(5 * cloudWait)
	for k := range pushes {
		if refused[k] {
			continue
		}
		select {
		case r := <-replies[k]:
			if r[0] != http.StatusOK {
				t.Errorf("admitted push %d: %d", k, r[0])
			}
		case <-answered:
			t.Fatalf("admitted push %d: no answer after %v", k, 5*cloudWait)
		}
		if err := <-sent; err != nil {
			t.Errorf("sending push body: %v", err)
		}
	}
	for k := range pushes {
		for _, i := range []int{0, rows - 1} {
			_, err := c.store.Get("patients", fmt.Sprintf("b%d-%06d", k, i))
			if refused[k] != errors.Is(err, kv.ErrNotFound) || err != nil && !errors.Is(err, kv.ErrNotFound) {
				t.Errorf("push %d (refused %v), row %d: %v", k, refused[k], i, err)
			}
		}
	}
	waitUntil(t, "the push budget to come back", func() bool { return h.PushBudget().InFlight == 0 })
	if pb := h.PushBudget(); pb.Peak > pb.Limit || pb.Peak != int64(admit*size) {
		t.Errorf("budget %+v: want a peak of %d admitted × %d bytes, within the limit", pb, admit, size)
	}
}

// TestStrictRefusesUnissuedLastPulledAt: under the strict policy a push
// whose last_pulled_at is no timestamp a pull was given (here a row's
// cursor, below the last cursor) is refused with 400 and changes
// nothing; one a pull returned is taken. The merge policy takes both.
// A timestamp older than the record of issued ones is taken.
func TestStrictRefusesUnissuedLastPulledAt(t *testing.T) {
	t.Parallel()
	for _, policy := range []fsm.Policy{fsm.StrictPolicy, fsm.MergePolicy} {
		t.Run(policy.String(), func(t *testing.T) {
			c := newCloud(t, actors.CloudConfig{Policy: policy})
			pull := func() int64 {
				_, raw := c.pull(nurse, "")
				return int64(raw["timestamp"].(float64))
			}
			push := func(lpa int64, id string) reply {
				return c.call("POST", actors.SyncPath, nurse, changes(t, lpa, "patients", []map[string]any{patientRaw(id, "c1", nil)}, nil),
					"Content-Type", actors.ContentTypeJSON)
			}
			dump := func() string {
				var b strings.Builder
				err := c.store.Rows("patients", func(r kv.Record) error {
					fmt.Fprintf(&b, "%s cursor=%d\n", r.Row, r.Cursor)
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
				last, err := c.store.LastCursor()
				if err != nil {
					t.Fatal(err)
				}
				fmt.Fprintf(&b, "last=%d", last)
				return b.String()
			}
			if r := push(pull(), "p1"); r.status != 200 {
				t.Fatalf("push with a pulled timestamp: %d %s", r.status, r.body)
			}
			p1, err := c.store.Get("patients", "p1")
			if err != nil {
				t.Fatal(err)
			}
			forged := p1.Cursor // a row's cursor: issued, but to no pull
			before := dump()
			r := push(forged, "p2")
			if policy == fsm.StrictPolicy {
				if r.status != 400 || !strings.Contains(r.json(t)["error"].(string), "pull first") {
					t.Fatalf("never-issued last_pulled_at %d: %d %s", forged, r.status, r.body)
				}
				if after := dump(); after != before {
					t.Fatalf("a refused push changed the store:\n%s\nthen:\n%s", before, after)
				}
				if r := push(pull(), "p2"); r.status != 200 {
					t.Fatalf("push with a pulled timestamp: %d %s", r.status, r.body)
				}
			} else if r.status != 200 {
				t.Fatalf("merge policy, last_pulled_at %d: %d %s", forged, r.status, r.body)
			}
			if _, err := c.store.Get("patients", "p2"); err != nil {
				t.Fatalf("p2: %v", err)
			}
			// Once the record has dropped the timestamps around it, an
			// old last_pulled_at is taken: it can only cause conflicts.
			c.clock.Add(kv.DefaultIssuedAge + time.Hour)
			pull()
			if r := push(forged, "p3"); r.status != 200 {
				t.Fatalf("last_pulled_at %d older than the record: %d %s", forged, r.status, r.body)
			}
		})
	}
}

// bigPush returns a JSON push body ({"changes":...,"lastPulledAt":lpa})
// of n patients created in clinic c1, with ids prefix-000000 on, each
// carrying a hometown of valueBytes bytes (within kv.MaxValueBytes).
// Bodies of the same n, valueBytes and prefix length have the same
// length.
func bigPush(tb testing.TB, prefix string, n, valueBytes int, lpa int64) []byte {
	tb.Helper()
	if valueBytes > kv.MaxValueBytes {
		tb.Fatalf("a value of %d bytes is over kv.MaxValueBytes", valueBytes)
	}
	text := strings.Repeat("x", valueBytes)
	var b bytes.Buffer
	b.WriteString(`{"changes":{"patients":{"created":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		row, err := json.Marshal(patientRaw(fmt.Sprintf("%s-%06d", prefix, i), "c1", map[string]any{"hometown": text}))
		if err != nil {
			tb.Fatal(err)
		}
		b.Write(row)
	}
	fmt.Fprintf(&b, `],"updated":[],"deleted":[]}},"lastPulledAt":%d}`, lpa)
	return b.Bytes()
}

// rowsFor returns how many rows of valueBytes make a body of about size
// bytes.
func rowsFor(tb testing.TB, size, valueBytes int) int {
	one := len(bigPush(tb, "p", 1, valueBytes, 0))
	return max(1, size/one)
}

// heapSampler records the peak of the heap while a request runs: the
// bytes in heap objects (live or not yet swept, what the process
// holds) and the live heap the GC found at its last mark.
type heapSampler struct {
	stop chan struct{}
	done chan [2]uint64
}

func sampleHeap() *heapSampler {
	s := &heapSampler{stop: make(chan struct{}), done: make(chan [2]uint64, 1)}
	samples := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/gc/heap/live:bytes"}}
	go func() {
		var peak [2]uint64
		tick := time.NewTicker(100 * time.Microsecond)
		defer tick.Stop()
		for {
			metrics.Read(samples)
			for i := range samples {
				peak[i] = max(peak[i], samples[i].Value.Uint64())
			}
			select {
			case <-s.stop:
				metrics.Read(samples)
				for i := range samples {
					peak[i] = max(peak[i], samples[i].Value.Uint64())
				}
				s.done <- peak
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

func (s *heapSampler) end() (objects, live uint64) {
	close(s.stop)
	p := <-s.done
	return p[0], p[1]
}

// heapNow is the heap after a full collection.
func heapNow() uint64 {
	runtime.GC()
	runtime.GC()
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// newCloudStore is a cloud's store, on bbolt in a temporary directory
// or in memory, with the nurse as its user.
func newCloudStore(tb testing.TB, bolt bool) *kv.Store {
	tb.Helper()
	opts := kv.Options{Clock: kv.NewManualClock(time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)), KeepTombstones: true, Root: true}
	var st *kv.Store
	var err error
	if bolt {
		st, err = kv.Open(tb.TempDir(), opts)
	} else {
		st, err = kv.OpenMemory(opts)
	}
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	hash, err := bcrypt.GenerateFromPassword([]byte(nursePassword), bcrypt.MinCost)
	if err != nil {
		tb.Fatal(err)
	}
	_, err = st.Put("users", "u1", map[string]codec.Value{
		"clinic_id": codec.String("c1"), "name": codec.String("Nurse"), "role": codec.String("provider"),
		"email": codec.String(nurseEmail), "is_deleted": codec.Bool(false),
		"hashed_password": codec.String(string(hash)),
	})
	if err != nil {
		tb.Fatal(err)
	}
	return st
}

// BenchmarkPushHeap measures the heap a 30 MB JSON push costs the
// server, over what it held before (the body itself, which the client
// holds, is outside the measure: the request reads it from a reader as
// from the network). peak-MB is the most the heap held in objects
// during the push, live-MB the largest live heap a GC found; run with
// GOGC=10 as well, where peak-MB comes close to the live peak. The
// stored rows count too: the memory store keeps them in the heap, and
// bbolt copies its dirty pages into the heap each time it grows its
// file mapping during the transaction (a fresh file here). Run it with
// -benchtime=1x:
//
//	go test ./actors/ -run '^$' -bench BenchmarkPushHeap -benchtime=1x
func BenchmarkPushHeap(b *testing.B) {
	for _, store := range []string{"bolt", "memory"} {
		for _, value := range []int{64 << 10, 1 << 10} {
			b.Run(fmt.Sprintf("store=%s/value=%dB", store, value), func(b *testing.B) {
				body := bigPush(b, "p", rowsFor(b, 30<<20, value), value, 0)
				var peak, live float64
				for range b.N {
					st := newCloudStore(b, store == "bolt")
					h := actors.NewCloudHandler(st, actors.CloudConfig{RateLimit: -1, Logger: slog.New(slog.DiscardHandler)})
					req := httptest.NewRequest("POST", actors.SyncPath, io.NopCloser(bytes.NewReader(body)))
					req.ContentLength = int64(len(body))
					req.Header.Set("Authorization", nurse)
					req.Header.Set("Content-Type", actors.ContentTypeJSON)
					rec := httptest.NewRecorder()
					base := heapNow()
					s := sampleHeap()
					h.ServeHTTP(rec, req)
					objects, l := s.end()
					if rec.Code != http.StatusOK {
						b.Fatalf("push: %d %s", rec.Code, rec.Body)
					}
					peak = max(peak, float64(objects-min(objects, base))/(1<<20))
					live = max(live, float64(l-min(l, base))/(1<<20))
				}
				b.ReportMetric(float64(len(body))/(1<<20), "body-MB")
				b.ReportMetric(peak, "peak-MB")
				b.ReportMetric(live, "live-MB")
			})
		}
	}
}
