package codec

import (
	"fmt"
	"math"
	"sort"

	"github.com/clinicsync/clinicsync/codec/schema"
	pb "github.com/clinicsync/clinicsync/proto"
	"google.golang.org/protobuf/proto"
)

// MaxMessageBytes bounds a protobuf message accepted by the decoders.
const MaxMessageBytes = 64 << 20

// ValueToProto converts a Value; null is a Value with no kind set.
func ValueToProto(v Value) *pb.Value {
	switch v.Kind {
	case KindString:
		return &pb.Value{Kind: &pb.Value_Str{Str: v.Str}}
	case KindNumber:
		return &pb.Value{Kind: &pb.Value_Num{Num: v.Num}}
	case KindBool:
		return &pb.Value{Kind: &pb.Value_Bool{Bool: v.Bool}}
	case KindJSON:
		return &pb.Value{Kind: &pb.Value_Json{Json: v.Str}}
	}
	return &pb.Value{}
}

// ValueFromProto converts back. A non-finite number is refused.
func ValueFromProto(p *pb.Value) (Value, error) {
	switch k := p.GetKind().(type) {
	case *pb.Value_Str:
		return String(k.Str), nil
	case *pb.Value_Num:
		if math.IsNaN(k.Num) || math.IsInf(k.Num, 0) {
			return Value{}, fmt.Errorf("%w: non-finite number", ErrInvalidValue)
		}
		return Number(k.Num), nil
	case *pb.Value_Bool:
		return Bool(k.Bool), nil
	case *pb.Value_Json:
		return JSONText(k.Json), nil
	}
	return Null(), nil
}

// ValuesToProto converts a column map.
func ValuesToProto(cols map[string]Value) map[string]*pb.Value {
	if len(cols) == 0 {
		return nil
	}
	out := make(map[string]*pb.Value, len(cols))
	for k, v := range cols {
		out[k] = ValueToProto(v)
	}
	return out
}

// ValuesFromProto converts a column map back, refusing invalid column
// names and values.
func ValuesFromProto(cols map[string]*pb.Value) (map[string]Value, error) {
	out := make(map[string]Value, len(cols))
	for k, p := range cols {
		if !schema.ValidName(k) {
			return nil, fmt.Errorf("%w %q", ErrInvalidColumn, k)
		}
		v, err := ValueFromProto(p)
		if err != nil {
			return nil, fmt.Errorf("column %s: %w", k, err)
		}
		out[k] = v
	}
	return out, nil
}

// ChangesetToProto converts a changeset; tables are sorted by name.
func ChangesetToProto(cs *Changeset) *pb.Changeset {
	out := &pb.Changeset{Timestamp: cs.Timestamp}
	for _, name := range cs.TableNames() {
		t := cs.Tables[name]
		pt := &pb.TableChanges{Table: name, Deleted: t.Deleted}
		for _, r := range t.Created {
			pt.Created = append(pt.Created, rowToProto(r))
		}
		for _, r := range t.Updated {
			pt.Updated = append(pt.Updated, rowToProto(r))
		}
		out.Tables = append(out.Tables, pt)
	}
	return out
}

func rowToProto(r Row) *pb.Row {
	return &pb.Row{Id: r.ID, Cols: ValuesToProto(r.Cols), Changed: r.Changed, Versions: VersionsToProto(r.Versions)}
}

// ChangesetFromProto converts and validates a changeset: table names
// must be in the catalog (when one is given), ids valid and unique
// within a table. A row whose content is bad (a column name, a
// non-finite number, a malformed version) is left out and returned as
// rejected, naming its table and id, as a JSON decode does; a bad table
// or id fails the whole changeset.
func ChangesetFromProto(p *pb.Changeset, cat *schema.Catalog) (*Changeset, []Rejection, error) {
	cs := NewChangeset()
	cs.Timestamp = p.GetTimestamp()
	var rejected []Rejection
	for _, pt := range p.GetTables() {
		name := pt.GetTable()
		t, use, err := addTable(cs, name, cat, 0)
		if err != nil {
			return nil, nil, err
		}
		conv := func(rows []*pb.Row) ([]Row, error) {
			var out []Row
			for _, pr := range rows {
				if err := use(pr.GetId()); err != nil {
					return nil, err
				}
				r, err := rowFromProto(name, pr)
				if err != nil {
					rejected = append(rejected, Rejection{Table: name, ID: pr.GetId(), Err: err})
					continue
				}
				out = append(out, r)
			}
			return out, nil
		}
		if t.Created, err = conv(pt.GetCreated()); err != nil {
			return nil, nil, err
		}
		if t.Updated, err = conv(pt.GetUpdated()); err != nil {
			return nil, nil, err
		}
		for _, id := range pt.GetDeleted() {
			if err := use(id); err != nil {
				return nil, nil, err
			}
			t.Deleted = append(t.Deleted, id)
		}
	}
	return cs, rejected, nil
}

// rowFromProto converts one row whose id is valid.
func rowFromProto(table string, pr *pb.Row) (Row, error) {
	cols, err := ValuesFromProto(pr.GetCols())
	if err != nil {
		return Row{}, fmt.Errorf("%s/%s: %w", table, pr.GetId(), err)
	}
	changed := pr.GetChanged()
	for _, c := range changed {
		if !schema.ValidName(c) {
			return Row{}, fmt.Errorf("%s/%s: changed: %w %q", table, pr.GetId(), ErrInvalidColumn, c)
		}
	}
	versions, err := VersionsFromProto(pr.GetVersions())
	if err != nil {
		return Row{}, fmt.Errorf("%s/%s: %w", table, pr.GetId(), err)
	}
	return Row{Table: table, ID: pr.GetId(), Cols: cols, Changed: changed, Versions: versions}, nil
}

// Marshal encodes a message deterministically (bytes are compared and hashed).
func Marshal(m proto.Message) ([]byte, error) {
	return proto.MarshalOptions{Deterministic: true}.Marshal(m)
}

// Unmarshal decodes a message, refusing oversized or malformed input
// with ErrMalformed.
func Unmarshal(b []byte, m proto.Message) error {
	if len(b) > MaxMessageBytes {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(b), MaxMessageBytes)
	}
	if err := proto.Unmarshal(b, m); err != nil {
		return fmt.Errorf("%w: %T: %v", ErrMalformed, m, err)
	}
	return nil
}

// sortedKeys returns a map's keys, sorted.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
