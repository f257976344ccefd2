package kv

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/clinicsync/clinicsync/codec/schema"
)

// Clock is the store's only source of time. Real nodes pass the wall
// clock, the simulator a virtual one.
type Clock interface{ Now() time.Time }

// Options configure a Store.
type Options struct {
	Clock   Clock           // required
	Catalog *schema.Catalog // default schema.Default()
	// KeepTombstones keeps a deleted row's tombstone after its delete
	// was pushed upstream, so that it can still be served downstream.
	// Serving nodes (cloud, hub) set it; devices purge.
	KeepTombstones bool
	// Root marks a node without upstream (a cloud): its local writes
	// have nowhere to go, so they are never pending.
	Root bool
	// NodeID names this node in the versions of its local edits.
	NodeID string
	// ConflictMax and ConflictAge bound the conflict log (defaults
	// DefaultConflictMax and DefaultConflictAge).
	ConflictMax int
	ConflictAge time.Duration
	// IssuedMax and IssuedAge bound the record of issued pull
	// timestamps (defaults DefaultIssuedMax and DefaultIssuedAge; see
	// IssuedTimestamp).
	IssuedMax int
	IssuedAge time.Duration
}

// Store is a node's database: rows with sync metadata and their
// indexes, peers, devices, config and the event log, over a Backend.
// A Store is safe for concurrent use; every method is one transaction.
type Store struct {
	be      Backend
	opts    Options
	cat     *schema.Catalog
	secrets sync.Map // key → []byte: Secret's, read once
}

// FileName is the bbolt file inside a node's data directory.
const FileName = "node.db"

// Open opens the bbolt store in dir (creating it), waiting up to a
// second for another process to release it.
func Open(dir string, opts Options) (*Store, error) {
	be, err := OpenBolt(filepath.Join(dir, FileName), time.Second)
	if err != nil {
		return nil, err
	}
	s, err := New(be, opts)
	if err != nil {
		be.Close()
		return nil, err
	}
	return s, nil
}

// OpenMemory returns a store on a fresh in-memory backend.
func OpenMemory(opts Options) (*Store, error) { return New(NewMemory(), opts) }

// New returns a store over a backend and records the catalog in it.
func New(be Backend, opts Options) (*Store, error) {
	if opts.Clock == nil {
		return nil, fmt.Errorf("kv: Options.Clock is required")
	}
	if opts.Catalog == nil {
		opts.Catalog = schema.Default()
	}
	if opts.ConflictMax <= 0 {
		opts.ConflictMax = DefaultConflictMax
	}
	if opts.ConflictAge <= 0 {
		opts.ConflictAge = DefaultConflictAge
	}
	if opts.IssuedMax <= 0 {
		opts.IssuedMax = DefaultIssuedMax
	}
	if opts.IssuedAge <= 0 {
		opts.IssuedAge = DefaultIssuedAge
	}
	s := &Store{be: be, opts: opts, cat: opts.Catalog}
	entries, err := catalogEntries(s.cat)
	if err != nil {
		return nil, err
	}
	// Write only when something is missing, so that reopening a store
	// (every command, every restart) costs no write transaction.
	var ready bool
	err = be.View(func(tx Tx) error {
		ready = catalogStored(tx, entries)
		c, err := lastCursor(tx)
		if err != nil {
			return err
		}
		f, err := readFormat(tx)
		ready = ready && c > 0 && f >= formatCurrent
		return err
	})
	if err != nil || ready {
		return s, err
	}
	if err := s.migrate(); err != nil {
		return nil, fmt.Errorf("kv: migrating the store to format %d: %w", formatCurrent, err)
	}
	err = be.Update(func(tx Tx) error {
		b, err := tx.Bucket(bCatalog)
		if err != nil {
			return err
		}
		for name, j := range entries {
			if err := b.Put([]byte(name), j); err != nil {
				return err
			}
		}
		// Issue a first cursor, so that a pull timestamp is never 0
		// (WatermelonDB refuses it).
		if c, err := lastCursor(tx); err != nil || c > 0 {
			return err
		}
		_, err = s.nextCursor(tx)
		return err
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Close closes the backend.
func (s *Store) Close() error { return s.be.Close() }

// Catalog returns the schema catalog the store validates against.
func (s *Store) Catalog() *schema.Catalog { return s.cat }

// Backend returns the store's backend (the simulator crashes and
// reopens stores through it).
func (s *Store) Backend() Backend { return s.be }

// Bucket names. Rows of table T live in "t/T".
const (
	bMeta      = "meta"        // cursor, version, log sequence
	bCatalog   = "catalog"     // table name → JSON column list
	bCursor    = "cursor"      // cursor (8 bytes) → table \x00 id
	bPending   = "pending"     // table \x00 id → version (8 bytes)
	bPeers     = "peers"       // peer id → pb.Peer
	bDevices   = "devices"     // device id → pb.Device
	bDeviceKey = "device_keys" // sha256 of an API key → device id
	bConfig    = "config"      // key → value
	bLog       = "log"         // seq (8 bytes) → pb.LogEntry
	bConflicts = "conflicts"   // seq (8 bytes) → pb.Conflict
	rowsPfx    = "t/"
)

var (
	kCursor  = []byte("cursor")
	kVersion = []byte("version")
	kLogSeq  = []byte("log")
)

type catalogColumn struct {
	Name     string `json:"name"`
	Type     string `json:"type"`
	Optional bool   `json:"optional,omitempty"`
}

// catalogEntries describes each table of the catalog, as recorded in
// the store so that a data file describes its own tables.
func catalogEntries(cat *schema.Catalog) (map[string][]byte, error) {
	out := map[string][]byte{}
	for _, name := range cat.Names() {
		t, _ := cat.Table(name)
		cols := make([]catalogColumn, len(t.Columns))
		for i, c := range t.Columns {
			cols[i] = catalogColumn{c.Name, c.Type.String(), c.Optional}
		}
		j, err := json.Marshal(cols)
		if err != nil {
			return nil, err
		}
		out[name] = j
	}
	return out, nil
}

// catalogStored reports whether the store already records entries.
func catalogStored(tx Tx, entries map[string][]byte) bool {
	b, err := tx.Bucket(bCatalog)
	if err != nil {
		return false
	}
	for name, j := range entries {
		if !bytes.Equal(b.Get([]byte(name)), j) {
			return false
		}
	}
	return true
}

func u64(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

func u64b(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// counter increments a uint64 in the meta bucket and returns the new value.
func counter(tx Tx, key []byte) (uint64, error) {
	b, err := tx.Bucket(bMeta)
	if err != nil {
		return 0, err
	}
	v := u64(b.Get(key)) + 1
	return v, b.Put(key, u64b(v))
}

// nextCursor issues a serving cursor: max(now_ms, last+1), persisted in
// the same transaction, so cursors are unique, strictly increasing and
// survive restarts and clocks set back.
func (s *Store) nextCursor(tx Tx) (int64, error) {
	b, err := tx.Bucket(bMeta)
	if err != nil {
		return 0, err
	}
	c := max(s.opts.Clock.Now().UnixMilli(), int64(u64(b.Get(kCursor)))+1)
	return c, b.Put(kCursor, u64b(uint64(c)))
}

// lastCursor is the newest cursor issued (0 if none).
func lastCursor(tx Tx) (int64, error) {
	b, err := tx.Bucket(bMeta)
	if err != nil {
		return 0, err
	}
	return int64(u64(b.Get(kCursor))), nil
}

// IssueCursor issues a fresh cursor that no row carries: a pull's
// timestamp. Every row changed before it has a smaller cursor, every
// later change a greater one, and no two pulls share a timestamp, so a
// server can tell a pusher's own last pull from another device's. It is
// recorded in the same transaction, so that IssuedTimestamp can tell it
// from a timestamp the store never issued.
func (s *Store) IssueCursor() (c int64, err error) {
	err = s.be.Update(func(tx Tx) error {
		if c, err = s.nextCursor(tx); err != nil {
			return err
		}
		return s.recordIssued(tx, c)
	})
	return c, err
}

// LastVersion returns the write version of the newest row change:
// unlike the cursor, it does not move when a pull issues a timestamp,
// so an unchanged version means no row changed.
func (s *Store) LastVersion() (v uint64, err error) {
	err = s.be.View(func(tx Tx) error {
		b, err := tx.Bucket(bMeta)
		v = u64(b.Get(kVersion))
		return err
	})
	return v, err
}

// LastCursor returns the newest serving cursor issued.
func (s *Store) LastCursor() (c int64, err error) {
	err = s.be.View(func(tx Tx) error {
		c, err = lastCursor(tx)
		return err
	})
	return c, err
}

func rowKey(table, id string) []byte { return []byte(table + "\x00" + id) }

func splitRowKey(k []byte) (table, id string, err error) {
	for i, c := range k {
		if c == 0 {
			return string(k[:i]), string(k[i+1:]), nil
		}
	}
	return "", "", fmt.Errorf("%w: index key %q", ErrCorrupt, k)
}
