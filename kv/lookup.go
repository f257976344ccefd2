package kv

import "errors"

// Lookup is Get as a Lookup: a row, tombstones included, or nil when
// there is none. Each call is a read transaction of its own; inside a
// batch, use the Lookup ApplyWith hands to the merge.
func (s *Store) Lookup(table, id string) (*Record, error) {
	r, err := s.Get(table, id)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &r, nil
}
