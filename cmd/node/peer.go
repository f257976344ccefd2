package main

import (
	"fmt"
	"time"

	"github.com/clinicsync/clinicsync/actors"
	"github.com/clinicsync/clinicsync/kv"
)

// cmdPeer: node peer add|list|use|revoke: who this node syncs with.
func cmdPeer(e *env, name string, args []string) error {
	set := func(fn func(*actors.Node, string) error) command {
		return func(e *env, name string, args []string) error { return peerSet(e, name, args, fn) }
	}
	return dispatch(e, name, args, map[string]command{
		"add": peerAdd, "list": peerList, "use": set((*actors.Node).UsePeer), "revoke": set((*actors.Node).RevokePeer),
	}, "want `node peer add|list|use|revoke --data DIR ...`")
}

// peerAdd: node peer add --data DIR --type cloud_server|sync_hub (--url URL | --pairing S) [--name N] [--api-key K]
func peerAdd(e *env, name string, args []string) error {
	f := e.flags(name)
	typ := f.String("type", "", "cloud_server or sync_hub")
	url := f.String("url", "", "the peer's `URL`, http(s)://host[:port] (with --pairing: none)")
	peerName := f.String("name", "", "a name for people")
	apiKey := f.String("api-key", "", "a hub's API `key` toward the cloud (from `node device add` on the cloud)")
	pairing := f.String("pairing", "", "a hub's pairing `string` (`node pairing` on the hub): its URL, public key and TLS certificate, pinned")
	err := f.parseAll(args)
	if err != nil {
		return err
	}
	if err := f.require("type", *typ); err != nil {
		return err
	}
	if *typ != kv.PeerCloud && *typ != kv.PeerHub {
		return usageErr(name, "--type %q: want cloud_server or sync_hub", *typ)
	}
	cfg := actors.PeerConfig{Type: *typ, URL: *url, Name: *peerName, APIKey: *apiKey}
	if *pairing != "" {
		if *typ != kv.PeerHub || *url != "" {
			return usageErr(name, "--pairing names a hub and its URL: give it with --type sync_hub and no --url")
		}
		pr, err := actors.ParsePairing(*pairing)
		if err == nil {
			cfg, err = actors.PairingPeer(pr)
		}
		if err != nil {
			return usageErr(name, "--pairing: %v", err)
		}
		cfg.Name, cfg.APIKey = *peerName, *apiKey
	} else if err := f.require("url", *url); err != nil {
		return err
	}
	var p kv.Peer
	err = f.withNode(func(n *actors.Node) (err error) {
		p, err = n.AddPeer(cfg)
		return err
	})
	if err != nil {
		return &cmdError{name, err}
	}
	if f.json {
		return writeJSON(e.out, struct {
			PeerID   string `json:"peer_id"`
			PeerType string `json:"peer_type"`
			Status   string `json:"status"`
			URL      string `json:"url"`
			TLSPin   string `json:"tls_fingerprint,omitempty"`
		}{p.ID, p.Type, p.Status, p.URL, p.TLSFingerprint})
	}
	pairs := [][2]string{{"peer_id", p.ID}, {"peer_type", p.Type}, {"status", p.Status}, {"url", p.URL}}
	if p.TLSFingerprint != "" {
		pairs = append(pairs, [2]string{"tls_pin", p.TLSFingerprint})
	}
	return writePairs(e.out, pairs)
}

// peerList: node peer list --data DIR
func peerList(e *env, name string, args []string) error {
	f := e.flags(name)
	err := f.parseAll(args)
	if err != nil {
		return err
	}
	var peers []kv.Peer
	var active string
	err = f.withNode(func(n *actors.Node) (err error) {
		if peers, err = n.Peers(); err != nil {
			return err
		}
		active, err = n.ActivePeer()
		return err
	})
	if err != nil {
		return &cmdError{name, err}
	}
	if f.json {
		type peer struct {
			PeerID       string `json:"peer_id"`
			PeerType     string `json:"peer_type"`
			Status       string `json:"status"`
			URL          string `json:"url"`
			LastSyncedAt *int64 `json:"last_synced_at"`
			Selected     bool   `json:"selected"`
		}
		list := make([]peer, 0, len(peers))
		for _, p := range peers {
			var last *int64
			if p.LastSyncedAt != 0 {
				last = &p.LastSyncedAt
			}
			list = append(list, peer{p.ID, p.Type, p.Status, p.URL, last, p.ID == active})
		}
		return writeJSON(e.out, struct {
			Peers []peer `json:"peers"`
		}{list})
	}
	if len(peers) == 0 {
		return writePairs(e.out, [][2]string{{"peers", "none"}})
	}
	var pairs [][2]string
	for _, p := range peers {
		last := "never synced"
		if p.LastSyncedAt != 0 {
			last = "last synced " + time.UnixMilli(p.LastSyncedAt).UTC().Format(time.RFC3339)
		}
		url := p.URL
		if url == "" {
			url = "-"
		}
		sel := ""
		if p.ID == active {
			sel = " (selected)"
		}
		pairs = append(pairs, [2]string{"peer", fmt.Sprintf("%s %s %s %s %s%s", p.ID, p.Type, p.Status, url, last, sel)})
	}
	return writePairs(e.out, pairs)
}

// peerSet: node peer use|revoke --data DIR ID
func peerSet(e *env, name string, args []string, fn func(*actors.Node, string) error) error {
	f := e.flags(name)
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	id, err := oneID(f, pos)
	if err != nil {
		return err
	}
	var p kv.Peer
	err = f.withNode(func(n *actors.Node) error {
		if err := fn(n, id); err != nil {
			return err
		}
		p, err = n.Store().Peer(id)
		return err
	})
	if err != nil {
		return &cmdError{name, err}
	}
	if f.json {
		return writeJSON(e.out, struct {
			PeerID string `json:"peer_id"`
			Status string `json:"status"`
		}{p.ID, p.Status})
	}
	return writePairs(e.out, [][2]string{{"peer_id", p.ID}, {"status", p.Status}})
}
