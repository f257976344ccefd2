package fsm

import (
	"slices"

	"github.com/clinicsync/clinicsync/codec"
	"github.com/clinicsync/clinicsync/codec/schema"
)

// PushSet builds the changeset a client pushes from its pending
// records: created rows as created, updated rows as updated with their
// _changed, tombstones as deleted ids. Tables that never go upstream
// are left out.
func PushSet(pending []codec.Record, cat *schema.Catalog) *codec.Changeset {
	cs := codec.NewChangeset()
	for _, r := range pending {
		if t, ok := cat.Table(r.Table); !ok || t.Flow != schema.Synced {
			continue
		}
		tc := cs.Table(r.Table)
		switch {
		case r.Deleted:
			tc.Deleted = append(tc.Deleted, r.ID)
		case r.Status == codec.Created:
			tc.Created = append(tc.Created, r.Row)
		case r.Status == codec.Updated:
			tc.Updated = append(tc.Updated, r.Row)
		}
	}
	return cs
}

// Acknowledged returns the pushed records to mark synced: all but those
// the peer rejected, which stay pending.
func Acknowledged(pushed []codec.Record, rejected map[string][]string) []codec.Record {
	var out []codec.Record
	for _, r := range pushed {
		if !slices.Contains(rejected[r.Table], r.ID) {
			out = append(out, r)
		}
	}
	return out
}

// ForceUploadSet builds the changeset of a force upload: every live row
// with created_at after since as created, else with updated_at after
// since as updated, whatever its sync status (Hikma's
// getLocalChangesSince), and every tombstone still to push or written
// after since as deleted (Hikma forgets deletes). Rows carry their
// _changed and versions, so a server that merges takes only the columns
// that are newer.
func ForceUploadSet(rows []codec.Record, since int64, cat *schema.Catalog) *codec.Changeset {
	cs := codec.NewChangeset()
	for _, r := range rows {
		if t, ok := cat.Table(r.Table); !ok || t.Flow != schema.Synced {
			continue
		}
		created, _ := r.Cols["created_at"].Int64()
		updated, _ := r.Cols["updated_at"].Int64()
		switch {
		case r.Deleted:
			if r.Status.Pending() || r.Cursor > since {
				cs.Table(r.Table).Deleted = append(cs.Table(r.Table).Deleted, r.ID)
			}
		case created > since:
			cs.Table(r.Table).Created = append(cs.Table(r.Table).Created, r.Row)
		case updated > since:
			cs.Table(r.Table).Updated = append(cs.Table(r.Table).Updated, r.Row)
		}
	}
	return cs
}
