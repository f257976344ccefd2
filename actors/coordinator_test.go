package actors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clinicsync/clinicsync/fsm"
	"github.com/clinicsync/clinicsync/kv"
	pb "github.com/clinicsync/clinicsync/proto"
)

// waitBound bounds every wait of these tests for something that is
// already under way; nothing here sleeps.
const waitBound = 2 * time.Minute // generous: a loaded 2-core machine under -race is slow

// logSink is a slog.Handler that hands every record's message and
// attributes to the test, as one line.
type logSink struct {
	lines chan string
}

func newLogSink() *logSink { return &logSink{lines: make(chan string, 4096)} }

func (s *logSink) Enabled(context.Context, slog.Level) bool { return true }
func (s *logSink) WithAttrs([]slog.Attr) slog.Handler       { return s }
func (s *logSink) WithGroup(string) slog.Handler            { return s }
func (s *logSink) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Level.String() + " " + r.Message)
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	select {
	case s.lines <- b.String():
	default: // a test that floods its log does not wait for it
	}
	return nil
}

// waitFor returns the first line containing want, failing after
// waitBound.
func (s *logSink) waitFor(t *testing.T, want string) string {
	t.Helper()
	timeout := time.After(waitBound)
	for {
		select {
		case l := <-s.lines:
			if strings.Contains(l, want) {
				return l
			}
		case <-timeout:
			t.Fatalf("no log line with %q", want)
		}
	}
}

// transitions records what a state subscriber sees.
type transitions struct {
	ch   chan fsm.Transition
	seen []fsm.Transition
}

func subscribe(t *testing.T, n *Node) *transitions {
	tr := &transitions{ch: make(chan fsm.Transition, 1024)}
	t.Cleanup(n.Subscribe(func(x fsm.Transition) { tr.ch <- x }))
	return tr
}

// waitFor reads transitions until one matches, and returns those read
// since the last call.
func (tr *transitions) waitFor(t *testing.T, ev fsm.Event) []fsm.Transition {
	t.Helper()
	timeout := time.After(waitBound)
	start := len(tr.seen)
	for {
		select {
		case x := <-tr.ch:
			tr.seen = append(tr.seen, x)
			if x.Event == ev {
				return tr.seen[start:]
			}
		case <-timeout:
			t.Fatalf("no %s transition; saw %v", ev, tr.seen[start:])
		}
	}
}

func events(ts []fsm.Transition) string {
	var out []string
	for _, x := range ts {
		out = append(out, string(x.Event))
	}
	return strings.Join(out, " ")
}

// hold makes the first call of op on net block until release; entered
// reports that it is held.
func hold(t *testing.T, net *MemNet, op string) (entered <-chan Call, release func()) {
	in := make(chan Call, 1)
	out := make(chan struct{})
	var held atomic.Bool
	net.SetHook(func(c Call) Fault {
		if c.Op == op && held.CompareAndSwap(false, true) {
			in <- c
			<-out
		}
		return Deliver
	})
	var once sync.Once
	release = func() { once.Do(func() { close(out) }) }
	t.Cleanup(release)
	return in, release
}

// pair is a mobile node syncing through its actors with one serving
// node (a cloud or a hub) over a MemNet.
type pair struct {
	net    *MemNet
	up     *Node
	mobile *Node
	peer   string // the serving node's peer id and address
	logs   *logSink
	seen   *transitions
}

func newPair(t *testing.T, upKind Kind) *pair {
	t.Helper()
	return newPairWith(t, upKind, nil)
}

// newPairWith lets configure change the mobile node's engine settings.
func newPairWith(t *testing.T, upKind Kind, configure func(*NodeConfig)) *pair {
	t.Helper()
	p := &pair{net: NewMemNet(), peer: string(upKind) + "-1", logs: newLogSink()}
	dir, _ := initNode(t, upKind)
	p.up = openNode(t, dir)
	p.net.Listen(p.peer, p.up.Server(fsm.MergePolicy))
	dir, _ = initNode(t, KindMobile)
	p.mobile = openNode(t, dir)
	if err := p.mobile.Store().PutPeer(kv.Peer{ID: p.peer, Type: upKind.PeerType()}); err != nil {
		t.Fatal(err)
	}
	p.seen = subscribe(t, p.mobile)
	cfg := NodeConfig{Transports: p.net.Transports(p.mobile.Info().Caller()), Logger: slog.New(p.logs), Retries: -1}
	if configure != nil {
		configure(&cfg)
	}
	if err := p.mobile.Start(cfg); err != nil {
		t.Fatalf("Start: %v", err)
	}
	return p
}

// write puts a patient on n.
func write(t *testing.T, n *Node, id string) {
	t.Helper()
	if _, err := n.Put("patients", id, patientText()); err != nil {
		t.Fatal(err)
	}
}

func (p *pair) sync(t *testing.T) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitBound)
	defer cancel()
	res, err := p.mobile.Sync(ctx, SyncRequest{Trigger: Manual})
	if err != nil {
		t.Fatalf("Sync: %v", err)
	}
	return res
}

// syncAsync starts a sync and returns where its result will arrive.
func (p *pair) syncAsync(t *testing.T) <-chan Result {
	ch := make(chan Result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitBound)
		defer cancel()
		res, err := p.mobile.Sync(ctx, SyncRequest{Trigger: Manual})
		if err != nil {
			res = Result{Outcome: "call failed", Err: err}
		}
		ch <- res
	}()
	return ch
}

func receive(t *testing.T, ch <-chan Result) Result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(waitBound):
		t.Fatal("no sync result")
	}
	return Result{}
}

func (p *pair) peerRecord(t *testing.T) kv.Peer {
	t.Helper()
	peer, err := p.mobile.Store().Peer(p.peer)
	if err != nil {
		t.Fatal(err)
	}
	return peer
}

func TestCoordinatorSync(t *testing.T) {
	p := newPair(t, KindCloud)
	write(t, p.up, "c1")
	write(t, p.mobile, "m1")

	res := p.sync(t)
	if res.Outcome != OutcomeOK || res.Peer != p.peer || res.Pulled != 1 || res.Pushed != 1 || res.Message != "" || res.Err != nil {
		t.Fatalf("sync = %+v, want ok pulled=1 pushed=1 from %s", res, p.peer)
	}
	if got := events(p.seen.waitFor(t, fsm.FinishSync)); got != "start_sync start_resolve start_push finish_sync" {
		t.Errorf("transitions: %s", got)
	}
	if _, err := p.up.Store().Get("patients", "m1"); err != nil {
		t.Errorf("cloud lacks the pushed row: %v", err)
	}
	if r, err := p.mobile.Store().Get("patients", "c1"); err != nil || r.Status != kv.Synced {
		t.Errorf("mobile's pulled row: %+v, %v", r, err)
	}
	st, err := p.mobile.Status()
	if err != nil || st.State != "idle" || st.Pending != 0 {
		t.Errorf("status = %+v, %v; want idle with nothing pending", st, err)
	}
	peer := p.peerRecord(t)
	if peer.LastSyncedAt != testClock.t.UnixMilli() || peer.PullCursor <= 0 {
		t.Errorf("peer after sync: last_synced_at=%d pull_cursor=%d", peer.LastSyncedAt, peer.PullCursor)
	}
	p.logs.waitFor(t, "sync finished")

	// A second sync has nothing to push. (It pulls m1 back: rows a push
	// created are served back to the pusher, as updated.)
	if res := p.sync(t); res.Outcome != OutcomeOK || res.Pushed != 0 {
		t.Errorf("second sync = %+v", res)
	}
}

func TestCoordinatorSkipsConcurrentSync(t *testing.T) {
	p := newPair(t, KindCloud)
	write(t, p.up, "c1")
	entered, release := hold(t, p.net, "pull")

	first := p.syncAsync(t)
	<-entered
	second := p.sync(t)
	if second.Outcome != OutcomeSkipped || second.Message != "Sync already in progress, skipping" ||
		!errors.Is(second.Err, ErrSyncInProgress) {
		t.Errorf("second sync = %+v, want skipped", second)
	}
	if s := p.mobile.State(); s != fsm.Fetching {
		t.Errorf("state while the pull is held = %s, want fetching", s)
	}
	release()
	if res := receive(t, first); res.Outcome != OutcomeOK || res.Pulled != 1 {
		t.Errorf("first sync = %+v, want ok pulled=1", res)
	}
	p.logs.waitFor(t, "sync skipped")
}

func TestCoordinatorForceReset(t *testing.T) {
	p := newPair(t, KindCloud)
	write(t, p.up, "c1")
	write(t, p.mobile, "m1")
	entered, release := hold(t, p.net, "pull")

	first := p.syncAsync(t)
	<-entered
	if err := p.mobile.ForceReset(); err != nil {
		t.Fatal(err)
	}
	if s := p.mobile.State(); s != fsm.Idle {
		t.Errorf("state after a force reset = %s, want idle", s)
	}
	res := receive(t, first)
	if res.Outcome != OutcomeError || !errors.Is(res.Err, ErrSyncAborted) {
		t.Errorf("abandoned sync = %+v, want an error wrapping ErrSyncAborted", res)
	}

	// The held pull now gets its answer, which nobody wants any more.
	release()
	p.logs.waitFor(t, "dropped a stale peer reply")
	if s := p.mobile.State(); s != fsm.Idle {
		t.Errorf("state after the late reply = %s, want idle", s)
	}
	if peer := p.peerRecord(t); peer.PullCursor != 0 || peer.LastSyncedAt != 0 {
		t.Errorf("the late reply moved the peer: %+v", peer)
	}

	res = p.sync(t)
	if res.Outcome != OutcomeOK || res.Pulled != 1 || res.Pushed != 1 {
		t.Errorf("sync after the reset = %+v, want ok pulled=1 pushed=1", res)
	}
	if got := events(p.seen.waitFor(t, fsm.FinishSync)); got != "start_sync force_reset start_sync start_resolve start_push finish_sync" {
		t.Errorf("transitions: %s", got)
	}
}

func TestCoordinatorUnreachable(t *testing.T) {
	for _, c := range []struct {
		kind Kind
		msg  string
	}{
		{KindHub, "Please make sure you are on the same network and Wi-Fi is enabled."},
		{KindCloud, "Please make sure you have internet or contact your administrator."},
	} {
		t.Run(string(c.kind), func(t *testing.T) {
			p := newPair(t, c.kind)
			write(t, p.up, "u1")
			write(t, p.mobile, "m1")
			p.net.Partition(p.peer, true)

			res := p.sync(t)
			if res.Outcome != OutcomeError || res.Message != c.msg || !errors.Is(res.Err, ErrUnreachable) {
				t.Errorf("sync = %+v, want error %q", res, c.msg)
			}
			seen := p.seen.waitFor(t, fsm.FinishSync)
			if got := events(seen); got != "start_sync error_sync finish_sync" {
				t.Errorf("transitions: %s", got)
			}
			if e := seen[1]; e.To != fsm.Failed || e.Err != c.msg {
				t.Errorf("error_sync transition = %v", e)
			}
			if line := p.logs.waitFor(t, "sync failed"); !strings.Contains(line, "peer unreachable") {
				t.Errorf("log line lacks the cause: %s", line)
			}
			if s := p.mobile.State(); s != fsm.Idle {
				t.Errorf("state after a failed sync = %s, want idle", s)
			}
			if peer := p.peerRecord(t); peer.LastSyncedAt != 0 || peer.PullCursor != 0 {
				t.Errorf("a failed sync moved the peer: last_synced_at=%d pull_cursor=%d", peer.LastSyncedAt, peer.PullCursor)
			}

			p.net.Heal()
			if res := p.sync(t); res.Outcome != OutcomeOK || res.Pulled != 1 || res.Pushed != 1 {
				t.Errorf("sync after healing = %+v", res)
			}
			if peer := p.peerRecord(t); peer.LastSyncedAt != testClock.t.UnixMilli() || peer.PullCursor <= 0 {
				t.Errorf("peer after a sync: last_synced_at=%d pull_cursor=%d", peer.LastSyncedAt, peer.PullCursor)
			}
		})
	}
}

// A push that fails leaves the sync unfinished: last_synced_at stays,
// and the local rows stay pending. The pulled page was applied with its
// cursor in one transaction (DESIGN: pull / apply), so that cursor does
// move: the next sync pulls only what is new, then pushes again.
func TestCoordinatorFailedPush(t *testing.T) {
	p := newPair(t, KindCloud)
	write(t, p.up, "c1")
	write(t, p.mobile, "m1")
	p.net.SetHook(func(c Call) Fault {
		if c.Op == "push" {
			return DropRequest
		}
		return Deliver
	})
	res := p.sync(t)
	if res.Outcome != OutcomeError || !errors.Is(res.Err, ErrUnreachable) || res.Pulled != 1 {
		t.Fatalf("sync = %+v, want an error after pulling 1", res)
	}
	peer := p.peerRecord(t)
	if peer.LastSyncedAt != 0 {
		t.Errorf("failed sync set last_synced_at %d", peer.LastSyncedAt)
	}
	if n, _ := p.mobile.Store().PendingCount(); n != 1 {
		t.Errorf("pending after a failed push = %d, want 1", n)
	}
	p.net.SetHook(nil)
	if res := p.sync(t); res.Outcome != OutcomeOK || res.Pulled != 0 || res.Pushed != 1 {
		t.Errorf("retry = %+v, want ok pulled=0 pushed=1", res)
	}
	if got := p.peerRecord(t); got.LastSyncedAt != testClock.t.UnixMilli() || got.PullCursor < peer.PullCursor {
		t.Errorf("peer after the retry: %+v (pull cursor was %d)", got, peer.PullCursor)
	}
}

// A peer that does not answer within the request timeout is
// unreachable, even over a transport that ignores its context.
func TestCoordinatorRequestTimeout(t *testing.T) {
	p := newPairWith(t, KindHub, func(c *NodeConfig) { c.RequestTimeout = 50 * time.Millisecond })
	_, release := hold(t, p.net, "pull")
	res := p.sync(t)
	release()
	if res.Outcome != OutcomeError || !errors.Is(res.Err, ErrUnreachable) ||
		res.Message != "Please make sure you are on the same network and Wi-Fi is enabled." {
		t.Errorf("sync past the timeout = %+v", res)
	}
	if !errors.Is(res.Err, context.DeadlineExceeded) && !strings.Contains(res.Err.Error(), "deadline exceeded") {
		t.Errorf("cause %v does not say the deadline passed", res.Err)
	}
}

// A transport that cannot be built fails the sync with its cause; the
// next sync asks the factory again.
func TestCoordinatorTransportFactoryError(t *testing.T) {
	var calls atomic.Int32
	var p *pair
	p = newPairWith(t, KindCloud, func(c *NodeConfig) {
		c.Transports = func(peer kv.Peer) (Transport, error) {
			if calls.Add(1) == 1 {
				return nil, errors.New("no route to the moon")
			}
			return p.net.Dial(peer.ID, p.mobile.Info().Caller()), nil
		}
	})
	res := p.sync(t)
	if res.Outcome != OutcomeError || !strings.Contains(res.Message, "no route to the moon") {
		t.Errorf("sync with a failing factory = %+v", res)
	}
	if res := p.sync(t); res.Outcome != OutcomeOK {
		t.Errorf("second sync = %+v", res)
	}
}

func TestCoordinatorPeerSelection(t *testing.T) {
	p := newPair(t, KindHub)
	dir, _ := initNode(t, KindCloud)
	cloud := openNode(t, dir)
	p.net.Listen("cloud-1", cloud.Server(fsm.MergePolicy))
	write(t, cloud, "c1")
	if err := p.mobile.Store().PutPeer(kv.Peer{ID: "cloud-1", Type: kv.PeerCloud}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	syncWith := func(peer string) Result {
		t.Helper()
		res, err := p.mobile.Sync(ctx, SyncRequest{PeerID: peer, Trigger: Manual})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	// Default: the hub, first active hub.
	if res := syncWith(""); res.Outcome != OutcomeOK || res.Peer != p.peer || res.Pulled != 0 {
		t.Errorf("default sync = %+v, want the hub", res)
	}
	// The selected peer in config.
	if err := p.mobile.Store().SetConfig(ConfigActivePeer, "cloud-1"); err != nil {
		t.Fatal(err)
	}
	if res := syncWith(""); res.Outcome != OutcomeOK || res.Peer != "cloud-1" || res.Pulled != 1 {
		t.Errorf("sync with active_peer=cloud-1: %+v", res)
	}
	// The request's choice wins over config.
	if res := syncWith(p.peer); res.Outcome != OutcomeOK || res.Peer != p.peer {
		t.Errorf("sync with peer %s: %+v", p.peer, res)
	}
}

func TestCoordinatorRefusals(t *testing.T) {
	dir, _ := initNode(t, KindMobile)
	n := openNode(t, dir)
	ctx := context.Background()
	if _, err := n.Sync(ctx, SyncRequest{}); !errors.Is(err, ErrNotStarted) {
		t.Errorf("Sync before Start: %v", err)
	}
	if err := n.Start(NodeConfig{}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("Start without transports: %v", err)
	}
	logs := newLogSink()
	seen := subscribe(t, n)
	if err := n.Start(NodeConfig{Transports: NewMemNet().Transports(n.Info().Caller()), Logger: slog.New(logs)}); err != nil {
		t.Fatal(err)
	}
	if err := n.Start(NodeConfig{Transports: NewMemNet().Transports(n.Info().Caller())}); !errors.Is(err, ErrAlreadyStarted) {
		t.Errorf("second Start: %v", err)
	}

	res, err := n.Sync(ctx, SyncRequest{})
	if err != nil || res.Outcome != OutcomeError || !errors.Is(res.Err, ErrNoPeer) ||
		res.Message != "No sync peer configured. Please pair with a hub or register a cloud server." {
		t.Errorf("sync without peers = %+v, %v", res, err)
	}
	if got := seen.waitFor(t, fsm.FinishSync); events(got) != "error_sync finish_sync" || got[0].Err != res.Message {
		t.Errorf("transitions: %v", got)
	}
	logs.waitFor(t, "No sync peer configured")

	res, err = n.Sync(ctx, SyncRequest{Trigger: ForceDownload + 1})
	if err != nil || res.Outcome != OutcomeError || !errors.Is(res.Err, ErrInvalidRequest) {
		t.Errorf("sync with a bad trigger = %+v, %v", res, err)
	}

	// A context that ends first ends the wait.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := n.Sync(cctx, SyncRequest{}); !errors.Is(err, context.Canceled) {
		t.Errorf("Sync with a cancelled context: %v", err)
	}

	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Sync(ctx, SyncRequest{}); !errors.Is(err, ErrClosed) {
		t.Errorf("Sync after Close: %v", err)
	}
	if err := n.ForceReset(); !errors.Is(err, ErrClosed) {
		t.Errorf("ForceReset after Close: %v", err)
	}
	if s := n.State(); s != fsm.Idle {
		t.Errorf("State after Close = %s", s)
	}
}

// Close while a sync waits on its peer: the sync ends with an error and
// Close returns.
func TestCoordinatorCloseDuringSync(t *testing.T) {
	p := newPair(t, KindCloud)
	entered, release := hold(t, p.net, "pull")
	defer release()
	first := p.syncAsync(t)
	<-entered
	if err := p.mobile.Close(); err != nil {
		t.Fatal(err)
	}
	if res := receive(t, first); res.Outcome != OutcomeError || !errors.Is(res.Err, ErrSyncAborted) {
		t.Errorf("sync cut by Close = %+v", res)
	}
}

func TestResolvePeer(t *testing.T) {
	hub := kv.Peer{ID: "hub-1", Type: kv.PeerHub, Status: kv.StatusActive}
	hub2 := kv.Peer{ID: "hub-2", Type: kv.PeerHub, Status: kv.StatusActive}
	cloud := kv.Peer{ID: "cloud-1", Type: kv.PeerCloud, Status: kv.StatusActive}
	untrusted := kv.Peer{ID: "hub-u", Type: kv.PeerHub, Status: kv.StatusUntrusted}
	revoked := kv.Peer{ID: "hub-r", Type: kv.PeerHub, Status: kv.StatusRevoked}
	revokedCloud := kv.Peer{ID: "cloud-r", Type: kv.PeerCloud, Status: kv.StatusRevoked}
	phone := kv.Peer{ID: "phone-1", Type: kv.PeerMobile, Status: kv.StatusActive}
	for _, c := range []struct {
		name     string
		peers    []kv.Peer
		selected string
		want     string // peer id, or the error text
	}{
		{"selected active", []kv.Peer{hub, cloud}, "cloud-1", "cloud-1"},
		{"selected untrusted", []kv.Peer{hub, untrusted}, "hub-u", "hub-u"},
		{"selected revoked falls back", []kv.Peer{revoked, cloud, hub}, "hub-r", "hub-1"},
		{"selected unknown falls back", []kv.Peer{cloud}, "nope", "cloud-1"},
		{"first active hub before cloud", []kv.Peer{cloud, revoked, hub, hub2}, "", "hub-1"},
		{"untrusted hub not chosen unselected", []kv.Peer{untrusted, cloud}, "", "cloud-1"},
		{"only cloud", []kv.Peer{cloud}, "", "cloud-1"},
		{"none", nil, "", ErrNoPeer.Error()},
		{"only revoked", []kv.Peer{revoked, revokedCloud}, "hub-r", ErrNoPeer.Error()},
		{"selected mobile_app", []kv.Peer{phone, hub}, "phone-1", "actors: cannot sync with a mobile_app peer directly (phone-1)"},
	} {
		got, err := ResolvePeer(c.peers, c.selected)
		switch {
		case err != nil && err.Error() != c.want:
			t.Errorf("%s: error %q, want %q", c.name, err, c.want)
		case err == nil && got.ID != c.want:
			t.Errorf("%s: %s, want %s", c.name, got.ID, c.want)
		}
	}
	if _, err := ResolvePeer(nil, ""); !errors.Is(err, ErrNoPeer) {
		t.Errorf("no peers: %v, want ErrNoPeer", err)
	}
}

func TestUserMessage(t *testing.T) {
	unreachable := fmt.Errorf("%w: pull hub-1: no answer", ErrUnreachable)
	for _, c := range []struct {
		typ  string
		err  error
		want string
	}{
		{kv.PeerHub, unreachable, "Please make sure you are on the same network and Wi-Fi is enabled."},
		{kv.PeerCloud, unreachable, "Please make sure you have internet or contact your administrator."},
		{kv.PeerCloud, ErrBadRequest, "Sync failed: actors: bad request"},
		{kv.PeerHub, nil, ""},
	} {
		if got := UserMessage(c.typ, c.err); got != c.want {
			t.Errorf("UserMessage(%s, %v) = %q, want %q", c.typ, c.err, got, c.want)
		}
	}
}

// TestCoordinatorPipelinedPull: the request for a pull's next page
// leaves before the current page applies (the page's first row waits in
// the merge until the peer has the next request); a page that fails to
// apply fails the sync, the answer still in flight is dropped, and the
// next sync resumes after the last page applied.
func TestCoordinatorPipelinedPull(t *testing.T) {
	var (
		pulls    atomic.Int32
		fresh    atomic.Int32 // pulls from the start (no continuation)
		second   = make(chan struct{})
		failPage atomic.Bool // the second page's rows fail once
		applied  atomic.Int32
	)
	p := newPairWith(t, KindCloud, func(cfg *NodeConfig) {
		cfg.PageSize = 10
		cfg.Merge = func(cur *kv.Record, in kv.Change) (kv.Outcome, error) {
			switch n := applied.Add(1); {
			case n == 1:
				select { // the first page's first row
				case <-second:
				case <-time.After(waitBound):
					return kv.Outcome{}, errors.New("the next page was not asked for while this one applied")
				}
			case n > 10 && n <= 20 && failPage.CompareAndSwap(true, false):
				return kv.Outcome{}, errors.New("planted: the second page fails to apply")
			}
			return fsm.ApplyPulled(cur, in)
		}
	})
	for i := range 25 {
		write(t, p.up, fmt.Sprintf("p%02d", i))
	}
	p.net.SetHook(func(c Call) Fault {
		if c.Op != "pull" {
			return Deliver
		}
		if c.Request.(*pb.PullRequest).GetContinuation() == "" {
			fresh.Add(1)
		}
		if pulls.Add(1) == 2 {
			close(second)
		}
		return Deliver
	})
	failPage.Store(true)
	if res := p.sync(t); res.Outcome != OutcomeError || !strings.Contains(res.Err.Error(), "second page fails") {
		t.Fatalf("first sync: %+v, want the planted apply failure", res)
	}
	if n, _, _ := p.mobile.Store().Count("patients"); n != 10 {
		t.Errorf("after the failed page: %d rows, want the first page's 10", n)
	}
	res := p.sync(t)
	if res.Outcome != OutcomeOK || res.Pulled != 25 || fresh.Load() != 1 {
		t.Fatalf("second sync: %+v after %d pulls from the start, want ok, resumed (25 rows in all)", res, fresh.Load())
	}
	if n, _, _ := p.mobile.Store().Count("patients"); n != 25 {
		t.Errorf("after the resumed pull: %d rows, want 25", n)
	}
}
