package actors

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
	"testing"
	"time"

	pb "github.com/clinicsync/clinicsync/proto"
)

// serveFor serves n with opts until the returned stop is called, and
// returns where it serves.
func serveFor(t *testing.T, n *Node, opts ServeOptions) (Addrs, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan Addrs, 1)
	served := make(chan error, 1)
	opts.Ready = func(a Addrs) error { ready <- a; return nil }
	go func() { served <- n.Serve(ctx, opts) }()
	select {
	case a := <-ready:
		stopped := false
		stop := func() {
			if !stopped {
				stopped = true
				cancel()
				if err := <-served; err != nil {
					t.Errorf("Serve: %v", err)
				}
			}
		}
		t.Cleanup(stop)
		return a, stop
	case err := <-served:
		cancel()
		t.Fatalf("Serve: %v", err)
	}
	return Addrs{}, nil
}

// stableUDPAddr is a free UDP address on 127.0.0.1 outside Linux's
// ephemeral port range (32768-60999), so that no socket bound to port 0
// takes it between two uses (a hub stopped and started again on it).
func stableUDPAddr(t testing.TB) string {
	t.Helper()
	for i := 0; i < 200; i++ {
		addr := fmt.Sprintf("127.0.0.1:%d", 20000+rand.IntN(12000))
		if c, err := net.ListenPacket("udp", addr); err == nil {
			c.Close()
			return addr
		}
	}
	t.Fatal("no free UDP port in 20000-31999")
	return ""
}

// fakeDiscovery answers every discovery query for id with answer, and
// returns its address.
func fakeDiscovery(t *testing.T, id string, answer string) string {
	t.Helper()
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := conn.ReadFrom(buf)
			if err != nil {
				return
			}
			var q discoverQuery
			if json.Unmarshal(buf[:n], &q) == nil && q.ID == id {
				conn.WriteTo([]byte(answer), from)
			}
		}
	}()
	return conn.LocalAddr().String()
}

// TestDiscoverHub: Discover asks the discovery address for a hub by id
// and gets its pairing string; a query for another id, or a hub that
// serves no discovery, gets nothing.
func TestDiscoverHub(t *testing.T) {
	hub := rpcNode(t, KindHub)
	a, _ := serveFor(t, hub, ServeOptions{HTTPS: "127.0.0.1:0", Discovery: "127.0.0.1:0", UpstreamInterval: -1,
		Logger: slog.New(slog.DiscardHandler)})
	if a.Discovery == "" || a.Pairing.Disc != a.Discovery {
		t.Fatalf("Addrs %+v, pairing %+v: want the discovery address in both", a, a.Pairing)
	}
	ctx := context.Background()
	found, err := Discover(ctx, a.Discovery, hub.Info().NodeID)
	if err != nil || len(found) != 1 || found[0] != *a.Pairing {
		t.Fatalf("Discover = %+v %v, want [%s]", found, err, a.Pairing)
	}
	if found, err := Discover(ctx, a.Discovery, "another-hub"); err != nil || len(found) != 0 {
		t.Errorf("Discover(another id) = %+v %v, want nothing", found, err)
	}
	// A garbled answer is not a hub.
	garbled := fakeDiscovery(t, "h1", `{"type":"sync_hub","url":"ftp://x"}`)
	if found, err := Discover(ctx, garbled, "h1"); err != nil || len(found) != 0 {
		t.Errorf("Discover(garbled answer) = %+v %v, want nothing", found, err)
	}

	// Off: no discovery address, nothing in the pairing string.
	other := rpcNode(t, KindHub)
	b, _ := serveFor(t, other, ServeOptions{Discovery: DiscoveryOff, UpstreamInterval: -1, Logger: slog.New(slog.DiscardHandler)})
	if b.Discovery != "" || b.Pairing.Disc != "" || strings.Contains(b.Pairing.String(), "disc") {
		t.Errorf("Discovery off: Addrs %+v, pairing %s", b, b.Pairing)
	}
	// A cloud serves none.
	cloud := rpcNode(t, KindCloud)
	if err := cloud.Serve(ctx, ServeOptions{Discovery: "127.0.0.1:0"}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("a cloud serving discovery: %v, want ErrInvalidConfig", err)
	}
}

// TestDiscoveryFindsMovedHub: a phone paired with a hub over TLS syncs;
// the hub comes back on another port; the phone's next sync finds it by
// its id, checks its pinned certificate there, syncs, and keeps the new
// URL. An answer naming the hub's id and pins but another hub's
// address is tried, refused by the pin, and not kept.
func TestDiscoveryFindsMovedHub(t *testing.T) {
	quiet := slog.New(slog.DiscardHandler)
	hub := rpcNode(t, KindHub)
	if _, err := hub.AddUser(UserConfig{Email: rpcEmail, Password: rpcPassword}); err != nil {
		t.Fatal(err)
	}
	opts := ServeOptions{HTTPS: "127.0.0.1:0", Discovery: stableUDPAddr(t), UpstreamInterval: -1, Logger: quiet, Cloud: CloudConfig{RateLimit: -1}}
	a, stop := serveFor(t, hub, opts)

	phone := rpcNode(t, KindMobile)
	if err := phone.SetCredentials(rpcEmail, rpcPassword); err != nil {
		t.Fatal(err)
	}
	cfg, err := PairingPeer(*a.Pairing)
	if err != nil {
		t.Fatal(err)
	}
	peer, err := phone.AddPeer(cfg)
	if err != nil || peer.URL != a.HTTPS || peer.Discovery != a.Discovery || peer.NodeID != hub.Info().NodeID {
		t.Fatalf("AddPeer: %+v %v", peer, err)
	}
	if err := phone.Start(NodeConfig{Transports: phone.HTTPTransports(nil), Logger: quiet, Retries: -1}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sync := func(what string) Result {
		t.Helper()
		res, err := phone.Sync(ctx, SyncRequest{PeerID: peer.ID})
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return res
	}
	putPatient(t, phone, "m1", "Amina")
	if res := sync("first sync"); res.Outcome != OutcomeOK || res.Pushed != 1 {
		t.Fatalf("first sync: %+v", res)
	}

	// The hub moves: the same discovery address, another TLS port.
	stop()
	b, stopB := serveFor(t, hub, opts)
	if b.HTTPS == a.HTTPS {
		t.Fatalf("the hub came back on its old address %s", b.HTTPS)
	}
	putPatient(t, phone, "m2", "Layla")
	if res := sync("sync after the hub moved"); res.Outcome != OutcomeOK || res.Pushed != 1 {
		t.Fatalf("sync after the hub moved: %+v", res)
	}
	if !hasRow(t, hub, "m2") {
		t.Errorf("the moved hub lacks m2")
	}
	if p, err := phone.store.Peer(peer.ID); err != nil || p.URL != b.HTTPS {
		t.Errorf("the phone's peer after the move: %+v %v, want URL %s", p, err, b.HTTPS)
	}

	// An impostor, once the hub is gone: the hub's id, key and
	// fingerprint in the answer, the address of another hub (another
	// certificate). The pin refuses it; the stored URL stays.
	stopB()
	other := rpcNode(t, KindHub)
	o, _ := serveFor(t, other, ServeOptions{HTTPS: "127.0.0.1:0", Discovery: DiscoveryOff, UpstreamInterval: -1, Logger: quiet})
	lie := *b.Pairing
	lie.HTTPS, lie.Disc = o.HTTPS, ""
	stored, err := phone.store.Peer(peer.ID)
	if err != nil {
		t.Fatal(err)
	}
	stored.Discovery = fakeDiscovery(t, hub.Info().NodeID, lie.String())
	tr, err := phone.HTTPTransports(nil)(stored)
	if err != nil {
		t.Fatal(err)
	}
	_, err = tr.Pull(ctx, &pb.PullRequest{})
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "1 answers, none at a new address where the hub proved its pinned identity") {
		t.Errorf("pull with only an impostor answering: %v, want unreachable after looking", err)
	}
	if p, err := phone.store.Peer(peer.ID); err != nil || p.URL != b.HTTPS {
		t.Errorf("the phone's peer after the impostor: %+v %v, want URL %s kept", p, err, b.HTTPS)
	}
}
