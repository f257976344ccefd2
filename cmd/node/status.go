package main

import (
	"fmt"
	"strconv"
	"time"

	"github.com/clinicsync/clinicsync/actors"
	"github.com/clinicsync/clinicsync/kv"
)

// cmdStatus: node status --data DIR
func cmdStatus(e *env, name string, args []string) error {
	f := e.flags(name)
	err := f.parseAll(args)
	if err != nil {
		return err
	}
	var st actors.Status
	err = f.withNode(func(n *actors.Node) (err error) {
		st, err = n.Status()
		return err
	})
	if err != nil {
		return err
	}
	if f.json {
		type peer struct {
			PeerID       string `json:"peer_id"`
			PeerType     string `json:"peer_type"`
			Status       string `json:"status"`
			URL          string `json:"url"`
			LastSyncedAt *int64 `json:"last_synced_at"` // ms; null = never
		}
		peers := make([]peer, 0, len(st.Peers))
		for _, p := range st.Peers {
			var last *int64
			if p.LastSyncedAt != 0 {
				last = &p.LastSyncedAt
			}
			peers = append(peers, peer{p.ID, p.Type, p.Status, p.URL, last})
		}
		type serving struct {
			URL          string `json:"url"`
			PID          int    `json:"pid"`
			HTTPSURL     string `json:"https_url,omitempty"`
			InsecureHTTP bool   `json:"insecure_http,omitempty"`
		}
		var srv *serving
		pairing := ""
		if s := e.serving; s != nil {
			srv = &serving{s.url, s.pid, s.httpsURL, s.insecure}
			pairing = s.pairing
		}
		type client struct {
			ID            string `json:"id"`
			Device        string `json:"device,omitempty"`
			Hub           bool   `json:"hub"`
			SchemaVersion int64  `json:"schema_version"` // 0: not reported
			LastSeen      int64  `json:"last_seen"`      // ms
		}
		var clients []client // omitted until a downstream client pulled

		for _, c := range st.Clients {
			clients = append(clients, client{c.ID, c.Device, c.Hub, c.SchemaVersion, c.LastSeen})
		}
		return writeJSON(e.out, struct {
			State   string   `json:"state"`
			Mode    string   `json:"mode"`
			Peers   []peer   `json:"peers"`
			Pending int      `json:"pending"`
			Clients []client `json:"clients,omitempty"`
			Serving *serving `json:"serving,omitempty"` // only while served
			Pairing string   `json:"pairing,omitempty"` // a serving hub's
		}{st.State, st.Mode, peers, st.Pending, clients, srv, pairing})
	}
	pairs := [][2]string{
		{"node_id", st.NodeID},
		{"kind", string(st.Kind)},
		{"state", st.State},
		{"mode", st.Mode},
	}
	if s := e.serving; s != nil {
		pairs = append(pairs, [2]string{"serving", fmt.Sprintf("%s (pid %d)", s.url, s.pid)})
		if s.httpsURL != "" {
			pairs = append(pairs, [2]string{"https", fmt.Sprintf("%s (certificate sha256 %s)", s.httpsURL, s.fingerprint)})
		}
		if s.insecure {
			pairs = append(pairs, [2]string{"warning", "--insecure-http: /api/v2/sync and sign-in are served on " + s.url + ", passwords and rows in cleartext"})
		}
		if s.pairing != "" {
			pairs = append(pairs, [2]string{"pairing", s.pairing})
		}
	}
	pairs = append(pairs, [2]string{"pending", strconv.Itoa(st.Pending)})
	if len(st.Peers) == 0 {
		pairs = append(pairs, [2]string{"peers", "none"})
	}
	for _, p := range st.Peers {
		last := "never synced"
		if p.LastSyncedAt != 0 {
			last = "last synced " + time.UnixMilli(p.LastSyncedAt).UTC().Format(time.RFC3339)
		}
		url := p.URL
		if url == "" {
			url = "-"
		}
		pairs = append(pairs, [2]string{"peer", fmt.Sprintf("%s %s %s %s %s", p.ID, p.Type, p.Status, url, last)})
	}
	for _, c := range st.Clients {
		pairs = append(pairs, [2]string{"client", clientLine(c)})
	}
	return writePairs(e.out, pairs)
}

// clientLine shows a downstream client: key, kind, app schema version,
// last pull.
func clientLine(c kv.Client) string {
	kind, ver := "app", "schema unknown"
	if c.Hub {
		kind = "hub"
	}
	if c.SchemaVersion > 0 {
		ver = "schema " + strconv.FormatInt(c.SchemaVersion, 10)
	}
	return fmt.Sprintf("%s %s %s last seen %s", c.Key(), kind, ver, time.UnixMilli(c.LastSeen).UTC().Format(time.RFC3339))
}
