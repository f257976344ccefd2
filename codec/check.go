package codec

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/clinicsync/clinicsync/codec/schema"
)

// Bounds of a plausible timestamp: years 1850 to 2120, as Hikma's server
// allows. Anything outside is a unit mistake or garbage.
var (
	plausibleFrom = time.Date(1850, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	plausibleTo   = time.Date(2121, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
)

// CheckValue reports whether v is a valid, already normalized value of
// col: the right kind, JSON text that parses, an integral plausible
// timestamp, a real civil date, a decimal string, at most maxBytes of
// text. Null is valid only for optional columns.
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
	want := map[schema.Type]Kind{
		schema.String: KindString, schema.Number: KindNumber, schema.Bool: KindBool,
		schema.JSON: KindJSON, schema.Timestamp: KindNumber, schema.Date: KindString,
		schema.Decimal: KindString,
	}[col.Type]
	if v.Kind != want {
		return bad("got a %s, want a %s", v.Kind, want)
	}
	switch col.Type {
	case schema.JSON:
		if !json.Valid([]byte(v.Str)) {
			return bad("not valid JSON text")
		}
	case schema.Timestamp:
		if v.Num != float64(int64(v.Num)) || int64(v.Num) < plausibleFrom || int64(v.Num) >= plausibleTo {
			return bad("%v is not epoch milliseconds between 1850 and 2120", v.Num)
		}
	case schema.Date:
		if _, err := time.Parse(time.DateOnly, v.Str); err != nil || len(v.Str) != 10 {
			return bad("%q is not a YYYY-MM-DD date", v.Str)
		}
	case schema.Decimal:
		if _, err := strconv.ParseFloat(v.Str, 64); err != nil {
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
