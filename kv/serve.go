package kv

import "bytes"

// Page is one read of the cursor index.
type Page struct {
	// Records are the changed rows and tombstones, in cursor order,
	// without their receipts (only a push's merge reads them).
	Records []Record
	// Next is the cursor to continue from; More reports whether rows
	// beyond this page existed when it was read.
	Next int64
	More bool
	// Timestamp is the newest cursor issued, read in the same
	// transaction as the rows: sent back as last_pulled_at once every
	// page is applied, it yields everything after this pull.
	Timestamp int64
}

// ChangesSince returns up to limit rows whose last change has a cursor
// in (since, upto], in cursor order (upto <= 0: no upper bound; limit <=
// 0: all), from the cursor index: the cost is O(changes since), not
// O(rows).
func (s *Store) ChangesSince(since, upto int64, limit int) (Page, error) {
	return s.changesSince(nil, since, upto, limit, decodeServed)
}

// ValuesSince is ChangesSince without the rows' column versions: for
// clients that keep none (WatermelonDB's JSON).
func (s *Store) ValuesSince(since, upto int64, limit int) (Page, error) {
	return s.changesSince(nil, since, upto, limit, decodeValues)
}

// TableChangesSince is ChangesSince for one table: it walks the same
// index but decodes only that table's rows (the users index of
// actors.Authenticator follows the users table's changes with it).
func (s *Store) TableChangesSince(table string, since, upto int64, limit int) (Page, error) {
	if _, err := s.table(table); err != nil {
		return Page{}, err
	}
	return s.changesSince(rowKey(table, ""), since, upto, limit, decodeServed)
}

// changesSince walks the cursor index, keeping the rows whose index
// entry starts with prefix (nil: all), decoded by decode.
func (s *Store) changesSince(prefix []byte, since, upto int64, limit int, decode func(table, id string, b []byte) (Record, error)) (Page, error) {
	var p Page
	err := s.be.View(func(tx Tx) error {
		p = Page{Next: since}
		ts, err := lastCursor(tx)
		if err != nil {
			return err
		}
		p.Timestamp = ts
		ci, err := tx.Bucket(bCursor)
		if err != nil {
			return err
		}
		return ci.Ascend(u64b(uint64(max(since, -1)+1)), func(k, v []byte) (bool, error) {
			c := int64(u64(k))
			if upto > 0 && c > upto {
				return false, nil
			}
			if !bytes.HasPrefix(v, prefix) {
				p.Next = c
				return true, nil
			}
			if limit > 0 && len(p.Records) == limit {
				p.More = true
				return false, nil
			}
			r, err := indexed(tx, bCursor, v, decode)
			if err != nil {
				return false, err
			}
			p.Records = append(p.Records, r)
			p.Next = c
			return true, nil
		})
	})
	return p, err
}

// CountSince returns how many rows (tombstones included) changed after
// since, from the cursor index, without decoding them.
func (s *Store) CountSince(since int64) (n int, err error) {
	err = s.be.View(func(tx Tx) error {
		ci, err := tx.Bucket(bCursor)
		if err != nil {
			return err
		}
		return ci.Ascend(u64b(uint64(max(since, -1)+1)), func(_, _ []byte) (bool, error) {
			n++
			return true, nil
		})
	})
	return n, err
}
