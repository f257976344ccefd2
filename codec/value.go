package codec

import (
	"fmt"
	"maps"
	"math"
	"sort"
	"strconv"
)

// Kind is the type of a Value as it travels: the five kinds a row
// column can hold on the wire and in the store.
type Kind uint8

const (
	KindNull Kind = iota
	KindString
	KindNumber
	KindBool
	KindJSON // JSON text
)

// Value is one column value. The zero Value is null.
type Value struct {
	Kind Kind
	Str  string  // KindString, KindJSON (the JSON text)
	Num  float64 // KindNumber
	Bool bool    // KindBool
}

func Null() Value                { return Value{} }
func String(s string) Value      { return Value{Kind: KindString, Str: s} }
func Number(f float64) Value     { return Value{Kind: KindNumber, Num: f} }
func Int(i int64) Value          { return Value{Kind: KindNumber, Num: float64(i)} }
func Bool(b bool) Value          { return Value{Kind: KindBool, Bool: b} }
func JSONText(text string) Value { return Value{Kind: KindJSON, Str: text} }

// IsNull reports whether v is null.
func (v Value) IsNull() bool { return v.Kind == KindNull }

// Equal reports whether two values are the same kind and content.
// NaN never occurs in a Value (decoders refuse it), so numbers compare
// with ==.
func (v Value) Equal(o Value) bool {
	if v.Kind != o.Kind {
		return false
	}
	switch v.Kind {
	case KindString, KindJSON:
		return v.Str == o.Str
	case KindNumber:
		return v.Num == o.Num
	case KindBool:
		return v.Bool == o.Bool
	}
	return true
}

// Int64 returns a number value as an integer (truncated) and whether
// v is a finite number.
func (v Value) Int64() (int64, bool) {
	if v.Kind != KindNumber || math.IsInf(v.Num, 0) || math.IsNaN(v.Num) {
		return 0, false
	}
	return int64(v.Num), true
}

// String renders v for people: null, quoted strings, numbers in their
// shortest form, JSON text as is.
func (v Value) String() string {
	switch v.Kind {
	case KindString:
		return strconv.Quote(v.Str)
	case KindNumber:
		return strconv.FormatFloat(v.Num, 'f', -1, 64)
	case KindBool:
		return strconv.FormatBool(v.Bool)
	case KindJSON:
		return v.Str
	}
	return "null"
}

// Row is one record: its table, id and column values. Changed lists the
// columns a client changed locally (WatermelonDB's _changed); it travels
// with pushes and is empty elsewhere. Versions are the column versions
// (a column without one has the zero Version); JSON clients send none.
type Row struct {
	Table    string
	ID       string
	Cols     map[string]Value
	Changed  []string
	Versions map[string]Version
}

// Clone returns a deep copy of r.
func (r Row) Clone() Row {
	c := Row{Table: r.Table, ID: r.ID, Cols: make(map[string]Value, len(r.Cols))}
	for k, v := range r.Cols {
		c.Cols[k] = v
	}
	if len(r.Changed) > 0 {
		c.Changed = append([]string(nil), r.Changed...)
	}
	if r.Versions != nil {
		c.Versions = maps.Clone(r.Versions)
	}
	return c
}

// Columns returns the row's column names, sorted.
func (r Row) Columns() []string {
	names := make([]string, 0, len(r.Cols))
	for k := range r.Cols {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// String renders a row deterministically: table/id {col=value ...}.
func (r Row) String() string {
	s := fmt.Sprintf("%s/%s {", r.Table, r.ID)
	for i, k := range r.Columns() {
		if i > 0 {
			s += " "
		}
		s += k + "=" + r.Cols[k].String()
	}
	return s + "}"
}

// TableChanges are one table's part of a changeset.
type TableChanges struct {
	Created []Row
	Updated []Row
	Deleted []string
}

// Changeset is a set of changes keyed by table (mobile names), with the
// serving node's timestamp (a cursor: send it back as last_pulled_at).
type Changeset struct {
	Tables    map[string]*TableChanges
	Timestamp int64
}

// NewChangeset returns an empty changeset.
func NewChangeset() *Changeset { return &Changeset{Tables: map[string]*TableChanges{}} }

// Table returns the changes of a table, creating them if absent.
func (c *Changeset) Table(name string) *TableChanges {
	t, ok := c.Tables[name]
	if !ok {
		t = &TableChanges{}
		c.Tables[name] = t
	}
	return t
}

// TableNames returns the changeset's table names, sorted.
func (c *Changeset) TableNames() []string {
	names := make([]string, 0, len(c.Tables))
	for k := range c.Tables {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// Count returns the number of created, updated and deleted records.
func (c *Changeset) Count() int {
	n := 0
	for _, t := range c.Tables {
		n += len(t.Created) + len(t.Updated) + len(t.Deleted)
	}
	return n
}
