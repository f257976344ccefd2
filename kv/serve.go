package kv

// Page is one read of the cursor index.
type Page struct {
	Records []Record // changed rows and tombstones, in cursor order
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
// greater than since and at most upto (upto <= 0: no bound), in cursor
// order, from the cursor index: the cost is O(changes since), not
// O(rows). limit <= 0 means all.
func (s *Store) ChangesSince(since, upto int64, limit int) (Page, error) {
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
			if upto > 0 && int64(u64(k)) > upto {
				return false, nil
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
			p.Next = r.Cursor
			return true, nil
		})
	})
	return p, err
}
