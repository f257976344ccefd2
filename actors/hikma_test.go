package actors_test

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/clinicsync/clinicsync/actors"
	"github.com/clinicsync/clinicsync/kv"
)

// The Hikma mobile side of the hub RPC, written from the reference
// (hikma-sync.md §2: app/crypto/keys.ts, cipher.ts, rpc/transport.ts)
// with the standard library, not with codec: a fresh X25519 key per
// handshake, HKDF-SHA256 with salt "hikma-health-pairing-v1" and info
// hub_pub ‖ client_pub, AES-256-GCM with a random 12-byte nonce
// prepended and the direction as AAD, base64url without padding.
type hikmaApp struct {
	t        *testing.T
	url      string
	clientID string
	key      []byte
	token    string
	wire     *bytes.Buffer // every byte sent to and received from /rpc/
}

var b64url = base64.RawURLEncoding

func newHikmaApp(t *testing.T, url, clientID string, wire *bytes.Buffer) *hikmaApp {
	return &hikmaApp{t: t, url: url, clientID: clientID, wire: wire}
}

// post sends body to path and returns the status and the decoded JSON.
func (a *hikmaApp) post(path string, body any) (int, map[string]any) {
	a.t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		a.t.Fatal(err)
	}
	a.wire.Write(b)
	resp, err := http.Post(a.url+path, "application/json", bytes.NewReader(b))
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(resp.Body)
	if err != nil {
		a.t.Fatal(err)
	}
	a.wire.Write(rb)
	var m map[string]any
	if err := json.Unmarshal(rb, &m); err != nil {
		a.t.Fatalf("POST %s: %d %q is not JSON: %v", path, resp.StatusCode, rb, err)
	}
	return resp.StatusCode, m
}

func (a *hikmaApp) handshake() {
	a.t.Helper()
	priv, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		a.t.Fatal(err)
	}
	status, m := a.post("/rpc/handshake", map[string]any{"client_id": a.clientID, "client_public_key": b64url.EncodeToString(priv.PublicKey().Bytes())})
	hubKey, _ := m["hub_public_key"].(string)
	if status != 200 || m["success"] != true || hubKey == "" || m["hub_id"] == "" {
		a.t.Fatalf("handshake: %d %v", status, m)
	}
	raw, err := b64url.DecodeString(hubKey)
	if err != nil {
		a.t.Fatal(err)
	}
	hubPub, err := ecdh.X25519().NewPublicKey(raw)
	if err != nil {
		a.t.Fatal(err)
	}
	shared, err := priv.ECDH(hubPub)
	if err != nil {
		a.t.Fatal(err)
	}
	info := append(append([]byte{}, raw...), priv.PublicKey().Bytes()...)
	if a.key, err = hkdf.Key(sha256.New, shared, []byte("hikma-health-pairing-v1"), string(info), 32); err != nil {
		a.t.Fatal(err)
	}
}

func (a *hikmaApp) gcm() cipher.AEAD {
	block, err := aes.NewCipher(a.key)
	if err != nil {
		a.t.Fatal(err)
	}
	g, err := cipher.NewGCM(block)
	if err != nil {
		a.t.Fatal(err)
	}
	return g
}

func (a *hikmaApp) seal(aad string, v any) string {
	a.t.Helper()
	plain, err := json.Marshal(v)
	if err != nil {
		a.t.Fatal(err)
	}
	nonce := make([]byte, 12)
	rand.Read(nonce)
	return b64url.EncodeToString(a.gcm().Seal(nonce, nonce, plain, []byte(aad)))
}

func (a *hikmaApp) open(aad, blob string) []byte {
	a.t.Helper()
	raw, err := b64url.DecodeString(blob)
	if err != nil || len(raw) < 28 {
		a.t.Fatalf("response payload %q: %v", blob, err)
	}
	plain, err := a.gcm().Open(nil, raw[:12], raw[12:], []byte(aad))
	if err != nil {
		a.t.Fatalf("response payload does not open as %s: %v", aad, err)
	}
	return plain
}

// rpcResult is an answer: the HTTP status, the envelope, and the opened
// result when it succeeded.
type rpcResult struct {
	status int
	env    map[string]any
	result map[string]any
}

func (r rpcResult) ok() bool { return r.status == 200 && r.env["success"] == true && r.result != nil }

// refused checks a refusal's status, error_code and message.
func (r rpcResult) refused(t *testing.T, status int, code, msg string) {
	t.Helper()
	e, _ := r.env["error"].(string)
	if r.status != status || r.env["success"] != false || r.env["error_code"] != code || !strings.Contains(e, msg) {
		t.Errorf("got %d %v, want %d %s with %q", r.status, r.env, status, code, msg)
	}
}

// send seals body for kind ("command" or "query") and posts it.
func (a *hikmaApp) sendRaw(kind, payload string) rpcResult {
	a.t.Helper()
	status, m := a.post("/rpc/"+kind, map[string]any{"client_id": a.clientID, "payload": payload})
	r := rpcResult{status: status, env: m}
	if p, _ := m["payload"].(string); status == 200 && p != "" {
		if err := json.Unmarshal(a.open(kind+"_response", p), &r.result); err != nil {
			a.t.Fatal(err)
		}
	}
	return r
}

func (a *hikmaApp) command(name string, data any) rpcResult {
	a.t.Helper()
	return a.sendRaw("command", a.seal("command", map[string]any{"command": name, "data": data, "token": a.tokenOrNil()}))
}

func (a *hikmaApp) query(name string, params any) rpcResult {
	a.t.Helper()
	return a.sendRaw("query", a.seal("query", map[string]any{"query": name, "params": params, "token": a.tokenOrNil()}))
}

func (a *hikmaApp) tokenOrNil() any {
	if a.token == "" {
		return nil
	}
	return a.token
}

func (a *hikmaApp) login(email, password string) rpcResult {
	a.t.Helper()
	r := a.command("login", map[string]any{"email": email, "password": password})
	if r.ok() {
		a.token, _ = r.result["token"].(string)
	}
	return r
}

// sync is the app's hub sync (reference §3.3): re-handshake, pull,
// push what it has, and returns the pull.
func (a *hikmaApp) sync(lastPulledAt int64, changes map[string]any) (pull, push rpcResult) {
	a.t.Helper()
	a.handshake()
	pull = a.query("sync_pull", map[string]any{"lastPulledAt": lastPulledAt})
	if !pull.ok() {
		a.t.Fatalf("sync_pull: %d %v", pull.status, pull.env)
	}
	if changes != nil {
		push = a.command("sync_push", map[string]any{"changes": changes, "lastPulledAt": lastPulledAt})
		if !push.ok() {
			a.t.Fatalf("sync_push: %d %v", push.status, push.env)
		}
	}
	return pull, push
}

type hikmaHub struct {
	node  *actors.Node
	hk    *actors.HikmaHandler
	url   string
	clock *kv.ManualClock
}

const (
	hikmaEmail    = "nurse@clinic.example"
	hikmaPassword = "correct horse battery"
	hikmaPatient  = "Zubaydah-Qarawi"
)

func newHikmaHub(t *testing.T) *hikmaHub {
	t.Helper()
	dir := t.TempDir()
	if _, err := actors.Init(dir, actors.InitConfig{Kind: actors.KindHub, Name: "Clinic hub", Clinics: []string{"c1"}}); err != nil {
		t.Fatal(err)
	}
	clock := kv.NewManualClock(time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC))
	n, err := actors.Open(dir, clock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	if _, err := n.AddUser(actors.UserConfig{Email: hikmaEmail, Password: hikmaPassword, Name: "Nurse Layla", Role: "provider", ClinicID: "c1"}); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cloud, err := n.CloudHandler(actors.CloudConfig{Clock: clock, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	hk, err := n.HikmaHandler(cloud, actors.HikmaConfig{Clock: clock, Logger: log, MaxSessions: 8})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(hk)
	t.Cleanup(srv.Close)
	return &hikmaHub{node: n, hk: hk, url: srv.URL, clock: clock}
}

func hikmaPatientRow(id string) map[string]any {
	return map[string]any{
		"id": id, "given_name": hikmaPatient, "surname": "Haddad", "date_of_birth": "1990-02-28",
		"citizenship": "JO", "hometown": "Irbid", "phone": "0790000000", "sex": "female", "camp": nil,
		"additional_data": "{}", "metadata": "{}", "photo_url": nil, "is_deleted": false,
		"deleted_at": nil, "created_at": 1772352000000, "updated_at": 1772352000000, "government_id": "G-1",
		"external_patient_id": "E-1", "primary_clinic_id": "c1", "last_modified_by": nil,
		"_status": "created", "_changed": "",
	}
}

func tableList(t *testing.T, r rpcResult, table, list string) []any {
	t.Helper()
	changes, _ := r.result["changes"].(map[string]any)
	tc, _ := changes[table].(map[string]any)
	l, _ := tc[list].([]any)
	return l
}

func TestHikmaHubSync(t *testing.T) {
	hub := newHikmaHub(t)
	var wire bytes.Buffer

	// Heartbeat, no auth.
	resp, err := http.Get(hub.url + "/rpc/heartbeat")
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(resp.Body); resp.StatusCode != 200 || strings.TrimSpace(string(b)) != `{"status":"ok"}` {
		t.Errorf("heartbeat: %d %s", resp.StatusCode, b)
	}
	resp.Body.Close()
	// The hub's other API is still there.
	if resp, err := http.Get(hub.url + "/healthz"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", resp, err)
	}

	app := newHikmaApp(t, hub.url, "0b8a1d52-4c7e-4f1a-9d55-7d3f2a1e9c01", &wire)
	app.handshake()
	if r := app.query("ping", nil); !r.ok() || r.result["status"] != "ok" {
		t.Errorf("ping: %+v", r)
	}
	lr := app.login(hikmaEmail, hikmaPassword)
	if !lr.ok() || lr.result["provider_name"] != "Nurse Layla" || lr.result["clinic_id"] != "c1" || lr.result["role"] != "provider" || lr.result["user_id"] == "" {
		t.Fatalf("login: %+v", lr)
	}
	// The paired device is a mobile_app peer with its public key.
	p, err := hub.node.Store().Peer(app.clientID)
	if err != nil || p.Type != kv.PeerMobile || len(p.PublicKey) != 32 {
		t.Errorf("paired device: %+v %v", p, err)
	}

	pull, _ := app.sync(0, nil)
	ts := int64(pull.result["timestamp"].(float64))
	if ts <= 0 || len(tableList(t, pull, "users", "created")) != 0 {
		t.Errorf("first pull: timestamp %d, users %v (users are never sent to the app)", ts, tableList(t, pull, "users", "created"))
	}
	_, push := app.sync(ts, map[string]any{"patients": map[string]any{
		"created": []any{hikmaPatientRow("p1")}, "updated": []any{}, "deleted": []any{}}})
	if _, rejected := push.result["experimentalRejectedIds"]; rejected {
		t.Errorf("push rejected rows: %v", push.result)
	}
	// In the hub's store, pending for its upstream.
	if r, err := hub.node.Store().Get("patients", "p1"); err != nil || r.Cols["given_name"].Str != hikmaPatient {
		t.Fatalf("hub's p1: %+v %v", r, err)
	}
	if n, err := hub.node.Store().PendingCount(); err != nil || n < 1 {
		t.Errorf("pending for upstream: %d %v", n, err)
	}
	// Another device pulls it (as updated: WatermelonDB creates it).
	other := newHikmaApp(t, hub.url, "5c7e0f31-2b44-4d8e-8a0c-3e9b1f6a7d02", &wire)
	other.handshake()
	if r := other.login(hikmaEmail, hikmaPassword); !r.ok() {
		t.Fatalf("second login: %+v", r)
	}
	pull, _ = other.sync(0, nil)
	got := append(tableList(t, pull, "patients", "created"), tableList(t, pull, "patients", "updated")...)
	if len(got) != 1 || got[0].(map[string]any)["given_name"] != hikmaPatient {
		t.Errorf("pulled patients: %v", got)
	}
	// The pusher gets it back as updated.
	pull, _ = app.sync(ts, nil)
	if up := tableList(t, pull, "patients", "updated"); len(up) != 1 || up[0].(map[string]any)["id"] != "p1" {
		t.Errorf("pusher's pull: %v", pull.result)
	}
	// A row that fails validation is reported back.
	bad := hikmaPatientRow("p2")
	bad["date_of_birth"] = "not a date"
	_, push = app.sync(ts, map[string]any{"patients": map[string]any{"created": []any{bad}, "updated": []any{}, "deleted": []any{}}})
	if rej, _ := json.Marshal(push.result["experimentalRejectedIds"]); string(rej) != `{"patients":["p2"]}` {
		t.Errorf("rejected: %s (%v)", rej, push.result)
	}

	// Nothing readable on the wire.
	for _, secret := range []string{hikmaPassword, hikmaPatient, "Nurse Layla"} {
		if bytes.Contains(wire.Bytes(), []byte(secret)) {
			t.Errorf("%q travels in clear on /rpc/", secret)
		}
	}
}

func TestHikmaHubRefusals(t *testing.T) {
	hub := newHikmaHub(t)
	var wire bytes.Buffer
	good := newHikmaApp(t, hub.url, "good-client", &wire)
	good.handshake()
	if r := good.login(hikmaEmail, hikmaPassword); !r.ok() {
		t.Fatalf("login: %+v", r)
	}
	// goodSyncs checks that another client goes on syncing.
	goodSyncs := func() {
		t.Helper()
		good.sync(0, nil)
	}
	app := newHikmaApp(t, hub.url, "bad-client", &wire)
	app.handshake()

	t.Run("wrong password", func(t *testing.T) {
		app.login(hikmaEmail, "wrong password!").refused(t, 200, "AUTH_FAILED", "Invalid email or password")
		app.login("nobody@clinic.example", hikmaPassword).refused(t, 200, "AUTH_FAILED", "Invalid email or password")
		goodSyncs()
	})
	t.Run("missing token", func(t *testing.T) {
		app.query("sync_pull", map[string]any{"lastPulledAt": 0}).refused(t, 200, "AUTH_FAILED", "Authentication required")
		app.command("sync_push", map[string]any{"changes": map[string]any{}}).refused(t, 200, "AUTH_FAILED", "Authentication required")
		goodSyncs()
	})
	t.Run("forged token", func(t *testing.T) {
		parts := strings.Split(good.token, ".")
		claims, _ := b64url.DecodeString(parts[1])
		forged := strings.Replace(string(claims), `"role":"provider"`, `"role":"admin"`, 1)
		app.token = parts[0] + "." + b64url.EncodeToString([]byte(forged)) + "." + parts[2]
		app.query("sync_pull", nil).refused(t, 200, "AUTH_FAILED", "invalid signature")
		app.token = b64url.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + parts[1] + "."
		app.query("sync_pull", nil).refused(t, 200, "AUTH_FAILED", "not HS256")
		app.token = ""
		goodSyncs()
	})
	t.Run("unknown client id", func(t *testing.T) {
		stranger := newHikmaApp(t, hub.url, "never-shook-hands", &wire)
		stranger.key = good.key
		stranger.query("ping", nil).refused(t, 401, "SESSION_EXPIRED", "handshake again")
		goodSyncs()
	})
	t.Run("tampered payload", func(t *testing.T) {
		blob, _ := b64url.DecodeString(app.seal("query", map[string]any{"query": "ping"}))
		blob[20] ^= 1
		app.sendRaw("query", b64url.EncodeToString(blob)).refused(t, 400, "DECRYPTION_FAILED", "does not open")
		goodSyncs()
	})
	t.Run("wrong AAD", func(t *testing.T) {
		app.sendRaw("query", app.seal("command", map[string]any{"query": "ping"})).refused(t, 400, "DECRYPTION_FAILED", "does not open")
		app.sendRaw("command", app.seal("query_response", map[string]any{"command": "ping"})).refused(t, 400, "DECRYPTION_FAILED", "does not open")
		goodSyncs()
	})
	t.Run("bad JSON", func(t *testing.T) {
		status, m := app.post("/rpc/command", "not an envelope")
		rpcResult{status: status, env: m}.refused(t, 400, "BAD_REQUEST", "request body")
		nonce := make([]byte, 12)
		sealed := app.gcm().Seal(nonce, nonce, []byte("{not json"), []byte("command"))
		app.sendRaw("command", b64url.EncodeToString(sealed)).refused(t, 400, "BAD_REQUEST", "not JSON")
		goodSyncs()
	})
	t.Run("replay", func(t *testing.T) {
		blob := app.seal("query", map[string]any{"query": "ping"})
		if r := app.sendRaw("query", blob); !r.ok() {
			t.Fatalf("first: %+v", r)
		}
		app.sendRaw("query", blob).refused(t, 400, "DECRYPTION_FAILED", "replay")
		// After a new handshake the old envelope no longer opens at all.
		app.handshake()
		app.sendRaw("query", blob).refused(t, 400, "DECRYPTION_FAILED", "does not open")
		goodSyncs()
	})
	t.Run("expired token", func(t *testing.T) {
		if r := app.login(hikmaEmail, hikmaPassword); !r.ok() {
			t.Fatalf("login: %+v", r)
		}
		if r := app.query("sync_pull", nil); !r.ok() {
			t.Fatalf("pull before expiry: %+v", r)
		}
		hub.clock.Add(actors.JWTTTL)
		app.query("sync_pull", nil).refused(t, 200, "AUTH_FAILED", "expired")
		// good's token expired too: it logs in again and syncs.
		if r := good.login(hikmaEmail, hikmaPassword); !r.ok() {
			t.Fatalf("relogin: %+v", r)
		}
		goodSyncs()
	})
	t.Run("revoked device", func(t *testing.T) {
		if r := app.login(hikmaEmail, hikmaPassword); !r.ok() {
			t.Fatalf("login: %+v", r)
		}
		if err := hub.node.RevokePeer(app.clientID); err != nil {
			t.Fatal(err)
		}
		// Refused from its next message on, within its live session.
		app.query("sync_pull", nil).refused(t, 200, "AUTH_FAILED", "unpaired")
		app.query("ping", nil).refused(t, 401, "SESSION_EXPIRED", "handshake again")
		status, m := app.post("/rpc/handshake", map[string]any{"client_id": app.clientID, "client_public_key": b64url.EncodeToString(make([]byte, 31))})
		rpcResult{status: status, env: m}.refused(t, 400, "HANDSHAKE_FAILED", "client_public_key")
		priv, _ := ecdh.X25519().GenerateKey(rand.Reader)
		status, m = app.post("/rpc/handshake", map[string]any{"client_id": app.clientID, "client_public_key": b64url.EncodeToString(priv.PublicKey().Bytes())})
		rpcResult{status: status, env: m}.refused(t, 403, "HANDSHAKE_FAILED", "unpaired")
		goodSyncs()
	})
	t.Run("unknown operation", func(t *testing.T) {
		good.command("appointments.teleport", map[string]any{}).refused(t, 200, "NOT_SUPPORTED", "appointments.teleport")
		good.query("vitals.forecast", nil).refused(t, 200, "NOT_SUPPORTED", "vitals.forecast")
	})
}

func TestHikmaHubSessionsBounded(t *testing.T) {
	hub := newHikmaHub(t) // MaxSessions 8
	var wire bytes.Buffer
	first := newHikmaApp(t, hub.url, "client-0", &wire)
	first.handshake()
	for i := 1; i <= 8; i++ {
		newHikmaApp(t, hub.url, "client-"+string(rune('0'+i)), &wire).handshake()
	}
	if n := hub.hk.Sessions(); n != 8 {
		t.Errorf("sessions: %d, want 8", n)
	}
	first.query("ping", nil).refused(t, 401, "SESSION_EXPIRED", "handshake again")
	first.handshake()
	if r := first.query("ping", nil); !r.ok() {
		t.Errorf("after a new handshake: %+v", r)
	}
}

func TestHikmaHandlerOnlyOnHub(t *testing.T) {
	dir := t.TempDir()
	if _, err := actors.Init(dir, actors.InitConfig{Kind: actors.KindCloud}); err != nil {
		t.Fatal(err)
	}
	n := openNodeT(t, dir)
	cloud, err := n.CloudHandler(actors.CloudConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.HikmaHandler(cloud, actors.HikmaConfig{}); err == nil {
		t.Error("a cloud serves the Hikma hub RPC")
	}
}
