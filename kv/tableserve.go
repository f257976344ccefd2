package kv

import "bytes"

// TableChangesSince returns up to limit rows of one table whose last
// change has a cursor in (since, upto], in cursor order (upto <= 0: no
// upper bound; limit <= 0: all). It walks the cursor index like
// ChangesSince but decodes only the rows of that table, so a server can
// stream a response keyed by table with one cheap index pass per table.
// Next and More continue the walk; Timestamp is read in the same
// transaction, as in ChangesSince.
//
// A reader that reads the timestamp T first and then walks each table
// up to T sees every row as it was at or after T, each row at most once
// per walk: a row changed meanwhile moves to a cursor above T, and the
// next pull from T returns it.
func (s *Store) TableChangesSince(table string, since, upto int64, limit int) (Page, error) {
	if _, err := s.table(table); err != nil {
		return Page{}, err
	}
	prefix := rowKey(table, "")
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
			r, err := indexed(tx, bCursor, v)
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
