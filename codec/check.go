package codec

import (
	"encoding/json"
	"fmt"
	"math"
	"time"
	"unicode/utf8"

	"github.com/clinicsync/clinicsync/codec/schema"
)

// Bounds of a plausible timestamp: years 1850 to 2120, as Hikma's server
// allows. Anything outside is a unit mistake or garbage.
var (
	plausibleFrom = time.Date(1850, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	plausibleTo   = time.Date(2121, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
)

// CheckValue reports whether v is a valid, already normalized value of
// col (a fixed point of NormalizeValue): the right kind, JSON text that
// parses or a string that is not JSON text in a JSON column, an integral
// timestamp normalization accepts, a real civil date or "", a decimal
// string or "", at most maxBytes of text. Null is valid only for
// optional columns.
func CheckValue(col schema.Column, v Value, maxBytes int) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: column %s (%s): %s", ErrInvalidValue, col.Name, col.Type, fmt.Sprintf(format, a...))
	}
	if v.Kind == KindNull {
		if !col.Optional {
			return bad("null in a required column")
		}
		return nil
	}
	if (v.Kind == KindString || v.Kind == KindJSON) && maxBytes > 0 && len(v.Str) > maxBytes {
		return bad("%d bytes, limit %d", len(v.Str), maxBytes)
	}
	want := kindOf(col.Type)
	if col.Type == schema.JSON && v.Kind == KindString {
		// Text that is not JSON ("", WatermelonDB's default) is kept as
		// a string in a JSON column; JSON text must be KindJSON.
		if json.Valid([]byte(v.Str)) || !utf8.ValidString(v.Str) {
			return bad("%q is JSON text or invalid UTF-8: want a json value", shorten(v.Str))
		}
		return nil
	}
	if v.Kind != want {
		return bad("got a %s, want a %s", v.Kind, want)
	}
	switch col.Type {
	case schema.JSON:
		if !json.Valid([]byte(v.Str)) || !utf8.ValidString(v.Str) {
			return bad("not valid JSON text")
		}
	case schema.Timestamp:
		if v.Num != math.Trunc(v.Num) || v.Num < float64(plausibleFrom) || v.Num >= float64(plausibleTo) || !validInstant(int64(v.Num)) {
			return bad("%v is not epoch milliseconds between 1850 and 2120 (0, or at least %d from 1970-01-01)", v.Num, epochWindow)
		}
	case schema.Date:
		if v.Str == "" {
			return nil
		}
		if t, err := time.Parse(time.DateOnly, v.Str); err != nil || len(v.Str) != 10 || !plausibleMS(t.UnixMilli()) {
			return bad("%q is not a YYYY-MM-DD date between 1850 and 2120", v.Str)
		}
	case schema.Decimal:
		if v.Str == "" {
			return nil
		}
		if _, ok := numericString(v.Str); !ok {
			return bad("%q is not a decimal number", v.Str)
		}
	}
	return nil
}

func (k Kind) String() string {
	switch k {
	case KindNull:
		return "null"
	case KindString:
		return "string"
	case KindNumber:
		return "number"
	case KindBool:
		return "bool"
	case KindJSON:
		return "json"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// kindOf is the kind of value a column of type t holds (KindNull for an
// unknown type: no value matches it).
func kindOf(t schema.Type) Kind {
	switch t {
	case schema.String, schema.Date, schema.Decimal:
		return KindString
	case schema.Number, schema.Timestamp:
		return KindNumber
	case schema.Bool:
		return KindBool
	case schema.JSON:
		return KindJSON
	}
	return KindNull
}
