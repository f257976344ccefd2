package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/clinicsync/clinicsync/actors"
)

// TestServeRPC: `serve --rpc` puts the native RPC address in a hub's
// pairing string; a phone paired with it stores an rpc:// peer with the
// hub's key pinned and syncs over native RPC, both ways; a hub on that
// address with another key is refused.
func TestServeRPC(t *testing.T) {
	captureServeLog(t)
	root := t.TempDir()
	hub, other, phone := filepath.Join(root, "hub"), filepath.Join(root, "other"), filepath.Join(root, "phone")
	ok(t, "init", "--data", hub, "--kind", "hub", "--clinic", "c1")
	ok(t, "init", "--data", other, "--kind", "hub", "--clinic", "c1")
	ok(t, "user", "add", "--data", hub, "--email", "nurse@example.org", "--password", "correct horse", "--clinic", "c1")
	urls, stop := startServeArgs(t, hub, 2, "--rpc", "127.0.0.1:0")
	rpcURL := urls[1]
	if !strings.HasPrefix(rpcURL, actors.RPCScheme) {
		t.Fatalf("serve --rpc printed %q", urls)
	}
	pr, err := actors.ParsePairing(strings.TrimSpace(ok(t, "pairing", "--data", hub)))
	if err != nil || actors.RPCScheme+pr.RPC != rpcURL {
		t.Fatalf("pairing %+v %v: want rpc %s", pr, err, rpcURL)
	}
	ok(t, append(append([]string{"put", "--data", hub, "--table", "patients", "--id", "h1"}, patient[1:]...), "given_name=Hiba")...)

	ok(t, "init", "--data", phone, "--kind", "mobile")
	m := okJSON(t, "peer", "add", "--data", phone, "--type", "sync_hub", "--pairing", pr.String())
	if m["url"] != rpcURL {
		t.Fatalf("peer add --pairing: %v, want url %s", m, rpcURL)
	}
	ok(t, append([]string{"put", "--data", phone, "--table", "patients", "--id", "p1"}, patient...)...)
	if m := okJSON(t, "login", "--data", phone, "--email", "nurse@example.org", "--password", "correct horse"); m["outcome"] != "ok" || m["pushed"] != float64(1) {
		t.Fatalf("login over native RPC: %v", m)
	}
	if row := patientRow(t, hub, "p1"); row == nil || row["given_name"] != "Amina" {
		t.Fatalf("hub's p1: %v", row)
	}
	if row := patientRow(t, phone, "h1"); row == nil || row["given_name"] != "Hiba" {
		t.Fatalf("phone's h1: %v", row)
	}

	// Another hub on the pinned address: refused by its key.
	stop()
	urls2, _ := startServeArgs(t, other, 2, "--rpc", strings.TrimPrefix(rpcURL, actors.RPCScheme))
	if urls2[1] != rpcURL {
		t.Fatalf("other hub on %s, want %s", urls2[1], rpcURL)
	}
	r := runCLI("sync", "--data", phone, "--json")
	if r.code != 1 || !strings.Contains(r.stdout, "another public key than the one pinned") {
		t.Errorf("sync with another hub's key: %+v", r)
	}
}
