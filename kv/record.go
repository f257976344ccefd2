package kv

import (
	"fmt"

	"github.com/clinicsync/clinicsync/codec"
	pb "github.com/clinicsync/clinicsync/proto"
	"google.golang.org/protobuf/proto"
)

// The row vocabulary is codec's, shared with the sync rules in fsm.
type (
	Status  = codec.Status
	Record  = codec.Record
	Change  = codec.Change
	Op      = codec.Op
	Outcome = codec.Outcome
	Lookup  = codec.Lookup
)

const (
	Synced  = codec.Synced
	Created = codec.Created
	Updated = codec.Updated
	Deleted = codec.Deleted

	Skip   = codec.Skip
	Write  = codec.Write
	Purge  = codec.Purge
	Reject = codec.Reject
)

func encodeRecord(r *Record) ([]byte, error) {
	sr := &pb.StoredRow{
		Cols:          codec.ValuesToProto(r.Cols),
		Status:        pb.Status(r.Status),
		Changed:       r.Changed,
		Cursor:        r.Cursor,
		CreatedCursor: r.CreatedCursor,
		Deleted:       r.Deleted,
		Version:       r.Version,
		Origin:        r.Origin,
		PushBase:      r.PushBase,
		Versions:      codec.VersionsToProto(r.Versions),
	}
	if len(r.Receipts) > 0 {
		sr.Receipts = make(map[string]*pb.Receipt, len(r.Receipts))
		for k, rc := range r.Receipts {
			sr.Receipts[k] = &pb.Receipt{Hash: rc.Hash, Wall: rc.Version.Wall, Counter: rc.Version.Counter, Node: rc.Version.Node}
		}
	}
	return proto.Marshal(sr) // only ever decoded: map entries in any order
}

func decodeRecord(table, id string, b []byte) (Record, error) {
	var sr pb.StoredRow
	if err := proto.Unmarshal(b, &sr); err != nil {
		return Record{}, fmt.Errorf("%w: %s/%s: %v", ErrCorrupt, table, id, err)
	}
	cols, err := codec.ValuesFromProto(sr.Cols)
	if err != nil {
		return Record{}, fmt.Errorf("%w: %s/%s: %v", ErrCorrupt, table, id, err)
	}
	versions, err := codec.VersionsFromProto(sr.Versions)
	if err != nil {
		return Record{}, fmt.Errorf("%w: %s/%s: %v", ErrCorrupt, table, id, err)
	}
	var receipts map[string]codec.Receipt
	if len(sr.Receipts) > 0 {
		receipts = make(map[string]codec.Receipt, len(sr.Receipts))
		for k, rc := range sr.Receipts {
			receipts[k] = codec.Receipt{Hash: rc.GetHash(), Version: codec.Version{Wall: rc.GetWall(), Counter: rc.GetCounter(), Node: rc.GetNode()}}
		}
	}
	return Record{
		Receipts:      receipts,
		Row:           codec.Row{Table: table, ID: id, Cols: cols, Changed: sr.Changed, Versions: versions},
		Status:        Status(sr.Status),
		Deleted:       sr.Deleted,
		Cursor:        sr.Cursor,
		CreatedCursor: sr.CreatedCursor,
		Version:       sr.Version,
		Origin:        sr.Origin,
		PushBase:      sr.PushBase,
	}, nil
}
