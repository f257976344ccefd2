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
// and maxBytes of encoded rows (a row larger than that goes alone), in
// the order a server applies a push (Push.Changes: deletes first, then
// parents before the rows that follow them), so that a chunk never
// needs a row of a later one.
func pushChunks(cs *codec.Changeset, cat *schema.Catalog, maxRows, maxBytes int) []*codec.Changeset {
	var out []*codec.Changeset
	cur, rows, size := codec.NewChangeset(), 0, 0
	for _, c := range (Push{Catalog: cat, Caller: Caller{Hub: true}}).Changes(cs) {
		n := len(c.ID) + 4
		if !c.Delete {
			n = codec.RowSize(c.Row)
		}
		if rows > 0 && (rows+1 > maxRows || size+n > maxBytes) {
			out = append(out, cur)
			cur, rows, size = codec.NewChangeset(), 0, 0
		}
		rows, size = rows+1, size+n
		tc := cur.Table(c.Table)
		switch {
		case c.Delete:
			tc.Deleted = append(tc.Deleted, c.ID)
		case c.Created:
			tc.Created = append(tc.Created, c.Row)
		default:
			tc.Updated = append(tc.Updated, c.Row)
		}
	}
	if rows > 0 {
		out = append(out, cur)
	}
	return out
}
