package fsm

import (
	"maps"
	"slices"

	"github.com/clinicsync/clinicsync/codec"
)

// Changes flattens a changeset into the changes to apply, table by
// table (sorted), created and updated rows first, then deletes.
func Changes(cs *codec.Changeset) []codec.Change {
	var out []codec.Change
	for _, name := range cs.TableNames() {
		t := cs.Tables[name]
		for _, rows := range [][]codec.Row{t.Created, t.Updated} {
			for _, r := range rows {
				r.Table = name
				out = append(out, codec.Change{Row: r})
			}
		}
		for _, id := range t.Deleted {
			out = append(out, codec.Change{Row: codec.Row{Table: name, ID: id}, Delete: true})
		}
	}
	return out
}

// ApplyPulled is the merge a client uses to apply pulled changes
// (Hikma's applyRemoteChanges, with its bugs fixed):
//   - a remote delete removes the row, even with local edits, and purges
//     a local tombstone;
//   - a row deleted locally stays deleted (its delete is pushed later);
//   - a row missing locally is created as synced, whether it came as
//     created or updated;
//   - otherwise the remote row wins, except the columns in the local
//     _changed, which keep their local values; the local id, status and
//     _changed are kept, so the merged row is pushed.
//
// A remote row identical to the local one is skipped, so an echo of a
// push neither gets a new cursor nor is served again.
func ApplyPulled(cur *codec.Record, in codec.Change) (codec.Outcome, error) {
	switch {
	case in.Delete:
		if cur == nil {
			return codec.Outcome{Op: codec.Skip}, nil
		}
		return codec.Outcome{Op: codec.Purge}, nil
	case cur == nil:
		return codec.Outcome{Op: codec.Write, Record: codec.Record{Row: codec.Row{Cols: in.Cols}}}, nil
	case cur.Deleted:
		return codec.Outcome{Op: codec.Skip}, nil
	}
	merged := maps.Clone(cur.Cols)
	maps.Copy(merged, in.Cols)
	for _, c := range cur.Changed {
		if v, ok := cur.Cols[c]; ok {
			merged[c] = v
		}
	}
	if sameCols(merged, cur.Cols) {
		return codec.Outcome{Op: codec.Skip}, nil
	}
	r := *cur
	r.Cols, r.Changed = merged, slices.Clone(cur.Changed)
	r.CreatedCursor = 0
	return codec.Outcome{Op: codec.Write, Record: r}, nil
}

func sameCols(a, b map[string]codec.Value) bool {
	return maps.EqualFunc(a, b, codec.Value.Equal)
}
