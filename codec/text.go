package codec

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/clinicsync/clinicsync/codec/schema"
)

// MaxTextBytes bounds one text value parsed by ParseText.
const MaxTextBytes = 1 << 20

// textDecimalRE is the decimal number syntax ParseText accepts for Number and
// Decimal columns: no hex, no underscores, no Inf or NaN.
var textDecimalRE = regexp.MustCompile(`^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$`)

// textIntegerRE is an integer count of milliseconds.
var textIntegerRE = regexp.MustCompile(`^-?[0-9]+$`)

// ParseText turns a command-line string into a value of col:
//
//   - "null" is null (refused in a required column);
//   - String: the text as is;
//   - Number: a finite decimal number ("12", "-3.5", "1e3");
//   - Bool: true, false, 1 or 0 (case-insensitive);
//   - JSON: valid JSON text, stored compacted;
//   - Timestamp: integer epoch milliseconds or seconds (told apart by
//     magnitude, as in normalize.go), or an ISO-8601 time or a
//     YYYY-MM-DD date (midnight UTC), converted to milliseconds;
//   - Date: a YYYY-MM-DD civil date;
//   - Decimal: a decimal number, kept as the text given ("170.00").
//
// The result is checked with CheckValue. Errors wrap ErrInvalidValue and
// name the column and the text.
func ParseText(col schema.Column, s string) (Value, error) {
	bad := func(why string) error {
		return fmt.Errorf("%w: column %s (%s): %q %s", ErrInvalidValue, col.Name, col.Type, clipText(s), why)
	}
	var v Value
	switch {
	case s == "null":
		v = Null()
	case col.Type == schema.String:
		v = String(s)
	case col.Type == schema.Number:
		if !textDecimalRE.MatchString(s) {
			return Value{}, bad("is not a decimal number")
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return Value{}, bad("is not a finite number")
		}
		v = Number(f)
	case col.Type == schema.Bool:
		switch strings.ToLower(s) {
		case "true", "1":
			v = Bool(true)
		case "false", "0":
			v = Bool(false)
		default:
			return Value{}, bad("is not true, false, 1 or 0")
		}
	case col.Type == schema.JSON:
		var buf bytes.Buffer
		if err := json.Compact(&buf, []byte(s)); err != nil {
			return Value{}, bad("is not valid JSON text: " + err.Error())
		}
		v = JSONText(buf.String())
	case col.Type == schema.Timestamp:
		// The decoders' rule (normalize.go): epoch ms, epoch seconds by
		// magnitude, or ISO-8601.
		var reason string
		if v, reason = normTimestamp(input{kind: inString, s: s}); reason != "" {
			return Value{}, bad("is not a timestamp: " + reason)
		}
	case col.Type == schema.Date:
		if _, err := time.Parse(time.DateOnly, s); err != nil || len(s) != len(time.DateOnly) {
			return Value{}, bad("is not a YYYY-MM-DD date")
		}
		v = String(s)
	case col.Type == schema.Decimal:
		if !textDecimalRE.MatchString(s) {
			return Value{}, bad("is not a decimal number")
		}
		v = String(s)
	default:
		return Value{}, bad("cannot be parsed: unknown column type")
	}
	if err := CheckValue(col, v, MaxTextBytes); err != nil {
		return Value{}, fmt.Errorf("%w (from %q)", err, clipText(s))
	}
	return v, nil
}

// clipText shortens text quoted in an error message.
func clipText(s string) string {
	const limit = 64
	if len(s) <= limit {
		return s
	}
	return s[:limit] + "..."
}
