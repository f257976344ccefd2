package main

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
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
		return writeJSON(e.out, statusJSON(st, e.serving))
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
	}
	if sv := st.Serving; sv != nil {
		if sv.RPC != "" {
			pairs = append(pairs, [2]string{"rpc", actors.RPCScheme + sv.RPC + " (native RPC)"})
		}
		if sv.Discovery != "" {
			pairs = append(pairs, [2]string{"discovery", sv.Discovery + " (UDP)"})
		}
		sessions := fmt.Sprintf("%d native RPC", sv.RPCSessions)
		if st.Kind == actors.KindHub {
			sessions = fmt.Sprintf("%d Hikma app, %s", sv.HikmaSessions, sessions)
		}
		pairs = append(pairs, [2]string{"sessions", sessions})
	}
	if s := e.serving; s != nil && s.pairing != "" {
		pairs = append(pairs, [2]string{"pairing", s.pairing})
	}
	if db := st.Database; db != nil {
		pairs = append(pairs, [2]string{"database", fmt.Sprintf("%s (PostgreSQL, schema version %d)", db.URL, db.SchemaVersion)})
		if len(db.Nodes) == 0 {
			pairs = append(pairs, [2]string{"cloud_nodes", "none serving in the last " + actors.NodeSeenWithin.String()})
		}
		for _, cn := range db.Nodes {
			pairs = append(pairs, [2]string{"cloud_node", fmt.Sprintf("%s %s seen %s", cn.Instance, cn.HTTP, time.UnixMilli(cn.Seen).UTC().Format(time.RFC3339))})
		}
	}
	pending := strconv.Itoa(st.Pending)
	if len(st.PendingByTable) > 0 {
		var by []string
		for _, t := range slices.Sorted(maps.Keys(st.PendingByTable)) {
			by = append(by, fmt.Sprintf("%s %d", t, st.PendingByTable[t]))
		}
		pending += " (" + strings.Join(by, ", ") + ")"
	}
	pairs = append(pairs, [2]string{"pending", pending}, [2]string{"conflicts", strconv.Itoa(st.Conflicts) + " in the log (node conflicts)"})
	active := st.ActivePeer
	if active == "" {
		active = "none selected (a sync uses the first active hub, else the cloud)"
	}
	pairs = append(pairs, [2]string{"active_peer", active})
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
		if ls, ok := st.LastSync[p.ID]; ok {
			pairs = append(pairs, [2]string{"last_sync", lastSyncLine(ls)})
		}
	}
	for _, c := range st.Clients {
		pairs = append(pairs, [2]string{"client", clientLine(c)})
	}
	return writePairs(e.out, pairs)
}

// lastSyncLine shows a peer's last sync: when it ended, how, what it
// moved, and a failure in the user's words.
func lastSyncLine(ls actors.LastSync) string {
	line := fmt.Sprintf("%s %s %s: %s, pulled %d, pushed %d", ls.Peer, time.UnixMilli(ls.Ended).UTC().Format(time.RFC3339),
		ls.Trigger, ls.Outcome, ls.Pulled, ls.Pushed)
	if ls.Rejected > 0 {
		line += fmt.Sprintf(", %d rejected", ls.Rejected)
	}
	if ls.Message != "" {
		line += ": " + oneLine(ls.Message)
	}
	return line
}

// statusJSON is status --json: snake_case keys, stable.
func statusJSON(st actors.Status, s *serving) any {
	type lastSync struct {
		SyncID   string  `json:"sync_id"`
		Trigger  string  `json:"trigger"`
		Started  int64   `json:"started"` // ms
		Ended    int64   `json:"ended"`   // ms
		Outcome  string  `json:"outcome"`
		Pulled   int     `json:"pulled"`
		Pushed   int     `json:"pushed"`
		Rejected int     `json:"rejected"`
		Error    *string `json:"error"` // for the user; null when ok
		Cause    string  `json:"cause,omitempty"`
	}
	type peer struct {
		PeerID       string    `json:"peer_id"`
		PeerType     string    `json:"peer_type"`
		Status       string    `json:"status"`
		URL          string    `json:"url"`
		LastSyncedAt *int64    `json:"last_synced_at"` // ms; null = never
		LastSync     *lastSync `json:"last_sync"`      // null = none ended
	}
	peers := make([]peer, 0, len(st.Peers))
	for _, p := range st.Peers {
		pp := peer{PeerID: p.ID, PeerType: p.Type, Status: p.Status, URL: p.URL}
		if p.LastSyncedAt != 0 {
			pp.LastSyncedAt = &p.LastSyncedAt
		}
		if ls, ok := st.LastSync[p.ID]; ok {
			pp.LastSync = &lastSync{ls.SyncID, ls.Trigger, ls.Started, ls.Ended, ls.Outcome, ls.Pulled, ls.Pushed, ls.Rejected, nil, ls.Cause}
			if ls.Message != "" {
				pp.LastSync.Error = &ls.Message
			}
		}
		peers = append(peers, pp)
	}
	type sessions struct {
		Hikma int `json:"hikma"`
		RPC   int `json:"rpc"`
	}
	type servingJSON struct {
		URL          string   `json:"url"`
		PID          int      `json:"pid"`
		HTTPSURL     string   `json:"https_url,omitempty"`
		InsecureHTTP bool     `json:"insecure_http,omitempty"`
		RPC          string   `json:"rpc,omitempty"`
		Discovery    string   `json:"discovery,omitempty"`
		Sessions     sessions `json:"sessions"`
	}
	var srv *servingJSON
	pairing := ""
	if s != nil {
		srv = &servingJSON{URL: s.url, PID: s.pid, HTTPSURL: s.httpsURL, InsecureHTTP: s.insecure}
		if sv := st.Serving; sv != nil {
			srv.RPC, srv.Discovery = sv.RPC, sv.Discovery
			srv.Sessions = sessions{sv.HikmaSessions, sv.RPCSessions}
		}
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
	byTable := st.PendingByTable
	if byTable == nil {
		byTable = map[string]int{}
	}
	var active *string
	if st.ActivePeer != "" {
		active = &st.ActivePeer
	}
	return struct {
		State          string           `json:"state"`
		Mode           string           `json:"mode"`
		ActivePeer     *string          `json:"active_peer"` // null: none selected
		Peers          []peer           `json:"peers"`
		Pending        int              `json:"pending"`
		PendingByTable map[string]int   `json:"pending_by_table"`
		Conflicts      int              `json:"conflicts"`
		Clients        []client         `json:"clients,omitempty"`
		Serving        *servingJSON     `json:"serving,omitempty"`  // only while served
		Pairing        string           `json:"pairing,omitempty"`  // a serving hub's
		Database       *actors.Database `json:"database,omitempty"` // a cloud's PostgreSQL store
	}{st.State, st.Mode, active, peers, st.Pending, byTable, st.Conflicts, clients, srv, pairing, st.Database}
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
