package actors

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/clinicsync/clinicsync/codec"
	"github.com/clinicsync/clinicsync/kv"
	pb "github.com/clinicsync/clinicsync/proto"
)

const (
	rpcEmail    = "nurse@rpc.test"
	rpcPassword = "correct horse battery"
)

// rpcNode makes and opens a node of kind in a new directory.
func rpcNode(t *testing.T, kind Kind) *Node {
	t.Helper()
	dir := filepath.Join(t.TempDir(), string(kind))
	if _, err := Init(dir, InitConfig{Kind: kind, Clinics: []string{"c1"}}); err != nil {
		t.Fatal(err)
	}
	n, err := Open(dir, SystemClock{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// serveRPCHub serves a new hub with a user, native RPC on a free
// loopback port, and returns it with where it serves.
func serveRPCHub(t *testing.T, log *slog.Logger) (*Node, Addrs) {
	t.Helper()
	hub := rpcNode(t, KindHub)
	if _, err := hub.AddUser(UserConfig{Email: rpcEmail, Password: rpcPassword}); err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	ready := make(chan Addrs, 1)
	served := make(chan error, 1)
	go func() {
		served <- hub.Serve(ctx, ServeOptions{RPC: "127.0.0.1:0", UpstreamInterval: -1, Logger: log,
			Cloud: CloudConfig{RateLimit: -1}, Ready: func(a Addrs) error { ready <- a; return nil }})
	}()
	var a Addrs
	select {
	case a = <-ready:
	case err := <-served:
		t.Fatalf("Serve: %v", err)
	}
	t.Cleanup(func() {
		stop()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return hub, a
}

func putPatient(t *testing.T, n *Node, id, name string) {
	t.Helper()
	_, err := n.Put("patients", id, map[string]string{
		"given_name": name, "surname": "Haddad", "date_of_birth": "1990-02-28",
		"citizenship": "JO", "hometown": "Irbid", "phone": "0790000000", "sex": "female",
		"additional_data": "{}", "metadata": "{}", "is_deleted": "false",
		"government_id": "G-1", "external_patient_id": "E-1", "primary_clinic_id": "c1",
	})
	if err != nil {
		t.Fatal(err)
	}
}

func hasRow(t *testing.T, n *Node, id string) bool {
	t.Helper()
	rows, err := n.Rows("patients", id)
	if err != nil && !errors.Is(err, kv.ErrNotFound) {
		t.Fatal(err)
	}
	return len(rows) == 1
}

// rpcTransportTo is a phone's transport to the hub, as its factory
// builds it for a peer added from the pairing string.
func rpcTransportTo(t *testing.T, phone *Node, a Addrs) *RPCTransport {
	t.Helper()
	cfg, err := PairingPeer(*a.Pairing)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := phone.HTTPTransports(nil)(kv.Peer{ID: "hub", Type: kv.PeerHub, URL: cfg.URL, PublicKey: cfg.PublicKey, NodeID: cfg.NodeID})
	if err != nil {
		t.Fatal(err)
	}
	return tr.(*RPCTransport)
}

// TestRPCSync: a Go mobile paired with a hub's pairing string syncs over
// native RPC: it pulls the hub's rows and pushes its own; a pull cut
// between pages resumes from its continuation in a new session.
func TestRPCSync(t *testing.T) {
	hub, a := serveRPCHub(t, slog.New(slog.DiscardHandler))
	if a.RPC == "" || a.Pairing == nil || a.Pairing.RPC != a.RPC {
		t.Fatalf("Addrs %+v, pairing %+v: want the RPC address in both", a, a.Pairing)
	}
	parsed, err := ParsePairing(a.Pairing.String())
	if err != nil || parsed != *a.Pairing {
		t.Fatalf("ParsePairing(%s) = %+v %v", a.Pairing, parsed, err)
	}
	for i := range 3 {
		putPatient(t, hub, fmt.Sprintf("h%d", i), "Hubrow")
	}
	phone := rpcNode(t, KindMobile)
	if err := phone.SetCredentials(rpcEmail, rpcPassword); err != nil {
		t.Fatal(err)
	}
	cfg, err := PairingPeer(parsed)
	if err != nil {
		t.Fatal(err)
	}
	peer, err := phone.AddPeer(cfg)
	if err != nil || peer.URL != RPCScheme+a.RPC || len(peer.PublicKey) != 32 {
		t.Fatalf("AddPeer: %+v %v", peer, err)
	}
	if err := phone.Start(NodeConfig{Transports: phone.HTTPTransports(nil), Logger: slog.New(slog.DiscardHandler)}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	putPatient(t, phone, "m1", "Phonerow")
	res, err := phone.Sync(ctx, SyncRequest{PeerID: peer.ID, PageSize: 2})
	if err != nil || res.Outcome == OutcomeError {
		t.Fatalf("sync over native RPC: %+v %v", res, err)
	}
	if res.Pulled < 3 || res.Pushed != 1 {
		t.Errorf("sync: pulled %d pushed %d, want >= 3 and 1", res.Pulled, res.Pushed)
	}
	for _, id := range []string{"h0", "h1", "h2"} {
		if !hasRow(t, phone, id) {
			t.Errorf("phone lacks %s", id)
		}
	}
	if !hasRow(t, hub, "m1") {
		t.Errorf("hub lacks the phone's m1")
	}

	// A cut pull: one page, then the rest from another session.
	tr := rpcTransportTo(t, phone, a)
	first, err := tr.Pull(ctx, &pb.PullRequest{PageSize: 1})
	if err != nil || first.GetContinuation() == "" || first.GetTotal() < 4 {
		t.Fatalf("first page: %v %v", first, err)
	}
	tr2 := rpcTransportTo(t, phone, a)
	rest, err := tr2.Pull(ctx, &pb.PullRequest{PageSize: 100, Continuation: first.GetContinuation()})
	if err != nil || rest.GetContinuation() != "" || rest.GetSent() != rest.GetTotal() || rest.GetTimestamp() != first.GetTimestamp() {
		t.Fatalf("resumed pull: %v %v", rest, err)
	}
	cs, _, err := codec.DecodeChangeset(rest.GetChanges(), nil)
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	if tb := cs.Tables["patients"]; tb != nil {
		got = len(tb.Created) + len(tb.Updated)
	}
	if got != 4 {
		t.Errorf("the resumed pull brought %d patients, want 4", got)
	}
	if tr.SessionID() == tr2.SessionID() {
		t.Errorf("two transports share session %s", tr.SessionID())
	}

	// Wrong credentials are refused.
	if err := phone.SetCredentials(rpcEmail, "wrong password!"); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Pull(ctx, &pb.PullRequest{}); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("pull with a wrong password: %v, want ErrUnauthorized", err)
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestRPCEnvelopeRefused: a tampered, replayed or wrong-direction
// envelope is refused with ErrEnvelopeRefused and logged, and the
// session goes on.
func TestRPCEnvelopeRefused(t *testing.T) {
	var logs syncBuffer
	_, a := serveRPCHub(t, slog.New(slog.NewTextHandler(&logs, nil)))
	phone := rpcNode(t, KindMobile)
	if err := phone.SetCredentials(rpcEmail, rpcPassword); err != nil {
		t.Fatal(err)
	}
	tr := rpcTransportTo(t, phone, a)
	ctx := context.Background()
	if _, err := tr.Pull(ctx, &pb.PullRequest{}); err != nil {
		t.Fatal(err)
	}
	session := tr.SessionID()
	var last *pb.RpcEnvelope
	tr.send = func(e *pb.RpcEnvelope) *pb.RpcEnvelope { last = proto.Clone(e).(*pb.RpcEnvelope); return e }
	if _, err := tr.Pull(ctx, &pb.PullRequest{}); err != nil {
		t.Fatal(err)
	}
	recorded := last

	attacks := []struct {
		name, want string
		change     func(*pb.RpcEnvelope) *pb.RpcEnvelope
	}{
		{"tampered", "altered", func(e *pb.RpcEnvelope) *pb.RpcEnvelope {
			b := slices.Clone(e.Sealed)
			b[len(b)/2] ^= 1
			e.Sealed = b
			return e
		}},
		{"replayed", "replayed", func(e *pb.RpcEnvelope) *pb.RpcEnvelope {
			r := proto.Clone(recorded).(*pb.RpcEnvelope)
			r.RequestId = e.RequestId // the answer must match the waiting request
			return r
		}},
		{"wrong direction", "not a", func(e *pb.RpcEnvelope) *pb.RpcEnvelope {
			e.Direction = string(codec.DirCommand)
			return e
		}},
	}
	for _, at := range attacks {
		tr.send = at.change
		_, err := tr.Pull(ctx, &pb.PullRequest{})
		if !errors.Is(err, ErrEnvelopeRefused) || !strings.Contains(err.Error(), at.want) {
			t.Errorf("%s envelope: %v, want ErrEnvelopeRefused (%s)", at.name, err, at.want)
		}
		tr.send = nil
		if _, err := tr.Pull(ctx, &pb.PullRequest{}); err != nil || tr.SessionID() != session {
			t.Errorf("after a %s envelope: %v, session %s (was %s)", at.name, err, tr.SessionID(), session)
		}
	}
	if n := strings.Count(logs.String(), "native rpc: envelope refused"); n != len(attacks) {
		t.Errorf("logged %d refusals, want %d:\n%s", n, len(attacks), logs.String())
	}
}

// TestRPCSessionIdle: a session without requests for RPCIdle ends (and
// is logged); the client's next request handshakes again and succeeds.
func TestRPCSessionIdle(t *testing.T) {
	var logs syncBuffer
	hub := rpcNode(t, KindHub)
	if _, err := hub.AddUser(UserConfig{Email: rpcEmail, Password: rpcPassword}); err != nil {
		t.Fatal(err)
	}
	a, _ := serveFor(t, hub, ServeOptions{RPC: "127.0.0.1:0", RPCIdle: 200 * time.Millisecond, Discovery: DiscoveryOff,
		UpstreamInterval: -1, Logger: slog.New(slog.NewTextHandler(&logs, nil)), Cloud: CloudConfig{RateLimit: -1}})
	phone := rpcNode(t, KindMobile)
	if err := phone.SetCredentials(rpcEmail, rpcPassword); err != nil {
		t.Fatal(err)
	}
	tr := rpcTransportTo(t, phone, a)
	ctx := context.Background()
	if _, err := tr.Pull(ctx, &pb.PullRequest{}); err != nil {
		t.Fatal(err)
	}
	first := tr.SessionID()
	rpcSessions := func() int { // as Status reports them
		st, err := hub.Status()
		if err != nil || st.Serving == nil || st.Serving.RPC != a.RPC {
			t.Fatalf("status of the serving hub: %+v %v", st.Serving, err)
		}
		return st.Serving.RPCSessions
	}
	if n := rpcSessions(); n != 1 {
		t.Errorf("native RPC sessions after a pull: %d, want 1", n)
	}
	tick, deadline := time.NewTicker(10*time.Millisecond), time.After(time.Minute) // the bound is for a stuck actor
	defer tick.Stop()
	for !strings.Contains(logs.String(), `session idle, closed" session=`+first) || rpcSessions() != 0 {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("the idle session %s did not end (%d sessions); log:\n%s", first, rpcSessions(), logs.String())
		}
	}
	if _, err := tr.Pull(ctx, &pb.PullRequest{}); err != nil {
		t.Fatalf("pull after the session idled out: %v", err)
	}
	if n := rpcSessions(); n != 1 {
		t.Errorf("native RPC sessions after a new handshake: %d, want 1", n)
	}
	if tr.SessionID() == first || tr.SessionID() == "" {
		t.Errorf("session after idling out: %q, was %q: want a new one", tr.SessionID(), first)
	}
}

// TestRPCPinnedKey: a hub presenting another key than the one pinned at
// pairing is refused before anything is sent sealed; a revoked device
// is refused at the handshake.
func TestRPCPinnedKey(t *testing.T) {
	hub, a := serveRPCHub(t, slog.New(slog.DiscardHandler))
	phone := rpcNode(t, KindMobile)
	if err := phone.SetCredentials(rpcEmail, rpcPassword); err != nil {
		t.Fatal(err)
	}
	other, err := codec.GenerateKey(strings.NewReader(strings.Repeat("x", 32)))
	if err != nil {
		t.Fatal(err)
	}
	tr, err := phone.HTTPTransports(nil)(kv.Peer{ID: "hub", Type: kv.PeerHub, URL: RPCScheme + a.RPC, PublicKey: other.PublicKey().Bytes()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Pull(context.Background(), &pb.PullRequest{}); !errors.Is(err, ErrHubKeyMismatch) || errors.Is(err, ErrUnreachable) {
		t.Errorf("pull from a hub with another key: %v, want ErrHubKeyMismatch", err)
	}

	// Nobody answers: the request fails with ErrUnreachable (the engine
	// retries it with a new envelope).
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone := l.Addr().String()
	l.Close()
	down := &RPCTransport{Addr: gone, NodeID: "phone", Timeout: 300 * time.Millisecond}
	if _, err := down.Pull(context.Background(), &pb.PullRequest{}); !errors.Is(err, ErrUnreachable) {
		t.Errorf("pull from a closed port: %v, want ErrUnreachable", err)
	}
	// With a long timeout too it fails when the address is found closed,
	// not at the timeout (errNothingListens, not a future's timeout).
	patient := &RPCTransport{Addr: gone, NodeID: "phone", Timeout: time.Hour}
	if _, err := patient.Pull(context.Background(), &pb.PullRequest{}); !errors.Is(err, ErrUnreachable) || !errors.Is(err, errNothingListens) {
		t.Errorf("pull from a closed port, an hour's timeout: %v, want ErrUnreachable: nothing listens", err)
	}

	// The hub revokes the phone (recorded as its peer).
	if err := hub.store.PutPeer(kv.Peer{ID: phone.Info().NodeID, Type: "mobile_app", Status: kv.StatusRevoked}); err != nil {
		t.Fatal(err)
	}
	if _, err := rpcTransportTo(t, phone, a).Pull(context.Background(), &pb.PullRequest{}); !errors.Is(err, ErrPeerRevoked) {
		t.Errorf("pull by a revoked device: %v, want ErrPeerRevoked", err)
	}
}

// tapConn records every byte read and written.
type tapConn struct {
	net.Conn
	rec io.Writer
}

func (c tapConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.rec.Write(p[:n])
	return n, err
}

func (c tapConn) Write(p []byte) (int, error) {
	c.rec.Write(p)
	return c.Conn.Write(p)
}

// TestRPCNoCleartext: the bytes on the wire of a sync over native RPC,
// both ways, hold no patient name and no password. A process has one
// protoactor remote (rpcProcess), and a phone and a hub in one process
// talk through it without a wire; so the hub serves from another
// process (this test binary again, TestRPCHubProcess), which records
// the bytes of the connections it dials (its answers) while this one
// records the phone's (its requests). Not parallel: the wire tap sees
// every connection native RPC dials in the process.
func TestRPCNoCleartext(t *testing.T) {
	const pushed, pulled = "Zawadiuniquepushed", "Nyokabiuniquepulled"
	dir := filepath.Join(t.TempDir(), "hub")
	if _, err := Init(dir, InitConfig{Kind: KindHub, Clinics: []string{"c1"}}); err != nil {
		t.Fatal(err)
	}
	hub, err := Open(dir, SystemClock{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hub.AddUser(UserConfig{Email: rpcEmail, Password: rpcPassword}); err != nil {
		t.Fatal(err)
	}
	putPatient(t, hub, "h1", pulled)
	if err := hub.Close(); err != nil {
		t.Fatal(err)
	}

	hubWire := filepath.Join(t.TempDir(), "wire")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^TestRPCHubProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), "CLINICSYNC_RPC_HUB="+dir, "CLINICSYNC_RPC_WIRE="+hubWire)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var childErr syncBuffer
	cmd.Stderr = &childErr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var childOut syncBuffer
	pairings := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if p, ok := strings.CutPrefix(sc.Text(), "PAIRING "); ok {
				pairings <- p
			}
			childOut.Write(append(sc.Bytes(), '\n'))
		}
		close(pairings)
	}()
	exited := false
	wait := func() {
		if exited {
			return
		}
		exited = true
		stdin.Close()
		if err := cmd.Wait(); err != nil {
			t.Errorf("the hub's process: %v\nstdout:\n%s\nstderr:\n%s", err, childOut.String(), childErr.String())
		}
	}
	t.Cleanup(wait)
	var a Pairing
	select {
	case p, ok := <-pairings:
		if !ok {
			wait()
			t.Fatal("the hub's process printed no pairing string")
		}
		if a, err = ParsePairing(p); err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the hub's process did not start within a minute")
	}

	phone := rpcNode(t, KindMobile)
	if err := phone.SetCredentials(rpcEmail, rpcPassword); err != nil {
		t.Fatal(err)
	}
	var wire syncBuffer
	tap := func(c net.Conn) net.Conn { return tapConn{c, &wire} }
	rpcWireTap.Store(&tap)
	t.Cleanup(func() { rpcWireTap.Store(nil) })
	tr := rpcTransportTo(t, phone, Addrs{Pairing: &a})
	var answers syncBuffer
	tr.received = func(e *pb.RpcEnvelope) bool {
		b, err := proto.Marshal(e)
		if err != nil {
			t.Error(err)
		}
		answers.Write(b)
		return false
	}
	putPatient(t, phone, "m1", pushed)
	cfg, err := PairingPeer(a)
	if err != nil {
		t.Fatal(err)
	}
	peer, err := phone.AddPeer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := phone.Start(NodeConfig{Transports: phone.HTTPTransports(nil), Logger: slog.New(slog.DiscardHandler)}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if res, err := phone.Sync(ctx, SyncRequest{PeerID: peer.ID}); err != nil || res.Outcome == OutcomeError || res.Pushed != 1 {
		t.Fatalf("sync with the hub's process: %+v %v", res, err)
	}
	if !hasRow(t, phone, "h1") {
		t.Fatal("the hub's row did not travel")
	}
	resp, err := tr.Pull(ctx, &pb.PullRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := proto.Marshal(resp); !bytes.Contains(b, []byte(pulled)) {
		t.Fatalf("the opened pull lacks %s", pulled)
	}
	wait()
	hubBytes, err := os.ReadFile(hubWire)
	if err != nil {
		t.Fatal(err)
	}
	hub, err = Open(dir, SystemClock{})
	if err != nil {
		t.Fatal(err)
	}
	defer hub.Close()
	if !hasRow(t, hub, "m1") {
		t.Fatal("the phone's row did not travel")
	}
	w, answered, ans := wire.String(), string(hubBytes), answers.String()
	if len(w) < 200 || len(answered) < 200 || len(ans) < 200 {
		t.Fatalf("recorded %d bytes of requests and %d of answers on the wire, %d of answers: too few to mean anything", len(w), len(answered), len(ans))
	}
	if !strings.Contains(answered, tr.SessionID()) {
		t.Fatalf("the answers on the wire lack the session id %s: not the answers' connection", tr.SessionID())
	}
	for _, name := range []string{pushed, pulled, "Haddad", rpcPassword} {
		if strings.Contains(w, name) || strings.Contains(answered, name) || strings.Contains(ans, name) {
			t.Errorf("%q travels in clear", name)
		}
	}
}

// TestRPCHubProcess is TestRPCNoCleartext's hub, in a process of its
// own: with CLINICSYNC_RPC_HUB set it serves that hub over native RPC
// on a free loopback port, prints "PAIRING <pairing string>", records
// the bytes of the connections it dials in CLINICSYNC_RPC_WIRE, and
// stops when its stdin closes. Without it, it does nothing.
func TestRPCHubProcess(t *testing.T) {
	dir := os.Getenv("CLINICSYNC_RPC_HUB")
	if dir == "" {
		t.Skip("the hub process of TestRPCNoCleartext")
	}
	var wire syncBuffer
	tap := func(c net.Conn) net.Conn { return tapConn{c, &wire} }
	rpcWireTap.Store(&tap)
	hub, err := Open(dir, SystemClock{})
	if err != nil {
		t.Fatal(err)
	}
	defer hub.Close()
	ctx, stop := context.WithCancel(context.Background())
	go func() {
		io.Copy(io.Discard, os.Stdin)
		stop()
	}()
	err = hub.Serve(ctx, ServeOptions{RPC: "127.0.0.1:0", UpstreamInterval: -1, Logger: slog.New(slog.DiscardHandler),
		Cloud: CloudConfig{RateLimit: -1}, Ready: func(a Addrs) error { fmt.Printf("PAIRING %s\n", a.Pairing); return nil }})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(os.Getenv("CLINICSYNC_RPC_WIRE"), []byte(wire.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestRPCLostReply: the answer to a push is lost; the push fails with
// ErrUnreachable, the engine retries it in a new envelope, and the hub
// holds the row once, with no conflict.
func TestRPCLostReply(t *testing.T) {
	hub, a := serveRPCHub(t, slog.New(slog.DiscardHandler))
	phone := rpcNode(t, KindMobile)
	if err := phone.SetCredentials(rpcEmail, rpcPassword); err != nil {
		t.Fatal(err)
	}
	cfg, err := PairingPeer(*a.Pairing)
	if err != nil {
		t.Fatal(err)
	}
	peer, err := phone.AddPeer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex // guards lost
	lost := 0
	factory := func(p kv.Peer) (Transport, error) {
		tr, err := phone.transportTo(nil)(p) // without discovery: the RPCTransport itself
		if err != nil {
			return nil, err
		}
		tr.(*RPCTransport).received = func(e *pb.RpcEnvelope) bool {
			mu.Lock()
			defer mu.Unlock()
			if e.GetDirection() == string(codec.DirCommandResponse) && lost == 0 {
				lost++
				return true
			}
			return false
		}
		return tr, nil
	}
	if err := phone.Start(NodeConfig{Transports: factory, RetryBackoff: time.Millisecond, Logger: slog.New(slog.DiscardHandler)}); err != nil {
		t.Fatal(err)
	}
	putPatient(t, phone, "m1", "Lostreply")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := phone.Sync(ctx, SyncRequest{PeerID: peer.ID})
	if err != nil || res.Outcome == OutcomeError || res.Pushed != 1 {
		t.Fatalf("sync with a lost push answer: %+v %v", res, err)
	}
	mu.Lock()
	if lost != 1 {
		t.Errorf("lost %d answers, want 1", lost)
	}
	mu.Unlock()
	rows, err := hub.Rows("patients", "m1")
	if err != nil || len(rows) != 1 {
		t.Fatalf("hub's m1: %v %v", rows, err)
	}
	if cs, err := hub.Conflicts("patients", "m1"); err != nil || len(cs) != 0 {
		t.Errorf("hub's conflicts on m1 after the retried push: %v %v", cs, err)
	}
}

// TestRPCSharedRemote: hubs in one process share its one remote
// (rpcProcess) and address; a client reaches each by its node id, with
// its key pinned; a client that names no hub is refused while several
// serve; a hub asking for another fixed address is refused.
func TestRPCSharedRemote(t *testing.T) {
	_, a1 := serveRPCHub(t, slog.New(slog.DiscardHandler))
	_, a2 := serveRPCHub(t, slog.New(slog.DiscardHandler))
	if a1.RPC != a2.RPC || a1.Pairing.ID == a2.Pairing.ID {
		t.Fatalf("two hubs in one process: %s (%s) and %s (%s), want one address", a1.RPC, a1.Pairing.ID, a2.RPC, a2.Pairing.ID)
	}
	phone := rpcNode(t, KindMobile)
	if err := phone.SetCredentials(rpcEmail, rpcPassword); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, a := range []Addrs{a1, a2} {
		if _, err := rpcTransportTo(t, phone, a).Pull(ctx, &pb.PullRequest{}); err != nil {
			t.Errorf("pull from hub %s: %v", a.Pairing.ID, err)
		}
	}
	anonymous := &RPCTransport{Addr: a1.RPC, NodeID: phone.Info().NodeID, Timeout: 5 * time.Second}
	if _, err := anonymous.Pull(ctx, &pb.PullRequest{}); !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "several hubs") {
		t.Errorf("pull naming no hub while two serve: %v, want ErrUnreachable (several hubs)", err)
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	elsewhere := l.Addr().String()
	l.Close()
	third := rpcNode(t, KindHub)
	err = third.Serve(ctx, ServeOptions{RPC: elsewhere, UpstreamInterval: -1, Logger: slog.New(slog.DiscardHandler),
		Cloud: CloudConfig{RateLimit: -1}, Ready: func(Addrs) error { t.Error("a hub served on a second address"); return nil }})
	if err == nil || !strings.Contains(err.Error(), "this process already serves native RPC on "+a1.RPC) {
		t.Errorf("a hub on %s while the process serves %s: %v", elsewhere, a1.RPC, err)
	}
}

// TestRPCRecordsDevice: a hub records a Go device as a mobile_app peer
// with the public key of its handshake after its first authenticated
// request (not after a refused one), and refuses it once revoked.
func TestRPCRecordsDevice(t *testing.T) {
	hub, a := serveRPCHub(t, slog.New(slog.DiscardHandler))
	phone := rpcNode(t, KindMobile)
	id := phone.Info().NodeID
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := phone.SetCredentials(rpcEmail, "wrong password!"); err != nil {
		t.Fatal(err)
	}
	if _, err := rpcTransportTo(t, phone, a).Pull(ctx, &pb.PullRequest{}); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("pull with a wrong password: %v, want ErrUnauthorized", err)
	}
	if p, err := hub.store.Peer(id); !errors.Is(err, kv.ErrNotFound) {
		t.Fatalf("a refused device was recorded: %+v %v", p, err)
	}

	if err := phone.SetCredentials(rpcEmail, rpcPassword); err != nil {
		t.Fatal(err)
	}
	seed := strings.Repeat("k", 32)
	want, err := codec.GenerateKey(strings.NewReader(seed))
	if err != nil {
		t.Fatal(err)
	}
	tr := rpcTransportTo(t, phone, a)
	tr.Rand = strings.NewReader(seed)
	if _, err := tr.Pull(ctx, &pb.PullRequest{}); err != nil {
		t.Fatalf("pull: %v", err)
	}
	p, err := hub.store.Peer(id)
	if err != nil || p.Type != kv.PeerMobile || p.Status != kv.StatusActive || !bytes.Equal(p.PublicKey, want.PublicKey().Bytes()) {
		t.Fatalf("the recorded device: %+v %v, want an active mobile_app with key %x", p, err, want.PublicKey().Bytes())
	}

	if err := hub.RevokePeer(id); err != nil {
		t.Fatal(err)
	}
	_, err = tr.Pull(ctx, &pb.PullRequest{})
	if !errors.Is(err, ErrPeerRevoked) || !strings.Contains(UserMessage(kv.PeerHub, err), "revoked by the hub") {
		t.Errorf("pull by a revoked device: %v (%q), want ErrPeerRevoked", err, UserMessage(kv.PeerHub, err))
	}
	if p, err := hub.store.Peer(id); err != nil || p.Status != kv.StatusRevoked {
		t.Errorf("the revoked device: %+v %v", p, err)
	}
}
