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

func protoEncode(r *Record) ([]byte, error) {
	sr := &pb.StoredRow{Cols: codec.ValuesToProto(r.Cols), Status: pb.Status(r.Status), Changed: r.Changed,
		Cursor: r.Cursor, CreatedCursor: r.CreatedCursor, Deleted: r.Deleted, Version: r.Version, Origin: r.Origin,
		PushBase: r.PushBase, Versions: codec.VersionsToProto(r.Versions)}
	if len(r.Receipts) > 0 {
		sr.Receipts = map[string]*pb.Receipt{}
		for k, rc := range r.Receipts {
			sr.Receipts[k] = &pb.Receipt{Hash: rc.Hash, Wall: rc.Version.Wall, Counter: rc.Version.Counter, Node: rc.Version.Node}
		}
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
	if len(sr.Receipts) > 0 {
		receipts = map[string]codec.Receipt{}
		for k, rc := range sr.Receipts {
			receipts[k] = codec.Receipt{Hash: rc.GetHash(), Version: codec.Version{Wall: rc.GetWall(), Counter: rc.GetCounter(), Node: rc.GetNode()}}
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
	for range rng.IntN(3) {
		if r.Receipts == nil {
			r.Receipts = map[string]codec.Receipt{}
		}
		r.Receipts[codec.ReceiptKey(nodes[rng.IntN(len(nodes))], "phone")] = codec.Receipt{Hash: rng.Uint64(),
			Version: codec.Version{Wall: rng.Int64N(1 << 42), Counter: uint32(rng.IntN(2)), Node: nodes[rng.IntN(len(nodes))]}}
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
		if want := proto.Size(mustProto(t, &r)); len(b) != want {
			t.Fatalf("record %d: %d bytes, the generated code writes %d", i, len(b), want)
		}
		b, err = protoEncode(&r)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := decodeRecord(r.Table, r.ID, b); err != nil || !reflect.DeepEqual(got, r) {
			t.Fatalf("record %d: ours decodes the generated code's to %+v, %v; want %+v", i, got, err, r)
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
		want.Cols = nil
		if got, err := decodeVersions(r.Table, r.ID, b); err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("record %d versions: %+v, %v; want %+v", i, got, err, want)
		}
	}
}

func mustProto(t *testing.T, r *Record) proto.Message {
	b, err := protoEncode(r)
	if err != nil {
		t.Fatal(err)
	}
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
		"bad column name":  {Cols: map[string]*pb.Value{"Bad-Name": {}}},
		"non-finite":       {Cols: map[string]*pb.Value{"n": {Kind: &pb.Value_Num{Num: math.Inf(1)}}}},
		"negative wall":    {Versions: []*pb.VersionGroup{{WallMs: -1, Columns: []string{"a"}}}},
		"long node":        {Versions: []*pb.VersionGroup{{Node: string(make([]byte, 129)), Columns: []string{"a"}}}},
		"column twice":     {Versions: []*pb.VersionGroup{{WallMs: 1, Columns: []string{"a"}}, {WallMs: 2, Columns: []string{"a"}}}},
		"bad version name": {Versions: []*pb.VersionGroup{{Columns: []string{"A"}}}},
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
