package codec

// Normalization: one value in, the canonical value of its column type out,
// or a rejection. Lossless or refuses (DESIGN.md "Data"):
//
//   - kept: the value is stored as it came and comes back unchanged;
//   - converted by a documented rule that keeps what the value means
//     (the instant, the number, the JSON value), so the original is
//     recoverable from the result and the rule;
//   - rejected: the record is refused with an error wrapping
//     ErrInvalidValue that names table, id, column, value and reason.
//
// Never a silent 0, 1970, false, null or quoting. The full table is the
// "Normalization rules" section of README.md; in short:
//
//	type       kept                              converted (rule)                     rejected
//	---------  --------------------------------  -----------------------------------  ---------------------------
//	any        null on an optional column                                             null on a required column
//	Timestamp  integer ms, |n| >= 4765132800,    integer seconds 4765133 <= |n| <     fractions, years outside
//	           years 1850-2120; 0                4765132800 (x1000); numeric string   1850-2120, 0 < |n| < 4765133,
//	                                             (its number); ISO-8601 (its ms)      sub-ms digits, other types
//	Date       "YYYY-MM-DD" (1850-2120); ""      ISO-8601 or epoch ms of a UTC        other times, ambiguous or
//	                                             midnight (its date)                  zero numbers, other types
//	Number     number                            numeric string ("170.00": 170)       other strings, bools, JSON
//	Decimal    decimal string; ""                number (shortest decimal string),    other strings, bools, JSON
//	                                             spaces around a decimal trimmed
//	Bool       true, false                       numbers 0 and 1                      strings, other numbers
//	JSON       a string (JSON text or not: "",   object, array, number, bool (its     -
//	           "abc", "{\"a\": 1}"), as is       compact JSON text)
//	String     string                                                                 numbers, bools, JSON
//
// Timestamps: the seconds band (|n| < 4765132800, i.e. 2121-01-01 in
// seconds; down to 1850 on the negative side) and the millisecond band
// (|n| >= 4765132800, 1850-2120) never overlap, so a number is never read
// in the wrong unit. The price: an instant within 4765132800 ms (55 days)
// of 1970-01-01, other than 1970-01-01T00:00:00Z itself, is refused in
// every form, because it could not be sent back as a number unambiguously.
//
// A number literal outside float64 (1e999) and a string or JSON value
// longer than Options.MaxValueBytes also reject the record. JSON text is
// kept valid UTF-8 (each invalid byte becomes U+FFFD, as encoding/json
// does for strings).
//
// Columns the catalog does not know ("unknown columns", kept unless
// Options.RejectUnknownColumns) are not normalized: strings, numbers and
// bools keep their JSON kind, objects and arrays become JSON text.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/clinicsync/clinicsync/codec/schema"
)

// inKind is the JSON shape of an input value.
type inKind uint8

const (
	inNull   inKind = iota
	inString        // s is the decoded string
	inNumber        // s is the number literal, f its finite value
	inBool          // b
	inRaw           // s is the compact JSON text of an object or array
	inText          // s is JSON text from a KindJSON Value (not yet checked)
)

// input is one value as it arrived, before normalization.
type input struct {
	kind inKind
	s    string
	f    float64
	b    bool
}

// render shows an input in messages and report samples, shortened.
func (in input) render() string {
	switch in.kind {
	case inString:
		return strconv.Quote(shorten(in.s))
	case inNumber, inRaw, inText:
		return shorten(in.s)
	case inBool:
		return strconv.FormatBool(in.b)
	}
	return "null"
}

func shorten(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	return s[:max] + "…"
}

// inputFromJSON classifies one raw JSON value (as json.Decoder produced
// it, so syntactically valid). A number outside float64 is ErrNonFinite.
func inputFromJSON(raw []byte) (input, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return input{}, fmt.Errorf("%w: empty value", ErrMalformed)
	}
	switch raw[0] {
	case 'n':
		return input{kind: inNull}, nil
	case 't', 'f':
		return input{kind: inBool, b: raw[0] == 't'}, nil
	case '"':
		s, ok := unquote(raw)
		if !ok {
			return input{}, fmt.Errorf("%w: bad string %s", ErrMalformed, shorten(string(raw)))
		}
		return input{kind: inString, s: s}, nil
	case '{', '[':
		text, err := compactJSON(raw)
		if err != nil {
			return input{}, err
		}
		return input{kind: inRaw, s: text}, nil
	}
	lit := string(raw)
	f, err := strconv.ParseFloat(lit, 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return input{}, fmt.Errorf("%w: %s", ErrNonFinite, shorten(lit))
	}
	return input{kind: inNumber, s: lit, f: f}, nil
}

// inputFromValue turns a Value back into an input, for the encoders and
// NormalizeValue.
func inputFromValue(v Value) input {
	switch v.Kind {
	case KindString:
		return input{kind: inString, s: v.Str}
	case KindNumber:
		return input{kind: inNumber, s: string(appendNumber(nil, v.Num)), f: v.Num}
	case KindBool:
		return input{kind: inBool, b: v.Bool}
	case KindJSON:
		return input{kind: inText, s: v.Str}
	}
	return input{kind: inNull}
}

// compactJSON returns the compact form of valid JSON text, with invalid
// UTF-8 replaced byte by byte by U+FFFD (so that it survives a trip
// through a JSON string unchanged).
func compactJSON(raw []byte) (string, error) {
	var buf bytes.Buffer
	buf.Grow(len(raw))
	if err := json.Compact(&buf, raw); err != nil {
		return "", fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return validUTF8(buf.String()), nil
}

// validUTF8 replaces each invalid byte by U+FFFD, as encoding/json does
// when it decodes a string.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b.WriteRune(utf8.RuneError)
		} else {
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// NormalizeValue converts v to the canonical value of col, following the
// rules at the top of normalize.go and in README.md. A value that is
// neither kept nor converted by a documented rule is an error wrapping
// ErrInvalidValue that names the column, the value and the reason; the
// caller adds table and id.
func NormalizeValue(col schema.Column, v Value) (Value, error) {
	in := inputFromValue(v)
	out, reason := normalize(col, in)
	if reason != "" {
		return Value{}, fmt.Errorf("%w: column %s (%s): %s: %s", ErrInvalidValue, col.Name, col.Type, in.render(), reason)
	}
	return out, nil
}

// normalize applies the rules; reason is "" when the value is kept or
// converted, otherwise why it is rejected (out is then null).
func normalize(col schema.Column, in input) (out Value, reason string) {
	if in.kind == inText && col.Type != schema.JSON {
		// JSON text on a non-JSON column: judge the value it holds.
		text, err := compactJSON([]byte(in.s))
		if err != nil || text == "" {
			return Null(), "invalid JSON text"
		}
		parsed, err := inputFromJSON([]byte(text))
		if err != nil {
			return Null(), "invalid JSON text"
		}
		in = parsed
	}
	if in.kind == inNull {
		if col.Optional {
			return Null(), ""
		}
		return Null(), "null in a required column"
	}
	switch col.Type {
	case schema.Timestamp:
		return normTimestamp(in)
	case schema.Date:
		return normDate(in)
	case schema.Number:
		return normNumber(in)
	case schema.Decimal:
		return normDecimal(in)
	case schema.Bool:
		return normBool(in)
	case schema.JSON:
		return normJSON(in)
	case schema.String:
		return normString(in)
	}
	return Null(), "unknown column type " + col.Type.String()
}

// isNumeric reports whether s is a decimal number: digits with an
// optional sign, fraction and exponent, as the regular expression
// ^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$ (no hex, no
// underscores, no NaN/Inf).
func isNumeric(s string) bool {
	i := 0
	digits := func() int {
		start := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		return i - start
	}
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		i++
	}
	n := digits()
	if i < len(s) && s[i] == '.' {
		i++
		n += digits()
	}
	if n == 0 {
		return false
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == len(s)
}

// numericString parses a trimmed numeric string to a finite float.
func numericString(s string) (float64, bool) {
	if !isNumeric(s) {
		return 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, false
	}
	return f, true
}

// epochWindow is where the seconds and millisecond readings of a number
// meet: 2121-01-01T00:00:00Z in seconds. A number n with |n| below it is
// seconds, at or above it milliseconds; an instant closer than it (in ms)
// to 1970-01-01, other than 0, cannot be written as a number that reads
// back unambiguously, so it is refused.
const epochWindow = 4765132800

// validInstant reports whether ms is an instant a Timestamp column can
// hold: 0, or years 1850-2120 outside the window around 1970-01-01.
func validInstant(ms int64) bool {
	return ms == 0 || (ms >= plausibleFrom && ms < plausibleTo && (ms >= epochWindow || ms <= -epochWindow))
}

const (
	reasonTimestamp = "not a timestamp (epoch ms, epoch seconds or ISO-8601)"
	reasonRange     = "year outside 1850-2120"
	reasonWindow    = "within 55 days of 1970-01-01: seconds and milliseconds cannot be told apart (send ISO-8601)"
)

func normTimestamp(in input) (Value, string) {
	switch in.kind {
	case inNumber:
		return instantFromNumber(in.f)
	case inString:
		s := strings.TrimSpace(in.s)
		if f, ok := numericString(s); ok {
			return instantFromNumber(f)
		}
		ms, ok, subMS := parseISOExact(s)
		switch {
		case !ok:
			return Null(), reasonTimestamp
		case subMS:
			return Null(), "precision finer than a millisecond"
		case !validInstant(ms):
			return Null(), instantReason(ms)
		}
		return Int(ms), ""
	}
	return Null(), reasonTimestamp
}

// instantFromNumber reads an epoch number by its magnitude band:
// seconds when |n| < epochWindow (converted ×1000), else milliseconds.
func instantFromNumber(f float64) (Value, string) {
	if f != math.Trunc(f) {
		return Null(), "fractional epoch time (send integer milliseconds)"
	}
	if f <= -float64(plausibleTo) || f >= float64(plausibleTo) {
		return Null(), reasonRange
	}
	n := int64(f)
	if n > -epochWindow && n < epochWindow {
		n *= 1000 // seconds
	}
	if !validInstant(n) {
		return Null(), instantReason(n)
	}
	return Int(n), ""
}

func instantReason(ms int64) string {
	if ms < plausibleFrom || ms >= plausibleTo {
		return reasonRange
	}
	return reasonWindow
}

func plausibleMS(ms int64) bool { return ms >= plausibleFrom && ms < plausibleTo }

// isDateShape reports whether s looks like YYYY-MM-DD.
func isDateShape(s string) bool {
	if len(s) != 10 || s[4] != '-' || s[7] != '-' {
		return false
	}
	for i := 0; i < 10; i++ {
		if i != 4 && i != 7 && (s[i] < '0' || s[i] > '9') {
			return false
		}
	}
	return true
}

const (
	reasonDate   = "not a date (YYYY-MM-DD, ISO-8601 UTC midnight or epoch ms)"
	dayMS        = 24 * 60 * 60 * 1000
	reasonMidday = "not a UTC midnight: the time of day would be lost (send YYYY-MM-DD)"
)

func normDate(in input) (Value, string) {
	switch in.kind {
	case inString:
		s := in.s
		switch {
		case s == "":
			return String(""), "" // WatermelonDB's default for a string column: no date
		case s == "0000-00-00":
			return Null(), "placeholder date 0000-00-00"
		case isDateShape(s):
			t, err := time.Parse(time.DateOnly, s)
			if err != nil {
				return Null(), "not a real date"
			}
			if !plausibleMS(t.UnixMilli()) {
				return Null(), reasonRange
			}
			return String(s), ""
		}
		if f, ok := numericString(s); ok {
			return dateFromMS(f)
		}
		ms, ok, subMS := parseISOExact(s)
		if !ok {
			return Null(), reasonDate
		}
		if subMS {
			return Null(), reasonMidday
		}
		return dateFromMS(float64(ms))
	case inNumber:
		return dateFromMS(in.f)
	}
	return Null(), reasonDate
}

// dateFromMS is the UTC date of an epoch ms number that is a UTC
// midnight in 1850-2120 and not within the seconds band (where a number
// could be seconds: a birth date in seconds must not become January 1970).
func dateFromMS(f float64) (Value, string) {
	switch {
	case f != math.Trunc(f):
		return Null(), reasonMidday
	case f == 0:
		return Null(), "0 is not a date (1970-01-01 is not assumed)"
	case f < float64(plausibleFrom) || f >= float64(plausibleTo):
		return Null(), reasonRange
	case f > -epochWindow && f < epochWindow:
		return Null(), "an epoch number within 55 days of 1970: seconds or milliseconds? (send YYYY-MM-DD)"
	case int64(f)%dayMS != 0:
		return Null(), reasonMidday
	}
	return String(time.UnixMilli(int64(f)).UTC().Format(time.DateOnly)), ""
}

func normNumber(in input) (Value, string) {
	switch in.kind {
	case inNumber:
		return Number(in.f), ""
	case inString:
		if f, ok := numericString(strings.TrimSpace(in.s)); ok {
			return Number(f), ""
		}
	}
	return Null(), "not a number"
}

func normDecimal(in input) (Value, string) {
	switch in.kind {
	case inString:
		if in.s == "" {
			return String(""), "" // WatermelonDB's default for a string column
		}
		s := strings.TrimSpace(in.s)
		if _, ok := numericString(s); ok {
			return String(s), ""
		}
	case inNumber:
		return String(decimalString(in.s, in.f)), ""
	}
	return Null(), "not a decimal number"
}

// decimalString is the shortest decimal string of a number literal: the
// literal's own digits when it has no exponent (trailing fraction zeros
// dropped, so large integers are exact), else the float's shortest form.
func decimalString(lit string, f float64) string {
	if strings.ContainsAny(lit, "eE") || !isNumeric(lit) {
		return string(appendNumber(nil, f))
	}
	neg := strings.HasPrefix(lit, "-")
	lit = strings.TrimLeft(lit, "+-")
	whole, frac, _ := strings.Cut(lit, ".")
	whole = strings.TrimLeft(whole, "0")
	frac = strings.TrimRight(frac, "0")
	if whole == "" {
		whole = "0"
	}
	out := whole
	if frac != "" {
		out += "." + frac
	}
	if neg && out != "0" {
		out = "-" + out
	}
	return out
}

func normBool(in input) (Value, string) {
	switch in.kind {
	case inBool:
		return Bool(in.b), ""
	case inNumber:
		switch in.f {
		case 0:
			return Bool(false), ""
		case 1:
			return Bool(true), ""
		}
	case inString:
		return Null(), "a string in a bool column (send true or false)"
	}
	return Null(), "not a bool (true, false, 0 or 1)"
}

// normJSON: a JSON column holds JSON text on the device, in a string
// column. A string is kept as it came: JSON text as JSON text, anything
// else ("", WatermelonDB's default, or plain text) as a string, never
// quoted. A raw JSON value becomes its compact text.
func normJSON(in input) (Value, string) {
	switch in.kind {
	case inRaw:
		return JSONText(in.s), ""
	case inNumber:
		return JSONText(in.s), ""
	case inBool:
		return JSONText(strconv.FormatBool(in.b)), ""
	case inString, inText:
		s := validUTF8(in.s)
		if json.Valid([]byte(s)) {
			return JSONText(s), ""
		}
		return String(s), ""
	}
	return Null(), "not JSON"
}

func normString(in input) (Value, string) {
	switch in.kind {
	case inString:
		return String(in.s), ""
	case inNumber:
		return Null(), "a number in a string column"
	case inBool:
		return Null(), "a bool in a string column"
	}
	return Null(), "JSON in a string column"
}

// unknownValue is the value of a column the catalog does not know: its
// JSON kind, objects and arrays as JSON text.
func unknownValue(in input) Value {
	switch in.kind {
	case inString:
		return String(in.s)
	case inNumber:
		return Number(in.f)
	case inBool:
		return Bool(in.b)
	case inRaw, inText:
		return JSONText(in.s)
	}
	return Null()
}

// parseISO parses an ISO-8601 / RFC 3339 date or date-time to epoch ms:
//
//	YYYY-MM-DD
//	YYYY-MM-DD(T|t| )hh:mm[:ss[(.|,)f{1,9}]][Z|z|(+|-)hh[[:]mm]]
//
// A missing zone means UTC. Fractions below a millisecond are dropped
// (the instant is floored).
func parseISO(s string) (int64, bool) {
	ms, ok, _ := parseISOExact(s)
	return ms, ok
}

// parseISOExact is parseISO that also reports whether the fraction had
// non-zero digits below the millisecond (lost in the result).
func parseISOExact(s string) (ms int64, ok, subMS bool) {
	num := func(s string) (int, bool) {
		n := 0
		for i := 0; i < len(s); i++ {
			if s[i] < '0' || s[i] > '9' {
				return 0, false
			}
			n = n*10 + int(s[i]-'0')
		}
		return n, len(s) > 0
	}
	if len(s) < 10 || s[4] != '-' || s[7] != '-' {
		return 0, false, false
	}
	year, ok1 := num(s[0:4])
	month, ok2 := num(s[5:7])
	day, ok3 := num(s[8:10])
	if !ok1 || !ok2 || !ok3 || month < 1 || month > 12 || day < 1 || day > daysIn(year, month) {
		return 0, false, false
	}
	var hour, minute, sec, nsec, offset int
	rest := s[10:]
	if rest != "" {
		if rest[0] != 'T' && rest[0] != 't' && rest[0] != ' ' {
			return 0, false, false
		}
		rest = rest[1:]
		if len(rest) < 5 || rest[2] != ':' {
			return 0, false, false
		}
		var ok1, ok2 bool
		hour, ok1 = num(rest[0:2])
		minute, ok2 = num(rest[3:5])
		if !ok1 || !ok2 || hour > 23 || minute > 59 {
			return 0, false, false
		}
		rest = rest[5:]
		if len(rest) >= 3 && rest[0] == ':' {
			var ok bool
			if sec, ok = num(rest[1:3]); !ok || sec > 59 {
				return 0, false, false
			}
			rest = rest[3:]
			if len(rest) > 0 && (rest[0] == '.' || rest[0] == ',') {
				i := 1
				for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
					i++
				}
				digits := rest[1:i]
				if len(digits) == 0 || len(digits) > 9 {
					return 0, false, false
				}
				n, _ := num(digits)
				for range 9 - len(digits) {
					n *= 10
				}
				nsec = n
				rest = rest[i:]
			}
		}
		switch {
		case rest == "":
		case rest == "Z" || rest == "z":
		case rest[0] == '+' || rest[0] == '-':
			sign := 1
			if rest[0] == '-' {
				sign = -1
			}
			z := rest[1:]
			var zh, zm int
			var ok bool
			switch len(z) {
			case 2:
				zh, ok = num(z)
			case 4:
				zh, ok = num(z[0:2])
				if ok {
					zm, ok = num(z[2:4])
				}
			case 5:
				if z[2] != ':' {
					return 0, false, false
				}
				zh, ok = num(z[0:2])
				if ok {
					zm, ok = num(z[3:5])
				}
			}
			if !ok || zh > 23 || zm > 59 {
				return 0, false, false
			}
			offset = sign * (zh*3600 + zm*60)
		default:
			return 0, false, false
		}
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC)
	return t.Add(-time.Duration(offset) * time.Second).UnixMilli(), true, nsec%1e6 != 0
}

func daysIn(year, month int) int {
	return time.Date(year, time.Month(month)+1, 0, 0, 0, 0, 0, time.UTC).Day()
}
