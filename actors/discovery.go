package actors

// Finding a paired hub again after its address changed: a hub answers
// discovery queries on UDP with its pairing string, and a device whose
// hub is not at its stored address asks there and by broadcast, then
// keeps the address where the hub proved its pinned identity.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	pb "github.com/clinicsync/clinicsync/proto"

	"github.com/clinicsync/clinicsync/kv"
)

// DefaultDiscoveryPort is the UDP port a hub answers discovery queries
// on unless told otherwise (ServeOptions.Discovery).
const DefaultDiscoveryPort = 4002

// DiscoveryOff, as ServeOptions.Discovery, serves no discovery.
const DiscoveryOff = "off"

// discoverType marks a discovery query.
const discoverType = "clinicsync_discover"

// discoverQuery asks the hub of node id ID for its pairing string.
type discoverQuery struct {
	Type string `json:"type"` // discoverType
	ID   string `json:"id"`
}

// discoveryWait is how long a device listens for answers; the query is
// sent again every discoveryResend meanwhile (UDP loses datagrams).
const (
	discoveryWait   = time.Second
	discoveryResend = 300 * time.Millisecond
)

// serveDiscovery answers, on conn until ctx ends, every query naming
// this hub's id with pairing(): its current pairing string. It answers
// nothing else (a query for another hub, or not a query). conn is
// closed when it returns.
func serveDiscovery(ctx context.Context, conn net.PacketConn, id string, pairing func() Pairing, log *slog.Logger) {
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	buf := make([]byte, 2048)
	for {
		n, from, err := conn.ReadFrom(buf)
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
				log.Warn("discovery: reading", "cause", err)
			}
			return
		}
		var q discoverQuery
		if json.Unmarshal(buf[:n], &q) != nil || q.Type != discoverType || q.ID != id {
			continue
		}
		if _, err := conn.WriteTo([]byte(pairing().String()), from); err != nil {
			log.Debug("discovery: answering", "to", from.String(), "cause", err)
		}
	}
}

// listenDiscovery binds a hub's discovery address: addr as given, or
// by default (addr "") port DefaultDiscoveryPort on the host of the
// hub's plain listener, where a default that is taken is a warning,
// not an error. It returns nil when there is nothing to serve.
func listenDiscovery(addr, httpAddr string, log *slog.Logger) (net.PacketConn, error) {
	if addr == DiscoveryOff {
		return nil, nil
	}
	given := addr != ""
	if !given {
		host, _, err := net.SplitHostPort(httpAddr)
		if err != nil {
			return nil, fmt.Errorf("%w: HTTP address %q: %v", ErrInvalidConfig, httpAddr, err)
		}
		addr = net.JoinHostPort(host, strconv.Itoa(DefaultDiscoveryPort))
	}
	conn, err := net.ListenPacket("udp", addr)
	if err != nil {
		if given {
			return nil, fmt.Errorf("actors: serving discovery: %w", err)
		}
		log.Warn("discovery off: its default address is taken (give ServeOptions.Discovery / serve --discovery)", "addr", addr, "cause", err)
		return nil, nil
	}
	return conn, nil
}

// Discover asks for the hub of node id hubID at the discovery address
// addr (host:port) and by broadcast on every IPv4 interface at addr's
// port, and returns the pairing strings of the hubs that answered as
// that id within a second (or until ctx ends), each once. An answer
// proves nothing: whoever connects must check the pins.
func Discover(ctx context.Context, addr, hubID string) ([]Pairing, error) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("%w: discovery address %q: %v", ErrInvalidConfig, addr, err)
	}
	targets := []string{addr}
	for _, b := range broadcastAddrs() {
		targets = append(targets, net.JoinHostPort(b, port))
	}
	conn, err := net.ListenPacket("udp4", ":0")
	if err != nil {
		return nil, fmt.Errorf("actors: discovery: %w", err)
	}
	defer conn.Close()
	query, err := json.Marshal(discoverQuery{Type: discoverType, ID: hubID})
	if err != nil {
		return nil, err
	}
	send := func() {
		for _, t := range targets {
			if ua, err := net.ResolveUDPAddr("udp4", t); err == nil {
				conn.WriteTo(query, ua) // best effort: an interface may refuse broadcast
			}
		}
	}
	deadline := time.Now().Add(discoveryWait)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Now()) })
	defer stop()
	var found []Pairing
	seen := map[string]bool{}
	buf := make([]byte, 2048)
	for next := time.Now(); ; {
		if now := time.Now(); !now.Before(next) {
			send()
			next = now.Add(discoveryResend)
		}
		if err := conn.SetReadDeadline(minTime(next, deadline)); err != nil || ctx.Err() != nil {
			return found, ctx.Err()
		}
		n, _, err := conn.ReadFrom(buf)
		if err != nil {
			if time.Now().Before(deadline) && ctx.Err() == nil {
				continue // time to send again
			}
			return found, nil
		}
		p, err := ParsePairing(string(buf[:n]))
		if err != nil || p.ID != hubID || seen[p.String()] {
			continue
		}
		seen[p.String()] = true
		found = append(found, p)
	}
}

// broadcastAddrs lists the directed broadcast address of every IPv4
// network of the host's interfaces that are up and broadcast.
func broadcastAddrs() []string {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil
	}
	var out []string
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagBroadcast == 0 {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			in, ok := a.(*net.IPNet)
			if !ok || in.IP.To4() == nil || len(in.Mask) != net.IPv4len && len(in.Mask) != net.IPv6len {
				continue
			}
			ip, mask := in.IP.To4(), in.Mask[len(in.Mask)-net.IPv4len:]
			b := make(net.IP, net.IPv4len)
			for i := range b {
				b[i] = ip[i] | ^mask[i]
			}
			out = append(out, b.String())
		}
	}
	return out
}

// findingTransport is the transport to a hub paired by identity (its
// node id, public key and discovery address known): when the hub is
// not at its stored address (unreachable there, or another key or
// certificate answers), it looks for the hub by discovery, sends the
// request to each address found whose pins it can check, and keeps the
// first one where the request succeeds: there the hub proved its
// identity (the sealed session under the pinned key, or the pinned
// certificate). The peer's stored URL then follows it.
type findingTransport struct {
	n     *Node
	build func(kv.Peer) (Transport, error) // a transport to one address
	log   *slog.Logger

	mu   sync.Mutex // guards peer and tr, and serializes finding
	peer kv.Peer
	tr   Transport
}

// Pull asks for one page, finding the hub again if it moved.
func (t *findingTransport) Pull(ctx context.Context, req *pb.PullRequest) (*pb.PullResponse, error) {
	return findAndCall(ctx, t, func(tr Transport) (*pb.PullResponse, error) { return tr.Pull(ctx, req) })
}

// Push sends a push, finding the hub again if it moved (pushes are
// idempotent, so the one that failed may be sent again).
func (t *findingTransport) Push(ctx context.Context, req *pb.PushRequest) (*pb.PushResponse, error) {
	return findAndCall(ctx, t, func(tr Transport) (*pb.PushResponse, error) { return tr.Push(ctx, req) })
}

// Close closes the transport in use.
func (t *findingTransport) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return closeTransport(t.tr)
}

func closeTransport(tr Transport) error {
	if c, ok := tr.(interface{ Close() error }); ok {
		return c.Close()
	}
	return nil
}

// moved reports whether err means the hub may no longer be at its
// stored address.
func moved(err error) bool {
	return errors.Is(err, ErrUnreachable) || errors.Is(err, ErrHubKeyMismatch) || errors.Is(err, ErrCertMismatch)
}

func findAndCall[R any](ctx context.Context, t *findingTransport, call func(Transport) (R, error)) (R, error) {
	t.mu.Lock()
	tr, peer := t.tr, t.peer
	t.mu.Unlock()
	r, err := call(tr)
	if !moved(err) {
		return r, err
	}
	t.mu.Lock() // one search at a time; a search that moved the peer serves the calls that waited
	defer t.mu.Unlock()
	if t.peer.URL != peer.URL {
		return call(t.tr)
	}
	found, derr := Discover(ctx, peer.Discovery, peer.NodeID)
	if derr != nil {
		t.log.Warn("discovery: looking for the hub", "peer", peer.ID, "cause", derr)
	}
	for _, p := range found {
		cand, ok := t.candidate(p)
		if !ok {
			continue
		}
		ctr, berr := t.build(cand)
		if berr != nil {
			continue
		}
		r2, cerr := call(ctr)
		if cerr != nil {
			t.log.Warn("discovery: the hub's new address did not answer as the paired hub", "peer", peer.ID, "url", cand.URL, "cause", cerr)
			closeTransport(ctr)
			continue
		}
		if uerr := t.n.store.UpdatePeer(peer.ID, func(sp *kv.Peer) {
			if sp.URL == peer.URL {
				sp.URL, sp.Discovery = cand.URL, cand.Discovery
			}
		}); uerr != nil {
			t.log.Warn("discovery: recording the hub's new address", "peer", peer.ID, "cause", uerr)
		}
		t.log.Info("discovery: found the hub at a new address", "peer", peer.ID, "hub", peer.NodeID, "from", peer.URL, "to", cand.URL)
		closeTransport(t.tr)
		t.peer, t.tr = cand, ctr
		return r2, nil
	}
	return r, fmt.Errorf("%w (looked for hub %s by discovery at %s and by broadcast: %s)", err, peer.NodeID, peer.Discovery, foundText(len(found)))
}

func foundText(n int) string {
	if n == 0 {
		return "no answer"
	}
	return fmt.Sprintf("%d answers, none at a new address where the hub proved its pinned identity", n)
}

// candidate is the peer at the address a discovery answer names, when
// it is new and its pins can be checked: the same public key, and
// native RPC (sealed under that key) or TLS under the pinned
// certificate. A plain HTTP address proves nothing and is not taken.
func (t *findingTransport) candidate(p Pairing) (kv.Peer, bool) {
	if p.PK != b64url(t.peer.PublicKey) {
		return kv.Peer{}, false
	}
	c := t.peer
	switch {
	case p.RPC != "":
		c.URL = RPCScheme + p.RPC
	case p.HTTPS != "" && t.peer.TLSFingerprint != "" && p.FP == t.peer.TLSFingerprint:
		c.URL = p.HTTPS
	default:
		return kv.Peer{}, false
	}
	if p.Disc != "" {
		c.Discovery = p.Disc
	}
	return c, c.URL != t.peer.URL
}

// findable reports whether a peer can be looked for by discovery: a
// hub with a known node id, public key and discovery address.
func findable(p kv.Peer) bool {
	return p.Type == kv.PeerHub && p.NodeID != "" && len(p.PublicKey) != 0 && p.Discovery != "" &&
		(strings.HasPrefix(p.URL, RPCScheme) || strings.HasPrefix(p.URL, "https://"))
}
