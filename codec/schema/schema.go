package schema

import (
	"fmt"
	"sort"
)

// Type is the logical type of a column. It decides how values are
// normalized on the way in and typed on the way out.
type Type uint8

// Column types. Every date and time is epoch milliseconds (Timestamp),
// except civil dates such as date_of_birth (Date, "YYYY-MM-DD").
const (
	String    Type = iota + 1 // text
	Number                    // a JS number
	Bool                      // true/false (0/1 accepted on input)
	JSON                      // JSON text kept in a string column
	Timestamp                 // epoch milliseconds
	Date                      // civil date "YYYY-MM-DD"
	Decimal                   // a decimal number carried as a string ("170.00")
)

var typeNames = [...]string{"", "string", "number", "bool", "json", "timestamp", "date", "decimal"}

func (t Type) String() string {
	if int(t) < len(typeNames) && t != 0 {
		return typeNames[t]
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// ParseType is the inverse of Type.String.
func ParseType(s string) (Type, error) {
	for i, n := range typeNames {
		if i > 0 && n == s {
			return Type(i), nil
		}
	}
	return 0, fmt.Errorf("schema: unknown column type %q", s)
}

// Column describes one column of a table.
type Column struct {
	Name     string
	Type     Type
	Optional bool // null allowed
	// Secret columns (users.hashed_password) are served only to
	// authenticated hubs, never to devices.
	Secret bool
}

// Flow says in which direction a table's rows travel.
type Flow uint8

const (
	// Synced tables are pulled down and pushed up.
	Synced Flow = iota + 1
	// Down tables are served to clients but never accepted from them
	// (user_clinic_permissions, app_config).
	Down
	// Local tables never leave the device (event_logs, peers).
	Local
)

func (f Flow) String() string {
	switch f {
	case Synced:
		return "synced"
	case Down:
		return "down"
	case Local:
		return "local"
	}
	return fmt.Sprintf("flow(%d)", uint8(f))
}

// Table describes one table. Name is the WatermelonDB (mobile) name;
// ServerName is the Hikma cloud name where it differs
// (registration_forms is patient_registration_forms on the server).
type Table struct {
	Name       string
	ServerName string
	Flow       Flow
	// ClinicColumn is the column hub clinic scoping matches against
	// ("" when the table is not scoped).
	ClinicColumn string
	// Follows names the parents whose clinic a row follows when it has
	// no clinic of its own (no ClinicColumn, or a null one): events
	// follow their patient and visit. A parent table has a ClinicColumn
	// and follows nothing itself. The rule is fsm.Scope's.
	Follows []Link
	// HubOnly tables are served only to hubs (users).
	HubOnly bool
	Columns []Column

	byName map[string]int
}

// Link is a column holding the id of a row of another table (mobile
// name): a child's link to its parent.
type Link struct {
	Column string
	Table  string
}

// Column returns the named column. The implicit id is not a column.
func (t *Table) Column(name string) (Column, bool) {
	if t.byName == nil {
		t.index()
	}
	i, ok := t.byName[name]
	if !ok {
		return Column{}, false
	}
	return t.Columns[i], true
}

func (t *Table) index() {
	t.byName = make(map[string]int, len(t.Columns))
	for i, c := range t.Columns {
		t.byName[c.Name] = i
	}
}

// Catalog is a set of tables, looked up by mobile or server name.
// A Catalog is immutable once built and safe for concurrent use.
type Catalog struct {
	tables map[string]*Table
	server map[string]*Table
	names  []string
}

// NewCatalog builds a catalog and checks it: names are identifiers, no
// table (by mobile or server name) or column appears twice, every type
// and flow is known, ClinicColumn names a column (or "id"), and each
// Follows link is a column of its table naming a table of the catalog
// that has a ClinicColumn and follows nothing.
func NewCatalog(tables ...*Table) (*Catalog, error) {
	c := &Catalog{tables: map[string]*Table{}, server: map[string]*Table{}}
	for _, t := range tables {
		if !ValidName(t.Name) {
			return nil, fmt.Errorf("schema: invalid table name %q", t.Name)
		}
		if _, dup := c.tables[t.Name]; dup {
			return nil, fmt.Errorf("schema: table %q defined twice", t.Name)
		}
		if t.ServerName == "" {
			t.ServerName = t.Name
		}
		if !ValidName(t.ServerName) {
			return nil, fmt.Errorf("schema: table %s: invalid server name %q", t.Name, t.ServerName)
		}
		if _, dup := c.server[t.ServerName]; dup {
			return nil, fmt.Errorf("schema: table %s: server name %q used twice", t.Name, t.ServerName)
		}
		if t.Flow < Synced || t.Flow > Local {
			return nil, fmt.Errorf("schema: table %s: unknown flow %d", t.Name, t.Flow)
		}
		seen := map[string]bool{}
		for _, col := range t.Columns {
			if !ValidName(col.Name) || col.Name == "id" || col.Name == "_status" || col.Name == "_changed" {
				return nil, fmt.Errorf("schema: table %s: invalid column name %q", t.Name, col.Name)
			}
			if seen[col.Name] {
				return nil, fmt.Errorf("schema: table %s: column %q defined twice", t.Name, col.Name)
			}
			if col.Type < String || col.Type > Decimal {
				return nil, fmt.Errorf("schema: table %s: column %s: unknown type %d", t.Name, col.Name, col.Type)
			}
			seen[col.Name] = true
		}
		if t.ClinicColumn != "" && t.ClinicColumn != "id" && !seen[t.ClinicColumn] {
			return nil, fmt.Errorf("schema: table %s: clinic column %q is not a column", t.Name, t.ClinicColumn)
		}
		for _, l := range t.Follows {
			if !seen[l.Column] {
				return nil, fmt.Errorf("schema: table %s: follows %s by %q, which is not a column", t.Name, l.Table, l.Column)
			}
		}
		t.index()
		c.tables[t.Name] = t
		c.server[t.ServerName] = t
		c.names = append(c.names, t.Name)
	}
	for _, t := range tables {
		for _, l := range t.Follows {
			p, ok := c.tables[l.Table]
			switch {
			case !ok:
				return nil, fmt.Errorf("schema: table %s: follows %q, which is not a table", t.Name, l.Table)
			case p.ClinicColumn == "" || len(p.Follows) > 0:
				return nil, fmt.Errorf("schema: table %s: follows %s, which has no clinic column of its own", t.Name, l.Table)
			}
		}
	}
	sort.Strings(c.names)
	return c, nil
}

// Table returns a table by its mobile name.
func (c *Catalog) Table(name string) (*Table, bool) {
	t, ok := c.tables[name]
	return t, ok
}

// ServerTable returns a table by its Hikma server name.
func (c *Catalog) ServerTable(name string) (*Table, bool) {
	t, ok := c.server[name]
	return t, ok
}

// Names lists the mobile table names, sorted.
func (c *Catalog) Names() []string { return append([]string(nil), c.names...) }

// ValidName reports whether s is acceptable as a table or column name:
// lower-case snake_case, at most 63 characters.
func ValidName(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] >= '0' && s[0] <= '9' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// ValidID reports whether s is acceptable as a row id: 1-128 characters
// from [A-Za-z0-9_.-] (WatermelonDB's safe set; UUIDs qualify).
func ValidID(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}
