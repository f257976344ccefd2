package main

// Setting up nodes with bin/node: init, users, imports, serve, pairing,
// and the timed sync.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// The user every benchmark syncs as (clinic c1).
const (
	email    = "nurse@example.org"
	password = "correct horse battery"
)

// initNode makes a node directory of a kind and returns its path. A
// cloud and a hub serve clinic c1, as in a clinic's deployment (their
// imports and pulls go through the clinic scope).
func (h *harness) initNode(ctx context.Context, name, kind string) (string, error) {
	dir := h.dir(name)
	args := []string{"init", "--data", dir, "--kind", kind}
	if kind == "cloud" || kind == "hub" {
		args = append(args, "--clinic", clinic)
	}
	_, err := h.procs.run(ctx, "init "+name, args...)
	return dir, err
}

// addUser adds the benchmark's user, of clinic c1, to a cloud or hub.
func (h *harness) addUser(ctx context.Context, dir string) error {
	_, err := h.procs.run(ctx, "user add", "user", "add", "--data", dir, "--email", email, "--password", password, "--clinic", clinic)
	return err
}

// importFiles imports files into dir with `node import` (through the
// control socket when dir is served) and returns the time it took.
func (h *harness) importFiles(ctx context.Context, dir string, files []tableFile) (time.Duration, error) {
	start := time.Now()
	for _, f := range files {
		var res struct {
			Imported     int `json:"imported"`
			Rejected     int `json:"rejected"`
			RejectedRows []struct {
				Line   int    `json:"line"`
				Reason string `json:"reason"`
			} `json:"rejected_rows"`
		}
		step := "import " + f.table
		if err := h.procs.runJSON(ctx, step, &res, "import", "--data", dir, "--table", f.table, f.path); err != nil {
			return 0, err
		}
		if res.Imported != f.rows || res.Rejected != 0 {
			return 0, fmt.Errorf("%s: %d of %d rows imported, %d rejected (first: %+v)", step, res.Imported, f.rows, res.Rejected, res.RejectedRows)
		}
	}
	return time.Since(start), nil
}

// startHub serves a hub on ports of 127.0.0.1 chosen by the system:
// Hikma RPC, /api/v2/sync over TLS, with rpc native RPC too; no
// discovery, no upstream.
func (h *harness) startHub(ctx context.Context, dir string, rpc bool) (*serve, error) {
	args := []string{"--data", dir, "--http", "127.0.0.1:0", "--https", "127.0.0.1:0", "--discovery", "off", "--upstream-interval", "0"}
	want := 2
	if rpc {
		args, want = append(args, "--rpc", "127.0.0.1:0"), 3
	}
	return h.procs.startServe(ctx, "serve the hub", want, args...)
}

// startCloud serves a cloud on a port of 127.0.0.1 chosen by the
// system, and its metrics on another when metrics is set.
func (h *harness) startCloud(ctx context.Context, dir string, metrics bool) (*serve, error) {
	args := []string{"--data", dir, "--http", "127.0.0.1:0"}
	want := 1
	if metrics {
		args, want = append(args, "--metrics", "127.0.0.1:0"), 2
	}
	return h.procs.startServe(ctx, "serve the cloud", want, args...)
}

// pair adds the serving hub at hubDir to a mobile's peers from its
// pairing string and returns the peer id. With https the pairing goes
// without its native RPC address, so the mobile syncs over TLS (as
// bin/simulate's process mode pairs its devices).
func (h *harness) pair(ctx context.Context, mobile, hubDir string, https bool) (string, error) {
	pairing, err := h.procs.run(ctx, "pairing", "pairing", "--data", hubDir)
	if err != nil {
		return "", err
	}
	pairing, scheme := strings.TrimSpace(pairing), "rpc://"
	if https {
		var p map[string]any
		if err := json.Unmarshal([]byte(pairing), &p); err != nil {
			return "", fmt.Errorf("pairing: the hub's pairing string %q is not JSON: %w", pairing, err)
		}
		delete(p, "rpc")
		delete(p, "disc")
		b, err := json.Marshal(p)
		if err != nil {
			return "", err
		}
		pairing, scheme = string(b), "https://"
	}
	var peer struct {
		ID  string `json:"peer_id"`
		URL string `json:"url"`
	}
	if err := h.procs.runJSON(ctx, "peer add", &peer, "peer", "add", "--data", mobile, "--type", "sync_hub", "--pairing", pairing); err != nil {
		return "", err
	}
	if !strings.HasPrefix(peer.URL, scheme) {
		return "", fmt.Errorf("peer add: the hub's peer has url %q, want %s...", peer.URL, scheme)
	}
	return peer.ID, nil
}

// addCloudPeer adds a cloud to a mobile's peers and returns the peer id.
func (h *harness) addCloudPeer(ctx context.Context, mobile, url string) (string, error) {
	var peer struct {
		ID string `json:"peer_id"`
	}
	err := h.procs.runJSON(ctx, "peer add", &peer, "peer", "add", "--data", mobile, "--type", "cloud_server", "--url", url)
	return peer.ID, err
}

// logIn signs the mobile in with the peer without syncing (`node login
// --no-sync`: one read checks the credentials), so that the sync to
// time is the first.
func (h *harness) logIn(ctx context.Context, mobile, peer string) error {
	_, err := h.procs.run(ctx, "login", "login", "--data", mobile, "--email", email, "--password", password, "--peer", peer, "--no-sync")
	return err
}

// syncResult is what `node sync --json` prints, and how long the
// process ran.
type syncResult struct {
	Outcome string `json:"outcome"`
	Pulled  int    `json:"pulled"`
	Pushed  int    `json:"pushed"`
	Error   any    `json:"error"`

	seconds float64 // the process's wall clock, start to exit
}

// syncOnce runs one `node sync` on dir with peer, its memory sampled as
// label, and returns what it did; an outcome other than ok is an error.
func (h *harness) syncOnce(ctx context.Context, step, dir, peer string, s *sampler, label string, rows int) (syncResult, error) {
	var res syncResult
	limit := timeout(rows)
	ctx, cancel := context.WithTimeout(ctx, limit+time.Minute)
	defer cancel()
	var out strings.Builder
	start := time.Now()
	p, err := h.procs.start(ctx, step, &out, "sync", "--data", dir, "--peer", peer, "--json", "--timeout", limit.String())
	if err != nil {
		return res, err
	}
	s.watch(label, p.pid())
	err = p.wait(ctx)
	res.seconds = time.Since(start).Seconds()
	if err != nil {
		if out.Len() > 0 {
			err = fmt.Errorf("%w; stdout: %s", err, clip(out.String()))
		}
		return res, err
	}
	if err := json.Unmarshal([]byte(out.String()), &res); err != nil {
		return res, fmt.Errorf("%s: node sync printed %q: %w", step, clip(out.String()), err)
	}
	if res.Outcome != "ok" {
		return res, fmt.Errorf("%s: sync outcome %q: %v", step, res.Outcome, res.Error)
	}
	return res, nil
}

// pending returns the rows a node has to push (`node status`).
func (h *harness) pending(ctx context.Context, dir string) (int, error) {
	var st struct {
		Pending *int `json:"pending"`
	}
	if err := h.procs.runJSON(ctx, "status", &st, "status", "--data", dir); err != nil {
		return 0, err
	}
	if st.Pending == nil {
		return 0, errors.New("status: no pending count in its JSON")
	}
	return *st.Pending, nil
}
