package fsm

import (
	"github.com/clinicsync/clinicsync/codec"
	"github.com/clinicsync/clinicsync/codec/schema"
)

// Migration syncs (WatermelonDB's documented contract, Backend.md pull
// rule 4). An app whose schema grew since its last sync pulls with a
// codec.Migration naming the new tables and the new columns of existing
// tables. Besides the changes since last_pulled_at (Serve), it gets the
// rows it could not hold before, whatever their cursor:
//   - every row of a new table, as created (the device has none: it did
//     not have the table);
//   - every row of another table whose new columns hold a value (not
//     null, not the column's WatermelonDB default, which is what the
//     device's own migration gave its copy), as updated (the device has
//     the row, from an earlier pull; if it deleted it meanwhile,
//     WatermelonDB ignores the update and pushes the delete).
//
// A serving node reads these from its records with cursor at or below
// last_pulled_at, so they never repeat a row of the ordinary changes
// (cursor above it). Tombstones are left out: the device already got
// them. Scope (parents read with get), served tables and secret columns
// are as in Serve.
func ServeMigration(recs []codec.Record, m *codec.Migration, c Caller, cat *schema.Catalog, get codec.Lookup) (*codec.Changeset, error) {
	served := servedTables(cat, c)
	scope := Scope{Catalog: cat, Clinics: c.Clinics, Lookup: memo(get)}
	cs := codec.NewChangeset()
	for _, r := range recs {
		t, ok := cat.Table(r.Table)
		if !ok || !served[r.Table] || r.Deleted {
			continue
		}
		why, err := scope.Check(t, r.Row)
		if err != nil {
			return nil, err
		}
		if why != "" {
			continue
		}
		created := m.NewTable(r.Table)
		if !created && !hasNewValue(t, r.Row, m.Columns[r.Table]) {
			continue
		}
		row := codec.Row{Table: r.Table, ID: r.ID, Cols: r.Cols, Versions: r.Versions}
		if !c.Hub {
			row.Cols = withoutSecrets(t, r.Cols)
		}
		tc := cs.Table(r.Table)
		if created {
			tc.Created = append(tc.Created, row)
		} else {
			tc.Updated = append(tc.Updated, row)
		}
	}
	return cs, nil
}

// MigrationTable reports whether a migration adds rows of table to a
// pull, and to which list: created for a new table, updated for a table
// with new columns.
func MigrationTable(m *codec.Migration, table string) (list string, ok bool) {
	switch {
	case m.NewTable(table):
		return "created", true
	case m != nil && len(m.Columns[table]) > 0:
		return "updated", true
	}
	return "", false
}

// hasNewValue reports whether one of the new columns holds a value other
// than null and its default.
func hasNewValue(t *schema.Table, r codec.Row, cols []string) bool {
	for _, name := range cols {
		v, ok := r.Cols[name]
		if !ok || v.IsNull() {
			continue
		}
		if col, known := t.Column(name); known && codec.IsDefault(col, v) {
			continue
		}
		return true
	}
	return false
}
