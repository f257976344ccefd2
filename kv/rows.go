package kv

import (
	"fmt"
	"maps"
	"slices"

	"github.com/clinicsync/clinicsync/codec"
	"github.com/clinicsync/clinicsync/codec/schema"
	pb "github.com/clinicsync/clinicsync/proto"
)

// MaxValueBytes bounds one text value in a local write.
const MaxValueBytes = 1 << 20

func (s *Store) table(name string) (*schema.Table, error) {
	t, ok := s.cat.Table(name)
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownTable, name)
	}
	return t, nil
}

func rowsBucket(tx Tx, table string) (Bucket, error) { return tx.Bucket(rowsPfx + table) }

// getRecord reads a row, tombstones included; nil if absent.
func getRecord(tx Tx, table, id string) (*Record, error) { return getAs(tx, table, id, decodeRecord) }

// getAs is getRecord decoding with decode (decodeRecord, or one that
// leaves parts unread).
func getAs(tx Tx, table, id string, decode func(table, id string, b []byte) (Record, error)) (*Record, error) {
	b, err := rowsBucket(tx, table)
	if err != nil {
		return nil, err
	}
	v := b.Get([]byte(id))
	if v == nil {
		return nil, nil
	}
	r, err := decode(table, id, v)
	return &r, err
}

// save writes r as the new state of its row (old is the previous state,
// nil if absent). It stamps a new serving cursor and write version,
// keeps CreatedCursor (stamping it on creation when r leaves it 0) and
// maintains the cursor and pending indexes.
func (s *Store) save(tx Tx, old, r *Record) error {
	cur, err := s.nextCursor(tx)
	if err != nil {
		return err
	}
	ver, err := counter(tx, kVersion)
	if err != nil {
		return err
	}
	r.Cursor, r.Version = cur, ver
	if r.CreatedCursor == 0 {
		if old != nil && old.CreatedCursor != 0 {
			r.CreatedCursor = old.CreatedCursor
		} else {
			r.CreatedCursor = cur
		}
	}
	if r.Deleted {
		r.Cols, r.Versions = s.keptClinic(old, r), nil
	}
	return s.put(tx, old, r)
}

// keptClinic is what tombstone r keeps: the value of its table's clinic
// column in the row it replaces (old), else in r as the merge wrote it
// (for an id never stored), if any, so that the clinic scope of the
// rows that follow it (a deleted patient's events) stays known.
func (s *Store) keptClinic(old, r *Record) map[string]codec.Value {
	t, ok := s.cat.Table(r.Table)
	if !ok || t.ClinicColumn == "" || t.ClinicColumn == "id" {
		return nil
	}
	for _, from := range []*Record{old, r} {
		if from == nil {
			continue
		}
		if v, ok := from.Cols[t.ClinicColumn]; ok && !v.IsNull() {
			return map[string]codec.Value{t.ClinicColumn: v}
		}
	}
	return nil
}

// put writes r without stamping and maintains the indexes.
func (s *Store) put(tx Tx, old, r *Record) error {
	enc, err := encodeRecord(r)
	if err != nil {
		return err
	}
	rb, err := rowsBucket(tx, r.Table)
	if err != nil {
		return err
	}
	if err := rb.Put([]byte(r.ID), enc); err != nil {
		return err
	}
	ci, err := tx.Bucket(bCursor)
	if err != nil {
		return err
	}
	if old != nil && old.Cursor != r.Cursor {
		if err := ci.Delete(u64b(uint64(old.Cursor))); err != nil {
			return err
		}
	}
	if err := ci.Put(u64b(uint64(r.Cursor)), rowKey(r.Table, r.ID)); err != nil {
		return err
	}
	pi, err := tx.Bucket(bPending)
	if err != nil {
		return err
	}
	switch {
	case r.Status.Pending():
		return pi.Put(rowKey(r.Table, r.ID), u64b(r.Version))
	case old != nil && old.Status.Pending():
		return pi.Delete(rowKey(r.Table, r.ID))
	}
	return nil
}

// purge removes a row and its index entries entirely.
func (s *Store) purge(tx Tx, old *Record) error {
	rb, err := rowsBucket(tx, old.Table)
	if err != nil {
		return err
	}
	if err := rb.Delete([]byte(old.ID)); err != nil {
		return err
	}
	ci, err := tx.Bucket(bCursor)
	if err != nil {
		return err
	}
	if err := ci.Delete(u64b(uint64(old.Cursor))); err != nil {
		return err
	}
	pi, err := tx.Bucket(bPending)
	if err != nil {
		return err
	}
	return pi.Delete(rowKey(old.Table, old.ID))
}

// Put is a local write: it creates the row or updates the given columns
// of it, as a device's user would. Columns are checked against the
// catalog (unknown columns and wrongly typed values are refused);
// created_at and updated_at are set from the clock when the table has
// them and the caller did not. Every written column gets the version
// of this edit. The row becomes pending upstream with
// the written columns of an update added to its _changed (rows that
// never go upstream, on a root node or in a table that is not pushed,
// stay synced), and the write is logged.
func (s *Store) Put(table, id string, cols map[string]codec.Value) (Record, error) {
	t, err := s.table(table)
	if err != nil {
		return Record{}, err
	}
	if !schema.ValidID(id) {
		return Record{}, fmt.Errorf("%w: %q", ErrInvalidID, id)
	}
	for name, v := range cols {
		col, ok := t.Column(name)
		if !ok {
			return Record{}, fmt.Errorf("%w: %s has no column %q", ErrUnknownColumn, table, name)
		}
		if err := codec.CheckValue(col, v, MaxValueBytes); err != nil {
			return Record{}, fmt.Errorf("%w: %s/%s: %v", ErrInvalidValue, table, id, err)
		}
	}
	var out Record
	err = s.be.Update(func(tx Tx) error {
		old, err := getRecord(tx, table, id)
		if err != nil {
			return err
		}
		now := codec.Int(s.opts.Clock.Now().UnixMilli())
		written := maps.Clone(cols)
		if _, ok := t.Column("updated_at"); ok && !has(cols, "updated_at") {
			written["updated_at"] = now
		}
		var r Record
		action, logged := "UPDATE", written
		switch {
		case old == nil:
			action = "CREATE"
			if _, ok := t.Column("created_at"); ok && !has(cols, "created_at") {
				written["created_at"] = now
			}
			for _, c := range t.Columns {
				if _, set := written[c.Name]; !set && !c.Optional {
					return fmt.Errorf("%w: creating %s/%s needs column %s", ErrInvalidValue, table, id, c.Name)
				}
			}
			r = Record{Row: codec.Row{Table: table, ID: id, Cols: written}, Status: Created}
			logged, written = written, nil // as in WatermelonDB, creating a row marks no column changed
		case old.Deleted:
			return fmt.Errorf("%w: %s/%s", ErrDeleted, table, id)
		default:
			r = *old
			r.Cols = maps.Clone(old.Cols)
			maps.Copy(r.Cols, written)
			if r.Status == Synced {
				r.Status = Updated
			}
		}
		v, err := s.stamp(tx)
		if err != nil {
			return err
		}
		r.Versions = maps.Clone(r.Versions)
		if r.Versions == nil {
			r.Versions = map[string]codec.Version{}
		}
		for name := range logged {
			r.Versions[name] = v
		}
		r.Changed = addChanged(r.Changed, written)
		if t.Flow != schema.Synced || s.opts.Root { // nothing to push: no upstream for this row
			r.Status, r.Changed = Synced, nil
		}
		if err := s.save(tx, old, &r); err != nil {
			return err
		}
		out = r
		return s.appendLog(tx, action, table, id, logged)
	})
	return out, err
}

// Delete is a local delete: the row becomes a tombstone pending
// upstream. Deleting a tombstone again is a no-op; deleting an unknown
// row is ErrNotFound.
func (s *Store) Delete(table, id string) error {
	t, err := s.table(table)
	if err != nil {
		return err
	}
	return s.be.Update(func(tx Tx) error {
		old, err := getRecord(tx, table, id)
		if err != nil {
			return err
		}
		if old == nil {
			return fmt.Errorf("%w: %s/%s", ErrNotFound, table, id)
		}
		if old.Deleted {
			return nil
		}
		r := Record{Row: codec.Row{Table: table, ID: id}, Status: Deleted, Deleted: true, Origin: old.Origin}
		if t.Flow != schema.Synced || s.opts.Root {
			if !s.opts.KeepTombstones {
				if err := s.purge(tx, old); err != nil {
					return err
				}
				return s.appendLog(tx, "SOFT_DELETE", table, id, nil)
			}
			r.Status = Synced
		}
		if err := s.save(tx, old, &r); err != nil {
			return err
		}
		return s.appendLog(tx, "SOFT_DELETE", table, id, nil)
	})
}

// Get reads one row; a tombstone is returned with Deleted set.
func (s *Store) Get(table, id string) (Record, error) {
	if _, err := s.table(table); err != nil {
		return Record{}, err
	}
	var out Record
	err := s.be.View(func(tx Tx) error {
		r, err := getRecord(tx, table, id)
		if err != nil {
			return err
		}
		if r == nil {
			return fmt.Errorf("%w: %s/%s", ErrNotFound, table, id)
		}
		out = *r
		return nil
	})
	return out, err
}

// Rows calls fn for every row of a table, tombstones included, in id
// order, inside one read transaction (fn must not write to the store).
func (s *Store) Rows(table string, fn func(Record) error) error {
	if _, err := s.table(table); err != nil {
		return err
	}
	return s.be.View(func(tx Tx) error {
		b, err := rowsBucket(tx, table)
		if err != nil {
			return err
		}
		return b.Ascend(nil, func(k, v []byte) (bool, error) {
			r, err := decodeRecord(table, string(k), v)
			if err != nil {
				return false, err
			}
			return true, fn(r)
		})
	})
}

// RowsPage returns up to limit rows of a table (limit <= 0: all),
// tombstones included, in id order, starting after the id after (""
// starts at the first row), read in one read transaction of their own,
// and whether rows remain after them. Reading a table page by page
// (after the last id of the previous page) holds one page in memory and
// no transaction in between; each page is as of its own read.
func (s *Store) RowsPage(table, after string, limit int) (rows []Record, more bool, err error) {
	if _, err := s.table(table); err != nil {
		return nil, false, err
	}
	var from []byte
	if after != "" {
		from = []byte(after + "\x00") // the first key above after (ids hold no NUL)
	}
	err = s.be.View(func(tx Tx) error {
		rows, more = nil, false
		b, err := rowsBucket(tx, table)
		if err != nil {
			return err
		}
		return b.Ascend(from, func(k, v []byte) (bool, error) {
			if limit > 0 && len(rows) == limit {
				more = true
				return false, nil
			}
			r, err := decodeRecord(table, string(k), v)
			if err != nil {
				return false, err
			}
			rows = append(rows, r)
			return true, nil
		})
	})
	if err != nil {
		return nil, false, err
	}
	return rows, more, nil
}

// Count returns the number of live rows and of tombstones of a table.
func (s *Store) Count(table string) (live, tombstones int, err error) {
	err = s.Rows(table, func(r Record) error {
		if r.Deleted {
			tombstones++
		} else {
			live++
		}
		return nil
	})
	return live, tombstones, err
}

func has(cols map[string]codec.Value, name string) bool {
	_, ok := cols[name]
	return ok
}

// addChanged returns changed plus the written column names not yet in
// it, new names sorted.
func addChanged(changed []string, written map[string]codec.Value) []string {
	out := slices.Clone(changed)
	for _, name := range slices.Sorted(maps.Keys(written)) {
		if !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	return out
}

// appendLog adds an entry to the event log of local writes.
func (s *Store) appendLog(tx Tx, action, table, id string, changes map[string]codec.Value) error {
	seq, err := counter(tx, kLogSeq)
	if err != nil {
		return err
	}
	e := &pb.LogEntry{Seq: seq, At: s.opts.Clock.Now().UnixMilli(), Action: action, Table: table, RowId: id, Changes: codec.ValuesToProto(changes)}
	enc, err := codec.Marshal(e)
	if err != nil {
		return err
	}
	b, err := tx.Bucket(bLog)
	if err != nil {
		return err
	}
	return b.Put(u64b(seq), enc)
}
