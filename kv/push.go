package kv

import (
	"fmt"

	"github.com/clinicsync/clinicsync/codec"
)

// Ref names one collected row and the write version it had when
// collected.
type Ref struct {
	Table, ID string
	Version   uint64
}

// RefOf returns the reference MarkSynced needs for r.
func RefOf(r Record) Ref { return Ref{r.Table, r.ID, r.Version} }

// Collect returns up to limit rows pending upstream (created, updated
// or deleted), in table and id order, read from the pending index: the
// cost is O(pending), not O(rows). limit <= 0 means all.
func (s *Store) Collect(limit int) ([]Record, error) {
	var out []Record
	err := s.be.View(func(tx Tx) error {
		pi, err := tx.Bucket(bPending)
		if err != nil {
			return err
		}
		return pi.Ascend(nil, func(k, _ []byte) (bool, error) {
			r, err := indexed(tx, bPending, k, decodeRecord)
			if err != nil {
				return false, err
			}
			out = append(out, r)
			return limit <= 0 || len(out) < limit, nil
		})
	})
	return out, err
}

// PendingRows lists the rows pending upstream, like Collect, without
// decoding them (a push plans its chunks from this, then reads each
// chunk's rows with Records): O(pending) in time, a few dozen bytes a
// row in memory.
func (s *Store) PendingRows() ([]codec.Pending, error) {
	var out []codec.Pending
	err := s.be.View(func(tx Tx) error {
		pi, err := tx.Bucket(bPending)
		if err != nil {
			return err
		}
		return pi.Ascend(nil, func(k, _ []byte) (bool, error) {
			table, id, err := splitRowKey(k)
			if err != nil {
				return false, err
			}
			b, err := rowsBucket(tx, table)
			if err != nil {
				return false, err
			}
			v := b.Get([]byte(id))
			if v == nil {
				return false, fmt.Errorf("%w: pending index names missing row %s/%s", ErrCorrupt, table, id)
			}
			meta, err := readMeta(v)
			if err != nil {
				return false, fmt.Errorf("%w: %s/%s: %v", ErrCorrupt, table, id, err)
			}
			out = append(out, codec.Pending{Table: table, ID: id, Deleted: meta.deleted, Size: len(v)})
			return true, nil
		})
	})
	return out, err
}

// Records reads the named rows in one transaction, leaving out those
// that are gone.
func (s *Store) Records(rows []codec.Pending) ([]Record, error) {
	out := make([]Record, 0, len(rows))
	err := s.be.View(func(tx Tx) error {
		for _, p := range rows {
			if _, err := s.table(p.Table); err != nil {
				return err
			}
			r, err := getRecord(tx, p.Table, p.ID)
			if err != nil {
				return err
			}
			if r != nil {
				out = append(out, *r)
			}
		}
		return nil
	})
	return out, err
}

// indexed reads the row an index entry names (table \x00 id), decoded
// by decode (decodeRecord, or decodeServed for rows only served).
func indexed(tx Tx, index string, key []byte, decode func(table, id string, b []byte) (Record, error)) (Record, error) {
	table, id, err := splitRowKey(key)
	if err != nil {
		return Record{}, err
	}
	r, err := getAs(tx, table, id, decode)
	if err != nil {
		return Record{}, err
	}
	if r == nil {
		return Record{}, fmt.Errorf("%w: %s index names missing row %s/%s", ErrCorrupt, index, table, id)
	}
	return *r, nil
}

// PendingCount returns the number of rows pending upstream.
func (s *Store) PendingCount() (n int, err error) {
	err = s.be.View(func(tx Tx) error {
		pi, err := tx.Bucket(bPending)
		n = pi.Len()
		return err
	})
	return n, err
}

// PendingByTable returns the number of rows pending upstream in each
// table that has any, read from the pending index (O(pending)).
func (s *Store) PendingByTable() (map[string]int, error) {
	out := map[string]int{}
	err := s.be.View(func(tx Tx) error {
		pi, err := tx.Bucket(bPending)
		if err != nil {
			return err
		}
		return pi.Ascend(nil, func(k, _ []byte) (bool, error) {
			table, _, err := splitRowKey(k)
			if err != nil {
				return false, err
			}
			out[table]++
			return true, nil
		})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// MarkSynced records that the upstream acknowledged the collected rows,
// in one transaction. A row written since it was collected (its version
// moved) is left pending, so that write is pushed next time. A pushed
// tombstone is purged, or kept as synced when the store keeps
// tombstones. It returns how many rows were marked.
func (s *Store) MarkSynced(refs []Ref) (marked int, err error) {
	err = s.be.Update(func(tx Tx) error {
		marked = 0
		pi, err := tx.Bucket(bPending)
		if err != nil {
			return err
		}
		for _, ref := range refs {
			// The encoded row is rewritten without its status and
			// _changed; its columns are not decoded.
			rb, err := rowsBucket(tx, ref.Table)
			if err != nil {
				return err
			}
			v := rb.Get([]byte(ref.ID))
			if v == nil {
				continue
			}
			meta, err := readMeta(v)
			if err != nil {
				return fmt.Errorf("%w: %s/%s: %v", ErrCorrupt, ref.Table, ref.ID, err)
			}
			if meta.version != ref.Version || !meta.status.Pending() {
				continue
			}
			marked++
			if meta.deleted && !s.opts.KeepTombstones {
				r, err := decodeRecord(ref.Table, ref.ID, v)
				if err != nil {
					return err
				}
				if err := s.purge(tx, &r); err != nil {
					return err
				}
				continue
			}
			enc, err := synced(v)
			if err != nil {
				return fmt.Errorf("%w: %s/%s: %v", ErrCorrupt, ref.Table, ref.ID, err)
			}
			if err := rb.Put([]byte(ref.ID), enc); err != nil {
				return err
			}
			if err := pi.Delete(rowKey(ref.Table, ref.ID)); err != nil {
				return err
			}
		}
		return nil
	})
	return marked, err
}
