package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/clinicsync/clinicsync/actors"
	"github.com/clinicsync/clinicsync/fsm"
	"github.com/clinicsync/clinicsync/kv"
	"github.com/clinicsync/clinicsync/metrics"
)

// serveLog is where serve's request log goes.
var serveLog io.Writer = os.Stderr

// cmdServe: node serve --data DIR [--http ADDR] [--push-policy merge|strict]
// [--rate-limit N] [--trust-forwarded-for] [--max-body BYTES] [--page-size N]
// [--push-budget BYTES] [--body-timeout D] [--max-conns N] [--max-conns-per-addr N]
// [--spool-dir DIR] [--upstream-interval D] [--sign-in-limit N]
// [--https ADDR] [--insecure-http] [--rpc ADDR] [--discovery ADDR|off] [--metrics ADDR]
func cmdServe(e *env, name string, args []string) error {
	f := e.flags(name)
	addr := f.String("http", "127.0.0.1:8080", "`address` to serve plain HTTP on (host:port; port 0 picks one): a cloud's /api/v2/sync, a hub's Hikma RPC /rpc/*")
	httpsAddr := f.String("https", "", "hub: `address` to serve /api/v2/sync on over TLS, with the hub's self-generated certificate (pinned by its devices)")
	insecure := f.Bool("insecure-http", false, "hub: serve /api/v2/sync and sign-in on --http too, passwords and rows in cleartext on the LAN")
	policy := f.String("push-policy", "merge", "merge (per-column merge of concurrent edits) or strict (409, WatermelonDB's rule)")
	rate := f.Int("rate-limit", actors.DefaultRateLimit, "sync requests per minute per authenticated caller (user or hub key), or per address when unauthenticated (0: no limit)")
	trustFF := f.Bool("trust-forwarded-for", false, "rate limit by the first X-Forwarded-For address (behind a reverse proxy only)")
	maxBody := f.Int64("max-body", actors.DefaultMaxBodyBytes, "largest push body in `bytes`")
	pageSize := f.Int("page-size", actors.MaxPageSize, "the most records a pull page holds, whatever the client asks for")
	budget := f.Int64("push-budget", 0, "push body `bytes` in flight at once, across pushes; past it a push gets 503 with Retry-After (0: 4 × --max-body)")
	bodyTimeout := f.Duration("body-timeout", actors.DefaultBodyTimeout, "time a request body may take to arrive (then 408)")
	maxConns := f.Int("max-conns", actors.DefaultMaxConns, "open connections at once; past it new ones wait to be accepted (0: no cap)")
	perAddr := f.Int("max-conns-per-addr", actors.DefaultMaxConnsPerAddr, "open connections from one client IP address; past it new ones are closed (0: no cap; with --trust-forwarded-for, no cap unless given)")
	signIn := f.Int("sign-in-limit", actors.DefaultSignInLimit, "requests per 15 minutes per client address to /api/auth/sign-in and /api/login (0: no limit)")
	upstream := f.Duration("upstream-interval", actors.DefaultUpstreamInterval, "hub: sync with the cloud peer at start, this often, and 2s after a device's push (0: only on node sync)")
	spoolDir := f.String("spool-dir", "", "`directory` where a large JSON pull keeps its rows while it groups them by table (default: the system's temporary directory)")
	rpc := f.String("rpc", "", "`address` to serve native RPC on (host:port; port 0 picks one): sealed protobuf sync between node processes over protoactor-go remote; a hub's pairing string names it and Go devices paired with it sync there (rpc://host:port)")
	disc := f.String("discovery", "", "hub: UDP `address` to answer discovery queries on, so paired devices find the hub after its address changes (default: port 4002 on the host of --http; off: none)")
	metricsAddr := f.String("metrics", "", "`address` to serve Prometheus metrics on, at /metrics (host:port; port 0 picks one; default: none)")
	dbConns := f.Int("db-max-conns", 0, "cloud over PostgreSQL: the most connections to the database (0: 4 or the number of CPUs, whichever is larger)")
	dbTimeout := f.Duration("db-statement-timeout", 30*time.Second, "cloud over PostgreSQL: the longest a database statement may run before it is cancelled (0: no limit)")
	verbose := f.Bool("v", false, "log health checks too (--log-level debug)")
	err := f.parseAll(args)
	if err != nil {
		return err
	}
	pol, err := fsm.ParsePolicy(*policy)
	if err != nil {
		return usageErr(name, "--push-policy %q: want merge or strict", *policy)
	}
	if *rate < 0 || *maxBody <= 0 || *pageSize <= 0 {
		return usageErr(name, "--rate-limit must be >= 0, --max-body and --page-size > 0")
	}
	if *budget != 0 && *budget < *maxBody || *budget < 0 {
		return usageErr(name, "--push-budget must be 0 (4 × --max-body) or at least --max-body (%d)", *maxBody)
	}
	if *upstream < 0 || *signIn < 0 {
		return usageErr(name, "--upstream-interval and --sign-in-limit must be >= 0 (0: off)")
	}
	if *signIn == 0 {
		*signIn = -1 // CloudConfig: negative is no limit
	}
	if *dbConns < 0 || *dbTimeout < 0 {
		return usageErr(name, "--db-max-conns and --db-statement-timeout must be >= 0")
	}
	if *bodyTimeout <= 0 || *maxConns < 0 || *perAddr < 0 {
		return usageErr(name, "--body-timeout must be > 0, --max-conns and --max-conns-per-addr >= 0")
	}
	perAddrGiven := false
	f.Visit(func(fl *flag.Flag) { perAddrGiven = perAddrGiven || fl.Name == "max-conns-per-addr" })
	if *trustFF && !perAddrGiven {
		*perAddr = 0 // behind a proxy every connection comes from the proxy
	}
	scfg := actors.ServeConfig{BodyTimeout: *bodyTimeout, MaxConns: noCap(*maxConns), MaxConnsPerAddr: noCap(*perAddr)}
	if *rate == 0 {
		*rate = -1 // CloudConfig: negative is no limit
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := f.log.logger(serveLog, level)
	n, err := openToServe(f.data, actors.DBOptions{MaxConns: int32(*dbConns), StatementTimeout: *dbTimeout})
	if err != nil {
		return err
	}
	var ml net.Listener // the metrics listener
	if *metricsAddr != "" {
		if ml, err = net.Listen("tcp", *metricsAddr); err != nil {
			n.Close()
			return fmt.Errorf("serving metrics: %w", err)
		}
		defer ml.Close()
	}
	if n.Info().Kind == actors.KindCloud && (*httpsAddr != "" || *insecure) {
		n.Close()
		return usageErr(name, "--https and --insecure-http are for a hub: a %s serves plain HTTP (put a cloud behind a TLS-terminating proxy)", n.Info().Kind)
	}
	merge, err := testMerge()
	if err != nil {
		n.Close()
		return err
	}
	up := *upstream
	if up == 0 {
		up = -1 // ServeOptions: negative is no upstream loop
	}
	err = serveNode(e, f, n, ml, actors.ServeOptions{HTTP: *addr, HTTPS: *httpsAddr, InsecureHTTP: *insecure, RPC: *rpc, Discovery: *disc,
		Cloud: actors.CloudConfig{Policy: pol, RateLimit: *rate, SignInLimit: *signIn, TrustForwardedFor: *trustFF,
			MaxBodyBytes: *maxBody, PushBudgetBytes: *budget, PageSize: *pageSize, SpoolDir: *spoolDir},
		Limits: scfg, UpstreamInterval: up, Logger: log, Engine: actors.NodeConfig{Merge: merge}})
	if cerr := n.Close(); err == nil {
		err = cerr
	}
	return err
}

// noCap maps a flag's 0 (no cap) to ServeConfig's negative.
func noCap(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

// openToServe opens the node in dir in this process, refusing one that
// another serve process holds.
func openToServe(dir string, db actors.DBOptions) (*actors.Node, error) {
	if err := alreadyServed(dir); err != nil {
		return nil, err
	}
	clock, err := nodeClock()
	if err != nil {
		return nil, err
	}
	n, err := actors.OpenWith(dir, clock, db)
	if errors.Is(err, kv.ErrLocked) {
		if serr := alreadyServed(dir); serr != nil {
			return nil, serr // it was starting
		}
	}
	return n, err
}

// alreadyServed says so when a serve process answers on dir's control
// socket.
func alreadyServed(dir string) error {
	if pid, err := actors.PingControl(dir); err == nil {
		return fmt.Errorf("%s is already served by pid %d", dir, pid)
	}
	return nil
}

// serveNode serves n until serve's context ends (actors.Node.Serve:
// the HTTP sync API, a hub's TLS and Hikma RPC, its upstream loop), the
// control socket, through which the node's other commands run here,
// against n, with its sync engine, and n's metrics on ml (nil: none).
func serveNode(e *env, f *flags, n *actors.Node, ml net.Listener, opts actors.ServeOptions) error {
	log := opts.Logger
	var m *metrics.Metrics
	if ml != nil {
		m = metrics.New()
		m.Node(n)
		m.Instrument(&opts)
	}
	ctl, err := n.ListenControl()
	if err != nil {
		return err
	}
	defer ctl.Close()
	// serve runs until SIGINT or SIGTERM (or the end of e.ctx).
	sctx, stop := signal.NotifyContext(e.ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	// A failed control socket stops the HTTP server too: the node's
	// commands would find it held and unreachable.
	ctx, cancel := context.WithCancel(sctx)
	defer cancel()
	var ctlDone chan error // set once the control socket serves
	metricsDone := make(chan error, 1)
	metricsURL := ""
	if ml != nil {
		metricsURL = "http://" + ml.Addr().String() + metrics.Path
	} else {
		metricsDone <- nil
	}
	opts.Ready = func(a actors.Addrs) error {
		srv := &serving{pid: os.Getpid(), url: a.HTTP, httpsURL: a.HTTPS, fingerprint: a.Fingerprint, insecure: opts.InsecureHTTP}
		if a.Pairing != nil {
			srv.pairing = a.Pairing.String()
		}
		var err error
		if f.json {
			err = writeJSON(e.out, struct {
				URL       string `json:"url"`
				HTTPSURL  string `json:"https_url,omitempty"`
				RPC       string `json:"rpc,omitempty"`
				Discovery string `json:"discovery,omitempty"`
				Pairing   string `json:"pairing,omitempty"`
				Metrics   string `json:"metrics,omitempty"`
			}{srv.url, srv.httpsURL, a.RPC, a.Discovery, srv.pairing, metricsURL})
		} else {
			_, err = fmt.Fprintf(e.out, "listening on %s\n", srv.url)
			if err == nil && srv.httpsURL != "" {
				_, err = fmt.Fprintf(e.out, "listening on %s (TLS, certificate sha256 %s)\n", srv.httpsURL, srv.fingerprint)
			}
			if err == nil && a.RPC != "" {
				_, err = fmt.Fprintf(e.out, "listening on %s%s (native RPC, sealed)\n", actors.RPCScheme, a.RPC)
			}
			if err == nil && metricsURL != "" {
				_, err = fmt.Fprintf(e.out, "listening on %s (Prometheus metrics)\n", metricsURL)
			}
		}
		if err != nil {
			return err
		}
		if ml != nil {
			go func() {
				err := metrics.Serve(ctx, ml, m.Registry())
				cancel()
				metricsDone <- err
			}()
		}
		log.Info("control socket", "path", actors.ControlPath(n.Dir()))
		ctlDone = make(chan error, 1)
		go func() {
			err := actors.ServeControl(ctx, ctl, controlHandler(n, srv, log), log)
			cancel()
			ctlDone <- err
		}()
		return nil
	}
	err = n.Serve(ctx, opts)
	cancel()
	if ctlDone != nil {
		if cerr := <-ctlDone; err == nil {
			err = cerr
		}
		if merr := <-metricsDone; err == nil {
			err = merr
		}
	}
	return err
}

// controlHandler runs the command lines that come through the control
// socket as this binary runs them, against the served node (whatever
// --data says: the client found the socket in the node's directory,
// and may have named it relative to its own working directory).
func controlHandler(n *actors.Node, s *serving, log *slog.Logger) actors.ControlHandler {
	open := func(string, bool) (*actors.Node, func() error, error) {
		return n, func() error { return nil }, nil
	}
	return func(ctx context.Context, args []string) actors.ControlResponse {
		var out, errOut bytes.Buffer
		e := &env{ctx: ctx, out: &out, errOut: &errOut, open: open, serving: s}
		if st, ok := actors.ControlStreamsOf(ctx); ok { // printed as it goes, not held here
			if st.Stdout != nil {
				e.out, e.errOut = st.Stdout, st.Stderr
			}
			e.in, e.terminal, e.outTerminal = st.Stdin, st.Terminal, st.OutTerminal
		}
		code, _ := runEnv(e, args, e.errOut)
		log.Info("command", "command", args[0], "code", code) // its flags may hold a password
		return actors.ControlResponse{Stdout: out.String(), Stderr: errOut.String(), Code: code}
	}
}
