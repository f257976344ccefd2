package fsm

import (
	"github.com/clinicsync/clinicsync/codec"
	"github.com/clinicsync/clinicsync/codec/schema"
)

// Push chunk bounds: a push goes out in chunks of at most
// DefaultPushRows records, and of encoded rows at most three quarters
// of the body limit the peer announced with its pull
// (PullResponse.max_push_bytes; DefaultPushBytes when it announced
// none), leaving room for the envelope.
const (
	DefaultPushRows  = 5000
	DefaultPushBytes = 8 << 20
)

// pushChunks splits a changeset into chunks of at most maxRows records
// and maxBytes of encoded rows (a row larger than that goes alone),
// tables in catalog order, so that parent tables (patients, visits)
// tend to go before the rows that follow them.
func pushChunks(cs *codec.Changeset, cat *schema.Catalog, maxRows, maxBytes int) []*codec.Changeset {
	var out []*codec.Changeset
	cur, rows, size := codec.NewChangeset(), 0, 0
	add := func(n int) *codec.Changeset {
		if rows > 0 && (rows+1 > maxRows || size+n > maxBytes) {
			out = append(out, cur)
			cur, rows, size = codec.NewChangeset(), 0, 0
		}
		rows, size = rows+1, size+n
		return cur
	}
	names := cat.Names()
	for _, name := range cs.TableNames() {
		if _, ok := cat.Table(name); !ok {
			names = append(names, name)
		}
	}
	for _, name := range names {
		tc := cs.Tables[name]
		if tc == nil {
			continue
		}
		for _, r := range tc.Created {
			t := add(codec.RowSize(r)).Table(name)
			t.Created = append(t.Created, r)
		}
		for _, r := range tc.Updated {
			t := add(codec.RowSize(r)).Table(name)
			t.Updated = append(t.Updated, r)
		}
		for _, id := range tc.Deleted {
			t := add(len(id) + 4).Table(name)
			t.Deleted = append(t.Deleted, id)
		}
	}
	if rows > 0 {
		out = append(out, cur)
	}
	return out
}
