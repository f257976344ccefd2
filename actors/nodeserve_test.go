package actors

import (
	"context"
	"errors"
	"log/slog"
	"testing"
)

// Serve refuses what a node's kind does not serve, and stops when Ready
// fails, releasing its listeners.
func TestNodeServeOptions(t *testing.T) {
	quiet := slog.New(slog.DiscardHandler)
	ctx := context.Background()
	mobileDir, _ := initNode(t, KindMobile)
	if err := openNode(t, mobileDir).Serve(ctx, ServeOptions{Logger: quiet}); !errors.Is(err, ErrNotServing) {
		t.Errorf("Serve on a mobile: %v, want ErrNotServing", err)
	}
	cloudDir, _ := initNode(t, KindCloud)
	cloud := openNode(t, cloudDir)
	for _, o := range []ServeOptions{{HTTPS: "127.0.0.1:0"}, {InsecureHTTP: true}} {
		o.Logger = quiet
		if err := cloud.Serve(ctx, o); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("Serve on a cloud with %+v: %v, want ErrInvalidConfig", o, err)
		}
	}

	hubDir, _ := initNode(t, KindHub)
	hub := openNode(t, hubDir)
	stopped := errors.New("stop")
	var got Addrs
	err := hub.Serve(ctx, ServeOptions{HTTPS: "127.0.0.1:0", UpstreamInterval: -1, Logger: quiet,
		Ready: func(a Addrs) error { got = a; return stopped }})
	if !errors.Is(err, stopped) {
		t.Fatalf("Serve with a failing Ready: %v", err)
	}
	if got.Pairing == nil || got.Pairing.URL != got.HTTP || got.Pairing.HTTPS != got.HTTPS || got.Pairing.FP != got.Fingerprint || got.Fingerprint == "" {
		t.Errorf("a hub's Addrs: %+v (pairing %+v)", got, got.Pairing)
	}
	// The engine Serve started stays; a second Serve uses it, on the
	// same addresses (the first released them).
	again := ServeOptions{HTTP: got.HTTP[len("http://"):], HTTPS: got.HTTPS[len("https://"):], Logger: quiet,
		Ready: func(Addrs) error { return stopped }}
	if err := hub.Serve(ctx, again); !errors.Is(err, stopped) {
		t.Errorf("Serve again on the same addresses: %v", err)
	}
}
