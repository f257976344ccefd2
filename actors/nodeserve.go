package actors

// Node.Serve: the whole serving side of a cloud or a hub in one call
// (listeners, the hub's TLS and plain-HTTP guard, the Hikma RPC, the
// upstream loop, the sync engine), for the node binary and for Go
// programs that embed a node alike.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// DefaultHTTPAddr is where Serve listens for plain HTTP when
// ServeOptions.HTTP is empty: a free port on the loopback interface.
const DefaultHTTPAddr = "127.0.0.1:0"

// ServeOptions configures Node.Serve. The zero value serves plain HTTP
// on a free loopback port, with the defaults of every nested config.
type ServeOptions struct {
	// HTTP is the address of the plain HTTP listener (host:port; port 0
	// picks one; "" is DefaultHTTPAddr): a cloud's /api/v2/sync and
	// sign-in, a hub's Hikma RPC (/rpc/*).
	HTTP string
	// HTTPS is the address of a hub's TLS listener for /api/v2/sync ("":
	// none), with the hub's persisted self-signed certificate
	// (TLSCertificate), which devices pin through the pairing string. A
	// cloud refuses it: put a cloud behind a TLS-terminating proxy.
	HTTPS string
	// InsecureHTTP makes a hub serve /api/ (passwords and rows in the
	// clear) on its plain listener too; without it that listener
	// refuses /api/ (PlainHTTPGuard) and keeps only the sealed Hikma RPC.
	// Serve logs a warning. A cloud refuses it.
	InsecureHTTP bool
	// RPC is the address to serve native RPC on (host:port; port 0
	// picks one; "": none): protobuf pulls and pushes between node
	// processes over protoactor-go remote, sealed after a handshake
	// with the node's key (rpc.go). A hub's pairing string then names
	// it, and Go devices paired with it sync there.
	RPC string
	// RPCIdle ends a native RPC session that has had no request for
	// this long (0: the package's RPCIdle); the client handshakes
	// again on its next request.
	RPCIdle time.Duration
	// Discovery is the UDP address where a hub answers discovery
	// queries for its id with its pairing string, so that devices find
	// it again after its address changes (discovery.go). "" is port
	// DefaultDiscoveryPort on the host of HTTP (a warning, not an
	// error, when that is taken); DiscoveryOff: none. A cloud serves
	// none.
	Discovery string
	// Cloud configures the HTTP sync API (push policy, rate limits, body
	// and page bounds). Its Logger defaults to Logger; its OnPush, if
	// any, is called before the upstream loop's.
	Cloud CloudConfig
	// Hikma configures a hub's Hikma RPC. Its Logger defaults to Logger.
	Hikma HikmaConfig
	// Limits bounds connections and their timing. Its Logger defaults
	// to Logger.
	Limits ServeConfig
	// UpstreamInterval is how often a hub syncs with its cloud peer on
	// its own (Upstream): at start, this often, and soon after a
	// device's push. 0 is DefaultUpstreamInterval; negative: no upstream
	// loop (the hub syncs upstream only when asked, Node.Sync).
	UpstreamInterval time.Duration
	// Engine configures the sync engine when Serve starts it: Transports
	// nil is HTTPTransports(nil), Logger nil is Logger. An engine
	// already started (Node.Start) is used as it is.
	Engine NodeConfig
	// Logger gets the serving log (nil: slog.Default()).
	Logger *slog.Logger
	// Ready, if set, is called once the listeners are bound and the
	// engine runs, before Serve answers requests, with where the node
	// serves. An error from it stops Serve, which returns it.
	Ready func(Addrs) error
	// Observer, if set, sees the serving side (metrics: package
	// metrics).
	Observer ServeObserver
}

// ServeObserver watches a serving node, for metrics.
type ServeObserver interface {
	// Serving is called once, before Ready, with a function that reads
	// what the node holds at the moment; it may be called from any
	// goroutine until Serve returns, and is cheap.
	Serving(stats func() ServeStats)
	// WrapHTTP wraps the handler of each HTTP listener: it sees every
	// request and its response.
	WrapHTTP(http.Handler) http.Handler
}

// ServeStats is what a serving node holds at one moment.
type ServeStats struct {
	Push          PushBudget // the push budget and what holds it
	HikmaSessions int        // a hub's Hikma app sessions
	RPCSessions   int        // native RPC sessions
}

// Addrs says where a serving node can be reached.
type Addrs struct {
	// HTTP is the plain listener's URL (http://host:port).
	HTTP string
	// HTTPS is a hub's TLS listener's URL ("" when none), and
	// Fingerprint its certificate's (Fingerprint).
	HTTPS, Fingerprint string
	// RPC is the native RPC address (host:port; "" when none).
	RPC string
	// Discovery is where a hub answers discovery queries (UDP
	// host:port; "" when it does not).
	Discovery string
	// Pairing is a hub's pairing string (nil on a cloud): pass it to
	// PairingPeer on a device, or print it (Pairing.String).
	Pairing *Pairing
}

// Serve serves the node until ctx ends, then stops accepting
// connections, lets the requests in flight finish (up to
// ShutdownTimeout), stops the upstream loop and returns nil (or the
// first listener error). A cloud serves its HTTP sync API; a hub
// serves the Hikma RPC on opts.HTTP, /api/v2/sync over TLS on
// opts.HTTPS, and syncs with its cloud on its own; a mobile node
// serves nobody (ErrNotServing). Serve starts the sync engine unless it
// runs; it leaves it running (Close stops it).
func (n *Node) Serve(ctx context.Context, opts ServeOptions) error {
	kind := n.info.Kind
	if !kind.Serves() {
		return fmt.Errorf("%w: a %s node syncs with a hub or the cloud and serves nobody", ErrNotServing, kind)
	}
	if kind != KindHub && (opts.HTTPS != "" || opts.InsecureHTTP || opts.Discovery != "" && opts.Discovery != DiscoveryOff) {
		return fmt.Errorf("%w: HTTPS, InsecureHTTP and Discovery are for a hub: a %s serves plain HTTP (put it behind a TLS-terminating proxy)", ErrInvalidConfig, kind)
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	httpAddr := opts.HTTP
	if httpAddr == "" {
		httpAddr = DefaultHTTPAddr
	}
	cfg, hcfg, scfg, ecfg := opts.Cloud, opts.Hikma, opts.Limits, opts.Engine
	for _, l := range []**slog.Logger{&cfg.Logger, &hcfg.Logger, &scfg.Logger, &ecfg.Logger} {
		if *l == nil {
			*l = log
		}
	}
	var up *Upstream
	if kind == KindHub && opts.UpstreamInterval >= 0 {
		up = NewUpstream(n, UpstreamConfig{Interval: opts.UpstreamInterval, Logger: log})
		onPush := cfg.OnPush
		cfg.OnPush = func(r PushResult) {
			if onPush != nil {
				onPush(r)
			}
			up.OnPush(r)
		}
	}
	h, err := n.CloudHandler(cfg)
	if err != nil {
		return err
	}
	var handler http.Handler = h
	var hikma *HikmaHandler
	if kind == KindHub { // the Hikma app's RPC on /rpc/
		if hikma, err = n.HikmaHandler(h, hcfg); err != nil {
			return err
		}
		handler = hikma
	}
	if ecfg.Transports == nil {
		ecfg.Transports = n.HTTPTransports(nil)
	}
	if err := n.Start(ecfg); err != nil && !errors.Is(err, ErrAlreadyStarted) {
		return err
	}

	var addrs Addrs
	var tlsL net.Listener // the hub's TLS listener, when HTTPS
	if opts.HTTPS != "" {
		cert, fp, err := n.TLSCertificate()
		if err != nil {
			return err
		}
		if tlsL, err = net.Listen("tcp", opts.HTTPS); err != nil {
			return fmt.Errorf("actors: serving TLS: %w", err)
		}
		defer tlsL.Close()
		addrs.HTTPS, addrs.Fingerprint = "https://"+tlsL.Addr().String(), fp
		tlsL = tls.NewListener(tlsL, ServerTLSConfig(cert))
	}
	l, err := net.Listen("tcp", httpAddr)
	if err != nil {
		return fmt.Errorf("actors: serving HTTP: %w", err)
	}
	defer l.Close()
	addrs.HTTP = "http://" + l.Addr().String()
	var rs *rpcServer // the native RPC server, if any
	if opts.RPC != "" {
		priv, err := n.PrivateKey()
		if err != nil {
			return err
		}
		rs, err = startRPC(opts.RPC, rpcDeps{server: h.server, auth: h.auth, ops: h, store: n.store, priv: priv, nodeID: n.info.NodeID, log: log,
			idle: opts.RPCIdle})
		if err != nil {
			return err
		}
		defer rs.stop()
		addrs.RPC = rs.addr
	}
	var disc net.PacketConn
	if kind == KindHub {
		if disc, err = listenDiscovery(opts.Discovery, l.Addr().String(), log); err != nil {
			return err
		}
		if disc != nil {
			defer disc.Close()
			addrs.Discovery = disc.LocalAddr().String()
		}
	}
	plain := handler
	if kind == KindHub {
		if !opts.InsecureHTTP { // the Hikma RPC is sealed end to end; /api/ is not
			plain = PlainHTTPGuard(handler, addrs.HTTPS)
		}
		p, err := n.Pairing(addrs.HTTP, addrs.HTTPS)
		if err != nil {
			return err
		}
		if addrs.RPC != "" {
			p.RPC = reachableAddr(addrs.RPC)
		}
		if addrs.Discovery != "" {
			p.Disc = reachableAddr(addrs.Discovery)
		}
		addrs.Pairing = &p
	}
	n.served.Store(&served{addrs: addrs, hikma: hikma, rpc: rs})
	defer n.served.Store(nil)
	if o := opts.Observer; o != nil {
		inner := handler
		o.Serving(func() ServeStats { return serveStats(h, inner, rs) })
		handler, plain = o.WrapHTTP(handler), o.WrapHTTP(plain)
	}
	var me *CloudNode // this process, over a shared store: status lists it from now
	if n.shared {
		me = n.thisNode(addrs.HTTP)
		n.beat(me, log)
	}
	if opts.Ready != nil {
		if err := opts.Ready(addrs); err != nil {
			return err
		}
	}
	if opts.InsecureHTTP {
		log.Warn("insecure HTTP (--insecure-http): /api/v2/sync and sign-in are served over plain HTTP, passwords and rows in cleartext", "url", addrs.HTTP)
	}
	log.Info("serving", "node", n.info.NodeID, "kind", kind, "url", addrs.HTTP, "https_url", addrs.HTTPS, "rpc", addrs.RPC, "discovery", addrs.Discovery, "tls_fingerprint", addrs.Fingerprint,
		"insecure_http", opts.InsecureHTTP, "push_policy", cfg.Policy.String(), "rate_limit", cfg.RateLimit, "max_body", cfg.MaxBodyBytes,
		"push_budget", h.PushBudget().Limit, "max_conns", scfg.MaxConns, "max_conns_per_addr", scfg.MaxConnsPerAddr,
		"upstream", up != nil)

	// A listener that fails stops the others.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if disc != nil {
		discDone := make(chan struct{})
		go func() {
			defer close(discDone)
			serveDiscovery(ctx, disc, n.info.NodeID, func() Pairing { return *addrs.Pairing }, log)
		}()
		// The discovery socket is closed before Serve returns, so that a
		// hub served again at once can bind the same address.
		defer func() { cancel(); <-discDone }()
	}
	if me != nil {
		go n.heartbeat(ctx, me, log)
	}
	upDone := make(chan struct{})
	go func() {
		defer close(upDone)
		if up != nil {
			up.Run(ctx) // until ctx ends; always nil
		}
	}()
	tlsDone := make(chan error, 1)
	go func() {
		if tlsL == nil {
			tlsDone <- nil
			return
		}
		err := scfg.Serve(ctx, tlsL, handler)
		cancel()
		tlsDone <- err
	}()
	err = scfg.Serve(ctx, l, plain)
	cancel()
	if terr := <-tlsDone; err == nil {
		err = terr
	}
	<-upDone
	if err != nil {
		return err
	}
	log.Info("stopped")
	return nil
}

// serveStats reads what Serve's handlers hold (rs nil: no native RPC).
func serveStats(h *CloudHandler, handler http.Handler, rs *rpcServer) ServeStats {
	st := ServeStats{Push: h.PushBudget()}
	if hk, ok := handler.(*HikmaHandler); ok {
		st.HikmaSessions = hk.Sessions()
	}
	if rs != nil {
		st.RPCSessions = rs.sessions()
	}
	return st
}
