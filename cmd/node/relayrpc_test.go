package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clinicsync/clinicsync/actors"
)

// nodeProc runs one node command as its own process, to its end.
func nodeProc(t *testing.T, args ...string) result {
	t.Helper()
	p := startProc(t, args...)
	out, err := p.exit()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return result{0, out, p.stderr.String()}
	case errors.As(err, &exit):
		return result{exit.ExitCode(), out, p.stderr.String()}
	}
	t.Fatalf("node %s: %v", strings.Join(args, " "), err)
	return result{}
}

// startHubProc starts a hub's serve process with native RPC, discovery
// on discAddr and the upstream loop, and returns it with its HTTP,
// HTTPS and RPC addresses (host:port).
func startHubProc(t *testing.T, dir, httpAddr, httpsAddr, rpcAddr, discAddr string) (*proc, [3]string) {
	t.Helper()
	p := startProc(t, "serve", "--data", dir, "--http", httpAddr, "--https", httpsAddr, "--rpc", rpcAddr,
		"--discovery", discAddr, "--upstream-interval", "1s")
	var addrs [3]string
	for i, prefix := range []string{"http://", "https://", actors.RPCScheme} {
		line, err := p.stdout.ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "listening on "+prefix+"127.0.0.1:") {
			t.Fatalf("hub serve: line %d %q %v, want %s; stderr %s", i+1, line, err, prefix, p.stderr)
		}
		addrs[i], _, _ = strings.Cut(strings.TrimSpace(strings.TrimPrefix(line, "listening on "+prefix)), " ")
	}
	return p, addrs
}

// stableUDPAddr is a free UDP address on 127.0.0.1 outside Linux's
// ephemeral port range (32768-60999).
func stableUDPAddr(t *testing.T) string {
	t.Helper()
	for i := 0; i < 200; i++ {
		addr := fmt.Sprintf("127.0.0.1:%d", 20000+rand.IntN(12000))
		if c, err := net.ListenPacket("udp", addr); err == nil {
			c.Close()
			return addr
		}
	}
	t.Fatal("no free UDP port in 20000-31999")
	return ""
}

// TestRelayRPC: TestRelay with the devices on native RPC. A cloud and
// a hub run as serve processes (the hub with --rpc and its upstream
// loop); two Go mobile nodes paired with the hub's pairing string sync
// over rpc://, each login and sync its own process. The hub records
// them as mobile_app peers. A patient created on mobile 1 reaches
// mobile 2 and the cloud, with nobody running sync on the hub; an edit
// on the cloud reaches both; a delete on mobile 2 reaches everyone; a
// hub killed (-9) while a device syncs and restarted on its addresses
// ends with every node converged; a device revoked on the hub is
// refused with the revocation message while the other keeps syncing;
// a hub that comes back on other ports is found by its pinned identity.
func TestRelayRPC(t *testing.T) {
	root := t.TempDir()
	cloud, hub := filepath.Join(root, "cloud"), filepath.Join(root, "hub")
	mobiles := []string{filepath.Join(root, "mobile1"), filepath.Join(root, "mobile2")}
	ok(t, "init", "--data", cloud, "--kind", "cloud", "--clinic", "c1")
	ok(t, "user", "add", "--data", cloud, "--email", "nurse@example.org", "--password", "correct horse", "--clinic", "c1")
	_, cloudURL := serveProc(t, cloud, "127.0.0.1:0")
	dev := okJSON(t, "device", "add", "--data", cloud, "--name", "North hub", "--clinic", "c1") // through serve's control socket

	ok(t, "init", "--data", hub, "--kind", "hub", "--clinic", "c1")
	// The discovery address stays across the hub's restarts: one outside
	// the ephemeral port range, which no socket bound to port 0 takes.
	hubProc, hubAddrs := startHubProc(t, hub, "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", stableUDPAddr(t))
	pairing := strings.TrimSpace(ok(t, "pairing", "--data", hub))
	parsed, err := actors.ParsePairing(pairing)
	if err != nil || parsed.Disc == "" {
		t.Fatalf("the hub's pairing string %s: %v, want a discovery address", pairing, err)
	}
	ok(t, "peer", "add", "--data", hub, "--type", "cloud_server", "--url", cloudURL, "--api-key", dev["api_key"].(string))

	ids := make([]string, len(mobiles))
	for i, m := range mobiles {
		ids[i] = okJSON(t, "init", "--data", m, "--kind", "mobile")["node_id"].(string)
		if p := okJSON(t, "peer", "add", "--data", m, "--type", "sync_hub", "--pairing", pairing); p["url"] != actors.RPCScheme+hubAddrs[2] {
			t.Fatalf("peer add --pairing on %s: %v, want url %s%s", filepath.Base(m), p, actors.RPCScheme, hubAddrs[2])
		}
		eventually(t, "the hub to know the nurse (a login on "+filepath.Base(m)+")", func() (bool, string) {
			r := nodeProc(t, "login", "--data", m, "--email", "nurse@example.org", "--password", "correct horse", "--json")
			return r.code == 0, r.stdout + r.stderr
		})
	}

	// The hub lists the devices as mobile_app peers, by node id.
	peers := func() map[string]map[string]any {
		t.Helper()
		var m struct{ Peers []map[string]any }
		if out := ok(t, "peer", "list", "--data", hub, "--json"); json.Unmarshal([]byte(out), &m) != nil {
			t.Fatalf("peer list on the hub: %q", out)
		}
		out := map[string]map[string]any{}
		for _, p := range m.Peers {
			out[p["peer_id"].(string)] = p
		}
		return out
	}
	listed := peers()
	for i, id := range ids {
		if p := listed[id]; p == nil || p["peer_type"] != "mobile_app" || p["status"] != "active" {
			t.Errorf("the hub's peer for mobile %d (%s): %v; all: %v", i+1, id, p, listed)
		}
	}

	sync := func(m string) result {
		t.Helper()
		return nodeProc(t, "sync", "--data", m, "--json")
	}
	syncOK := func(m string) string {
		t.Helper()
		r := sync(m)
		if r.code != 0 {
			t.Fatalf("sync %s: %+v", filepath.Base(m), r)
		}
		return r.stdout
	}
	onMobile := func(m, id, what string, want func(map[string]any) bool) {
		t.Helper()
		eventually(t, what+" on "+filepath.Base(m), func() (bool, string) {
			r := sync(m)
			row := patientRow(t, m, id)
			return r.code == 0 && want(row), r.stdout + r.stderr + " " + stringify(row)
		})
	}
	onNode := func(dir, id, what string, want func(map[string]any) bool) {
		t.Helper()
		eventually(t, what+" on "+filepath.Base(dir), func() (bool, string) {
			row := patientRow(t, dir, id)
			return want(row), stringify(row)
		})
	}
	named := func(name string) func(map[string]any) bool {
		return func(row map[string]any) bool { return !gone(row) && row["given_name"] == name }
	}
	present := func(row map[string]any) bool { return !gone(row) }

	// 1. Created on mobile 1: through the hub to mobile 2, relayed to
	// the cloud.
	ok(t, append([]string{"put", "--data", mobiles[0], "--table", "patients", "--id", "p1", "primary_clinic_id=c1"}, patient...)...)
	if out := syncOK(mobiles[0]); !strings.Contains(out, `"pushed":1`) {
		t.Fatalf("mobile 1's push: %s", out)
	}
	onNode(cloud, "p1", "mobile 1's patient", named("Amina"))
	onMobile(mobiles[1], "p1", "mobile 1's patient", named("Amina"))

	// 2. Edited on the cloud (by its serve process): down through the
	// hub to both devices.
	ok(t, "put", "--data", cloud, "--table", "patients", "--id", "p1", "given_name=Aminah")
	for _, m := range mobiles {
		onMobile(m, "p1", "the cloud's edit", named("Aminah"))
	}
	onNode(hub, "p1", "the cloud's edit", named("Aminah"))

	// 3. Deleted on mobile 2: to the hub, the cloud and mobile 1.
	ok(t, "delete", "--data", mobiles[1], "--table", "patients", "--id", "p1")
	syncOK(mobiles[1])
	onNode(hub, "p1", "mobile 2's delete", gone)
	onNode(cloud, "p1", "mobile 2's delete", gone)
	onMobile(mobiles[0], "p1", "mobile 2's delete", gone)

	// 4. The hub killed (-9) while mobile 1 syncs a new patient, then
	// restarted on the same addresses; mobile 2 writes one meanwhile.
	// The next syncs converge every node.
	ok(t, append([]string{"put", "--data", mobiles[0], "--table", "patients", "--id", "p2", "primary_clinic_id=c1"}, patient...)...)
	// A native RPC request to a dead hub waits for its answer until the
	// sync's deadline: a short one keeps these two syncs short.
	during := startProc(t, "sync", "--data", mobiles[0], "--json", "--timeout", "5s")
	hubProc.kill()
	duringOut, duringErr := during.exit()
	t.Logf("mobile 1's sync while the hub died: %v %s %s", duringErr, duringOut, during.stderr)
	ok(t, append([]string{"put", "--data", mobiles[1], "--table", "patients", "--id", "p3", "primary_clinic_id=c1"}, patient...)...)
	if r := nodeProc(t, "sync", "--data", mobiles[1], "--json", "--timeout", "5s"); r.code == 0 {
		t.Fatalf("mobile 2 synced with the hub down: %+v", r)
	}
	hubProc, again := startHubProc(t, hub, hubAddrs[0], hubAddrs[1], hubAddrs[2], parsed.Disc)
	if again != hubAddrs {
		t.Fatalf("the hub restarted on %v, want %v", again, hubAddrs)
	}
	for _, id := range []string{"p2", "p3"} {
		for _, m := range mobiles {
			onMobile(m, id, "converging after the hub's restart ("+id+")", present)
		}
		onNode(hub, id, "converging after the hub's restart", present)
		onNode(cloud, id, "converging after the hub's restart", present)
	}
	for _, m := range mobiles {
		onMobile(m, "p1", "still deleted after the hub's restart", gone)
	}

	// 5. Mobile 2 revoked on the hub (through the serving hub's control
	// socket): its next sync fails with the revocation message; mobile 1
	// goes on syncing.
	if m := okJSON(t, "peer", "revoke", "--data", hub, ids[1]); m["status"] != "revoked" {
		t.Fatalf("peer revoke on the hub: %v", m)
	}
	r := sync(mobiles[1])
	if r.code != 1 || !strings.Contains(r.stdout, "revoked by the hub") {
		t.Errorf("mobile 2's sync after its revocation: %+v", r)
	}
	if p := peers()[ids[1]]; p == nil || p["status"] != "revoked" || p["peer_type"] != "mobile_app" {
		t.Errorf("the hub's peer for mobile 2 after a sync: %v", p)
	}
	ok(t, append([]string{"put", "--data", mobiles[0], "--table", "patients", "--id", "p4", "primary_clinic_id=c1"}, patient...)...)
	if out := syncOK(mobiles[0]); !strings.Contains(out, `"pushed":1`) {
		t.Fatalf("mobile 1's push after mobile 2's revocation: %s", out)
	}
	onNode(cloud, "p4", "mobile 1's patient after mobile 2's revocation", present)
	if p := peers()[ids[0]]; p == nil || p["status"] != "active" {
		t.Errorf("the hub's peer for mobile 1: %v", p)
	}

	// 6. The hub moves: killed and started on other ports (its discovery
	// address kept). Mobile 1's next sync finds it by its id and pinned
	// key, syncs, and keeps the new address; its patient reaches the
	// cloud.
	hubProc.kill()
	_, moved := startHubProc(t, hub, "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", parsed.Disc)
	if moved[2] == hubAddrs[2] {
		t.Fatalf("the hub came back on its native RPC address %s", moved[2])
	}
	ok(t, append([]string{"put", "--data", mobiles[0], "--table", "patients", "--id", "p5", "primary_clinic_id=c1"}, patient...)...)
	if out := syncOK(mobiles[0]); !strings.Contains(out, `"pushed":1`) {
		t.Fatalf("mobile 1's push to the moved hub: %s", out)
	}
	var mine struct{ Peers []map[string]any }
	if out := ok(t, "peer", "list", "--data", mobiles[0], "--json"); json.Unmarshal([]byte(out), &mine) != nil || len(mine.Peers) != 1 ||
		mine.Peers[0]["url"] != actors.RPCScheme+moved[2] {
		t.Errorf("mobile 1's peers after the hub moved: %s, want url %s%s", out, actors.RPCScheme, moved[2])
	}
	onNode(cloud, "p5", "mobile 1's patient through the moved hub", present)
}
