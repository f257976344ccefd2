package actors

import (
	"errors"
	"fmt"

	"github.com/clinicsync/clinicsync/fsm"
	"github.com/clinicsync/clinicsync/kv"
)

// ResolvePeer picks the peer to sync with, as the Hikma app does: the
// selected peer if it is active or untrusted; otherwise the first
// active hub; otherwise the first active cloud server. Peers are in the
// order they were added. None: ErrNoPeer.
func ResolvePeer(peers []kv.Peer, selected string) (kv.Peer, error) {
	syncable := func(p kv.Peer) bool { return p.Status == kv.StatusActive || p.Status == kv.StatusUntrusted }
	if selected != "" {
		for _, p := range peers {
			if p.ID == selected && syncable(p) {
				if p.Type == kv.PeerMobile {
					return kv.Peer{}, fmt.Errorf("actors: cannot sync with a mobile_app peer directly (%s)", p.ID)
				}
				return p, nil
			}
		}
	}
	for _, typ := range []string{kv.PeerHub, kv.PeerCloud} {
		for _, p := range peers {
			if p.Type == typ && p.Status == kv.StatusActive {
				return p, nil
			}
		}
	}
	return kv.Peer{}, ErrNoPeer
}

// UserMessage is what a user sees when a sync with a peer of this type
// fails: the Hikma app's wording for network failures, the cause
// otherwise.
func UserMessage(peerType string, err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrUnreachable) && peerType == kv.PeerHub:
		return "Please make sure you are on the same network and Wi-Fi is enabled."
	case errors.Is(err, ErrUnreachable):
		return "Please make sure you have internet or contact your administrator."
	case errors.Is(err, fsm.ErrConflict):
		return "The server has changes made since this device last synced; sync again to merge them."
	case errors.Is(err, ErrPeerRevoked):
		return "This device's access was revoked by the hub: ask your administrator to pair it again."
	}
	return "Sync failed: " + err.Error()
}
