package kv

import (
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/clinicsync/clinicsync/codec"
	pb "github.com/clinicsync/clinicsync/proto"
	"google.golang.org/protobuf/proto"
)

// The stored-row codec is held to the generated code: what one encodes
// the other decodes to the same record, and on any bytes both accept
// or both refuse, with the same record (protoEncode and protoDecode are
// the generated code's way, the model).

// protoEncode writes receipts as receipt groups, one receipt a group
// (legacy: in the receipts map, as stores before 2026-12-03 hold them).
func protoEncode(r *Record, legacy bool) ([]byte, error) {
	sr := &pb.StoredRow{Cols: codec.ValuesToProto(r.Cols), Status: pb.Status(r.Status), Changed: r.Changed,
		Cursor: r.Cursor, CreatedCursor: r.CreatedCursor, Deleted: r.Deleted, Version: r.Version, Origin: r.Origin,
		PushBase: r.PushBase, Versions: codec.VersionsToProto(r.Versions)}
	for k, rc := range r.Receipts {
		if legacy {
			if sr.Receipts == nil {
				sr.Receipts = map[string]*pb.Receipt{}
			}
			sr.Receipts[k] = &pb.Receipt{Hash: rc.Hash, Wall: rc.Version.Wall, Counter: rc.Version.Counter, Node: rc.Version.Node}
			continue
		}
		pusher, col := codec.SplitReceiptKey(k)
		sr.ReceiptGroups = append(sr.ReceiptGroups, &pb.ReceiptGroup{Pusher: pusher, Wall: rc.Version.Wall,
			Counter: rc.Version.Counter, Node: &rc.Version.Node, Columns: []string{col}, Hashes: []uint64{rc.Hash}})
	}
	return proto.Marshal(sr)
}

func protoDecode(table, id string, b []byte) (Record, error) {
	var sr pb.StoredRow
	if err := proto.Unmarshal(b, &sr); err != nil {
		return Record{}, err
	}
	cols, err := codec.ValuesFromProto(sr.Cols)
	if err != nil {
		return Record{}, err
	}
	versions, err := codec.VersionsFromProto(sr.Versions)
	if err != nil {
		return Record{}, err
	}
	var receipts map[string]codec.Receipt
	add := func(k string, rc codec.Receipt) {
		if receipts == nil {
			receipts = map[string]codec.Receipt{}
		}
		receipts[k] = rc
	}
	for k, rc := range sr.Receipts {
		add(k, codec.Receipt{Hash: rc.GetHash(), Version: codec.Version{Wall: rc.GetWall(), Counter: rc.GetCounter(), Node: rc.GetNode()}})
	}
	for _, g := range sr.ReceiptGroups {
		if len(g.Columns) != len(g.Hashes) {
			return Record{}, fmt.Errorf("a receipt group has %d columns and %d hashes", len(g.Columns), len(g.Hashes))
		}
		v := codec.Version{Wall: g.Wall, Counter: g.Counter, Node: g.Pusher}
		if g.Node != nil {
			v.Node = *g.Node
		}
		for i, col := range g.Columns {
			add(codec.ReceiptKey(g.Pusher, col), codec.Receipt{Hash: g.Hashes[i], Version: v})
		}
	}
	return Record{Row: codec.Row{Table: table, ID: id, Cols: cols, Changed: sr.Changed, Versions: versions},
		Status: Status(sr.Status), Deleted: sr.Deleted, Cursor: sr.Cursor, CreatedCursor: sr.CreatedCursor,
		Version: sr.Version, Origin: sr.Origin, PushBase: sr.PushBase, Receipts: receipts}, nil
}

func randomRecord(rng *rand.Rand) Record {
	r := Record{Row: codec.Row{Table: "patients", ID: "p1", Cols: map[string]codec.Value{}}}
	nodes := []string{"", "dev1", "user.nurse@example.org", "cloud"}
	for i := range rng.IntN(25) {
		col := fmt.Sprintf("col_%d", i)
		switch rng.IntN(5) {
		case 0:
			r.Cols[col] = codec.Null()
		case 1:
			r.Cols[col] = codec.String(fmt.Sprintf("välue %d", rng.IntN(1000)))
		case 2:
			r.Cols[col] = codec.Number([]float64{0, -1.5, 1e300, float64(rng.Int64())}[rng.IntN(4)])
		case 3:
			r.Cols[col] = codec.Bool(rng.IntN(2) == 0)
		case 4:
			r.Cols[col] = codec.JSONText([]string{"", "{}", `{"a":[1,2]}`}[rng.IntN(3)])
		}
		if rng.IntN(4) > 0 {
			if r.Versions == nil {
				r.Versions = map[string]codec.Version{}
			}
			r.Versions[col] = codec.Version{Wall: rng.Int64N(3) * 1772440019193, Counter: uint32(rng.IntN(3)), Node: nodes[rng.IntN(len(nodes))]}
		}
		if rng.IntN(5) == 0 {
			r.Changed = append(r.Changed, col)
		}
	}
	r.Status = Status(rng.IntN(4))
	r.Deleted = rng.IntN(4) == 0
	r.Cursor, r.CreatedCursor, r.PushBase = rng.Int64N(1<<50), rng.Int64N(3), -rng.Int64N(2)
	r.Version = rng.Uint64N(1 << 40)
	r.Origin = nodes[rng.IntN(len(nodes))]
	for range rng.IntN(3) { // pushers, each with one or two versions
		pusher := nodes[rng.IntN(len(nodes))]
		vs := []codec.Version{{Wall: rng.Int64N(1 << 42), Counter: uint32(rng.IntN(2)), Node: pusher},
			{Wall: rng.Int64N(1 << 42), Node: nodes[rng.IntN(len(nodes))]}}
		for _, col := range []string{"phone", "given_name", "sex"}[:1+rng.IntN(3)] {
			if r.Receipts == nil {
				r.Receipts = map[string]codec.Receipt{}
			}
			r.Receipts[codec.ReceiptKey(pusher, col)] = codec.Receipt{Hash: rng.Uint64(), Version: vs[rng.IntN(2)]}
		}
	}
	return r
}

func TestRecordCodec(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	for i := range 2000 {
		r := randomRecord(rng)
		b, err := encodeRecord(&r)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := protoDecode(r.Table, r.ID, b); err != nil || !reflect.DeepEqual(got, r) {
			t.Fatalf("record %d: the generated code decodes ours to %+v, %v; want %+v", i, got, err, r)
		}
		if want := proto.Size(mustProto(t, b)); len(b) != want {
			t.Fatalf("record %d: %d bytes, the generated code writes %d", i, len(b), want)
		}
		for _, legacy := range []bool{false, true} {
			b, err = protoEncode(&r, legacy)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := decodeRecord(r.Table, r.ID, b); err != nil || !reflect.DeepEqual(got, r) {
				t.Fatalf("record %d (legacy receipts %v): ours decodes the generated code's to %+v, %v; want %+v", i, legacy, got, err, r)
			}
		}
	}
}

// TestRecordBytes: the readers of encoded rows that skip the columns
// (readMeta, synced, decodeServed, decodeVersions) agree with decoding
// them.
func TestRecordBytes(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 8))
	for i := range 2000 {
		r := randomRecord(rng)
		b, err := encodeRecord(&r)
		if err != nil {
			t.Fatal(err)
		}
		if m, err := readMeta(b); err != nil || m != (storedMeta{r.Status, r.Version, r.Deleted}) {
			t.Fatalf("record %d: readMeta %+v, %v; want %v %d %v", i, m, err, r.Status, r.Version, r.Deleted)
		}
		want := r
		want.Status, want.Changed = Synced, nil
		s, err := synced(b)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := decodeRecord(r.Table, r.ID, s); err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("record %d marked synced: %+v, %v; want %+v", i, got, err, want)
		}
		want = r
		want.Receipts = nil
		if got, err := decodeServed(r.Table, r.ID, b); err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("record %d served: %+v, %v; want %+v", i, got, err, want)
		}
		values := want
		values.Versions = nil
		if got, err := decodeValues(r.Table, r.ID, b); err != nil || !reflect.DeepEqual(got, values) {
			t.Fatalf("record %d values: %+v, %v; want %+v", i, got, err, values)
		}
		want.Cols = nil
		if got, err := decodeVersions(r.Table, r.ID, b); err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("record %d versions: %+v, %v; want %+v", i, got, err, want)
		}
	}
}

// mustProto is what the generated code decodes from b.
func mustProto(t *testing.T, b []byte) proto.Message {
	var sr pb.StoredRow
	if err := proto.Unmarshal(b, &sr); err != nil {
		t.Fatal(err)
	}
	return &sr
}

// TestRecordCodecRefuses: what the generated code's decoding refuses,
// ours refuses too.
func TestRecordCodecRefuses(t *testing.T) {
	for name, sr := range map[string]*pb.StoredRow{
		"bad column name":      {Cols: map[string]*pb.Value{"Bad-Name": {}}},
		"non-finite":           {Cols: map[string]*pb.Value{"n": {Kind: &pb.Value_Num{Num: math.Inf(1)}}}},
		"negative wall":        {Versions: []*pb.VersionGroup{{WallMs: -1, Columns: []string{"a"}}}},
		"long node":            {Versions: []*pb.VersionGroup{{Node: string(make([]byte, 129)), Columns: []string{"a"}}}},
		"column twice":         {Versions: []*pb.VersionGroup{{WallMs: 1, Columns: []string{"a"}}, {WallMs: 2, Columns: []string{"a"}}}},
		"bad version name":     {Versions: []*pb.VersionGroup{{Columns: []string{"A"}}}},
		"receipt hash missing": {ReceiptGroups: []*pb.ReceiptGroup{{Pusher: "u1", Columns: []string{"a", "b"}, Hashes: []uint64{1}}}},
	} {
		b, err := proto.Marshal(sr)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := decodeRecord("patients", "p1", b); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
	if _, err := decodeRecord("patients", "p1", []byte{0x0a, 0x05, 0x0a}); err == nil {
		t.Error("truncated: decoded")
	}
}

func FuzzRecordDecode(f *testing.F) {
	rng := rand.New(rand.NewPCG(1, 1))
	for range 8 {
		r := randomRecord(rng)
		b, _ := encodeRecord(&r)
		f.Add(b)
	}
	f.Add([]byte{0x0a, 0x03, 0x0a, 0x01, 0xff})
	f.Add([]byte{0x62, 0x0d, 0x0a, 0x01, 'u', 0x2a, 0x01, 'a', 0x31, 1, 2, 3, 4, 5, 6, 7, 8}) // an unpacked hash
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := decodeRecord("patients", "p1", b)
		want, werr := protoDecode("patients", "p1", b)
		if (err == nil) != (werr == nil) {
			t.Fatalf("ours: %v; the generated code: %v", err, werr)
		}
		if err == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("ours %+v, the generated code %+v", got, want)
		}
	})
}
