package codec

import (
	"errors"
	"fmt"
	"math"
	"unicode/utf8"

	"github.com/clinicsync/clinicsync/codec/schema"
	"google.golang.org/protobuf/encoding/protowire"
)

// The two parts of a row that dominate the cost of syncing, its column
// map (map<string, Value>) and its version groups (repeated
// VersionGroup), encoded and decoded straight between Go values and
// protobuf bytes, as proto/clinicsync.proto lays them out, without the
// generated messages in between (one allocation per column and two maps
// a row). The bytes are the generated code's, and the decoders accept
// and refuse what ValuesFromProto and VersionsFromProto do after
// proto.Unmarshal (the tests hold them to it, fuzzing included). Map
// entries and groups come in no particular order.

// errWire is a malformed encoding.
var errWire = errors.New("malformed protobuf")

// AppendValues appends cols as the map field num (map<string, Value>).
func AppendValues(b []byte, num protowire.Number, cols map[string]Value) []byte {
	for k, v := range cols {
		vs := valueSize(v)
		b = protowire.AppendTag(b, num, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(1+protowire.SizeBytes(len(k))+1+protowire.SizeBytes(vs)))
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendString(b, k)
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(vs))
		switch v.Kind {
		case KindString:
			b = protowire.AppendTag(b, 1, protowire.BytesType)
			b = protowire.AppendString(b, v.Str)
		case KindNumber:
			b = protowire.AppendTag(b, 2, protowire.Fixed64Type)
			b = protowire.AppendFixed64(b, math.Float64bits(v.Num))
		case KindBool:
			b = protowire.AppendTag(b, 3, protowire.VarintType)
			b = protowire.AppendVarint(b, protowire.EncodeBool(v.Bool))
		case KindJSON:
			b = protowire.AppendTag(b, 4, protowire.BytesType)
			b = protowire.AppendString(b, v.Str)
		}
	}
	return b
}

func valueSize(v Value) int {
	switch v.Kind {
	case KindString, KindJSON:
		return 1 + protowire.SizeBytes(len(v.Str))
	case KindNumber:
		return 1 + 8
	case KindBool:
		return 1 + 1
	}
	return 0
}

// ConsumeValue decodes one map entry of a column map into cols,
// refusing an invalid column name or a non-finite number.
func ConsumeValue(entry []byte, cols map[string]Value) error {
	var key string
	var v Value
	for len(entry) > 0 {
		num, typ, n := ConsumeTag(entry)
		if n < 0 {
			return errWire
		}
		entry = entry[n:]
		switch {
		case num == 1 && typ == protowire.BytesType:
			s, n := consumeName(entry)
			if n < 0 {
				return errWire
			}
			key, entry = s, entry[n:]
		case num == 2 && typ == protowire.BytesType:
			m, n := protowire.ConsumeBytes(entry)
			if n < 0 {
				return errWire
			}
			var err error
			if v, err = consumeValue(m, v); err != nil { // a second occurrence merges
				return err
			}
			entry = entry[n:]
		default:
			n := protowire.ConsumeFieldValue(num, typ, entry)
			if n < 0 {
				return errWire
			}
			entry = entry[n:]
		}
	}
	if !schema.ValidName(key) {
		return fmt.Errorf("%w %q", ErrInvalidColumn, key)
	}
	if v.Kind == KindNumber && (math.IsNaN(v.Num) || math.IsInf(v.Num, 0)) {
		return fmt.Errorf("column %s: %w: non-finite number", key, ErrInvalidValue)
	}
	cols[key] = v
	return nil
}

// consumeValue decodes a Value message over v (its oneof: the last
// one wins).
func consumeValue(b []byte, v Value) (Value, error) {
	for len(b) > 0 {
		num, typ, n := ConsumeTag(b)
		if n < 0 {
			return Value{}, errWire
		}
		b = b[n:]
		switch {
		case (num == 1 || num == 4) && typ == protowire.BytesType:
			s, n := consumeString(b)
			if n < 0 {
				return Value{}, errWire
			}
			v, b = String(s), b[n:]
			if num == 4 {
				v.Kind = KindJSON
			}
		case num == 2 && typ == protowire.Fixed64Type:
			x, n := protowire.ConsumeFixed64(b)
			if n < 0 {
				return Value{}, errWire
			}
			v, b = Number(math.Float64frombits(x)), b[n:]
		case num == 3 && typ == protowire.VarintType:
			x, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return Value{}, errWire
			}
			v, b = Bool(protowire.DecodeBool(x)), b[n:]
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return Value{}, errWire
			}
			b = b[n:]
		}
	}
	return v, nil
}

// AppendVersions appends vs as the repeated VersionGroup field num,
// one group per distinct version.
func AppendVersions(b []byte, num protowire.Number, vs map[string]Version) []byte {
	type pair struct {
		col string
		v   Version
	}
	var buf [48]pair // a row has a few dozen columns and few distinct versions
	pairs := buf[:0]
	for col, v := range vs {
		pairs = append(pairs, pair{col, v})
	}
next:
	for i, p := range pairs {
		for _, q := range pairs[:i] {
			if q.v == p.v {
				continue next // its group is written
			}
		}
		size := 0
		if p.v.Wall != 0 {
			size += 1 + protowire.SizeVarint(uint64(p.v.Wall))
		}
		if p.v.Counter != 0 {
			size += 1 + protowire.SizeVarint(uint64(p.v.Counter))
		}
		if p.v.Node != "" {
			size += 1 + protowire.SizeBytes(len(p.v.Node))
		}
		for _, q := range pairs[i:] {
			if q.v == p.v {
				size += 1 + protowire.SizeBytes(len(q.col))
			}
		}
		b = protowire.AppendTag(b, num, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(size))
		if p.v.Wall != 0 {
			b = protowire.AppendTag(b, 1, protowire.VarintType)
			b = protowire.AppendVarint(b, uint64(p.v.Wall))
		}
		if p.v.Counter != 0 {
			b = protowire.AppendTag(b, 2, protowire.VarintType)
			b = protowire.AppendVarint(b, uint64(p.v.Counter))
		}
		if p.v.Node != "" {
			b = protowire.AppendTag(b, 3, protowire.BytesType)
			b = protowire.AppendString(b, p.v.Node)
		}
		for _, q := range pairs[i:] {
			if q.v == p.v {
				b = protowire.AppendTag(b, 4, protowire.BytesType)
				b = protowire.AppendString(b, q.col)
			}
		}
	}
	return b
}

// ConsumeVersions decodes one VersionGroup into *vs (made when nil),
// refusing what VersionsFromProto refuses: a negative wall time, a node
// id over 128 bytes, an invalid column name, a column named twice.
func ConsumeVersions(group []byte, vs *map[string]Version) error {
	var v Version
	var cols []string
	for len(group) > 0 {
		num, typ, n := ConsumeTag(group)
		if n < 0 {
			return errWire
		}
		group = group[n:]
		switch {
		case (num == 1 || num == 2) && typ == protowire.VarintType:
			x, n := protowire.ConsumeVarint(group)
			if n < 0 {
				return errWire
			}
			if num == 1 {
				v.Wall = int64(x)
			} else {
				v.Counter = uint32(x)
			}
			group = group[n:]
		case (num == 3 || num == 4) && typ == protowire.BytesType:
			consume := consumeString
			if num == 4 {
				consume = consumeName
			}
			s, n := consume(group)
			if n < 0 {
				return errWire
			}
			if num == 3 {
				v.Node = s
			} else {
				cols = append(cols, s)
			}
			group = group[n:]
		default:
			n := protowire.ConsumeFieldValue(num, typ, group)
			if n < 0 {
				return errWire
			}
			group = group[n:]
		}
	}
	if v.Wall < 0 {
		return fmt.Errorf("%w: version wall time %d is negative", ErrInvalidVersion, v.Wall)
	}
	if len(v.Node) > 128 {
		return fmt.Errorf("%w: version node id is %d bytes", ErrInvalidVersion, len(v.Node))
	}
	if *vs == nil {
		*vs = make(map[string]Version, len(cols))
	}
	for _, col := range cols {
		if !schema.ValidName(col) {
			return fmt.Errorf("%w: version of column %q", ErrInvalidColumn, col)
		}
		if _, dup := (*vs)[col]; dup {
			return fmt.Errorf("%w: column %s has two versions", ErrInvalidVersion, col)
		}
		(*vs)[col] = v
	}
	return nil
}

// BytesFields calls fn with each length-delimited field of a message
// numbered lo to hi, in order; other fields, and these with another
// wire type (unknown fields to proto.Unmarshal), are skipped. Malformed
// bytes are an error; an error of fn stops the walk.
func BytesFields(b []byte, lo, hi protowire.Number, fn func(num protowire.Number, m []byte) error) error {
	for len(b) > 0 {
		num, typ, n := ConsumeTag(b)
		if n < 0 {
			return errWire
		}
		b = b[n:]
		if typ != protowire.BytesType || num < lo || num > hi {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
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
		if err := fn(num, m); err != nil {
			return err
		}
	}
	return nil
}

// CountField counts the occurrences of field num in a message (up to
// an error, which the reader reports), to size a map once.
func CountField(b []byte, num protowire.Number) int {
	n := 0
	for len(b) > 0 {
		f, typ, m := ConsumeTag(b)
		if m < 0 {
			break
		}
		b = b[m:]
		if f == num {
			n++
		}
		if m = protowire.ConsumeFieldValue(f, typ, b); m < 0 {
			break
		}
		b = b[m:]
	}
	return n
}

// ConsumeTag is protowire.ConsumeTag, refusing a field number beyond
// protobuf's range as proto.Unmarshal does.
func ConsumeTag(b []byte) (protowire.Number, protowire.Type, int) {
	num, typ, n := protowire.ConsumeTag(b)
	if n >= 0 && num > protowire.MaxValidNumber {
		return 0, 0, -1
	}
	return num, typ, n
}

// names are the column names of the default catalog, interned: a
// decoded row shares them instead of allocating its own (read only, so
// safe for concurrent decoders).
var names = func() map[string]string {
	out := map[string]string{}
	cat := schema.Default()
	for _, name := range cat.Names() {
		t, _ := cat.Table(name)
		for _, c := range t.Columns {
			out[c.Name] = c.Name
		}
	}
	return out
}()

// consumeName is consumeString for a column name: a known one is
// interned.
func consumeName(b []byte) (string, int) {
	m, n := protowire.ConsumeBytes(b)
	if n < 0 {
		return "", n
	}
	if s, ok := names[string(m)]; ok {
		return s, n
	}
	return consumeString(b)
}

// consumeString is protowire.ConsumeString, refusing invalid UTF-8 as
// proto3 strings do.
func consumeString(b []byte) (string, int) {
	s, n := protowire.ConsumeString(b)
	if n < 0 || !utf8.ValidString(s) {
		return "", -1
	}
	return s, n
}
