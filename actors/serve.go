package actors

// Serving: a node's HTTP sync API (CloudHandler) and its lifetime
// (Serve), and the registration of the hubs a cloud serves.

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
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
// serves the same API to its devices for now, relaying what they push
// upstream; a mobile node does not serve (ErrNotServing).
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

// Serve serves h on l until ctx ends, then stops accepting connections
// and waits (up to ShutdownTimeout) for the requests in flight to
// finish before returning. It returns nil after such a shutdown, and
// the listener's error otherwise.
func Serve(ctx context.Context, l net.Listener, h http.Handler) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
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
