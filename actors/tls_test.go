package actors_test

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clinicsync/clinicsync/actors"
	"github.com/clinicsync/clinicsync/kv"
	pb "github.com/clinicsync/clinicsync/proto"
)

// serveHubTLS serves a hub's sync API over TLS with its certificate and
// returns its https URL.
func serveHubTLS(t *testing.T, hub *actors.Node) string {
	t.Helper()
	cert, _, err := hub.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	h, err := hub.CloudHandler(actors.CloudConfig{RateLimit: -1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- actors.Serve(ctx, tls.NewListener(l, actors.ServerTLSConfig(cert)), h) }()
	t.Cleanup(func() {
		stop()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return "https://" + l.Addr().String()
}

func initNodeT(t *testing.T, dir string, kind actors.Kind) *actors.Node {
	t.Helper()
	if _, err := actors.Init(dir, actors.InitConfig{Kind: kind, Clinics: []string{"c1"}}); err != nil {
		t.Fatal(err)
	}
	return openNodeT(t, dir)
}

// TestTLSCertificate: a hub's certificate is made once and kept (key
// mode 0600); only a hub has one.
func TestTLSCertificate(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	if _, err := actors.Init(root+"/hub", actors.InitConfig{Kind: actors.KindHub}); err != nil {
		t.Fatal(err)
	}
	hub, err := actors.Open(root+"/hub", nil)
	if err != nil {
		t.Fatal(err)
	}
	cert, fp, err := hub.TLSCertificate()
	if err != nil || fp != actors.Fingerprint(cert.Certificate[0]) || len(fp) != 43 {
		t.Fatalf("TLSCertificate: %q %v", fp, err)
	}
	if fi, err := os.Stat(filepath.Join(root, "hub", actors.TLSKeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file: %v %v", fi, err)
	}
	hub.Close()
	hub = openNodeT(t, root+"/hub")
	if _, again, err := hub.TLSCertificate(); err != nil || again != fp {
		t.Errorf("after reopening: %q %v, want %q", again, err, fp)
	}
	phone := initNodeT(t, root+"/phone", actors.KindMobile)
	if _, _, err := phone.TLSCertificate(); !errors.Is(err, actors.ErrNotServing) {
		t.Errorf("a mobile's TLSCertificate: %v", err)
	}
}

// TestPinnedHub: a mobile paired with a hub's pairing string syncs over
// TLS; toward another hub's certificate its requests fail with
// ErrCertMismatch (not a network error) before anything is sent.
func TestPinnedHub(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	hub := initNodeT(t, root+"/hub", actors.KindHub)
	other := initNodeT(t, root+"/other", actors.KindHub)
	if _, err := hub.AddUser(actors.UserConfig{Email: nurseEmail, Password: nursePassword}); err != nil {
		t.Fatal(err)
	}
	hubTLS, otherTLS := serveHubTLS(t, hub), serveHubTLS(t, other)
	pairing, err := hub.Pairing("http://127.0.0.1:4001", hubTLS)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := actors.ParsePairing(pairing.String())
	if err != nil || parsed != pairing {
		t.Fatalf("ParsePairing(%s) = %+v %v", pairing, parsed, err)
	}
	cfg, err := actors.PairingPeer(parsed)
	if err != nil {
		t.Fatal(err)
	}
	phone := initNodeT(t, root+"/phone", actors.KindMobile)
	if err := phone.SetCredentials(nurseEmail, nursePassword); err != nil {
		t.Fatal(err)
	}
	peer, err := phone.AddPeer(cfg)
	if err != nil || peer.URL != hubTLS || peer.TLSFingerprint != pairing.FP || len(peer.PublicKey) != 32 {
		t.Fatalf("AddPeer: %+v %v", peer, err)
	}
	tr, err := phone.HTTPTransports(nil)(peer)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := tr.Pull(ctx, &pb.PullRequest{}); err != nil {
		t.Fatalf("pull over pinned TLS: %v", err)
	}

	// The same pin toward another hub's certificate.
	peer.URL = otherTLS
	tr, err = phone.HTTPTransports(nil)(peer)
	if err != nil {
		t.Fatal(err)
	}
	_, err = tr.Pull(ctx, &pb.PullRequest{})
	if !errors.Is(err, actors.ErrCertMismatch) || errors.Is(err, actors.ErrUnreachable) {
		t.Fatalf("pull toward another certificate: %v; want ErrCertMismatch only", err)
	}
	if msg := actors.UserMessage(kv.PeerHub, err); !strings.Contains(msg, "re-pair with its pairing string") {
		t.Errorf("UserMessage: %q", msg)
	}
	if cs, err := other.Clients(); err != nil || len(cs) != 0 {
		t.Errorf("the other hub saw clients %v %v", cs, err)
	}

	// A pin needs https.
	cfg.URL = "http://" + strings.TrimPrefix(hubTLS, "https://")
	if _, err := phone.AddPeer(cfg); !errors.Is(err, actors.ErrInvalidConfig) {
		t.Errorf("AddPeer pinning an http URL: %v", err)
	}
}

// TestParsePairing refuses what is not a hub's pairing string.
func TestParsePairing(t *testing.T) {
	t.Parallel()
	const pk = `"pk":"9kuvyuhphkELPYndQSaUyHedg1popAaRT6OYFnsbnRY"`
	const fp = `"fp":"YwouHdZezlU8J_WPT56LM9_tjyeO2CxfH7VEIj3Bmis"`
	good := `{"type":"sync_hub","url":"http://10.0.0.2:4001","id":"h1",` + pk + `}`
	if p, err := actors.ParsePairing(good); err != nil || p.SyncURL() != "http://10.0.0.2:4001" || p.String() != good {
		t.Errorf("ParsePairing(%s) = %+v %v", good, p, err)
	}
	withTLS := `{"type":"sync_hub","url":"http://10.0.0.2:4001","id":"h1",` + pk + `,"https":"https://10.0.0.2:4443",` + fp + `}`
	if p, err := actors.ParsePairing(withTLS); err != nil || p.SyncURL() != "https://10.0.0.2:4443" || p.String() != withTLS {
		t.Errorf("ParsePairing(%s) = %+v %v", withTLS, p, err)
	}
	full := `{"type":"sync_hub","url":"http://10.0.0.2:4001","id":"h1",` + pk + `,"https":"https://10.0.0.2:4443",` + fp +
		`,"rpc":"10.0.0.2:4003","disc":"10.0.0.2:4002"}`
	if p, err := actors.ParsePairing(full); err != nil || p.SyncURL() != "rpc://10.0.0.2:4003" || p.Disc != "10.0.0.2:4002" || p.String() != full {
		t.Errorf("ParsePairing(%s) = %+v %v", full, p, err)
	}
	for _, bad := range []string{
		"", "x", "https://hub.example.org", good + "{}",
		`{"type":"sync_hub","url":"http://h:1","id":"h1",` + pk + `,"disc":"h"}`,
		`{"type":"cloud_server","url":"http://h:1","id":"h1",` + pk + `}`,
		`{"type":"sync_hub","url":"ftp://h:1","id":"h1",` + pk + `}`,
		`{"type":"sync_hub","url":"http://h:1",` + pk + `}`,
		`{"type":"sync_hub","url":"http://h:1","id":"h1","pk":"short"}`,
		`{"type":"sync_hub","url":"http://h:1","id":"h1",` + pk + `,"https":"https://h:2"}`,
		`{"type":"sync_hub","url":"http://h:1","id":"h1",` + pk + `,"https":"http://h:2",` + fp + `}`,
		`{"type":"sync_hub","url":"http://h:1","id":"h1",` + pk + `,"https":"https://h:2","fp":"abc"}`,
	} {
		if _, err := actors.ParsePairing(bad); !errors.Is(err, actors.ErrBadPairing) {
			t.Errorf("ParsePairing(%q): %v, want ErrBadPairing", bad, err)
		}
	}
}
