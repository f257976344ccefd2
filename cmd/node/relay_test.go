package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// relayWait bounds each wait for a change to travel: a bound for a
// stuck relay, not a speed test.
const relayWait = 2 * time.Minute

// eventually calls check until it reports done, at most relayWait,
// pausing briefly between tries; on timeout it fails with the last
// state check described.
func eventually(t *testing.T, what string, check func() (done bool, state string)) {
	t.Helper()
	deadline := time.After(relayWait)
	for {
		done, state := check()
		if done {
			return
		}
		select {
		case <-deadline:
			t.Fatalf("waited %v for %s; last: %s", relayWait, what, state)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// patientRow returns the row of patient id on a node (through its
// control socket when it is served), or nil when it has none.
func patientRow(t *testing.T, dir, id string) map[string]any {
	t.Helper()
	r := runCLI("rows", "--data", dir, "--table", "patients", "--id", id, "--json")
	if r.code != 0 {
		if !strings.Contains(r.stderr, "not found") {
			t.Fatalf("rows on %s: %+v", dir, r)
		}
		return nil
	}
	var m struct{ Rows []map[string]any }
	if err := json.Unmarshal([]byte(r.stdout), &m); err != nil || len(m.Rows) != 1 {
		t.Fatalf("rows on %s: %v %q", dir, err, r.stdout)
	}
	return m.Rows[0]
}

func gone(row map[string]any) bool { return row == nil || row["_status"] == "deleted" }

// TestRelay: a serving hub relays between its devices and the cloud on
// its own (serve --upstream-interval), with nobody running `node sync`
// on it. A cloud and a hub run as real serve processes; two phones sync
// with the hub over HTTP. A patient created on phone 1 reaches phone 2
// and the cloud; an edit on the cloud reaches both phones; a delete on
// phone 2 reaches everyone.
func TestRelay(t *testing.T) {
	root := t.TempDir()
	cloud, hub := filepath.Join(root, "cloud"), filepath.Join(root, "hub")
	phones := []string{filepath.Join(root, "phone1"), filepath.Join(root, "phone2")}
	ok(t, "init", "--data", cloud, "--kind", "cloud", "--clinic", "c1")
	ok(t, "user", "add", "--data", cloud, "--email", "nurse@example.org", "--password", "correct horse", "--clinic", "c1")
	_, cloudURL := serveProc(t, cloud, "127.0.0.1:0")
	dev := okJSON(t, "device", "add", "--data", cloud, "--name", "North hub", "--clinic", "c1") // through serve's control socket

	ok(t, "init", "--data", hub, "--kind", "hub", "--clinic", "c1")
	hubProc := startProc(t, "serve", "--data", hub, "--http", "127.0.0.1:0", "--https", "127.0.0.1:0", "--upstream-interval", "1s")
	line, err := hubProc.stdout.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "listening on ") {
		t.Fatalf("hub serve: %q %v; stderr %s", line, err, hubProc.stderr)
	}
	hubURL := strings.TrimSpace(strings.TrimPrefix(line, "listening on "))
	tlsLine, err := hubProc.stdout.ReadString('\n')
	if err != nil || !strings.HasPrefix(tlsLine, "listening on https://127.0.0.1:") {
		t.Fatalf("hub serve: second line %q %v; stderr %s", tlsLine, err, hubProc.stderr)
	}
	hubTLS, _, _ := strings.Cut(strings.TrimPrefix(tlsLine, "listening on "), " ")
	pairing := strings.TrimSpace(ok(t, "pairing", "--data", hub))
	// The cloud peer comes while the hub serves: its loop finds it.
	ok(t, "peer", "add", "--data", hub, "--type", "cloud_server", "--url", cloudURL, "--api-key", dev["api_key"].(string))

	// The phones sign in once the hub has the user from the cloud.
	for _, p := range phones {
		ok(t, "init", "--data", p, "--kind", "mobile")
		ok(t, "peer", "add", "--data", p, "--type", "sync_hub", "--pairing", pairing)
		eventually(t, "the hub to know the nurse (a login on "+filepath.Base(p)+")", func() (bool, string) {
			r := runCLI("login", "--data", p, "--email", "nurse@example.org", "--password", "correct horse", "--json")
			return r.code == 0, r.stdout + r.stderr
		})
	}
	syncPhone := func(p string) string {
		t.Helper()
		r := runCLI("sync", "--data", p, "--json")
		if r.code != 0 {
			t.Fatalf("sync %s: %+v", p, r)
		}
		return r.stdout
	}
	onPhone := func(p, what string, want func(map[string]any) bool) {
		t.Helper()
		eventually(t, what+" on "+filepath.Base(p), func() (bool, string) {
			out := syncPhone(p)
			row := patientRow(t, p, "p1")
			return want(row), out + " " + stringify(row)
		})
	}
	onNode := func(dir, what string, want func(map[string]any) bool) {
		t.Helper()
		eventually(t, what+" on "+filepath.Base(dir), func() (bool, string) {
			row := patientRow(t, dir, "p1")
			return want(row), stringify(row)
		})
	}
	named := func(name string) func(map[string]any) bool {
		return func(row map[string]any) bool { return !gone(row) && row["given_name"] == name }
	}

	// 1. Created on phone 1: through the hub to phone 2, relayed to the
	// cloud.
	ok(t, append([]string{"put", "--data", phones[0], "--table", "patients", "--id", "p1", "primary_clinic_id=c1"}, patient...)...)
	if out := syncPhone(phones[0]); !strings.Contains(out, `"pushed":1`) {
		t.Fatalf("phone 1's push: %s", out)
	}
	onNode(cloud, "phone 1's patient", named("Amina"))
	onPhone(phones[1], "phone 1's patient", named("Amina"))

	// 2. Edited on the cloud (by its serve process): down through the
	// hub to both phones.
	ok(t, "put", "--data", cloud, "--table", "patients", "--id", "p1", "given_name=Aminah")
	for _, p := range phones {
		onPhone(p, "the cloud's edit", named("Aminah"))
	}
	onNode(hub, "the cloud's edit", named("Aminah"))

	// 3. Deleted on phone 2: to the hub, the cloud and phone 1.
	ok(t, "delete", "--data", phones[1], "--table", "patients", "--id", "p1")
	syncPhone(phones[1])
	onNode(cloud, "phone 2's delete", gone)
	onPhone(phones[0], "phone 2's delete", gone)
	if row := patientRow(t, hub, "p1"); !gone(row) {
		t.Errorf("the hub still has the patient: %v", row)
	}

	// The loop logs why it starts a sync, the engine its end, with
	// what it moved.
	logs := hubProc.stderr.String()
	for _, want := range []string{`msg="upstream sync" reason=`, `msg="sync finished"`, "pushed=1", "pulled=", "duration_ms="} {
		if !strings.Contains(logs, want) {
			t.Errorf("the hub's log lacks %q:\n%s", want, logs)
		}
	}

	// 4. With an interval too long to matter, a device's push alone
	// starts the relay (the debounce): the hub, restarted on its address
	// with --upstream-interval 1h, first syncs at start, then after the
	// push.
	if err := hubProc.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if _, err := hubProc.exit(); err != nil {
		t.Fatalf("hub serve after SIGINT: %v\n%s", err, hubProc.stderr)
	}
	hubProc = startProc(t, "serve", "--data", hub, "--http", strings.TrimPrefix(hubURL, "http://"),
		"--https", strings.TrimPrefix(hubTLS, "https://"), "--upstream-interval", "1h")
	if line, err := hubProc.stdout.ReadString('\n'); err != nil || !strings.HasPrefix(line, "listening on "+hubURL) {
		t.Fatalf("hub serve again: %q %v; stderr %s", line, err, hubProc.stderr)
	}
	// The same certificate: the phones' pins still hold.
	if line, err := hubProc.stdout.ReadString('\n'); err != nil || line != tlsLine {
		t.Fatalf("hub serve again: TLS line %q %v, want %q; stderr %s", line, err, tlsLine, hubProc.stderr)
	}
	eventually(t, "the restarted hub's first sync", func() (bool, string) {
		logs := hubProc.stderr.String()
		return strings.Contains(logs, "reason=start"), logs
	})
	ok(t, append([]string{"put", "--data", phones[0], "--table", "patients", "--id", "p2", "primary_clinic_id=c1"}, patient...)...)
	if out := syncPhone(phones[0]); !strings.Contains(out, `"pushed":1`) {
		t.Fatalf("phone 1's push: %s", out)
	}
	eventually(t, "phone 1's second patient on the cloud", func() (bool, string) {
		row := patientRow(t, cloud, "p2")
		return !gone(row), stringify(row)
	})
	// The hub logs its sync once the sync is over, which may be after
	// the cloud has the row: a sync started for the push, then its end.
	eventually(t, "the hub's log of an upstream sync after the push", func() (bool, string) {
		logs := hubProc.stderr.String()
		lines := strings.Split(logs, "\n")
		i := slices.IndexFunc(lines, func(l string) bool {
			return strings.Contains(l, `msg="upstream sync"`) && strings.Contains(l, "reason=push")
		})
		return i >= 0 && slices.ContainsFunc(lines[i:], func(l string) bool {
			return strings.Contains(l, `msg="sync finished"`) && strings.Contains(l, "outcome=ok") && strings.Contains(l, "pushed=1")
		}), logs
	})
}

func stringify(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
