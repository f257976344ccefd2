package kv

import (
	"github.com/clinicsync/clinicsync/codec"
)

// The store format: 0 before column versions existed; 1 when every
// stored column carries one; 2 with the index of device keys.
const (
	formatVersions  = 1
	formatDeviceIdx = 2
	formatCurrent   = formatDeviceIdx
)

var kFormat = []byte("format")

// migrateBatch bounds the rows one migration transaction rewrites.
const migrateBatch = 10_000

func readFormat(tx Tx) (uint64, error) {
	b, err := tx.Bucket(bMeta)
	if err != nil {
		return 0, err
	}
	return u64(b.Get(kFormat)), nil
}

// migrate brings a store written by an older clinicsync to the current
// format. Rows from before column versions get, for every column without
// one, the version {updated_at (0 if none), 0, ""}: the same on every
// replica of the row, so replicas agree, and older than any edit made
// since. Batches are separate transactions and idempotent, so a crash
// midway resumes; the format is recorded last.
func (s *Store) migrate() error {
	var format uint64
	if err := s.be.View(func(tx Tx) (err error) { format, err = readFormat(tx); return err }); err != nil {
		return err
	}
	if format < formatVersions {
		if err := s.addVersions(); err != nil {
			return err
		}
	}
	if format < formatDeviceIdx {
		if err := s.be.Update(indexDeviceKeys); err != nil {
			return err
		}
	}
	if format >= formatCurrent {
		return nil
	}
	return s.be.Update(func(tx Tx) error {
		b, err := tx.Bucket(bMeta)
		if err != nil {
			return err
		}
		return b.Put(kFormat, u64b(formatCurrent))
	})
}

// addVersions gives every stored column without a version one.
func (s *Store) addVersions() error {
	var tables []string
	if err := s.be.View(func(tx Tx) error { tables = tx.Buckets(rowsPfx); return nil }); err != nil {
		return err
	}
	for _, bucket := range tables {
		table := bucket[len(rowsPfx):]
		var from []byte
		for done := false; !done; {
			err := s.be.Update(func(tx Tx) error {
				b, err := tx.Bucket(bucket)
				if err != nil {
					return err
				}
				var todo []Record
				done = true
				err = b.Ascend(from, func(k, v []byte) (bool, error) {
					if len(todo) == migrateBatch {
						from, done = append([]byte(nil), k...), false
						return false, nil
					}
					r, err := decodeRecord(table, string(k), v)
					if err != nil {
						return false, err
					}
					if versionless(r) {
						todo = append(todo, r)
					}
					return true, nil
				})
				if err != nil {
					return err
				}
				for _, old := range todo {
					r := old
					r.Versions = codec.BaseVersions(r.Row)
					if err := s.put(tx, &old, &r); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
	}
	return nil
}

func versionless(r Record) bool {
	for col := range r.Cols {
		if _, ok := r.Versions[col]; !ok {
			return true
		}
	}
	return false
}
