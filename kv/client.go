package kv

import (
	"fmt"
	"time"

	"github.com/clinicsync/clinicsync/codec"
	pb "github.com/clinicsync/clinicsync/proto"
)

// bClients records the downstream clients a serving node has seen.
const bClients = "clients" // client key → pb.Client

// ClientSeenEvery bounds how often RecordClient rewrites a client whose
// schema version did not change: its LastSeen may lag by this much.
const ClientSeenEvery = time.Minute

// Client is a downstream client of a serving node as its pulls describe
// it: a hub (by device id) or a user's app (by user id, and the device
// id it names, if any), with the app schema version it last reported
// (WatermelonDB's schemaVersion; 0: not reported).
type Client struct {
	ID            string // hub device id or user id
	Device        string // a user's device, when the app names it
	Hub           bool
	SchemaVersion int64
	FirstSeen     int64 // ms
	LastSeen      int64 // ms
}

// Key is the client's key: its id, and "/device" for a named device.
func (c Client) Key() string {
	if c.Device != "" {
		return c.ID + "/" + c.Device
	}
	return c.ID
}

// RecordClient notes that c pulled now, with its schema version (0:
// not reported, which keeps the version recorded before). It
// writes only when the client is new, its schema version changed, or
// its last record is older than ClientSeenEvery, so that a busy client
// costs no write per pull.
func (s *Store) RecordClient(c Client) error {
	if c.ID == "" {
		return fmt.Errorf("kv: a client needs an id")
	}
	now := s.opts.Clock.Now().UnixMilli()
	key := []byte(c.Key())
	var old *Client
	err := s.be.View(func(tx Tx) error {
		var err error
		old, err = getClient(tx, key)
		return err
	})
	if err != nil {
		return err
	}
	if old != nil && c.SchemaVersion == 0 {
		c.SchemaVersion = old.SchemaVersion // not reported this time: unchanged
	}
	if old != nil && old.SchemaVersion == c.SchemaVersion && old.Hub == c.Hub && now-old.LastSeen < ClientSeenEvery.Milliseconds() {
		return nil
	}
	return s.be.Update(func(tx Tx) error {
		old, err := getClient(tx, key)
		if err != nil {
			return err
		}
		c.FirstSeen, c.LastSeen = now, now
		if old != nil {
			c.FirstSeen = old.FirstSeen
		}
		enc, err := codec.Marshal(&pb.Client{Id: c.ID, Device: c.Device, Hub: c.Hub, SchemaVersion: c.SchemaVersion,
			FirstSeen: c.FirstSeen, LastSeen: c.LastSeen})
		if err != nil {
			return err
		}
		b, err := tx.Bucket(bClients)
		if err != nil {
			return err
		}
		return b.Put(key, enc)
	})
}

func getClient(tx Tx, key []byte) (*Client, error) {
	b, err := tx.Bucket(bClients)
	if err != nil {
		return nil, err
	}
	v := b.Get(key)
	if v == nil {
		return nil, nil
	}
	c, err := decodeClient(key, v)
	return &c, err
}

func decodeClient(k, v []byte) (Client, error) {
	var m pb.Client
	if err := codec.Unmarshal(v, &m); err != nil {
		return Client{}, fmt.Errorf("%w: client %q: %v", ErrCorrupt, k, err)
	}
	return Client{ID: m.GetId(), Device: m.GetDevice(), Hub: m.GetHub(), SchemaVersion: m.GetSchemaVersion(),
		FirstSeen: m.GetFirstSeen(), LastSeen: m.GetLastSeen()}, nil
}

// Clients lists the recorded clients by key.
func (s *Store) Clients() ([]Client, error) {
	var out []Client
	err := s.be.View(func(tx Tx) error {
		b, err := tx.Bucket(bClients)
		if err != nil {
			return err
		}
		return b.Ascend(nil, func(k, v []byte) (bool, error) {
			c, err := decodeClient(k, v)
			out = append(out, c)
			return err == nil, err
		})
	})
	return out, err
}
