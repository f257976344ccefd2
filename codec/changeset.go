package codec

import (
	"errors"
	"fmt"
	"sync"
	"unicode/utf8"

	"github.com/clinicsync/clinicsync/codec/schema"
	"google.golang.org/protobuf/encoding/protowire"
)

// A changeset travels in PullResponse.changes and PushRequest.changes
// as the bytes of a pb.Changeset, encoded and decoded here field by
// field (the generated messages would build a map of Value messages
// per row, and Go maps again on top). EncodeChangeset writes what
// codec.Marshal(ChangesetToProto(cs)) writes, up to the order of map
// entries and version groups; DecodeChangeset accepts and refuses what proto.Unmarshal
// followed by ChangesetFromProto does (the tests hold both to it,
// fuzzing included).

// Field numbers of pb.Changeset, pb.TableChanges and pb.Row.
const (
	fcsTables    = 1
	fcsTimestamp = 2

	ftcTable   = 1
	ftcCreated = 2
	ftcUpdated = 3
	ftcDeleted = 4

	frowID       = 1
	frowCols     = 2
	frowChanged  = 3
	frowVersions = 4
)

// EncodeChangeset encodes cs as a pb.Changeset, tables sorted by name.
// The table fields are written into a pooled buffer first, since a
// table's length precedes it; the result is allocated once, at its size.
func EncodeChangeset(cs *Changeset) []byte {
	sp := tablesPool.Get().(*[]byte)
	defer tablesPool.Put(sp)
	tables, ends := (*sp)[:0], make([]int, 0, len(cs.Tables))
	var row []byte
	for _, name := range cs.TableNames() {
		t := cs.Tables[name]
		tables = appendField(tables, ftcTable, name)
		for _, r := range t.Created {
			row = appendRow(row[:0], r)
			tables = protowire.AppendTag(tables, ftcCreated, protowire.BytesType)
			tables = protowire.AppendBytes(tables, row)
		}
		for _, r := range t.Updated {
			row = appendRow(row[:0], r)
			tables = protowire.AppendTag(tables, ftcUpdated, protowire.BytesType)
			tables = protowire.AppendBytes(tables, row)
		}
		for _, id := range t.Deleted {
			tables = protowire.AppendTag(tables, ftcDeleted, protowire.BytesType)
			tables = protowire.AppendString(tables, id)
		}
		ends = append(ends, len(tables))
	}
	*sp = tables
	size, start := 0, 0
	for _, end := range ends {
		size += protowire.SizeTag(fcsTables) + protowire.SizeBytes(end-start)
		start = end
	}
	if cs.Timestamp != 0 {
		size += protowire.SizeTag(fcsTimestamp) + protowire.SizeVarint(uint64(cs.Timestamp))
	}
	b, start := make([]byte, 0, size), 0
	for _, end := range ends {
		b = protowire.AppendTag(b, fcsTables, protowire.BytesType)
		b = protowire.AppendBytes(b, tables[start:end])
		start = end
	}
	if cs.Timestamp != 0 {
		b = protowire.AppendTag(b, fcsTimestamp, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(cs.Timestamp))
	}
	return b
}

// tablesPool holds EncodeChangeset's buffers.
var tablesPool = sync.Pool{New: func() any { return new([]byte) }}

// RowSize is the encoded size of a row in a changeset (its pb.Row
// message, without the tag and length around it).
func RowSize(r Row) int { return len(appendRow(nil, r)) }

// appendRow appends the fields of a pb.Row.
func appendRow(b []byte, r Row) []byte {
	b = appendField(b, frowID, r.ID)
	b = AppendValues(b, frowCols, r.Cols)
	for _, c := range r.Changed {
		b = protowire.AppendTag(b, frowChanged, protowire.BytesType)
		b = protowire.AppendString(b, c)
	}
	return AppendVersions(b, frowVersions, r.Versions)
}

// appendField appends a string field unless it is empty (proto3).
func appendField(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

// DecodeChangeset decodes and validates an encoded pb.Changeset as
// ChangesetFromProto does: table names must be in the catalog (when
// one is given), ids valid and unique within a table; a row whose
// content is bad is left out and returned as rejected. Bytes that are
// not a pb.Changeset fail with ErrMalformed, more than MaxMessageBytes
// with ErrTooLarge.
func DecodeChangeset(b []byte, cat *schema.Catalog) (*Changeset, []Rejection, error) {
	if len(b) > MaxMessageBytes {
		return nil, nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(b), MaxMessageBytes)
	}
	// The whole message is read first, so that malformed bytes fail it
	// whatever comes before them, as proto.Unmarshal does; then the
	// tables are checked in order.
	tables, ts, err := readChangeset(b)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: changeset: %v", ErrMalformed, err)
	}
	cs := NewChangeset()
	cs.Timestamp = ts
	var rejected []Rejection
	for _, wt := range tables {
		name := wt.name
		t, use, err := addTable(cs, name, cat, len(wt.created)+len(wt.updated)+len(wt.deleted))
		if err != nil {
			return nil, nil, err
		}
		take := func(rows []wireRow) ([]Row, error) {
			var out []Row
			for _, r := range rows {
				if err := use(r.ID); err != nil {
					return nil, err
				}
				if r.err != nil {
					rejected = append(rejected, Rejection{Table: name, ID: r.ID, Err: fmt.Errorf("%s/%s: %w", name, r.ID, r.err)})
					continue
				}
				r.Table = name
				out = append(out, r.Row)
			}
			return out, nil
		}
		if t.Created, err = take(wt.created); err != nil {
			return nil, nil, err
		}
		if t.Updated, err = take(wt.updated); err != nil {
			return nil, nil, err
		}
		for _, id := range wt.deleted {
			if err := use(id); err != nil {
				return nil, nil, err
			}
		}
		t.Deleted = wt.deleted
	}
	return cs, rejected, nil
}

// addTable adds table name to a changeset being decoded, refusing a
// name that is invalid, not in cat (when given) or already there; use
// then checks each of its ids (n of them, about) in turn: valid and
// not seen before in the table.
func addTable(cs *Changeset, name string, cat *schema.Catalog, n int) (*TableChanges, func(id string) error, error) {
	if !schema.ValidName(name) {
		return nil, nil, fmt.Errorf("%w %q", ErrUnknownTable, name)
	}
	if cat != nil {
		if _, ok := cat.Table(name); !ok {
			return nil, nil, fmt.Errorf("%w %q", ErrUnknownTable, name)
		}
	}
	if _, dup := cs.Tables[name]; dup {
		return nil, nil, fmt.Errorf("%w: table %s appears twice", ErrDuplicateID, name)
	}
	seen := make(map[string]bool, n)
	use := func(id string) error {
		if !schema.ValidID(id) {
			return fmt.Errorf("%w: %s: %q", ErrInvalidID, name, id)
		}
		if seen[id] {
			return fmt.Errorf("%w: %s/%s", ErrDuplicateID, name, id)
		}
		seen[id] = true
		return nil
	}
	return cs.Table(name), use, nil
}

// wireTable is a pb.TableChanges as read, before its checks.
type wireTable struct {
	name             string
	created, updated []wireRow
	deleted          []string
}

// wireRow is a row as read, with what is wrong with its content.
type wireRow struct {
	Row
	err error
}

// readChangeset reads the fields of a pb.Changeset (a field of the
// wrong wire type is an unknown field, skipped, as proto.Unmarshal
// does).
func readChangeset(b []byte) ([]wireTable, int64, error) {
	var tables []wireTable
	var ts int64
	for len(b) > 0 {
		num, typ, n := ConsumeTag(b)
		if n < 0 {
			return nil, 0, errWire
		}
		b = b[n:]
		switch {
		case num == fcsTables && typ == protowire.BytesType:
			m, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return nil, 0, errWire
			}
			t, err := readTable(m)
			if err != nil {
				return nil, 0, err
			}
			tables, b = append(tables, t), b[n:]
		case num == fcsTimestamp && typ == protowire.VarintType:
			x, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return nil, 0, errWire
			}
			ts, b = int64(x), b[n:]
		default:
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return nil, 0, errWire
			}
			b = b[n:]
		}
	}
	return tables, ts, nil
}

func readTable(b []byte) (wireTable, error) {
	var t wireTable
	err := BytesFields(b, ftcTable, ftcDeleted, func(num protowire.Number, m []byte) error {
		switch num {
		case ftcTable, ftcDeleted:
			s, err := wireString(m)
			if err != nil {
				return err
			}
			if num == ftcTable {
				t.name = s
			} else {
				t.deleted = append(t.deleted, s)
			}
		default: // created, updated
			r, err := readRow(m)
			if err != nil {
				return err
			}
			if num == ftcCreated {
				t.created = append(t.created, r)
			} else {
				t.updated = append(t.updated, r)
			}
		}
		return nil
	})
	return t, err
}

// readRow reads a pb.Row: malformed bytes are an error, bad content
// (a column name, a non-finite number, a version) the row's err.
func readRow(b []byte) (wireRow, error) {
	r := wireRow{Row: Row{Cols: make(map[string]Value, CountField(b, frowCols))}}
	keep := func(err error) error {
		if errors.Is(err, errWire) {
			return err
		}
		if r.err == nil {
			r.err = err
		}
		return nil
	}
	err := BytesFields(b, frowID, frowVersions, func(num protowire.Number, m []byte) error {
		switch num {
		case frowID, frowChanged:
			s, err := wireString(m)
			if err != nil {
				return err
			}
			if num == frowID {
				r.ID = s
			} else {
				r.Changed = append(r.Changed, s)
			}
		case frowCols:
			return keep(ConsumeValue(m, r.Cols))
		default: // versions
			return keep(ConsumeVersions(m, &r.Versions))
		}
		return nil
	})
	if err != nil {
		return r, err
	}
	for _, c := range r.Changed {
		if !schema.ValidName(c) {
			_ = keep(fmt.Errorf("changed: %w %q", ErrInvalidColumn, c))
		}
	}
	return r, nil
}

// wireString is the content of a string field, refusing invalid UTF-8.
func wireString(m []byte) (string, error) {
	if !utf8.Valid(m) {
		return "", errWire
	}
	return string(m), nil
}

// CountChanges counts the rows and deleted ids of an encoded
// changeset without decoding them (for logs; malformed bytes count up
// to where they break).
func CountChanges(b []byte) int {
	n := 0
	for len(b) > 0 {
		num, typ, m := ConsumeTag(b)
		if m < 0 {
			return n
		}
		b = b[m:]
		if num == fcsTables && typ == protowire.BytesType {
			t, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return n
			}
			n += CountField(t, ftcCreated) + CountField(t, ftcUpdated) + CountField(t, ftcDeleted)
		}
		if m = protowire.ConsumeFieldValue(num, typ, b); m < 0 {
			return n
		}
		b = b[m:]
	}
	return n
}
