package codec

import (
	"fmt"

	"github.com/clinicsync/clinicsync/codec/schema"
)

// outTable names a table for PullSpool as encoder.changes does: rows are keyed by mobile names
// whatever the options; the key written is the server name with
// ServerNames. A table the catalog does not know is an error unless
// KeepUnknownTables.
func (o Options) outTable(name string) (outTable, error) {
	ot := outTable{key: name, name: name}
	if o.Catalog != nil {
		if t, ok := o.Catalog.Table(name); ok {
			ot.t = t
			if o.ServerNames {
				ot.key = t.ServerName
			}
		}
	}
	if ot.t == nil {
		if !schema.ValidName(name) {
			return outTable{}, fmt.Errorf("%w: invalid table name %q", ErrUnknownTable, shorten(name))
		}
		if !o.KeepUnknownTables {
			return outTable{}, fmt.Errorf("%w %q", ErrUnknownTable, name)
		}
	}
	return ot, nil
}

// checkPullRow checks a record for a pull list, as PullSpool takes
// it: in created or updated, its id valid.
func checkPullRow(table, list string, r Row) error {
	if list != "created" && list != "updated" {
		return fmt.Errorf("%w: %s/%s: rows go in created or updated, not %q", ErrMalformed, table, r.ID, list)
	}
	return checkPullID(table, list, r.ID)
}

// checkPullID checks the id of a record or deleted id of a pull list.
func checkPullID(table, list, id string) error {
	if !schema.ValidID(id) {
		return fmt.Errorf("%w: %s.%s: %q", ErrInvalidID, table, list, shorten(id))
	}
	return nil
}

// list order within a table.
var pullLists = map[string]int{"created": 0, "updated": 1, "deleted": 2}
