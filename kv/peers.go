package kv

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/clinicsync/clinicsync/codec"
	pb "github.com/clinicsync/clinicsync/proto"
)

// Peer types and statuses, as Hikma names them.
const (
	PeerCloud  = "cloud_server"
	PeerHub    = "sync_hub"
	PeerMobile = "mobile_app"

	StatusActive    = "active"
	StatusRevoked   = "revoked"
	StatusUntrusted = "untrusted"
)

// Peer is a node this node syncs with.
type Peer struct {
	ID, Type, Status string
	PublicKey        []byte
	LastSyncedAt     int64 // ms; 0 = never
	URL, Name        string
	PullCursor       int64  // the peer's timestamp of the last applied pull
	APIKey           string // Bearer key toward a cloud (hubs)
	// TLSFingerprint pins a hub's TLS certificate: the sha256 of its
	// DER, base64url without padding ("": the system's roots verify).
	TLSFingerprint string
	// NodeID is the peer's own node id, from its pairing string (""
	// when unknown): native RPC addresses the hub's listener by it.
	NodeID string
	// Discovery is where the hub answers discovery queries (UDP
	// host:port, from its pairing string; "" when unknown).
	Discovery string
	CreatedAt int64
	UpdatedAt int64
}

func (p *Peer) toProto() *pb.Peer {
	return &pb.Peer{PeerId: p.ID, PeerType: p.Type, Status: p.Status, PublicKey: p.PublicKey,
		LastSyncedAt: p.LastSyncedAt, Url: p.URL, Name: p.Name, PullCursor: p.PullCursor,
		ApiKey: p.APIKey, CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt, TlsFingerprint: p.TLSFingerprint, NodeId: p.NodeID, Discovery: p.Discovery}
}

func peerFromProto(m *pb.Peer) Peer {
	return Peer{ID: m.PeerId, Type: m.PeerType, Status: m.Status, PublicKey: m.PublicKey,
		LastSyncedAt: m.LastSyncedAt, URL: m.Url, Name: m.Name, PullCursor: m.PullCursor,
		APIKey: m.ApiKey, CreatedAt: m.CreatedAt, UpdatedAt: m.UpdatedAt, TLSFingerprint: m.TlsFingerprint, NodeID: m.NodeId, Discovery: m.Discovery}
}

func getPeer(tx Tx, id string) (*Peer, error) {
	b, err := tx.Bucket(bPeers)
	if err != nil {
		return nil, err
	}
	v := b.Get([]byte(id))
	if v == nil {
		return nil, fmt.Errorf("%w: peer %q", ErrNotFound, id)
	}
	var m pb.Peer
	if err := codec.Unmarshal(v, &m); err != nil {
		return nil, fmt.Errorf("%w: peer %q: %v", ErrCorrupt, id, err)
	}
	p := peerFromProto(&m)
	return &p, nil
}

func putPeer(tx Tx, p *Peer) error {
	enc, err := codec.Marshal(p.toProto())
	if err != nil {
		return err
	}
	b, err := tx.Bucket(bPeers)
	if err != nil {
		return err
	}
	return b.Put([]byte(p.ID), enc)
}

func updatePeer(tx Tx, id string, fn func(*Peer)) error {
	p, err := getPeer(tx, id)
	if err != nil {
		return err
	}
	fn(p)
	return putPeer(tx, p)
}

// PutPeer adds or replaces a peer. Type must be one of the peer types
// and Status one of the statuses (default active).
func (s *Store) PutPeer(p Peer) error {
	if p.ID == "" {
		return fmt.Errorf("kv: peer id is empty")
	}
	if !slices.Contains([]string{PeerCloud, PeerHub, PeerMobile}, p.Type) {
		return fmt.Errorf("kv: peer %s: type %q is not cloud_server, sync_hub or mobile_app", p.ID, p.Type)
	}
	if p.Status == "" {
		p.Status = StatusActive
	}
	if !slices.Contains([]string{StatusActive, StatusRevoked, StatusUntrusted}, p.Status) {
		return fmt.Errorf("kv: peer %s: status %q is not active, revoked or untrusted", p.ID, p.Status)
	}
	now := s.opts.Clock.Now().UnixMilli()
	return s.be.Update(func(tx Tx) error {
		if old, err := getPeer(tx, p.ID); err == nil {
			p.CreatedAt = old.CreatedAt
		} else {
			p.CreatedAt = now
		}
		p.UpdatedAt = now
		return putPeer(tx, &p)
	})
}

// UpdatePeer changes a stored peer in one transaction.
func (s *Store) UpdatePeer(id string, fn func(*Peer)) error {
	now := s.opts.Clock.Now().UnixMilli()
	return s.be.Update(func(tx Tx) error {
		return updatePeer(tx, id, func(p *Peer) { fn(p); p.ID = id; p.UpdatedAt = now })
	})
}

// Peer reads one peer.
func (s *Store) Peer(id string) (p Peer, err error) {
	err = s.be.View(func(tx Tx) error {
		r, err := getPeer(tx, id)
		if err == nil {
			p = *r
		}
		return err
	})
	return p, err
}

// Peers lists the peers in the order they were added (then by id).
func (s *Store) Peers() ([]Peer, error) {
	var out []Peer
	err := s.be.View(func(tx Tx) error {
		b, err := tx.Bucket(bPeers)
		if err != nil {
			return err
		}
		return b.Ascend(nil, func(k, v []byte) (bool, error) {
			var m pb.Peer
			if err := codec.Unmarshal(v, &m); err != nil {
				return false, fmt.Errorf("%w: peer %q: %v", ErrCorrupt, k, err)
			}
			out = append(out, peerFromProto(&m))
			return true, nil
		})
	})
	slices.SortStableFunc(out, func(a, b Peer) int {
		if a.CreatedAt != b.CreatedAt {
			return int(a.CreatedAt - b.CreatedAt)
		}
		return bytes.Compare([]byte(a.ID), []byte(b.ID))
	})
	return out, err
}

// Device is a hub registered with a cloud node.
type Device struct {
	ID, Name  string
	ClinicIDs []string
	KeyHash   []byte // sha256 of the API key
	Status    string // active, revoked
	CreatedAt int64
}

// PutDevice adds or replaces a device.
func (s *Store) PutDevice(d Device) error {
	if d.ID == "" || len(d.KeyHash) == 0 {
		return fmt.Errorf("kv: device needs an id and a key hash")
	}
	if d.Status == "" {
		d.Status = StatusActive
	}
	if d.CreatedAt == 0 {
		d.CreatedAt = s.opts.Clock.Now().UnixMilli()
	}
	enc, err := codec.Marshal(&pb.Device{DeviceId: d.ID, Name: d.Name, ClinicIds: d.ClinicIDs,
		ApiKeyHash: d.KeyHash, Status: d.Status, CreatedAt: d.CreatedAt})
	if err != nil {
		return err
	}
	return s.be.Update(func(tx Tx) error {
		b, err := tx.Bucket(bDevices)
		if err != nil {
			return err
		}
		idx, err := tx.Bucket(bDeviceKey)
		if err != nil {
			return err
		}
		if v := b.Get([]byte(d.ID)); v != nil {
			old, err := decodeDevice([]byte(d.ID), v)
			if err != nil {
				return err
			}
			if err := idx.Delete(old.KeyHash); err != nil {
				return err
			}
		}
		if err := idx.Put(d.KeyHash, []byte(d.ID)); err != nil {
			return err
		}
		return b.Put([]byte(d.ID), enc)
	})
}

func decodeDevice(k, v []byte) (Device, error) {
	var m pb.Device
	if err := codec.Unmarshal(v, &m); err != nil {
		return Device{}, fmt.Errorf("%w: device %q: %v", ErrCorrupt, k, err)
	}
	return Device{ID: m.DeviceId, Name: m.Name, ClinicIDs: m.ClinicIds,
		KeyHash: m.ApiKeyHash, Status: m.Status, CreatedAt: m.CreatedAt}, nil
}

// indexDeviceKeys builds the device key index of a store from before it
// (format 2).
func indexDeviceKeys(tx Tx) error {
	idx, err := tx.Bucket(bDeviceKey)
	if err != nil {
		return err
	}
	return eachDevice(tx, func(k []byte, d Device) error { return idx.Put(d.KeyHash, k) })
}

// eachDevice calls fn with each stored device (and its key), by id.
func eachDevice(tx Tx, fn func(k []byte, d Device) error) error {
	b, err := tx.Bucket(bDevices)
	if err != nil {
		return err
	}
	return b.Ascend(nil, func(k, v []byte) (bool, error) {
		d, err := decodeDevice(k, v)
		if err != nil {
			return false, err
		}
		return true, fn(k, d)
	})
}

// Devices lists the registered devices by id.
func (s *Store) Devices() ([]Device, error) {
	var out []Device
	err := s.be.View(func(tx Tx) error {
		return eachDevice(tx, func(_ []byte, d Device) error {
			out = append(out, d)
			return nil
		})
	})
	return out, err
}

// DeviceByKeyHash finds the device whose API key hashes to hash, by
// the key index. Revoked devices are found too: callers check Status.
func (s *Store) DeviceByKeyHash(hash []byte) (Device, error) {
	var d Device
	err := s.be.View(func(tx Tx) error {
		idx, err := tx.Bucket(bDeviceKey)
		if err != nil {
			return err
		}
		b, err := tx.Bucket(bDevices)
		if err != nil {
			return err
		}
		id := idx.Get(hash)
		v := b.Get(id)
		if id == nil || v == nil {
			return fmt.Errorf("%w: no device with that key", ErrNotFound)
		}
		if d, err = decodeDevice(id, v); err == nil && !bytes.Equal(d.KeyHash, hash) {
			err = fmt.Errorf("%w: device key index names %q, whose key differs", ErrCorrupt, id)
		}
		return err
	})
	return d, err
}
