package kv

import (
	"fmt"

	"github.com/clinicsync/clinicsync/codec"
	pb "github.com/clinicsync/clinicsync/proto"
	"google.golang.org/protobuf/proto"
)

// Status is a row's state relative to this node's upstream, as
// WatermelonDB's _status.
type Status uint8

const (
	Synced Status = iota
	Created
	Updated
	Deleted
)

var statusNames = [...]string{"synced", "created", "updated", "deleted"}

func (s Status) String() string {
	if int(s) < len(statusNames) {
		return statusNames[s]
	}
	return fmt.Sprintf("status(%d)", uint8(s))
}

// Pending reports whether the row has changes to push upstream.
func (s Status) Pending() bool { return s != Synced }

// Record is a stored row with its sync metadata.
type Record struct {
	codec.Row        // table, id, columns, _changed
	Status    Status // relative to the upstream
	// Deleted marks a tombstone: a deleted row kept so that the delete
	// can be pushed upstream or served downstream. Its Cols are empty.
	Deleted bool
	// Cursor is the serving cursor of the row's last change;
	// CreatedCursor the one it was created at (what a server compares
	// with last_pulled_at to serve it as created or updated).
	Cursor        int64
	CreatedCursor int64
	// Version is the node-wide write sequence number of the last change;
	// MarkSynced compares it to tell whether a row changed since it was
	// collected.
	Version uint64
	// Origin is the peer whose push created the row ("" for local rows).
	Origin string
}

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
	}
	return proto.MarshalOptions{Deterministic: true}.Marshal(sr)
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
	return Record{
		Row:           codec.Row{Table: table, ID: id, Cols: cols, Changed: sr.Changed},
		Status:        Status(sr.Status),
		Deleted:       sr.Deleted,
		Cursor:        sr.Cursor,
		CreatedCursor: sr.CreatedCursor,
		Version:       sr.Version,
		Origin:        sr.Origin,
	}, nil
}
