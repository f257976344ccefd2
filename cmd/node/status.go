package main

import (
	"fmt"
	"strconv"
	"time"

	"github.com/clinicsync/clinicsync/actors"
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
			URL string `json:"url"`
			PID int    `json:"pid"`
		}
		var srv *serving
		if s := e.serving; s != nil {
			srv = &serving{s.url, s.pid}
		}
		return writeJSON(e.out, struct {
			State   string   `json:"state"`
			Mode    string   `json:"mode"`
			Peers   []peer   `json:"peers"`
			Pending int      `json:"pending"`
			Serving *serving `json:"serving,omitempty"` // only while served
		}{st.State, st.Mode, peers, st.Pending, srv})
	}
	pairs := [][2]string{
		{"node_id", st.NodeID},
		{"kind", string(st.Kind)},
		{"state", st.State},
		{"mode", st.Mode},
	}
	if s := e.serving; s != nil {
		pairs = append(pairs, [2]string{"serving", fmt.Sprintf("%s (pid %d)", s.url, s.pid)})
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
	return writePairs(e.out, pairs)
}
