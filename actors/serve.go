package actors

// Serving: a node's HTTP sync API (CloudHandler) and its lifetime
// (Serve), and the registration of the hubs a cloud serves.

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/clinicsync/clinicsync/codec/schema"
	"github.com/clinicsync/clinicsync/kv"
)

// ErrNotServing: the node's kind does not serve (a mobile), or the
// operation belongs to another kind (devices are registered with a
// cloud).
var ErrNotServing = errors.New("actors: this node does not serve")

// ShutdownTimeout bounds how long Serve waits for requests in flight
// once asked to stop.
const ShutdownTimeout = 30 * time.Second

// CloudHandler returns the node's HTTP sync API (GET/POST /api/v2/sync,
// /healthz) over its store. A cloud serves devices and hubs; a hub
// serves the same API to its devices (over TLS: PlainHTTPGuard), beside
// the Hikma RPC (HikmaHandler), relaying what they push upstream; a
// mobile node does not serve (ErrNotServing).
func (n *Node) CloudHandler(cfg CloudConfig) (*CloudHandler, error) {
	if !n.info.Kind.Serves() {
		return nil, fmt.Errorf("%w: a %s node syncs with a hub or the cloud and serves nobody", ErrNotServing, n.info.Kind)
	}
	cfg.Relay = n.info.Kind == KindHub
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.Logger = cfg.Logger.With("node", n.info.NodeID)
	return NewCloudHandler(n.store, cfg), nil
}

// Timeout defaults (ServeConfig).
const (
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultBodyTimeout       = 5 * time.Minute
	DefaultWriteStallTimeout = 2 * time.Minute
	DefaultIdleTimeout       = 2 * time.Minute
)

// ServeConfig bounds what the connections of a served node may hold:
// time and places. For every field 0 is its default and a negative
// value lifts the bound.
//
// There is no bound on a whole response: a JSON pull streams for as long
// as its data takes. A response is cut only when the client stops
// reading it (WriteStallTimeout).
type ServeConfig struct {
	// ReadHeaderTimeout bounds reading a request's headers
	// (DefaultReadHeaderTimeout). It also bounds the wait for the rest
	// of a body the handler did not read (a refused request's) before
	// the connection is reused; after it the connection is closed.
	ReadHeaderTimeout time.Duration
	// BodyTimeout bounds reading a request's body, from the moment the
	// handler starts (DefaultBodyTimeout: 32 MiB at about 110 KB/s). A
	// push whose body takes longer is answered 408 and its connection
	// closed; a push is idempotent, so the client sends it again.
	BodyTimeout time.Duration
	// WriteStallTimeout cuts a response the client stopped reading:
	// each write must complete within it (DefaultWriteStallTimeout).
	WriteStallTimeout time.Duration
	// IdleTimeout closes a keep-alive connection that waits this long
	// for its next request (DefaultIdleTimeout).
	IdleTimeout time.Duration
	// MaxConns caps the connections open at once (DefaultMaxConns): past
	// it new connections wait to be accepted. MaxConnsPerAddr caps those
	// from one client IP address (DefaultMaxConnsPerAddr): past it a new
	// one is closed at once. See LimitListener.
	MaxConns        int
	MaxConnsPerAddr int
	// Logger says when connections are refused (nil: slog.Default()).
	Logger *slog.Logger
}

// orDefault resolves a ServeConfig duration: 0 is def, negative none (0).
func orDefault[T time.Duration | int](v, def T) T {
	switch {
	case v == 0:
		return def
	case v < 0:
		return 0
	}
	return v
}

// Serve serves h on l with the default ServeConfig.
func Serve(ctx context.Context, l net.Listener, h http.Handler) error {
	return ServeConfig{}.Serve(ctx, l, h)
}

// Serve serves h on l, within cfg's bounds, until ctx ends, then stops
// accepting connections and waits (up to ShutdownTimeout) for the
// requests in flight to finish before returning. It returns nil after
// such a shutdown, and the listener's error otherwise.
func (cfg ServeConfig) Serve(ctx context.Context, l net.Listener, h http.Handler) error {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	header := orDefault(cfg.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	g := &guard{h: h, body: orDefault(cfg.BodyTimeout, DefaultBodyTimeout),
		stall: orDefault(cfg.WriteStallTimeout, DefaultWriteStallTimeout), drain: header}
	if g.drain == 0 {
		g.drain = DefaultReadHeaderTimeout
	}
	srv := &http.Server{
		Handler:           g,
		ReadHeaderTimeout: header,
		IdleTimeout:       orDefault(cfg.IdleTimeout, DefaultIdleTimeout),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
		ConnState: func(c net.Conn, s http.ConnState) {
			if s == http.StateIdle {
				// The response is out: its write deadline must not
				// outlive it.
				c.SetWriteDeadline(time.Time{})
			}
		},
	}
	l = LimitListener(l, orDefault(cfg.MaxConns, DefaultMaxConns), orDefault(cfg.MaxConnsPerAddr, DefaultMaxConnsPerAddr), log)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-done; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("actors: shutting down the HTTP server: %w", err)
	}
	return nil
}

// guard puts each request's body and response writes under deadlines
// (http.Server's ReadTimeout and WriteTimeout would bound a whole
// request, and so cut long streamed pulls):
//   - the body must arrive within body of the handler's start; once it
//     is in, the read deadline is lifted, and a body the handler left
//     unread gets drain more to arrive (the server reads it to reuse
//     the connection);
//   - each response write must complete within stall: the write
//     deadline moves on as the response does.
type guard struct {
	h                  http.Handler
	body, stall, drain time.Duration // 0: none
}

func (g *guard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	var gb *guardedBody
	if g.body > 0 && r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody {
		deadline := time.Now().Add(g.body)
		if rc.SetReadDeadline(deadline) == nil {
			gb = &guardedBody{ReadCloser: r.Body, rc: rc, left: r.ContentLength, deadline: deadline}
			// A copy: the server reads the original's Body after the
			// handler (to drain what it left).
			r2 := *r
			r2.Body = gb
			r = &r2
		}
	}
	if g.stall > 0 {
		sw := &stallWriter{ResponseWriter: w, rc: rc, d: g.stall}
		sw.touch(true)
		w = sw
		// The server flushes what the handler left buffered after it
		// returns: give that a full period too.
		defer sw.touch(true)
	}
	g.h.ServeHTTP(w, r)
	if gb != nil && !gb.in {
		rc.SetReadDeadline(minTime(gb.deadline, time.Now().Add(g.drain)))
	}
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// guardedBody lifts the read deadline once the body is in.
type guardedBody struct {
	io.ReadCloser
	rc       *http.ResponseController
	left     int64 // bytes still to come; -1: unknown (until EOF)
	deadline time.Time
	in       bool // the whole body was read
}

func (b *guardedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if b.left > 0 {
		b.left -= int64(n)
	}
	// After a failed read (the deadline passed) the deadline stays: the
	// server then closes the connection rather than wait for the rest.
	if !b.in && (err == nil && b.left == 0 || err == io.EOF) {
		b.in = true
		b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

// stallWriter moves the write deadline on as the response is written:
// a write stalls out only when the client stops reading for d.
type stallWriter struct {
	http.ResponseWriter
	rc       *http.ResponseController
	d        time.Duration
	deadline time.Time
}

// touch sets the write deadline d from now, when less than half of it
// is left (or always, when forced).
func (s *stallWriter) touch(force bool) {
	now := time.Now()
	if !force && s.deadline.Sub(now) > s.d/2 {
		return
	}
	s.deadline = now.Add(s.d)
	s.rc.SetWriteDeadline(s.deadline) // http.ErrNotSupported: no deadline to keep
}

func (s *stallWriter) WriteHeader(code int) {
	s.touch(false)
	s.ResponseWriter.WriteHeader(code)
}

func (s *stallWriter) Write(p []byte) (int, error) {
	s.touch(false)
	return s.ResponseWriter.Write(p)
}

// Flush flushes the response, as http.Flusher.
func (s *stallWriter) Flush() {
	s.touch(false)
	s.rc.Flush()
}

// Unwrap gives http.ResponseController the server's ResponseWriter.
func (s *stallWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// DeviceConfig describes a hub to register with a cloud.
type DeviceConfig struct {
	Name string
	// Clinics scope the hub: it is served, and may push, only rows of
	// these clinics (none: every clinic).
	Clinics []string
}

// AddDevice registers a hub with a cloud node and returns it with its
// API key: 32 random bytes in base64url, shown only here (the store
// keeps its sha256). The hub presents it as "Authorization: Bearer KEY"
// with peerType=sync_hub.
func (n *Node) AddDevice(cfg DeviceConfig) (kv.Device, string, error) {
	if n.info.Kind != KindCloud {
		return kv.Device{}, "", fmt.Errorf("%w: devices are registered with a cloud node, this is a %s", ErrNotServing, n.info.Kind)
	}
	clinics := []string{}
	for _, c := range cfg.Clinics {
		if !schema.ValidID(c) {
			return kv.Device{}, "", fmt.Errorf("%w: clinic id %q: want 1-128 characters from [A-Za-z0-9_.-]", ErrInvalidConfig, c)
		}
		if !slices.Contains(clinics, c) {
			clinics = append(clinics, c)
		}
	}
	id, err := newUUID()
	if err != nil {
		return kv.Device{}, "", err
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return kv.Device{}, "", fmt.Errorf("actors: reading randomness: %w", err)
	}
	key := base64.RawURLEncoding.EncodeToString(raw[:])
	d := kv.Device{ID: id, Name: cfg.Name, ClinicIDs: clinics, KeyHash: DeviceKeyHash(key), Status: kv.StatusActive}
	if err := n.store.PutDevice(d); err != nil {
		return kv.Device{}, "", err
	}
	d, err = n.device(id)
	return d, key, err
}

// Devices lists the hubs registered with the node.
func (n *Node) Devices() ([]kv.Device, error) { return n.store.Devices() }

// RevokeDevice refuses a registered hub's key from now on.
func (n *Node) RevokeDevice(id string) error {
	d, err := n.device(id)
	if err != nil {
		return err
	}
	d.Status = kv.StatusRevoked
	return n.store.PutDevice(d)
}

func (n *Node) device(id string) (kv.Device, error) {
	devs, err := n.store.Devices()
	if err != nil {
		return kv.Device{}, err
	}
	for _, d := range devs {
		if d.ID == id {
			return d, nil
		}
	}
	return kv.Device{}, fmt.Errorf("%w: device %q", kv.ErrNotFound, id)
}
