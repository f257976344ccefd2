package codec_test

import (
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/clinicsync/clinicsync/codec"
	"github.com/clinicsync/clinicsync/codec/schema"
	pb "github.com/clinicsync/clinicsync/proto"
	"google.golang.org/protobuf/proto"
)

// exactDump prints a changeset with every value's kind and every
// column's version, sorted, for comparisons that must see everything.
func exactDump(cs *codec.Changeset) string {
	var b strings.Builder
	fmt.Fprintf(&b, "timestamp %d\n", cs.Timestamp)
	row := func(mark string, r codec.Row) {
		fmt.Fprintf(&b, "%s%s/%s changed=%q\n", mark, r.Table, r.ID, r.Changed)
		for _, k := range slices.Sorted(func(yield func(string) bool) {
			for k := range r.Cols {
				if !yield(k) {
					return
				}
			}
		}) {
			v := r.Cols[k]
			fmt.Fprintf(&b, "  %s=%d:%q:%v:%v\n", k, v.Kind, v.Str, v.Num, v.Bool)
		}
		vs := make([]string, 0, len(r.Versions))
		for k, v := range r.Versions {
			vs = append(vs, k+"@"+v.String())
		}
		slices.Sort(vs)
		fmt.Fprintf(&b, "  versions %q\n", vs)
	}
	for _, name := range cs.TableNames() {
		tc := cs.Tables[name]
		for _, r := range tc.Created {
			row("+", r)
		}
		for _, r := range tc.Updated {
			row("~", r)
		}
		fmt.Fprintf(&b, "-%s %q\n", name, tc.Deleted)
	}
	return b.String()
}

var decodeErrors = []error{codec.ErrMalformed, codec.ErrTooLarge, codec.ErrUnknownTable, codec.ErrDuplicateID, codec.ErrInvalidID,
	codec.ErrInvalidColumn, codec.ErrInvalidValue, codec.ErrInvalidVersion}

// sentinel is the first of decodeErrors that err is.
func sentinel(err error) error {
	for _, s := range decodeErrors {
		if errors.Is(err, s) {
			return s
		}
	}
	return err
}

// decodeBoth decodes b as the generated code and ChangesetFromProto do
// and with DecodeChangeset, and fails t where they disagree: the same
// error (by sentinel), or the same changeset and rejected rows.
func decodeBoth(t *testing.T, b []byte, cat *schema.Catalog) (*codec.Changeset, []codec.Rejection, error) {
	t.Helper()
	var p pb.Changeset
	want, wantRej, wantErr := (*codec.Changeset)(nil), []codec.Rejection(nil), codec.Unmarshal(b, &p)
	if wantErr == nil {
		want, wantRej, wantErr = codec.ChangesetFromProto(&p, cat)
	}
	got, gotRej, err := codec.DecodeChangeset(b, cat)
	if (err == nil) != (wantErr == nil) || err != nil && sentinel(err) != sentinel(wantErr) {
		t.Fatalf("DecodeChangeset: error %v, the generated code's %v (input %x)", err, wantErr, b)
	}
	if err != nil {
		return nil, nil, err
	}
	if g, w := exactDump(got), exactDump(want); g != w {
		t.Fatalf("DecodeChangeset decoded\n%s\nthe generated code\n%s(input %x)", g, w, b)
	}
	rej := func(rs []codec.Rejection) string {
		var s []string
		for _, r := range rs {
			s = append(s, fmt.Sprintf("%s/%s:%v", r.Table, r.ID, sentinel(r.Err)))
		}
		return strings.Join(s, " ")
	}
	if g, w := rej(gotRej), rej(wantRej); g != w {
		t.Fatalf("DecodeChangeset rejected %s, the generated code %s (input %x)", g, w, b)
	}
	return got, gotRej, nil
}

// versioned is fullChangeset with versions on every updated row.
func versioned() *codec.Changeset {
	cs := fullChangeset()
	for _, tc := range cs.Tables {
		for i := range tc.Updated {
			r := &tc.Updated[i]
			r.Versions = map[string]codec.Version{}
			for k := range r.Cols {
				r.Versions[k] = codec.Version{Wall: 1772355600000 + int64(len(k)%3), Counter: uint32(len(k) % 2), Node: "node-" + k[:1]}
			}
		}
	}
	return cs
}

func TestChangesetCodec(t *testing.T) {
	cs := versioned()
	enc := codec.EncodeChangeset(cs)
	got, rejected, err := decodeBoth(t, enc, schema.Default())
	if err != nil || len(rejected) > 0 {
		t.Fatalf("decode: %v %v", err, rejected)
	}
	if g, w := exactDump(got), exactDump(cs); g != w {
		t.Fatalf("round trip:\n%s\nwant\n%s", g, w)
	}
	generated, err := codec.Marshal(codec.ChangesetToProto(cs))
	if err != nil {
		t.Fatal(err)
	}
	if len(generated) != len(enc) {
		t.Errorf("EncodeChangeset wrote %d bytes, the generated code %d", len(enc), len(generated))
	}
	if _, _, err := decodeBoth(t, generated, schema.Default()); err != nil {
		t.Fatal(err)
	}
	for _, pt := range codec.ChangesetToProto(cs).GetTables() {
		for i, r := range cs.Tables[pt.GetTable()].Updated {
			if got, want := codec.RowSize(r), proto.Size(pt.GetUpdated()[i]); got != want {
				t.Errorf("RowSize(%s/%s) = %d, the generated code's %d", r.Table, r.ID, got, want)
			}
		}
	}
	if len(codec.EncodeChangeset(codec.NewChangeset())) != 0 {
		t.Error("an empty changeset encodes to bytes")
	}
}

func TestChangesetDecodeRefuses(t *testing.T) {
	cat := schema.Default()
	row := func(id string, cols map[string]*pb.Value) *pb.Row { return &pb.Row{Id: id, Cols: cols} }
	good := row("p0", map[string]*pb.Value{"phone": {Kind: &pb.Value_Str{Str: "1"}}})
	for _, c := range []struct {
		name string
		cs   *pb.Changeset
		want error
	}{
		{"unknown table", &pb.Changeset{Tables: []*pb.TableChanges{{Table: "patientz"}}}, codec.ErrUnknownTable},
		{"table twice", &pb.Changeset{Tables: []*pb.TableChanges{{Table: "patients"}, {Table: "patients"}}}, codec.ErrDuplicateID},
		{"invalid id", &pb.Changeset{Tables: []*pb.TableChanges{{Table: "patients", Created: []*pb.Row{row("a/b", nil)}}}}, codec.ErrInvalidID},
		{"duplicate id across buckets", &pb.Changeset{Tables: []*pb.TableChanges{{Table: "patients",
			Created: []*pb.Row{row("p1", nil)}, Deleted: []string{"p1"}}}}, codec.ErrDuplicateID},
		{"rows rejected", &pb.Changeset{Tables: []*pb.TableChanges{{Table: "patients", Updated: []*pb.Row{good,
			row("p1", map[string]*pb.Value{"Bad Name": {}}),
			row("p2", map[string]*pb.Value{"phone": {Kind: &pb.Value_Num{Num: math.NaN()}}}),
			{Id: "p3", Versions: []*pb.VersionGroup{{WallMs: -1, Columns: []string{"phone"}}}},
			{Id: "p4", Versions: []*pb.VersionGroup{{WallMs: 1, Columns: []string{"phone"}}, {WallMs: 2, Columns: []string{"phone"}}}},
			{Id: "p5", Changed: []string{"not a column"}},
		}}}}, nil},
	} {
		b, err := codec.Marshal(c.cs)
		if err != nil {
			t.Fatal(err)
		}
		_, rejected, err := decodeBoth(t, b, cat)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
		if c.want == nil && len(rejected) != 5 {
			t.Errorf("%s: rejected %v, want p1 to p5", c.name, rejected)
		}
	}
	for _, b := range [][]byte{{0x0a, 0xff, 0xff}, {0x0a, 0x02, 0x12, 0x05}, {0x0a, 0x03, 0x0a, 0x01, 0xff}} {
		if _, _, err := decodeBoth(t, b, cat); !errors.Is(err, codec.ErrMalformed) {
			t.Errorf("%x: %v, want ErrMalformed", b, err)
		}
	}
	if _, _, err := codec.DecodeChangeset(make([]byte, codec.MaxMessageBytes+1), cat); !errors.Is(err, codec.ErrTooLarge) {
		t.Errorf("oversized: %v", err)
	}
}

// FuzzChangesetDecode: DecodeChangeset accepts, refuses and decodes
// what the generated code and ChangesetFromProto do, and what it
// decodes EncodeChangeset writes back the same.
func FuzzChangesetDecode(f *testing.F) {
	f.Add(codec.EncodeChangeset(versioned()))
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0x03, 0x0a, 0x01, 0x78})
	f.Fuzz(func(t *testing.T, data []byte) {
		cs, _, err := decodeBoth(t, data, nil)
		if err != nil {
			return
		}
		back, rejected, err := decodeBoth(t, codec.EncodeChangeset(cs), nil)
		if err != nil || len(rejected) > 0 {
			t.Fatalf("re-decode: %v %v", err, rejected)
		}
		if exactDump(back) != exactDump(cs) {
			t.Fatal("round trip not stable")
		}
	})
}

// benchPage is a page of n versioned patient rows.
func benchPage(n int) *codec.Changeset {
	cat := schema.Default()
	t, _ := cat.Table("patients")
	cs := codec.NewChangeset()
	tc := cs.Table("patients")
	v := codec.Version{Wall: 1772355600000, Node: "0f3c9a7e5b1d4c2a"}
	for i := range n {
		r := codec.Row{Table: "patients", ID: fmt.Sprintf("%032x", i*7919), Cols: map[string]codec.Value{}, Versions: map[string]codec.Version{}}
		for j, c := range t.Columns {
			r.Cols[c.Name], r.Versions[c.Name] = sampleValue(c, j), v
		}
		tc.Created = append(tc.Created, r)
	}
	return cs
}

func BenchmarkChangesetEncode(b *testing.B) {
	cs := benchPage(1000)
	for b.Loop() {
		b.SetBytes(int64(len(codec.EncodeChangeset(cs))))
	}
}

func BenchmarkChangesetDecode(b *testing.B) {
	enc := codec.EncodeChangeset(benchPage(1000))
	b.SetBytes(int64(len(enc)))
	for b.Loop() {
		if _, _, err := codec.DecodeChangeset(enc, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// TestHashValues holds HashValues to its definition: FNV-1a of what
// fmt prints.
func TestHashValues(t *testing.T) {
	vs := []codec.Value{codec.String("Juba ملف"), codec.Number(-0.25), codec.Int(1772355600000), codec.Bool(true), codec.JSONText(`{"a":1}`), codec.Null(), codec.Number(1e21)}
	h := fnv.New64a()
	for _, v := range vs {
		fmt.Fprintf(h, "%d\x00%s\x00%v\x00%v\x00", v.Kind, v.Str, v.Num, v.Bool)
	}
	if got, want := codec.HashValues(vs...), h.Sum64(); got != want {
		t.Errorf("HashValues = %x, want %x", got, want)
	}
	if codec.HashValues(vs[0], vs[1]) == codec.HashValues(vs[1], vs[0]) {
		t.Error("the order of values does not count")
	}
}
