package actors

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
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
	tr, err := phone.HTTPTransports(nil)(kv.Peer{ID: "hub", Type: kv.PeerHub, URL: cfg.URL, PublicKey: cfg.PublicKey})
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
	got := 0
	for _, tb := range rest.GetChanges().GetTables() {
		if tb.GetTable() == "patients" {
			got += len(tb.GetCreated()) + len(tb.GetUpdated())
		}
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
			b := []byte(e.Blob)
			i := len(b) / 2
			b[i] = map[bool]byte{true: 'B', false: 'A'}[b[i] == 'A']
			e.Blob = string(b)
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
// both ways, hold no patient name and no password. Not parallel: the
// wire tap sees every connection native RPC dials in the process.
func TestRPCNoCleartext(t *testing.T) {
	hub, a := serveRPCHub(t, slog.New(slog.DiscardHandler))
	const pushed, pulled = "Zawadiuniquepushed", "Nyokabiuniquepulled"
	putPatient(t, hub, "h1", pulled)
	phone := rpcNode(t, KindMobile)
	if err := phone.SetCredentials(rpcEmail, rpcPassword); err != nil {
		t.Fatal(err)
	}
	var wire syncBuffer
	tap := func(c net.Conn) net.Conn { return tapConn{c, &wire} }
	rpcWireTap.Store(&tap)
	t.Cleanup(func() { rpcWireTap.Store(nil) })
	tr := rpcTransportTo(t, phone, a)
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
	peer, err := phone.AddPeer(PeerConfig{Type: kv.PeerHub, URL: RPCScheme + a.RPC, PublicKey: hub.mustPublicKey(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := phone.Start(NodeConfig{Transports: phone.HTTPTransports(nil), Logger: slog.New(slog.DiscardHandler)}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if res, err := phone.Sync(ctx, SyncRequest{PeerID: peer.ID}); err != nil || res.Outcome == OutcomeError || res.Pushed != 1 {
		t.Fatalf("sync through the proxy: %+v %v", res, err)
	}
	if !hasRow(t, hub, "m1") || !hasRow(t, phone, "h1") {
		t.Fatal("rows did not travel")
	}
	resp, err := tr.Pull(ctx, &pb.PullRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := proto.Marshal(resp); !bytes.Contains(b, []byte(pulled)) {
		t.Fatalf("the opened pull lacks %s", pulled)
	}
	w, ans := wire.String(), answers.String()
	if len(w) < 200 || len(ans) < 200 {
		t.Fatalf("recorded %d bytes on the wire, %d of answers: too few to mean anything", len(w), len(ans))
	}
	for _, name := range []string{pushed, pulled, "Haddad", rpcPassword} {
		if strings.Contains(w, name) || strings.Contains(ans, name) {
			t.Errorf("%q travels in clear", name)
		}
	}
}

func (n *Node) mustPublicKey(t *testing.T) []byte {
	t.Helper()
	priv, err := n.PrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return priv.PublicKey().Bytes()
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
		tr, err := phone.HTTPTransports(nil)(p)
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
