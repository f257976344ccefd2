package fsm

import (
	"maps"
	"slices"

	"github.com/clinicsync/clinicsync/codec"
	"github.com/clinicsync/clinicsync/codec/schema"
)

// Changes flattens a changeset into the changes to apply, table by
// table (sorted), created and updated rows first, then deletes.
func Changes(cs *codec.Changeset) []codec.Change {
	var out []codec.Change
	for _, name := range cs.TableNames() {
		t := cs.Tables[name]
		for i, rows := range [][]codec.Row{t.Created, t.Updated} {
			for _, r := range rows {
				r.Table = name
				out = append(out, codec.Change{Row: r, Created: i == 0})
			}
		}
		for _, id := range t.Deleted {
			out = append(out, codec.Change{Row: codec.Row{Table: name, ID: id}, Delete: true})
		}
	}
	return out
}

// Unmirrored is the rule of a full pull that mirrors its peer: the
// rows it did not bring (seen holds "table\x00id" of those it did) that
// are live, synced and in a synced table are gone from the peer, and
// are deleted. Rows with local edits stay, to be pushed. The store runs
// it inside the transaction that applies the last page.
func Unmirrored(seen map[string]bool, cat *schema.Catalog) func(codec.Record) bool {
	return func(r codec.Record) bool {
		t, ok := cat.Table(r.Table)
		return ok && t.Flow != schema.Local && !r.Deleted && r.Status == codec.Synced && !seen[r.Table+"\x00"+r.ID]
	}
}

// ApplyPulled is the merge a client uses to apply pulled changes (Hikma's
// applyRemoteChanges, with its bugs fixed, and ordered by versions):
//   - a remote delete removes the row, even with local edits, and purges
//     a local tombstone;
//   - a row deleted locally stays deleted (its delete is pushed later);
//   - a row missing locally is created as synced, whether it came as
//     created or updated;
//   - otherwise each column takes the higher-versioned value, local
//     unsynced edits included: a local edit that loses leaves _changed
//     (it is not pushed again) and goes to the conflict log, and so does
//     a remote value that loses to a local edit. Columns absent remotely
//     keep their local values. Rows from a peer that sends no versions
//     are dated by codec.BaseVersions.
//
// A remote row identical to the local one (values and versions) is
// skipped, so an echo of a push neither gets a new cursor nor is served
// again.
func ApplyPulled(cur *codec.Record, in codec.Change) (codec.Outcome, error) {
	if in.Versions == nil {
		in.Versions = codec.BaseVersions(in.Row)
	}
	switch {
	case in.Delete:
		if cur == nil {
			return codec.Outcome{Op: codec.Skip}, nil
		}
		return codec.Outcome{Op: codec.Purge}, nil
	case cur == nil:
		return codec.Outcome{Op: codec.Write, Record: codec.Record{Row: codec.Row{Cols: in.Cols, Versions: in.Versions}}}, nil
	case cur.Deleted:
		return codec.Outcome{Op: codec.Skip}, nil
	}
	r := *cur
	r.Cols, r.Versions, r.Changed = maps.Clone(cur.Cols), maps.Clone(cur.Versions), slices.Clone(cur.Changed)
	if r.Versions == nil {
		r.Versions = map[string]codec.Version{}
	}
	var conflicts []codec.Conflict
	for _, col := range in.Columns() {
		rv, rver := in.Cols[col], in.Versions[col]
		lv, had := cur.Cols[col]
		lver := cur.Versions[col]
		if !had {
			r.Cols[col], r.Versions[col] = rv, rver
			continue
		}
		if rver == lver && rv.Equal(lv) {
			continue
		}
		pending := cur.Status == codec.Created || slices.Contains(cur.Changed, col)
		if codec.Newer(rv, rver, lv, lver) {
			r.Cols[col], r.Versions[col] = rv, rver
			r.Changed = slices.DeleteFunc(r.Changed, func(c string) bool { return c == col })
			if pending && !rv.Equal(lv) {
				conflicts = append(conflicts, codec.Conflict{Table: in.Table, ID: in.ID, Column: col, Value: lv, Version: lver, Winner: rver})
			}
		} else if pending && !rv.Equal(lv) {
			conflicts = append(conflicts, codec.Conflict{Table: in.Table, ID: in.ID, Column: col, Value: rv, Version: rver, Winner: lver})
		}
	}
	if r.Status == codec.Updated && len(r.Changed) == 0 {
		r.Status = codec.Synced
	}
	if sameCols(r.Cols, cur.Cols) && maps.Equal(r.Versions, cur.Versions) && r.Status == cur.Status {
		return codec.Outcome{Op: codec.Skip, Conflicts: conflicts}, nil
	}
	r.CreatedCursor = 0
	return codec.Outcome{Op: codec.Write, Record: r, Conflicts: conflicts}, nil
}

func sameCols(a, b map[string]codec.Value) bool {
	return maps.EqualFunc(a, b, codec.Value.Equal)
}
