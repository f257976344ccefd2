package actors_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clinicsync/clinicsync/actors"
	"github.com/clinicsync/clinicsync/codec"
	"github.com/clinicsync/clinicsync/internal/pgtest"
)

// TestCloudOnPostgres: two cloud nodes initialized over one database
// are one node (same id and key, the key in the database); a request
// to either sees what the other wrote; while the database is down,
// requests get 503 with Retry-After and write nothing, and once it is
// back the same push succeeds.
func TestCloudOnPostgres(t *testing.T) {
	db := pgtest.Own(t)
	url, err := db.NewDB(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	dir1, dir2 := t.TempDir(), t.TempDir()
	info1, err := actors.Init(dir1, actors.InitConfig{Kind: actors.KindCloud, Clinics: []string{"c1"}, Store: url})
	if err != nil {
		t.Fatal(err)
	}
	info2, err := actors.Init(dir2, actors.InitConfig{Kind: actors.KindCloud, Store: url})
	if err != nil || info2.NodeID != info1.NodeID || info2.PublicKey != info1.PublicKey {
		t.Fatalf("the second cloud node: %+v, %v; want the first's identity %+v", info2, err, info1)
	}
	if _, err := actors.Init(t.TempDir(), actors.InitConfig{Kind: actors.KindHub, Store: url}); !errors.Is(err, actors.ErrInvalidConfig) {
		t.Errorf("a hub over PostgreSQL: %v, want ErrInvalidConfig", err)
	}
	if _, err := actors.Init(dir1, actors.InitConfig{Kind: actors.KindCloud, Store: url}); !errors.Is(err, actors.ErrAlreadyInitialized) {
		t.Errorf("init of an initialized directory: %v", err)
	}
	if _, err := actors.Init(dir1, actors.InitConfig{Kind: actors.KindCloud}); !errors.Is(err, actors.ErrAlreadyInitialized) {
		t.Errorf("a bbolt init over a PostgreSQL node's directory: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(dir1, actors.StoreFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("%s: %v, %v; want mode 0600", actors.StoreFile, fi, err)
	}
	if _, err := os.Stat(filepath.Join(dir1, actors.KeyFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a key file beside a PostgreSQL store: %v", err)
	}

	n1, n2 := openNodeT(t, dir1), openNodeT(t, dir2)
	k1, err1 := n1.PrivateKey()
	k2, err2 := n2.PrivateKey()
	if err1 != nil || err2 != nil || !k1.Equal(k2) || codec.EncodePublicKey(k1.PublicKey()) != info1.PublicKey {
		t.Fatalf("private keys: %v %v, equal %v", err1, err2, err1 == nil && err2 == nil && k1.Equal(k2))
	}
	if _, err := n1.AddUser(actors.UserConfig{Email: nurseEmail, Password: nursePassword, Name: "Nurse", Role: "provider", ClinicID: "c1"}); err != nil {
		t.Fatal(err)
	}
	serve := func(n *actors.Node) *httptest.Server {
		h, err := n.CloudHandler(actors.CloudConfig{RateLimit: -1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		return srv
	}
	s1, s2 := serve(n1), serve(n2)
	auth := basic(nurseEmail, nursePassword)
	do := func(srv *httptest.Server, method, path, body string) (int, http.Header, string) {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", auth)
		req.Header.Set("Content-Type", "application/json")
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(b)
	}
	push := func(srv *httptest.Server, id string) (int, http.Header, string) {
		return do(srv, "POST", "/api/v2/sync?last_pulled_at=0", changes(t, 0, "patients", []map[string]any{patientRaw(id, "c1", nil)}, nil))
	}
	if code, _, body := push(s1, "p1"); code != 200 {
		t.Fatalf("push to node 1: %d %s", code, body)
	}
	if code, _, body := do(s2, "GET", "/api/v2/sync?last_pulled_at=0", ""); code != 200 || !strings.Contains(body, `"p1"`) {
		t.Fatalf("pull from node 2: %d %s", code, body)
	}
	if code, _, body := do(s1, "GET", "/healthz", ""); code != 200 || !strings.Contains(body, `"database":"ok"`) {
		t.Errorf("healthz over PostgreSQL: %d %s", code, body)
	}

	if err := db.Pause(); err != nil {
		t.Fatal(err)
	}
	for _, r := range []struct {
		method, path string
		push         bool
	}{{"POST", "", true}, {"GET", "/api/v2/sync?last_pulled_at=0", false}, {"GET", "/healthz", false}} {
		var code int
		var h http.Header
		var body string
		if r.push {
			code, h, body = push(s2, "p2")
		} else {
			code, h, body = do(s2, r.method, r.path, "")
		}
		if code != http.StatusServiceUnavailable || h.Get("Retry-After") == "" {
			t.Errorf("%s %s with the database down: %d %q %s, want 503 with Retry-After", r.method, r.path, code, h.Get("Retry-After"), body)
		}
	}
	if err := db.Resume(); err != nil {
		t.Fatal(err)
	}
	rows, err := n1.Rows("patients", "p2")
	if err == nil && len(rows) > 0 {
		t.Fatalf("the refused push wrote %+v", rows)
	}
	if code, _, body := push(s2, "p2"); code != 200 {
		t.Fatalf("the push again, the database back: %d %s", code, body)
	}
	if rows, err := n1.Rows("patients", ""); err != nil || len(rows) != 2 {
		t.Fatalf("patients after the retry: %d, %v", len(rows), err)
	}
}
