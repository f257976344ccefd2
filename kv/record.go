package kv

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"unicode/utf8"

	"github.com/clinicsync/clinicsync/codec"
	pb "github.com/clinicsync/clinicsync/proto"
	"google.golang.org/protobuf/encoding/protowire"
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

// Stored rows are pb.StoredRow messages, encoded and decoded field by
// field (codec.AppendValues and friends): every sync reads and writes
// them, and the generated code's messages and maps in between cost
// more than the rest of an apply. record_test.go holds both directions
// to the generated code.
const (
	fCols          protowire.Number = 1
	fStatus        protowire.Number = 2
	fChanged       protowire.Number = 3
	fCursor        protowire.Number = 4
	fCreatedCursor protowire.Number = 5
	fDeleted       protowire.Number = 6
	fVersion       protowire.Number = 7
	fOrigin        protowire.Number = 8
	fPushBase      protowire.Number = 9
	fVersions      protowire.Number = 10
	fReceipts      protowire.Number = 11 // read only: receipt groups since 2026-12-03
	fReceiptGroups protowire.Number = 12
)

// Fields of pb.ReceiptGroup.
const (
	fgPusher protowire.Number = iota + 1
	fgWall
	fgCounter
	fgNode
	fgColumns
	fgHashes
)

func encodeRecord(r *Record) ([]byte, error) {
	size := 64 + 48*len(r.Versions)
	for k, v := range r.Cols {
		size += 8 + len(k) + len(v.Str)
	}
	b := make([]byte, 0, size)
	b = codec.AppendValues(b, fCols, r.Cols)
	b = appendVarint(b, fStatus, uint64(pb.Status(r.Status)))
	for _, c := range r.Changed {
		b = protowire.AppendTag(b, fChanged, protowire.BytesType)
		b = protowire.AppendString(b, c)
	}
	b = appendVarint(b, fCursor, uint64(r.Cursor))
	b = appendVarint(b, fCreatedCursor, uint64(r.CreatedCursor))
	if r.Deleted {
		b = appendVarint(b, fDeleted, 1)
	}
	b = appendVarint(b, fVersion, r.Version)
	if r.Origin != "" {
		b = protowire.AppendTag(b, fOrigin, protowire.BytesType)
		b = protowire.AppendString(b, r.Origin)
	}
	b = appendVarint(b, fPushBase, uint64(r.PushBase))
	b = codec.AppendVersions(b, fVersions, r.Versions)
	b = appendReceipts(b, r.Receipts)
	return b, nil
}

// appendReceipts appends receipts as receipt groups, one per pusher and
// version (a push dates its columns alike), in key order.
func appendReceipts(b []byte, rs map[string]codec.Receipt) []byte {
	keys := slices.Sorted(maps.Keys(rs))
	for len(keys) > 0 {
		pusher, _ := codec.SplitReceiptKey(keys[0])
		v := rs[keys[0]].Version
		var cols, hashes []byte
		rest := keys[:0]
		for _, k := range keys {
			p, col := codec.SplitReceiptKey(k)
			rc := rs[k]
			if p != pusher || rc.Version != v {
				rest = append(rest, k)
				continue
			}
			cols = protowire.AppendTag(cols, fgColumns, protowire.BytesType)
			cols = protowire.AppendString(cols, col)
			hashes = protowire.AppendFixed64(hashes, rc.Hash)
		}
		keys = rest
		var g []byte
		if pusher != "" {
			g = protowire.AppendTag(g, fgPusher, protowire.BytesType)
			g = protowire.AppendString(g, pusher)
		}
		g = appendVarint(g, fgWall, uint64(v.Wall))
		g = appendVarint(g, fgCounter, uint64(v.Counter))
		if v.Node != pusher {
			g = protowire.AppendTag(g, fgNode, protowire.BytesType)
			g = protowire.AppendString(g, v.Node)
		}
		g = append(g, cols...)
		g = protowire.AppendTag(g, fgHashes, protowire.BytesType)
		g = protowire.AppendBytes(g, hashes)
		b = protowire.AppendTag(b, fReceiptGroups, protowire.BytesType)
		b = protowire.AppendBytes(b, g)
	}
	return b
}

// appendVarint appends a varint field unless it is zero (proto3).
func appendVarint(b []byte, num protowire.Number, x uint64) []byte {
	if x == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, x)
}

// The parts of a row a decode may leave unread (their bytes skipped).
const (
	skipReceipts = 1 << iota
	skipCols
	skipVersions
)

func decodeRecord(table, id string, b []byte) (Record, error) { return decodeAs(table, id, b, 0) }

// decodeServed is decodeRecord without the receipts: for rows that are
// served, never written back.
func decodeServed(table, id string, b []byte) (Record, error) {
	return decodeAs(table, id, b, skipReceipts)
}

// decodeValues is decodeServed without the column versions: for rows
// served to clients that keep none.
func decodeValues(table, id string, b []byte) (Record, error) {
	return decodeAs(table, id, b, skipReceipts|skipVersions)
}

// decodeVersions is decodeRecord without the columns and receipts: a
// row's sync state and versions, never written back.
func decodeVersions(table, id string, b []byte) (Record, error) {
	return decodeAs(table, id, b, skipReceipts|skipCols)
}

func decodeAs(table, id string, b []byte, skip int) (Record, error) {
	r := Record{Row: codec.Row{Table: table, ID: id}}
	if skip&skipCols == 0 {
		r.Cols = make(map[string]codec.Value, codec.CountField(b, fCols))
	}
	if err := decodeFields(&r, b, skip); err != nil {
		return Record{}, fmt.Errorf("%w: %s/%s: %v", ErrCorrupt, table, id, err)
	}
	return r, nil
}

// storedMeta is the sync state of an encoded row, read without its
// columns.
type storedMeta struct {
	status  Status
	version uint64
	deleted bool
}

// readMeta reads only the status, write version and tombstone flag of
// an encoded row.
func readMeta(b []byte) (storedMeta, error) {
	var m storedMeta
	for len(b) > 0 {
		num, typ, n := codec.ConsumeTag(b)
		if n < 0 {
			return m, errWire
		}
		b = b[n:]
		if typ == protowire.VarintType && (num == fStatus || num == fDeleted || num == fVersion) {
			x, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return m, errWire
			}
			switch num {
			case fStatus:
				m.status = Status(pb.Status(int32(x)))
			case fDeleted:
				m.deleted = protowire.DecodeBool(x)
			case fVersion:
				m.version = x
			}
			b = b[n:]
			continue
		}
		if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
			return m, errWire
		}
		b = b[n:]
	}
	return m, nil
}

// synced is an encoded row marked synced: without its status (synced
// is the zero value) and _changed, every other field copied as it is.
func synced(b []byte) ([]byte, error) {
	out := make([]byte, 0, len(b))
	for len(b) > 0 {
		num, typ, n := codec.ConsumeTag(b)
		if n < 0 {
			return nil, errWire
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return nil, errWire
		}
		if num != fStatus && num != fChanged {
			out = append(out, b[:n+m]...)
		}
		b = b[n+m:]
	}
	return out, nil
}

func decodeFields(r *Record, b []byte, skip int) error {
	var groups [][]byte
	for len(b) > 0 {
		num, typ, n := codec.ConsumeTag(b)
		if n < 0 {
			return errWire
		}
		b = b[n:]
		if typ == protowire.VarintType && (num == fStatus || num >= fCursor && num <= fVersion || num == fPushBase) {
			x, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return errWire
			}
			b = b[n:]
			switch num {
			case fStatus:
				r.Status = Status(pb.Status(int32(x)))
			case fCursor:
				r.Cursor = int64(x)
			case fCreatedCursor:
				r.CreatedCursor = int64(x)
			case fDeleted:
				r.Deleted = protowire.DecodeBool(x)
			case fVersion:
				r.Version = x
			case fPushBase:
				r.PushBase = int64(x)
			}
			continue
		}
		if typ != protowire.BytesType || num != fCols && num != fChanged && num != fOrigin && num != fVersions && num != fReceipts && num != fReceiptGroups {
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return errWire
			}
			b = b[n:]
			continue
		}
		m, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return errWire
		}
		b = b[n:]
		var err error
		switch num {
		case fCols:
			if skip&skipCols == 0 {
				err = codec.ConsumeValue(m, r.Cols)
			}
		case fChanged:
			r.Changed = append(r.Changed, string(m))
			err = validUTF8(m)
		case fOrigin:
			r.Origin = string(m)
			err = validUTF8(m)
		case fVersions:
			if skip&skipVersions == 0 {
				err = codec.ConsumeVersions(m, &r.Versions)
			}
		case fReceipts:
			if skip&skipReceipts == 0 {
				err = consumeReceipt(m, &r.Receipts)
			}
		case fReceiptGroups:
			if skip&skipReceipts == 0 {
				groups = append(groups, m)
			}
		}
		if err != nil {
			return err
		}
	}
	for _, g := range groups { // after the receipts: a group's column wins
		if err := consumeReceiptGroup(g, &r.Receipts); err != nil {
			return err
		}
	}
	return nil
}

// consumeReceipt decodes one receipts map entry into *rs (made when
// nil).
func consumeReceipt(entry []byte, rs *map[string]codec.Receipt) error {
	var key string
	var rc codec.Receipt
	err := codec.BytesFields(entry, 1, 2, func(num protowire.Number, m []byte) error {
		if num == 1 {
			key = string(m)
			return validUTF8(m)
		}
		for len(m) > 0 { // a second occurrence merges into the first
			num, typ, n := codec.ConsumeTag(m)
			if n < 0 {
				return errWire
			}
			m = m[n:]
			switch {
			case num == 1 && typ == protowire.Fixed64Type:
				rc.Hash, n = protowire.ConsumeFixed64(m)
			case num == 2 && typ == protowire.VarintType:
				var x uint64
				x, n = protowire.ConsumeVarint(m)
				rc.Version.Wall = int64(x)
			case num == 3 && typ == protowire.VarintType:
				var x uint64
				x, n = protowire.ConsumeVarint(m)
				rc.Version.Counter = uint32(x)
			case num == 4 && typ == protowire.BytesType:
				var s []byte
				s, n = protowire.ConsumeBytes(m)
				if n >= 0 {
					if err := validUTF8(s); err != nil {
						return err
					}
					rc.Version.Node = string(s)
				}
			default:
				n = protowire.ConsumeFieldValue(num, typ, m)
			}
			if n < 0 {
				return errWire
			}
			m = m[n:]
		}
		return nil
	})
	if err != nil {
		return err
	}
	if *rs == nil {
		*rs = map[string]codec.Receipt{}
	}
	(*rs)[key] = rc
	return nil
}

// consumeReceiptGroup decodes one receipt group into *rs (made when
// nil).
func consumeReceiptGroup(g []byte, rs *map[string]codec.Receipt) error {
	var pusher string
	var v codec.Version
	var node *string
	var cols []string
	var hashes []uint64
	for len(g) > 0 {
		num, typ, n := codec.ConsumeTag(g)
		if n < 0 {
			return errWire
		}
		g = g[n:]
		switch {
		case (num == fgPusher || num == fgNode || num == fgColumns) && typ == protowire.BytesType:
			var s []byte
			if s, n = protowire.ConsumeBytes(g); n >= 0 {
				if err := validUTF8(s); err != nil {
					return err
				}
				switch str := string(s); num {
				case fgPusher:
					pusher = str
				case fgNode:
					node = &str
				default:
					cols = append(cols, str)
				}
			}
		case (num == fgWall || num == fgCounter) && typ == protowire.VarintType:
			var x uint64
			if x, n = protowire.ConsumeVarint(g); num == fgWall {
				v.Wall = int64(x)
			} else {
				v.Counter = uint32(x)
			}
		case num == fgHashes && typ == protowire.Fixed64Type:
			var h uint64
			h, n = protowire.ConsumeFixed64(g)
			hashes = append(hashes, h)
		case num == fgHashes && typ == protowire.BytesType: // packed
			var p []byte
			if p, n = protowire.ConsumeBytes(g); n >= 0 && len(p)%8 != 0 {
				return errWire
			}
			for ; len(p) > 0; p = p[8:] {
				h, _ := protowire.ConsumeFixed64(p)
				hashes = append(hashes, h)
			}
		default:
			n = protowire.ConsumeFieldValue(num, typ, g)
		}
		if n < 0 {
			return errWire
		}
		g = g[n:]
	}
	if len(cols) != len(hashes) {
		return fmt.Errorf("%w: a receipt group has %d columns and %d hashes", errWire, len(cols), len(hashes))
	}
	v.Node = pusher
	if node != nil {
		v.Node = *node
	}
	if *rs == nil && len(cols) > 0 {
		*rs = map[string]codec.Receipt{}
	}
	for i, col := range cols {
		(*rs)[codec.ReceiptKey(pusher, col)] = codec.Receipt{Hash: hashes[i], Version: v}
	}
	return nil
}

var (
	errWire = errors.New("malformed protobuf")
	errUTF8 = errors.New("string field contains invalid UTF-8")
)

func validUTF8(b []byte) error {
	if !utf8.Valid(b) {
		return errUTF8
	}
	return nil
}
