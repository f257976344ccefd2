package kv

import (
	"fmt"
	"time"

	"github.com/clinicsync/clinicsync/codec"
	pb "github.com/clinicsync/clinicsync/proto"
)

// Conflict is a value that lost to another writer's newer edit.
type Conflict = codec.Conflict

// Conflict log retention defaults: the log drops its oldest entries
// beyond either bound, so it never grows without limit nor blocks a
// sync.
const (
	DefaultConflictMax = 100_000
	DefaultConflictAge = 90 * 24 * time.Hour
)

var kConflictSeq = []byte("conflict")

func groupOf(v codec.Version) *pb.VersionGroup {
	return &pb.VersionGroup{WallMs: v.Wall, Counter: v.Counter, Node: v.Node}
}

func versionOf(g *pb.VersionGroup) codec.Version {
	return codec.Version{Wall: g.GetWallMs(), Counter: g.GetCounter(), Node: g.GetNode()}
}

// logConflicts appends conflicts to the log, stamped with the time, and
// drops the oldest entries beyond the retention bounds.
func (s *Store) logConflicts(tx Tx, cs []Conflict) error {
	if len(cs) == 0 {
		return nil
	}
	b, err := tx.Bucket(bConflicts)
	if err != nil {
		return err
	}
	now := s.opts.Clock.Now()
	for _, c := range cs {
		seq, err := counter(tx, kConflictSeq)
		if err != nil {
			return err
		}
		enc, err := codec.Marshal(&pb.Conflict{Table: c.Table, RowId: c.ID, Column: c.Column,
			Value: codec.ValueToProto(c.Value), Version: groupOf(c.Version), Winner: groupOf(c.Winner), At: now.UnixMilli()})
		if err != nil {
			return err
		}
		if err := b.Put(u64b(seq), enc); err != nil {
			return err
		}
	}
	excess, err := conflictLen(tx, b)
	if err != nil {
		return err
	}
	excess -= s.opts.ConflictMax
	oldest := now.Add(-s.opts.ConflictAge).UnixMilli()
	var drop [][]byte
	err = b.Ascend(nil, func(k, v []byte) (bool, error) {
		if excess <= 0 {
			c, err := decodeConflict(k, v)
			if err != nil || c.At >= oldest {
				return false, err
			}
		}
		drop = append(drop, append([]byte(nil), k...))
		excess--
		return true, nil
	})
	if err != nil {
		return err
	}
	for _, k := range drop {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

func decodeConflict(k, v []byte) (Conflict, error) {
	var m pb.Conflict
	if err := codec.Unmarshal(v, &m); err != nil {
		return Conflict{}, fmt.Errorf("%w: conflict %d: %v", ErrCorrupt, u64(k), err)
	}
	val, err := codec.ValueFromProto(m.GetValue())
	if err != nil {
		return Conflict{}, fmt.Errorf("%w: conflict %d: %v", ErrCorrupt, u64(k), err)
	}
	return Conflict{Table: m.GetTable(), ID: m.GetRowId(), Column: m.GetColumn(), Value: val,
		Version: versionOf(m.GetVersion()), Winner: versionOf(m.GetWinner()), At: m.GetAt()}, nil
}

// Conflicts calls fn for each entry of the conflict log, oldest first,
// that matches table and id ("" matches any).
func (s *Store) Conflicts(table, id string, fn func(Conflict) error) error {
	return s.be.View(func(tx Tx) error {
		b, err := tx.Bucket(bConflicts)
		if err != nil {
			return err
		}
		return b.Ascend(nil, func(k, v []byte) (bool, error) {
			c, err := decodeConflict(k, v)
			if err != nil {
				return false, err
			}
			if table != "" && c.Table != table || id != "" && c.ID != id {
				return true, nil
			}
			return true, fn(c)
		})
	})
}

// ConflictCount returns the number of entries in the conflict log.
func (s *Store) ConflictCount() (n int, err error) {
	err = s.be.View(func(tx Tx) error {
		b, err := tx.Bucket(bConflicts)
		if err != nil {
			return err
		}
		n, err = conflictLen(tx, b)
		return err
	})
	return n, err
}

// conflictLen counts the log without walking it: entries are numbered in
// sequence and dropped oldest first.
func conflictLen(tx Tx, b Bucket) (int, error) {
	first := uint64(0)
	err := b.Ascend(nil, func(k, _ []byte) (bool, error) {
		first = u64(k)
		return false, nil
	})
	if err != nil || first == 0 {
		return 0, err
	}
	m, err := tx.Bucket(bMeta)
	if err != nil {
		return 0, err
	}
	return int(u64(m.Get(kConflictSeq)) - first + 1), nil
}
