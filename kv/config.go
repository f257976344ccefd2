package kv

import (
	"bytes"
	"crypto/rand"
	"fmt"

	"github.com/clinicsync/clinicsync/codec"
	pb "github.com/clinicsync/clinicsync/proto"
)

// SetConfig stores a configuration value.
func (s *Store) SetConfig(key, value string) error {
	return s.be.Update(func(tx Tx) error {
		b, err := tx.Bucket(bConfig)
		if err != nil {
			return err
		}
		return b.Put([]byte(key), []byte(value))
	})
}

// Config reads a configuration value; ErrNotFound if unset.
func (s *Store) Config(key string) (string, error) { return ReadConfig(s.be, key) }

// ReadConfig reads a configuration value straight from a backend, before
// a Store is built over it (its Options may depend on the value).
func ReadConfig(be Backend, key string) (value string, err error) {
	err = be.View(func(tx Tx) error {
		b, err := tx.Bucket(bConfig)
		if err != nil {
			return err
		}
		v := b.Get([]byte(key))
		if v == nil {
			return fmt.Errorf("%w: config %q", ErrNotFound, key)
		}
		value = string(v)
		return nil
	})
	return value, err
}

// ConfigPrefix reads the configuration values whose keys start with
// prefix, by key.
func (s *Store) ConfigPrefix(prefix string) (map[string]string, error) {
	out := map[string]string{}
	err := s.be.View(func(tx Tx) error {
		b, err := tx.Bucket(bConfig)
		if err != nil {
			return err
		}
		return b.Ascend([]byte(prefix), func(k, v []byte) (bool, error) {
			if !bytes.HasPrefix(k, []byte(prefix)) {
				return false, nil
			}
			out[string(k)] = string(v)
			return true, nil
		})
	})
	return out, err
}

// LogEntry is one local write in the event log.
type LogEntry struct {
	Seq     uint64
	At      int64 // ms
	Action  string
	Table   string
	RowID   string
	Changes map[string]codec.Value
}

// Log calls fn for each event log entry with Seq >= from, in order.
func (s *Store) Log(from uint64, fn func(LogEntry) error) error {
	return s.be.View(func(tx Tx) error {
		b, err := tx.Bucket(bLog)
		if err != nil {
			return err
		}
		return b.Ascend(u64b(from), func(k, v []byte) (bool, error) {
			var m pb.LogEntry
			if err := codec.Unmarshal(v, &m); err != nil {
				return false, fmt.Errorf("%w: log entry %d: %v", ErrCorrupt, u64(k), err)
			}
			changes, err := codec.ValuesFromProto(m.Changes)
			if err != nil {
				return false, fmt.Errorf("%w: log entry %d: %v", ErrCorrupt, m.Seq, err)
			}
			return true, fn(LogEntry{m.Seq, m.At, m.Action, m.Table, m.RowId, changes})
		})
	})
}

// Secret returns the random secret stored under key, creating it (n
// bytes from crypto/rand) in the same transaction when there is none:
// every caller gets the same secret, across restarts. A secret never
// changes, so it is read from the store once and then from memory
// (callers sign with it on every request).
func (s *Store) Secret(key string, n int) ([]byte, error) {
	if v, ok := s.secrets.Load(key); ok {
		return v.([]byte), nil
	}
	var out []byte
	err := s.be.Update(func(tx Tx) error {
		b, err := tx.Bucket(bConfig)
		if err != nil {
			return err
		}
		if v := b.Get([]byte(key)); v != nil {
			out = bytes.Clone(v)
			return nil
		}
		out = make([]byte, n)
		if _, err := rand.Read(out); err != nil {
			return fmt.Errorf("kv: reading randomness: %w", err)
		}
		return b.Put([]byte(key), out)
	})
	if err != nil {
		return nil, err
	}
	v, _ := s.secrets.LoadOrStore(key, out)
	return v.([]byte), nil
}
