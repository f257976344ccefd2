package codec_test

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/clinicsync/clinicsync/codec"
	"github.com/clinicsync/clinicsync/codec/schema"
	pb "github.com/clinicsync/clinicsync/proto"
)

// sampleValue is a representative valid value for a column type.
func sampleValue(c schema.Column, i int) codec.Value {
	switch c.Type {
	case schema.Number:
		return codec.Number(float64(i) + 0.5)
	case schema.Bool:
		return codec.Bool(i%2 == 0)
	case schema.JSON:
		return codec.JSONText(`{"k":[1,"two",null]}`)
	case schema.Timestamp:
		return codec.Int(1772355600000 + int64(i))
	case schema.Date:
		return codec.String("1990-04-01")
	case schema.Decimal:
		return codec.String("170.00")
	}
	return codec.String("text " + c.Name + " ملف")
}

// fullChangeset has, for every table of the catalog, a created and an
// updated row with every column set, and a deleted id.
func fullChangeset() *codec.Changeset {
	cs := codec.NewChangeset()
	cs.Timestamp = 1772355600123
	cat := schema.Default()
	for _, name := range cat.Names() {
		t, _ := cat.Table(name)
		tc := cs.Table(name)
		for j, bucket := range []*[]codec.Row{&tc.Created, &tc.Updated} {
			r := codec.Row{Table: name, ID: name + "-" + string(rune('a'+j)), Cols: map[string]codec.Value{}}
			for i, c := range t.Columns {
				r.Cols[c.Name] = sampleValue(c, i)
				if c.Optional && i%3 == 0 {
					r.Cols[c.Name] = codec.Null()
				}
			}
			if j == 1 {
				r.Changed = []string{t.Columns[0].Name}
			}
			*bucket = append(*bucket, r)
		}
		tc.Deleted = []string{name + "-gone"}
	}
	return cs
}

func TestProtoRoundTripEveryTable(t *testing.T) {
	cs := fullChangeset()
	b, err := codec.Marshal(codec.ChangesetToProto(cs))
	if err != nil {
		t.Fatal(err)
	}
	var p pb.Changeset
	if err := codec.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	back, _, err := codec.ChangesetFromProto(&p, schema.Default())
	if err != nil {
		t.Fatal(err)
	}
	if got, want := dumpChangeset(back), dumpChangeset(cs); got != want {
		t.Fatalf("round trip differs:\n%s\nwant\n%s", got, want)
	}
	// Deterministic bytes.
	b2, _ := codec.Marshal(codec.ChangesetToProto(back))
	if string(b) != string(b2) {
		t.Fatal("re-encoding gives different bytes")
	}
}

func dumpChangeset(cs *codec.Changeset) string {
	var b strings.Builder
	for _, name := range cs.TableNames() {
		tc := cs.Tables[name]
		for _, r := range tc.Created {
			b.WriteString("+" + r.String() + " " + strings.Join(r.Changed, ",") + "\n")
		}
		for _, r := range tc.Updated {
			b.WriteString("~" + r.String() + " " + strings.Join(r.Changed, ",") + "\n")
		}
		for _, id := range tc.Deleted {
			b.WriteString("-" + name + "/" + id + "\n")
		}
	}
	return b.String()
}

func TestProtoBadInput(t *testing.T) {
	cat := schema.Default()
	row := func(id string, cols map[string]*pb.Value) *pb.Row { return &pb.Row{Id: id, Cols: cols} }
	cases := []struct {
		name string
		cs   *pb.Changeset
		want error
	}{
		{"unknown table", &pb.Changeset{Tables: []*pb.TableChanges{{Table: "patientz"}}}, codec.ErrUnknownTable},
		{"invalid table name", &pb.Changeset{Tables: []*pb.TableChanges{{Table: "Robert'); DROP"}}}, codec.ErrUnknownTable},
		{"table twice", &pb.Changeset{Tables: []*pb.TableChanges{{Table: "patients"}, {Table: "patients"}}}, codec.ErrDuplicateID},
		{"invalid id", &pb.Changeset{Tables: []*pb.TableChanges{{Table: "patients", Created: []*pb.Row{row("a/b", nil)}}}}, codec.ErrInvalidID},
		{"duplicate id across buckets", &pb.Changeset{Tables: []*pb.TableChanges{{Table: "patients",
			Created: []*pb.Row{row("p1", nil)}, Deleted: []string{"p1"}}}}, codec.ErrDuplicateID},
	}
	for _, c := range cases {
		if _, _, err := codec.ChangesetFromProto(c.cs, cat); !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
	}
	// Bad content rejects just its row, naming it; the others decode.
	good := row("p0", map[string]*pb.Value{"phone": {Kind: &pb.Value_Str{Str: "1"}}})
	for _, c := range []struct {
		name string
		row  *pb.Row
		want error
	}{
		{"invalid column name", row("p1", map[string]*pb.Value{"Bad Name": {}}), codec.ErrInvalidColumn},
		{"NaN", row("p1", map[string]*pb.Value{"phone": {Kind: &pb.Value_Num{Num: math.NaN()}}}), codec.ErrInvalidValue},
		{"malformed version", &pb.Row{Id: "p1", Versions: []*pb.VersionGroup{{WallMs: -1, Columns: []string{"phone"}}}}, codec.ErrInvalidVersion},
		{"column versioned twice", &pb.Row{Id: "p1", Versions: []*pb.VersionGroup{{WallMs: 1, Columns: []string{"phone"}},
			{WallMs: 2, Columns: []string{"phone"}}}}, codec.ErrInvalidVersion},
	} {
		cs, rejected, err := codec.ChangesetFromProto(&pb.Changeset{Tables: []*pb.TableChanges{{Table: "patients",
			Updated: []*pb.Row{good, c.row}}}}, cat)
		if err != nil || len(rejected) != 1 || rejected[0].ID != "p1" || !errors.Is(rejected[0].Err, c.want) {
			t.Errorf("%s: rejected %v, err %v; want p1 rejected with %v", c.name, rejected, err, c.want)
			continue
		}
		if rows := cs.Tables["patients"].Updated; len(rows) != 1 || rows[0].ID != "p0" {
			t.Errorf("%s: decoded %v, want p0 only", c.name, rows)
		}
	}
	var p pb.Changeset
	if err := codec.Unmarshal([]byte{0x0a, 0xff, 0xff}, &p); !errors.Is(err, codec.ErrMalformed) {
		t.Errorf("truncated protobuf: %v", err)
	}
}

// FuzzChangesetFromProto: arbitrary bytes never panic the decoder, and
// what decodes re-encodes to a changeset that decodes the same.
func FuzzChangesetFromProto(f *testing.F) {
	b, _ := codec.Marshal(codec.ChangesetToProto(fullChangeset()))
	f.Add(b)
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0x03, 0x0a, 0x01, 0x78})
	f.Fuzz(func(t *testing.T, data []byte) {
		var p pb.Changeset
		if codec.Unmarshal(data, &p) != nil {
			return
		}
		cs, _, err := codec.ChangesetFromProto(&p, nil)
		if err != nil {
			return
		}
		b, err := codec.Marshal(codec.ChangesetToProto(cs))
		if err != nil {
			t.Fatal(err)
		}
		var p2 pb.Changeset
		if err := codec.Unmarshal(b, &p2); err != nil {
			t.Fatal(err)
		}
		cs2, rejected, err := codec.ChangesetFromProto(&p2, nil)
		if err != nil || len(rejected) > 0 {
			t.Fatalf("re-decode failed: %v %v", err, rejected)
		}
		if dumpChangeset(cs) != dumpChangeset(cs2) {
			t.Fatal("round trip not stable")
		}
	})
}
