package main

import (
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clinicsync/clinicsync/actors"
	"github.com/clinicsync/clinicsync/fsm"
)

// blackHole accepts connections and never answers: a peer that hangs.
func blackHole(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var held []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})
	return "http://" + l.Addr().String()
}

// TestResetServed: a served hub's sync stuck on a peer that never
// answers shows as fetching; reset returns it to idle, the stuck sync's
// requester gets an error, and status keeps that sync's failure.
func TestResetServed(t *testing.T) {
	captureServeLog(t)
	hub := filepath.Join(t.TempDir(), "hub")
	ok(t, "init", "--data", hub, "--kind", "hub", "--clinic", "c1")
	peer := okJSON(t, "peer", "add", "--data", hub, "--type", "cloud_server", "--url", blackHole(t), "--api-key", "k")
	startServe(t, hub)

	stuck := make(chan result, 1)
	go func() { stuck <- runCLI("sync", "--data", hub, "--json") }()
	eventually(t, "the sync to wait on its peer", func() (bool, string) {
		st := okJSON(t, "status", "--data", hub)
		return st["state"] == "fetching", st["state"].(string)
	})
	if m := okJSON(t, "reset", "--data", hub); m["state"] != "idle" || m["was"] != "fetching" || m["served"] != true || m["cleared_pull_resume"] != nil {
		t.Errorf("reset --json of a stuck served node: %v", m)
	}
	if st := okJSON(t, "status", "--data", hub); st["state"] != "idle" {
		t.Errorf("state after reset: %v", st["state"])
	}
	var r result
	select {
	case r = <-stuck:
	case <-time.After(relayWait): // a bound for a stuck requester; the reset answers it at once
		t.Fatalf("the stuck sync did not end within %v of the reset", relayWait)
	}
	if r.code != 1 || !strings.Contains(r.stderr, "force reset") || !strings.Contains(r.stdout, `"outcome":"error"`) {
		t.Errorf("the stuck sync after reset: %+v, want exit 1 naming the force reset", r)
	}
	st := okJSON(t, "status", "--data", hub)
	ls, _ := st["peers"].([]any)[0].(map[string]any)["last_sync"].(map[string]any)
	if ls == nil || ls["outcome"] != "error" || !strings.Contains(ls["error"].(string), "force reset") || ls["pulled"] != float64(0) {
		t.Errorf("status after the reset: last sync with %s = %v", peer["peer_id"], ls)
	}
	if out := ok(t, "reset", "--data", hub); out != "state  idle\nreset  no sync was running\n" {
		t.Errorf("reset of an idle served node: %q", out)
	}
}

// TestResetLocal: on a node nothing serves, reset clears an
// interrupted pull's position, and says so.
func TestResetLocal(t *testing.T) {
	phone := filepath.Join(t.TempDir(), "phone")
	ok(t, "init", "--data", phone, "--kind", "mobile")
	n, err := actors.Open(phone, actors.SystemClock{})
	if err != nil {
		t.Fatal(err)
	}
	err = n.Store().SetConfig(fsm.ConfigResume, fsm.Resume{Peer: "cloud-1", From: 5, Continuation: "tok", Pulled: 4000}.String())
	if cerr := n.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	want := "state  idle\nreset  no sync runs (the node is not served); cleared the interrupted pull from cloud-1 (4000 records pulled): the next sync pulls from the peer's cursor\n"
	if out := ok(t, "reset", "--data", phone); out != want {
		t.Errorf("reset with an interrupted pull:\n%q\nwant\n%q", out, want)
	}
	n, err = actors.Open(phone, actors.SystemClock{})
	if err != nil {
		t.Fatal(err)
	}
	v, err := n.Store().Config(fsm.ConfigResume)
	n.Close()
	if err != nil || v != "" {
		t.Errorf("pull_resume after reset: %q %v, want cleared", v, err)
	}
	if m := okJSON(t, "reset", "--data", phone); m["state"] != "idle" || m["served"] != false || m["cleared_pull_resume"] != nil {
		t.Errorf("reset --json with nothing in progress: %v", m)
	}
}
