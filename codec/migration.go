package codec

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/clinicsync/clinicsync/codec/schema"
	pb "github.com/clinicsync/clinicsync/proto"
)

// Migration is a WatermelonDB migration sync request (its
// MigrationSyncChanges): the app's schema grew since its last sync, from
// schema version From, by the tables and the columns of existing tables
// named here. A pull with a migration also returns every row of those
// tables and every row whose new columns hold a value, whatever
// last_pulled_at says.
type Migration struct {
	From    int64
	Tables  []string            `json:"tables"`
	Columns map[string][]string // table → new columns
}

// migrationJSON is the wire shape: {"from":N,"tables":[...],
// "columns":[{"table":T,"columns":[...]}]}.
type migrationJSON struct {
	From    *int64   `json:"from"`
	Tables  []string `json:"tables"`
	Columns []struct {
		Table   string   `json:"table"`
		Columns []string `json:"columns"`
	} `json:"columns"`
}

// ParseMigration reads the migration query parameter: JSON text, or
// "", "null" or "undefined" for none (nil). The table and column names
// must be in cat (tables by mobile name); anything else, a missing or
// negative from, or unknown keys are refused with an error wrapping
// ErrInvalidMigration that names the culprit.
func ParseMigration(text string, cat *schema.Catalog) (*Migration, error) {
	switch strings.TrimSpace(text) {
	case "", "null", "undefined":
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader([]byte(text)))
	dec.DisallowUnknownFields()
	var mj migrationJSON
	if err := dec.Decode(&mj); err != nil {
		return nil, fmt.Errorf("%w: not {\"from\":N,\"tables\":[...],\"columns\":[{\"table\":T,\"columns\":[...]}]}: %v", ErrInvalidMigration, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: text after the JSON object", ErrInvalidMigration)
	}
	if mj.From == nil || *mj.From < 0 {
		return nil, fmt.Errorf("%w: from must be a schema version >= 0", ErrInvalidMigration)
	}
	m := &Migration{From: *mj.From}
	for _, c := range mj.Columns {
		if m.Columns == nil {
			m.Columns = map[string][]string{}
		}
		m.Columns[c.Table] = append(m.Columns[c.Table], c.Columns...)
	}
	m.Tables = mj.Tables
	return m, m.Validate(cat)
}

// Validate checks that every table and column a migration names is in
// the catalog (tables by mobile name).
func (m *Migration) Validate(cat *schema.Catalog) error {
	for _, name := range m.Tables {
		if _, ok := cat.Table(name); !ok {
			return fmt.Errorf("%w: unknown table %q", ErrInvalidMigration, shorten(name))
		}
	}
	for table, cols := range m.Columns {
		t, ok := cat.Table(table)
		if !ok {
			return fmt.Errorf("%w: unknown table %q in columns", ErrInvalidMigration, shorten(table))
		}
		for _, col := range cols {
			if _, ok := t.Column(col); !ok {
				return fmt.Errorf("%w: table %s has no column %q", ErrInvalidMigration, table, shorten(col))
			}
		}
	}
	return nil
}

// Empty reports whether m names no table and no column (nothing more to
// serve).
func (m *Migration) Empty() bool {
	if m == nil {
		return true
	}
	for _, cols := range m.Columns {
		if len(cols) > 0 {
			return false
		}
	}
	return len(m.Tables) == 0
}

// NewTable reports whether table is one of the migration's new tables.
func (m *Migration) NewTable(table string) bool { return m != nil && slices.Contains(m.Tables, table) }

// MigrationToProto converts a migration (nil stays nil).
func MigrationToProto(m *Migration) *pb.Migration {
	if m == nil {
		return nil
	}
	out := &pb.Migration{From: m.From, Tables: m.Tables}
	for _, table := range sortedKeys(m.Columns) {
		out.Columns = append(out.Columns, &pb.MigrationColumns{Table: table, Columns: m.Columns[table]})
	}
	return out
}

// MigrationFromProto converts back and validates against cat (nil
// stays nil).
func MigrationFromProto(p *pb.Migration, cat *schema.Catalog) (*Migration, error) {
	if p == nil {
		return nil, nil
	}
	if p.GetFrom() < 0 {
		return nil, fmt.Errorf("%w: from must be a schema version >= 0", ErrInvalidMigration)
	}
	m := &Migration{From: p.GetFrom(), Tables: p.GetTables()}
	for _, c := range p.GetColumns() {
		if m.Columns == nil {
			m.Columns = map[string][]string{}
		}
		m.Columns[c.GetTable()] = append(m.Columns[c.GetTable()], c.GetColumns()...)
	}
	return m, m.Validate(cat)
}

// MigrationJSON is the migration query parameter of a pull: the JSON
// WatermelonDB sends, which ParseMigration reads ("null" for nil).
func MigrationJSON(p *pb.Migration) string {
	if p == nil {
		return "null"
	}
	type cols struct {
		Table   string   `json:"table"`
		Columns []string `json:"columns"`
	}
	v := struct {
		From    int64    `json:"from"`
		Tables  []string `json:"tables"`
		Columns []cols   `json:"columns"`
	}{From: p.GetFrom(), Tables: append([]string{}, p.GetTables()...), Columns: []cols{}}
	for _, c := range p.GetColumns() {
		v.Columns = append(v.Columns, cols{c.GetTable(), append([]string{}, c.GetColumns()...)})
	}
	b, err := json.Marshal(v)
	if err != nil {
		panic("codec: marshaling a migration: " + err.Error()) // strings and ints only
	}
	return string(b)
}
