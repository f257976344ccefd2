package fsm

import (
	"maps"

	"github.com/clinicsync/clinicsync/codec"
	"github.com/clinicsync/clinicsync/codec/schema"
)

// Older app schemas. A WatermelonDB app built against an older, smaller
// schema pushes rows without the columns added since. Such a row is
// created with WatermelonDB's default (codec.DefaultValue: an empty
// string, 0 or false) for every required catalog column it lacks, as
// the device itself would hold them; an optional column it lacks stays
// absent, which every reader takes as null (WatermelonDB's default for
// it, and what a pull gives the device). An update leaves the columns
// it lacks untouched; columns the catalog does not know (a newer app)
// are kept.
//
// A filled-in default is no edit: it carries the zero codec.Version,
// which every real write beats, whether it was made before or after
// and whichever node merges the two (pull apply, push accept, relay).
// The zero version travels with the row (a relay pushes it upstream as
// such), so no node ever dates a default as an edit.

// serverColumns are filled in by the serving side, never defaulted.
var serverColumns = map[string]bool{"last_modified": true, "server_created_at": true}

// WithDefaults returns the columns and versions of a row created from
// cols and versions (the pushed ones, already dated) with every catalog
// required column missing from cols set to its default at the zero version. The
// inputs are not modified; filled lists the defaulted columns, sorted
// as t.Columns.
func WithDefaults(t *schema.Table, cols map[string]codec.Value, versions map[string]codec.Version) (outCols map[string]codec.Value, outVersions map[string]codec.Version, filled []string) {
	outCols, outVersions = cols, versions
	for _, col := range t.Columns {
		if _, ok := cols[col.Name]; ok || col.Optional || serverColumns[col.Name] {
			continue
		}
		if filled == nil {
			outCols, outVersions = maps.Clone(cols), maps.Clone(versions)
			if outCols == nil {
				outCols = map[string]codec.Value{}
			}
			if outVersions == nil {
				outVersions = map[string]codec.Version{}
			}
		}
		outCols[col.Name] = codec.DefaultValue(col)
		outVersions[col.Name] = codec.Version{}
		filled = append(filled, col.Name)
	}
	return outCols, outVersions, filled
}
