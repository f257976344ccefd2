package codec

// Normalization: one value in, the canonical value of its column type out.
//
// Every JSON decoder in this package (WatermelonDB pull/push bodies, Hikma
// cloud pull responses) runs each column value through normalize, driven
// by the column's schema.Type. The encoders run the same function, so a
// value that survived a decode is encoded unchanged and decodes back equal.
//
// A value is either clean (converted without loss of meaning: "170.00" on a
// Number column is 170), or it has a problem. In Strict mode a problem is
// an error naming table, id, column and value. Otherwise the documented
// fallback below is used, and the problem is counted in Report.Fallbacks
// ("table.column") with the first few cases in Report.Samples: a fallback
// is never silent.
//
// Rules (input → output; "fallback" is the lenient result of a problem):
//
//	type       input                                   output
//	---------  --------------------------------------  --------------------------------------------
//	any        null, optional column                   null
//	any        null, required column                   problem; fallback null (kept: WatermelonDB
//	                                                   applies its default on the device, and we
//	                                                   do not invent data)
//	Timestamp  number                                  epoch ms as is (numbers are ALWAYS ms: no
//	                                                   "<=1e12 means seconds" guess, which breaks
//	                                                   ms dates before 2001)
//	Timestamp  numeric string "1700000000000"          the number, then as above
//	Timestamp  fractional ms (1.5)                     problem; fallback truncated toward zero
//	Timestamp  0 or "0", optional column               null (Hikma's rule for date columns); on a
//	                                                   required column 0 stays 0 (1970)
//	Timestamp  ISO-8601/RFC 3339 string: date, or      epoch ms; no zone means UTC; fraction
//	           date [T| ]hh:mm[:ss[.frac]][zone]       beyond ms truncated
//	Timestamp  year outside 1850-2120, unparseable     problem; fallback null if optional, else 0
//	           string, bool, object, array
//	Date       "YYYY-MM-DD", a real civil date         kept ("2023-02-30" is a problem)
//	Date       "0000-00-00", "" (placeholders)         problem; fallback null
//	Date       ISO datetime string                     its UTC date
//	Date       epoch ms number or numeric string       its UTC date (0 on an optional column: null)
//	Date       year outside 1850-2120, anything else   problem; fallback null (never today's date,
//	                                                   which is what Hikma's toDateSafe does)
//	Number     number                                  float64
//	Number     numeric string "170.00"                 170 (Postgres numeric arrives as a string;
//	                                                   Hikma's sanitizedRaw blanks it: we never do)
//	Number     other string, bool, object, array       problem; fallback null if optional, else 0
//	                                                   (WatermelonDB's own default, but counted)
//	Decimal    decimal string "170.00"                 kept as is (spaces trimmed; must be a finite
//	                                                   float64, as CheckValue requires)
//	Decimal    number                                  its shortest decimal string (170.50 → "170.5";
//	                                                   exact digits when there is no exponent)
//	Decimal    other string, bool, object, array       problem; fallback its text (a decimal is a
//	                                                   string on the device: nothing is blanked)
//	Bool       true/false, numbers 0 and 1             bool
//	Bool       "true"/"false"/"1"/"0" strings          problem; fallback the bool it spells
//	Bool       anything else                           problem; fallback null if optional, else false
//	JSON       object, array, number, bool             its compact JSON text
//	JSON       string holding valid JSON text          that text, compacted
//	JSON       string that is not JSON ("", "abc")     problem; fallback the string JSON-quoted
//	String     string                                  kept byte for byte
//	String     number, bool                            problem; fallback its JSON text ("12", "true")
//	String     object, array                           problem; fallback its compact JSON text
//
// Always errors, whatever the mode: a number literal outside float64
// (1e999; JSON has no NaN or Infinity), and a string or JSON value longer
// than Options.MaxValueBytes. JSON text is kept valid UTF-8 (each invalid
// byte becomes U+FFFD, as encoding/json does for strings).
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
// rules at the top of normalize.go. In strict mode an invalid value is an
// error wrapping ErrInvalidValue; otherwise the fallback is returned with
// fellBack set. The caller adds table, id and column to messages.
func NormalizeValue(col schema.Column, v Value, strict bool) (out Value, fellBack bool, err error) {
	out, problem := normalize(col, inputFromValue(v))
	if problem == "" {
		return out, false, nil
	}
	if strict {
		return Value{}, false, fmt.Errorf("%w: column %s (%s): %s: %s", ErrInvalidValue, col.Name, col.Type, inputFromValue(v).render(), problem)
	}
	return out, true, nil
}

// normalize applies the rules; problem is "" when the input was clean,
// otherwise a short reason and out is the lenient fallback.
func normalize(col schema.Column, in input) (out Value, problem string) {
	if in.kind == inText && col.Type != schema.JSON {
		// JSON text on a non-JSON column: judge the value it holds.
		text, err := compactJSON([]byte(in.s))
		if err != nil || text == "" {
			return fallbackFor(col, in), "invalid JSON text"
		}
		parsed, err := inputFromJSON([]byte(text))
		if err != nil {
			return fallbackFor(col, in), "invalid JSON text"
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
		return normTimestamp(col, in)
	case schema.Date:
		return normDate(col, in)
	case schema.Number:
		return normNumber(col, in)
	case schema.Decimal:
		return normDecimal(in)
	case schema.Bool:
		return normBool(col, in)
	case schema.JSON:
		return normJSON(in)
	case schema.String:
		return normString(in)
	}
	return fallbackFor(col, in), "unknown column type " + col.Type.String()
}

// fallbackFor is the lenient value of an invalid input in col.
func fallbackFor(col schema.Column, in input) Value {
	switch col.Type {
	case schema.Timestamp, schema.Number:
		if col.Optional {
			return Null()
		}
		return Int(0)
	case schema.Bool:
		if col.Optional {
			return Null()
		}
		return Bool(false)
	case schema.Date:
		return Null()
	case schema.JSON:
		if in.kind == inString || in.kind == inText {
			return JSONText(string(appendString(nil, in.s)))
		}
		return Null()
	}
	return String(inputText(in))
}

// inputText is an input's text: a string's content, otherwise its JSON.
func inputText(in input) string {
	switch in.kind {
	case inBool:
		return strconv.FormatBool(in.b)
	case inNull:
		return ""
	}
	return in.s
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

func normTimestamp(col schema.Column, in input) (Value, string) {
	switch in.kind {
	case inNumber:
		return msValue(col, in.f, in)
	case inString:
		s := strings.TrimSpace(in.s)
		if f, ok := numericString(s); ok {
			return msValue(col, f, in)
		}
		if ms, ok := parseISO(s); ok {
			if !plausibleMS(ms) {
				return fallbackFor(col, in), "year outside 1850-2120"
			}
			return Int(ms), ""
		}
		return fallbackFor(col, in), "not a timestamp (epoch ms or ISO-8601)"
	}
	return fallbackFor(col, in), "not a timestamp (epoch ms or ISO-8601)"
}

// msValue applies the number rules of a Timestamp column.
func msValue(col schema.Column, f float64, in input) (Value, string) {
	problem := ""
	if t := math.Trunc(f); t != f {
		f, problem = t, "fractional milliseconds truncated"
	}
	if f == 0 && col.Optional {
		return Null(), problem
	}
	if f < float64(plausibleFrom) || f >= float64(plausibleTo) {
		return fallbackFor(col, in), "year outside 1850-2120"
	}
	return Int(int64(f)), problem
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

func normDate(col schema.Column, in input) (Value, string) {
	var ms int64
	switch in.kind {
	case inString:
		s := strings.TrimSpace(in.s)
		switch {
		case s == "":
			return Null(), "empty date"
		case s == "0000-00-00":
			return Null(), "placeholder date 0000-00-00"
		case isDateShape(s):
			t, err := time.Parse(time.DateOnly, s)
			if err != nil {
				return Null(), "not a real date"
			}
			if !plausibleMS(t.UnixMilli()) {
				return Null(), "year outside 1850-2120"
			}
			return String(s), ""
		}
		if f, ok := numericString(s); ok {
			return dateFromMS(col, f)
		}
		var ok bool
		if ms, ok = parseISO(s); !ok {
			return Null(), "not a date (YYYY-MM-DD, ISO-8601 or epoch ms)"
		}
	case inNumber:
		return dateFromMS(col, in.f)
	default:
		return Null(), "not a date (YYYY-MM-DD, ISO-8601 or epoch ms)"
	}
	if !plausibleMS(ms) {
		return Null(), "year outside 1850-2120"
	}
	return String(time.UnixMilli(ms).UTC().Format(time.DateOnly)), ""
}

func dateFromMS(col schema.Column, f float64) (Value, string) {
	f = math.Trunc(f)
	if f == 0 && col.Optional {
		return Null(), ""
	}
	if f < float64(plausibleFrom) || f >= float64(plausibleTo) {
		return Null(), "year outside 1850-2120"
	}
	return String(time.UnixMilli(int64(f)).UTC().Format(time.DateOnly)), ""
}

func normNumber(col schema.Column, in input) (Value, string) {
	switch in.kind {
	case inNumber:
		return Number(in.f), ""
	case inString:
		if f, ok := numericString(strings.TrimSpace(in.s)); ok {
			return Number(f), ""
		}
		return fallbackFor(col, in), "not a number"
	}
	return fallbackFor(col, in), "not a number"
}

func normDecimal(in input) (Value, string) {
	switch in.kind {
	case inString:
		s := strings.TrimSpace(in.s)
		if _, ok := numericString(s); ok {
			return String(s), ""
		}
		return String(in.s), "not a decimal number"
	case inNumber:
		return String(decimalString(in.s, in.f)), ""
	}
	return String(inputText(in)), "not a decimal number"
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

func normBool(col schema.Column, in input) (Value, string) {
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
		switch strings.ToLower(strings.TrimSpace(in.s)) {
		case "true", "1":
			return Bool(true), "a string in a bool column"
		case "false", "0":
			return Bool(false), "a string in a bool column"
		}
	}
	return fallbackFor(col, in), "not a bool"
}

func normJSON(in input) (Value, string) {
	switch in.kind {
	case inRaw:
		return JSONText(in.s), ""
	case inNumber:
		return JSONText(in.s), ""
	case inBool:
		return JSONText(strconv.FormatBool(in.b)), ""
	case inString, inText:
		if json.Valid([]byte(in.s)) {
			text, err := compactJSON([]byte(in.s))
			if err == nil {
				return JSONText(text), ""
			}
		}
		return JSONText(string(appendString(nil, in.s))), "not JSON text"
	}
	return Null(), "not JSON"
}

func normString(in input) (Value, string) {
	switch in.kind {
	case inString:
		return String(in.s), ""
	case inNumber:
		return String(in.s), "a number in a string column"
	case inBool:
		return String(strconv.FormatBool(in.b)), "a bool in a string column"
	}
	return String(in.s), "JSON in a string column"
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
		return 0, false
	}
	year, ok1 := num(s[0:4])
	month, ok2 := num(s[5:7])
	day, ok3 := num(s[8:10])
	if !ok1 || !ok2 || !ok3 || month < 1 || month > 12 || day < 1 || day > daysIn(year, month) {
		return 0, false
	}
	var hour, minute, sec, nsec, offset int
	rest := s[10:]
	if rest != "" {
		if rest[0] != 'T' && rest[0] != 't' && rest[0] != ' ' {
			return 0, false
		}
		rest = rest[1:]
		if len(rest) < 5 || rest[2] != ':' {
			return 0, false
		}
		var ok1, ok2 bool
		hour, ok1 = num(rest[0:2])
		minute, ok2 = num(rest[3:5])
		if !ok1 || !ok2 || hour > 23 || minute > 59 {
			return 0, false
		}
		rest = rest[5:]
		if len(rest) >= 3 && rest[0] == ':' {
			var ok bool
			if sec, ok = num(rest[1:3]); !ok || sec > 59 {
				return 0, false
			}
			rest = rest[3:]
			if len(rest) > 0 && (rest[0] == '.' || rest[0] == ',') {
				i := 1
				for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
					i++
				}
				digits := rest[1:i]
				if len(digits) == 0 || len(digits) > 9 {
					return 0, false
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
					return 0, false
				}
				zh, ok = num(z[0:2])
				if ok {
					zm, ok = num(z[3:5])
				}
			}
			if !ok || zh > 23 || zm > 59 {
				return 0, false
			}
			offset = sign * (zh*3600 + zm*60)
		default:
			return 0, false
		}
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC)
	return t.Add(-time.Duration(offset) * time.Second).UnixMilli(), true
}

func daysIn(year, month int) int {
	return time.Date(year, time.Month(month)+1, 0, 0, 0, 0, 0, time.UTC).Day()
}
