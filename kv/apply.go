package kv

import (
	"cmp"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/clinicsync/clinicsync/codec"

	"github.com/clinicsync/clinicsync/codec/schema"
)

// Merge decides the new state of a row from its current state (nil
// when absent, a tombstone when Deleted) and an incoming change.
// Returning an error aborts the whole batch: nothing is applied. The
// rules live in fsm; the store only carries them out.
type Merge func(cur *Record, in Change) (Outcome, error)

// Batch is a set of changes applied in one transaction. When Peer is
// set, that peer's pull cursor is set to PullCursor in the same
// transaction, so a pulled page and its cursor commit together; Config
// entries are written with them too.
type Batch struct {
	Changes    []Change
	Peer       string
	PullCursor int64
	Config     map[string]string
	// UpstreamTime, when set, is the upstream's clock (a pull's
	// timestamp): this node learns how far its own clock runs ahead.
	UpstreamTime int64
	// Mirror, when set, picks rows to delete after the changes, in the
	// same transaction: each stored row (tombstones included) for which
	// it returns true goes through the merge as a delete. The rule
	// lives in fsm; deciding inside the transaction means no write lands
	// between the decision and the delete.
	Mirror func(Record) bool
}

// Rejection is a change the merge refused.
type Rejection struct {
	Table, ID, Reason string
}

// Result counts what an Apply did.
type Result struct {
	Written, Purged, Skipped int
	Rejected                 []Rejection
	// Conflicts counts the values the merge logged as beaten by a newer
	// edit.
	Conflicts int
}

// Apply runs merge over every change of a batch and stores the outcome,
// all in one transaction: if any change is invalid (unknown table, bad
// id) or merge returns an error, nothing is applied. The node's clock
// advances past the received versions; the values the merge reports as
// beaten go to the conflict log. A merge that reads no other rows
// cannot tell the order of changes to different rows, so they are
// applied in key order (bbolt then walks each table's tree once, not
// once per row); changes to the same row keep theirs.
func (s *Store) Apply(b Batch, merge Merge) (Result, error) {
	b.Changes = slices.Clone(b.Changes)
	slices.SortStableFunc(b.Changes, func(x, y Change) int {
		return cmp.Or(strings.Compare(x.Table, y.Table), strings.Compare(x.ID, y.ID))
	})
	return s.ApplyWith(b, func(Lookup) Merge { return merge })
}

// ApplyWith is Apply with a merge that reads other rows: newMerge is
// called once, inside the batch's transaction, with a Lookup bound to
// it, which sees the changes applied before in the batch (a pushed
// patient, then its events). The Lookup is valid only while the batch
// applies; a second transaction cannot be opened meanwhile (bbolt would
// deadlock), so this is the only way for a merge to read.
func (s *Store) ApplyWith(b Batch, newMerge func(get Lookup) Merge) (Result, error) {
	for _, c := range b.Changes {
		if _, err := s.table(c.Table); err != nil {
			return Result{}, err
		}
		if !schema.ValidID(c.ID) {
			return Result{}, fmt.Errorf("%w: %s: %q", ErrInvalidID, c.Table, c.ID)
		}
	}
	var res Result
	err := s.be.Update(func(tx Tx) error {
		res = Result{}
		merge := newMerge(func(table, id string) (*Record, error) {
			if _, err := s.table(table); err != nil {
				return nil, err // a read-write Bucket would create it
			}
			return getRecord(tx, table, id)
		})
		if err := observe(tx, b.Changes); err != nil {
			return err
		}
		if b.UpstreamTime > 0 {
			if err := s.learnOffset(tx, b.UpstreamTime); err != nil {
				return err
			}
		}
		apply := func(c Change) error {
			cur, err := getRecord(tx, c.Table, c.ID)
			if err != nil {
				return err
			}
			out, err := merge(cur, c)
			if err != nil {
				return err
			}
			if out.Op != Reject {
				if err := s.logConflicts(tx, out.Conflicts); err != nil {
					return err
				}
				res.Conflicts += len(out.Conflicts)
			}
			switch out.Op {
			case Skip:
				res.Skipped++
			case Reject:
				res.Rejected = append(res.Rejected, Rejection{c.Table, c.ID, out.Reason})
			case Purge:
				res.Purged++
				switch {
				case cur == nil:
				case s.opts.KeepTombstones && !(cur.Deleted && cur.Status == Synced):
					// A serving node keeps the delete to serve it downstream.
					r := Record{Row: codec.Row{Table: c.Table, ID: c.ID}, Deleted: true, Origin: cur.Origin}
					if err := s.save(tx, cur, &r); err != nil {
						return err
					}
				case !s.opts.KeepTombstones:
					if err := s.purge(tx, cur); err != nil {
						return err
					}
				}
			case Write:
				r := out.Record
				r.Table, r.ID = c.Table, c.ID
				if err := s.save(tx, cur, &r); err != nil {
					return err
				}
				res.Written++
			default:
				panic(fmt.Sprintf("kv: merge returned unknown op %d", out.Op))
			}
			return nil
		}
		for _, c := range b.Changes {
			if err := apply(c); err != nil {
				return err
			}
		}
		if b.Mirror != nil {
			gone, err := mirrored(tx, b.Mirror)
			if err != nil {
				return err
			}
			for _, c := range gone {
				if err := apply(c); err != nil {
					return err
				}
			}
		}
		if len(b.Config) > 0 {
			cb, err := tx.Bucket(bConfig)
			if err != nil {
				return err
			}
			for k, v := range b.Config {
				if err := cb.Put([]byte(k), []byte(v)); err != nil {
					return err
				}
			}
		}
		if b.Peer != "" {
			return updatePeer(tx, b.Peer, func(p *Peer) { p.PullCursor = b.PullCursor })
		}
		return nil
	})
	if err != nil {
		return Result{}, err
	}
	sort.Slice(res.Rejected, func(i, j int) bool {
		a, b := res.Rejected[i], res.Rejected[j]
		return a.Table < b.Table || a.Table == b.Table && a.ID < b.ID
	})
	return res, nil
}

// mirrored returns a delete for every stored row that pick selects.
func mirrored(tx Tx, pick func(Record) bool) ([]Change, error) {
	var out []Change
	for _, bucket := range tx.Buckets(rowsPfx) {
		b, err := tx.Bucket(bucket)
		if err != nil {
			return nil, err
		}
		table := bucket[len(rowsPfx):]
		err = b.Ascend(nil, func(k, v []byte) (bool, error) {
			r, err := decodeRecord(table, string(k), v)
			if err == nil && pick(r) {
				out = append(out, Change{Row: codec.Row{Table: table, ID: r.ID}, Delete: true})
			}
			return true, err
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}
