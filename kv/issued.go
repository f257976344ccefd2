package kv

import (
	"bytes"
	"time"
)

// The record of issued pull timestamps. IssueCursor notes each
// timestamp it hands out, in the transaction that issues it, so that a
// server can tell a last_pulled_at it issued from one it never did
// (WatermelonDB's strict push rule refuses the latter). The record is
// bounded: it keeps the timestamps issued in the last IssuedAge, at
// most IssuedMax of them, dropping the oldest first a few at a time as
// new ones are issued; the floor is the newest timestamp dropped, so
// the record answers for the range (floor, last cursor].

// Retention defaults of the record of issued pull timestamps.
const (
	DefaultIssuedAge = 90 * 24 * time.Hour
	DefaultIssuedMax = 1 << 20
)

// bIssued holds the issued pull timestamps: cursor (8 bytes) → the wall
// time it was issued at, in ms (8 bytes).
const bIssued = "issued"

var (
	kIssuedFloor = []byte("issued-floor") // in bMeta: the newest timestamp dropped from the record
	kIssuedN     = []byte("issued-n")     // in bMeta: how many timestamps the record holds
)

// issuedPruneStep bounds the entries one IssueCursor drops: more than
// the one it adds, so the record catches up after a pause, and few, so a
// pull never waits on a long prune.
const issuedPruneStep = 64

// Issued is what the store knows of a timestamp a client sends back as
// its last pull.
type Issued struct {
	// Last is the newest cursor issued: a timestamp above it was never
	// issued.
	Last int64
	// Floor bounds what the record covers: timestamps at or below it
	// are older than the record (dropped, or issued before it began),
	// and the store cannot tell whether it issued them.
	Floor int64
	// Issued reports that IssueCursor issued the timestamp (and the
	// record still holds it).
	Issued bool
}

// Unknown reports whether ts is a timestamp the store knows it never
// issued: above the last cursor, or within the record's range and not
// in it. 0 (a first sync) is never unknown.
func (i Issued) Unknown(ts int64) bool {
	return ts < 0 || ts > i.Last || ts > i.Floor && !i.Issued
}

// IssuedTimestamp looks ts up in the record of issued pull timestamps.
func (s *Store) IssuedTimestamp(ts int64) (i Issued, err error) {
	err = s.be.View(func(tx Tx) error {
		if i.Last, err = lastCursor(tx); err != nil {
			return err
		}
		meta, err := tx.Bucket(bMeta)
		if err != nil {
			return err
		}
		i.Floor = int64(u64(meta.Get(kIssuedFloor)))
		b, err := tx.Bucket(bIssued)
		if err != nil {
			return err
		}
		i.Issued = ts > 0 && b.Get(u64b(uint64(ts))) != nil
		return nil
	})
	return i, err
}

// recordIssued notes ts, a pull timestamp issued in tx, and drops the
// oldest entries beyond the retention bounds.
func (s *Store) recordIssued(tx Tx, ts int64) error {
	b, err := tx.Bucket(bIssued)
	if err != nil {
		return err
	}
	meta, err := tx.Bucket(bMeta)
	if err != nil {
		return err
	}
	now := s.opts.Clock.Now().UnixMilli()
	if err := b.Put(u64b(uint64(ts)), u64b(uint64(now))); err != nil {
		return err
	}
	n := int(u64(meta.Get(kIssuedN))) + 1
	oldest := now - s.opts.IssuedAge.Milliseconds()
	// Oldest first: keys are cursors, in the order they were issued.
	var drop [][]byte
	err = b.Ascend(nil, func(k, v []byte) (bool, error) {
		if len(drop) == issuedPruneStep || n-len(drop) <= s.opts.IssuedMax && int64(u64(v)) >= oldest {
			return false, nil
		}
		drop = append(drop, bytes.Clone(k))
		return true, nil
	})
	if err != nil {
		return err
	}
	floor := u64(meta.Get(kIssuedFloor))
	for _, k := range drop {
		if err := b.Delete(k); err != nil {
			return err
		}
		floor = max(floor, u64(k))
	}
	n -= len(drop)
	if err := meta.Put(kIssuedN, u64b(uint64(n))); err != nil {
		return err
	}
	return meta.Put(kIssuedFloor, u64b(floor))
}
