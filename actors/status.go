package actors

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	"github.com/clinicsync/clinicsync/kv"
)

// Serving is where a serving node listens and the sessions it holds.
type Serving struct {
	Addrs
	// HikmaSessions are a hub's Hikma app sessions (one per client
	// that handshook, until evicted); RPCSessions are the native RPC
	// sessions open (until idle for ServeOptions.RPCIdle).
	HikmaSessions, RPCSessions int
}

// served is what a running Serve exposes to Status.
type served struct {
	addrs Addrs
	hikma *HikmaHandler // a hub's; nil on a cloud
	rpc   *rpcServer    // nil without native RPC
}

// LastSync is a sync that ended, as Status reports it and the store
// keeps it (JSON under configLastSync + the peer id).
type LastSync struct {
	Peer     string `json:"peer"`
	PeerType string `json:"peer_type"`
	SyncID   string `json:"sync_id"`
	Trigger  string `json:"trigger"`
	// Started and Ended are epoch ms on the node's clock.
	Started int64  `json:"started"`
	Ended   int64  `json:"ended"`
	Outcome string `json:"outcome"` // OutcomeOK, OutcomeSkipped or OutcomeError
	Pulled  int    `json:"pulled"`
	Pushed  int    `json:"pushed"`
	// Rejected counts the rows the peer refused (they stay pending).
	Rejected int `json:"rejected"`
	// Message is the failure in the user's words (Result.Message), and
	// Cause the error behind it; both "" when the sync went well.
	Message string `json:"message,omitempty"`
	Cause   string `json:"cause,omitempty"`
}

// configLastSync prefixes the config key of a peer's LastSync.
const configLastSync = "last_sync/"

// recordSync keeps r as its peer's last sync: one small store write,
// from the coordinator, so that the syncs' order is kept. A failed
// write is logged; the sync's result stands.
func (n *Node) recordSync(log *slog.Logger, r SyncReport) {
	res := r.Result
	if res.Peer == "" {
		return
	}
	ls := LastSync{Peer: res.Peer, PeerType: r.PeerType, SyncID: r.ID, Trigger: r.Trigger.String(),
		Started: r.Started.UnixMilli(), Ended: r.Started.Add(r.Duration).UnixMilli(), Outcome: res.Outcome,
		Pulled: res.Pulled, Pushed: res.Pushed, Rejected: len(res.Rejected), Message: res.Message}
	if res.Err != nil {
		ls.Cause = res.Err.Error()
	}
	b, err := json.Marshal(ls)
	if err == nil {
		err = n.store.SetConfig(configLastSync+res.Peer, string(b))
	}
	if err != nil {
		log.Warn("recording the last sync", "sync", r.ID, "peer", res.Peer, "cause", err)
	}
}

// lastSync reads a peer's LastSync (false when it never synced).
func (n *Node) lastSync(peer string) (LastSync, bool, error) {
	v, err := n.store.Config(configLastSync + peer)
	if errors.Is(err, kv.ErrNotFound) {
		return LastSync{}, false, nil
	}
	if err != nil {
		return LastSync{}, false, err
	}
	var ls LastSync
	if err := json.Unmarshal([]byte(v), &ls); err != nil {
		return LastSync{}, false, fmt.Errorf("%w: last sync with %s: %v", kv.ErrCorrupt, peer, err)
	}
	return ls, true, nil
}
