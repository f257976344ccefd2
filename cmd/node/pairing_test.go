package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"image/png"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/clinicsync/clinicsync/actors"
)

// recordingProxy forwards TCP connections on a local address to target
// and records every byte that passes, both ways.
type recordingProxy struct {
	addr string
	mu   sync.Mutex // guards seen
	seen bytes.Buffer
}

func startProxy(t *testing.T, target string) *recordingProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	p := &recordingProxy{addr: l.Addr().String()}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				s, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer s.Close()
				done := make(chan struct{}, 2)
				pipe := func(dst, src net.Conn) {
					io.Copy(dst, io.TeeReader(src, p))
					if tc, ok := dst.(*net.TCPConn); ok {
						tc.CloseWrite()
					}
					done <- struct{}{}
				}
				go pipe(s, c)
				go pipe(c, s)
				<-done
				<-done
			}()
		}
	}()
	return p
}

func (p *recordingProxy) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.seen.Write(b)
}

func (p *recordingProxy) bytes() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return bytes.Clone(p.seen.Bytes())
}

// TestHubTLS: a hub serves /api/v2/sync over TLS only, with a persisted
// certificate; a phone paired with its pairing string syncs over https
// (and nothing readable crosses the wire); a hub presenting another
// certificate is refused, and nothing is sent or applied; the plain
// HTTP listener keeps the Hikma RPC and refuses /api/ unless
// --insecure-http.
func TestHubTLS(t *testing.T) {
	captureServeLog(t)
	root := t.TempDir()
	hub, other, phone := filepath.Join(root, "hub"), filepath.Join(root, "other"), filepath.Join(root, "phone")
	ok(t, "init", "--data", hub, "--kind", "hub", "--clinic", "c1")
	ok(t, "init", "--data", other, "--kind", "hub", "--clinic", "c1")
	ok(t, "user", "add", "--data", hub, "--email", "nurse@example.org", "--password", "correct horse", "--clinic", "c1")

	cloud := filepath.Join(root, "cloud")
	ok(t, "init", "--data", cloud, "--kind", "cloud")
	fails(t, 2, "node serve: --https and --insecure-http are for a hub", "serve", "--data", cloud, "--https", "127.0.0.1:0")
	fails(t, 1, "node pairing: only a hub has a pairing string, this is a cloud", "pairing", "--data", cloud)

	// An idle hub has no pairing string: its addresses are serve's.
	fails(t, 1, "node pairing: "+hub+" is not served", "pairing", "--data", hub)

	urls, stop := startServeArgs(t, hub, 2, "--https", "127.0.0.1:0")
	hubURL, hubTLS := urls[0], urls[1]
	fi, err := os.Stat(filepath.Join(hub, actors.TLSKeyFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("TLS key: %v %v, want mode 0600", fi, err)
	}
	pairing := strings.TrimSpace(ok(t, "pairing", "--data", hub))
	pr, err := actors.ParsePairing(pairing)
	if err != nil || pr.Type != "sync_hub" || pr.URL != hubURL || pr.HTTPS != hubTLS || pr.PK == "" || pr.ID == "" {
		t.Fatalf("pairing %q: %+v %v", pairing, pr, err)
	}
	var raw map[string]any // the Hikma app reads type and url
	if err := json.Unmarshal([]byte(pairing), &raw); err != nil || raw["type"] != "sync_hub" || raw["url"] != hubURL {
		t.Fatalf("pairing %q is not the Hikma QR payload: %v", pairing, raw)
	}

	// The plain listener: the RPC yes, /api/ no.
	resp, err := http.Get(hubURL + actors.HikmaHeartbeatPath)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("plain /rpc/heartbeat: %v %v", resp, err)
	}
	resp.Body.Close()
	for _, path := range []string{actors.SyncPath + "?last_pulled_at=0", actors.LoginPath} {
		resp, err = http.Get(hubURL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), hubTLS) || !strings.Contains(string(body), "--insecure-http") {
			t.Errorf("plain %s: %d %s; want 403 naming %s and --insecure-http", path, resp.StatusCode, body, hubTLS)
		}
	}

	// A phone pairs through a proxy that records the wire.
	proxy := startProxy(t, strings.TrimPrefix(hubTLS, "https://"))
	viaProxy := pr
	viaProxy.HTTPS = "https://" + proxy.addr
	ok(t, "init", "--data", phone, "--kind", "mobile")
	m := okJSON(t, "peer", "add", "--data", phone, "--type", "sync_hub", "--pairing", viaProxy.String())
	if m["url"] != viaProxy.HTTPS || m["tls_fingerprint"] != pr.FP {
		t.Fatalf("peer add --pairing: %v", m)
	}
	ok(t, append([]string{"put", "--data", phone, "--table", "patients", "--id", "p1"}, patient...)...)
	if m := okJSON(t, "login", "--data", phone, "--email", "nurse@example.org", "--password", "correct horse"); m["outcome"] != "ok" || m["pushed"] != float64(1) {
		t.Fatalf("login over https: %v", m)
	}
	if row := patientRow(t, hub, "p1"); row == nil || row["given_name"] != "Amina" {
		t.Fatalf("hub's p1: %v", row)
	}
	wire := proxy.bytes()
	basic := base64.StdEncoding.EncodeToString([]byte("nurse@example.org:correct horse"))
	for _, secret := range []string{"correct horse", basic, "Amina", "Haddad", "nurse@example.org"} {
		if bytes.Contains(wire, []byte(secret)) {
			t.Errorf("%q crossed the wire in clear", secret)
		}
	}
	if len(wire) < 1000 {
		t.Errorf("only %d bytes crossed the proxy: the sync did not go through it", len(wire))
	}

	// Another hub on the address the phone pinned: refused, with the
	// re-pair message, and nothing pushed or pulled.
	stop()
	urls2, _ := startServeArgs(t, other, 2, "--https", strings.TrimPrefix(hubTLS, "https://"))
	if urls2[1] != hubTLS {
		t.Fatalf("other hub on %s, want %s", urls2[1], hubTLS)
	}
	ok(t, append([]string{"put", "--data", phone, "--table", "patients", "--id", "p2"}, patient...)...)
	r := runCLI("sync", "--data", phone, "--json")
	if r.code != 1 || !strings.Contains(r.stdout, "the hub presented another certificate than the one paired: re-pair with its pairing string") {
		t.Errorf("sync with another hub's certificate: %+v", r)
	}
	if patientRow(t, other, "p2") != nil || patientRow(t, other, "p1") != nil {
		t.Errorf("the other hub got the phone's rows")
	}
	if row := patientRow(t, phone, "p2"); row == nil || row["_status"] != "created" {
		t.Errorf("phone's p2 after the refused sync: %v, want still created", row)
	}
}

// TestHubTLSRestart: a hub's certificate persists across serves, and
// --insecure-http opens /api/ on the plain listener, which status and
// the log name.
func TestHubTLSRestart(t *testing.T) {
	logs := captureServeLog(t)
	hub := filepath.Join(t.TempDir(), "hub")
	ok(t, "init", "--data", hub, "--kind", "hub", "--clinic", "c1")
	ok(t, "user", "add", "--data", hub, "--email", "nurse@example.org", "--password", "correct horse", "--clinic", "c1")
	_, stop := startServeArgs(t, hub, 2, "--https", "127.0.0.1:0")
	first, err := actors.ParsePairing(strings.TrimSpace(ok(t, "pairing", "--data", hub)))
	if err != nil {
		t.Fatal(err)
	}
	stop()

	urls, stop := startServeArgs(t, hub, 2, "--https", "127.0.0.1:0", "--insecure-http")
	second, err := actors.ParsePairing(strings.TrimSpace(ok(t, "pairing", "--data", hub)))
	if err != nil || second.FP != first.FP {
		t.Fatalf("fingerprint after a restart: %q (%v), want %q", second.FP, err, first.FP)
	}
	resp, err := http.Get(urls[0] + actors.SyncPath + "?last_pulled_at=0")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized { // served: it wants credentials
		t.Errorf("plain /api/v2/sync with --insecure-http: %d, want 401", resp.StatusCode)
	}
	// The wire check catches cleartext: through the plain listener,
	// the same sync shows the credentials and the patient.
	proxy := startProxy(t, strings.TrimPrefix(urls[0], "http://"))
	phone := filepath.Join(t.TempDir(), "phone")
	ok(t, "init", "--data", phone, "--kind", "mobile")
	ok(t, "peer", "add", "--data", phone, "--type", "sync_hub", "--url", "http://"+proxy.addr)
	ok(t, append([]string{"put", "--data", phone, "--table", "patients", "--id", "p1"}, patient...)...)
	if m := okJSON(t, "login", "--data", phone, "--email", "nurse@example.org", "--password", "correct horse"); m["outcome"] != "ok" {
		t.Fatalf("login over --insecure-http: %v", m)
	}
	basic := base64.StdEncoding.EncodeToString([]byte("nurse@example.org:correct horse"))
	if wire := proxy.bytes(); !bytes.Contains(wire, []byte(basic)) || !bytes.Contains(wire, []byte("Amina")) {
		t.Errorf("the wire check does not see the cleartext of --insecure-http")
	}
	st := ok(t, "status", "--data", hub)
	if !strings.Contains(st, "warning      --insecure-http") {
		t.Errorf("status does not name --insecure-http:\n%s", st)
	}
	if m := okJSON(t, "status", "--data", hub); m["serving"].(map[string]any)["insecure_http"] != true {
		t.Errorf("status --json: %v", m["serving"])
	}

	// QR code on the terminal and as a PNG.
	if qr := ok(t, "pairing", "--data", hub, "--qr"); strings.Count(qr, "\n") < 20 || !strings.ContainsAny(qr, "█▀▄") {
		t.Errorf("pairing --qr:\n%s", qr)
	}
	file := filepath.Join(t.TempDir(), "hub.png")
	ok(t, "pairing", "--data", hub, "--png", file)
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if img, err := png.Decode(f); err != nil || img.Bounds().Dx() < 100 {
		t.Errorf("pairing --png: %v", err)
	}
	stop()
	if !strings.Contains(logs.String(), "--insecure-http") {
		t.Errorf("serve log does not name --insecure-http:\n%s", logs)
	}
}
