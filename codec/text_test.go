package codec

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/clinicsync/clinicsync/codec/schema"
)

func TestParseText(t *testing.T) {
	col := func(name string, typ schema.Type, optional bool) schema.Column {
		return schema.Column{Name: name, Type: typ, Optional: optional}
	}
	str := col("given_name", schema.String, false)
	optStr := col("camp", schema.String, true)
	num := col("duration", schema.Number, true)
	boolean := col("is_deleted", schema.Bool, false)
	js := col("metadata", schema.JSON, false)
	ts := col("created_at", schema.Timestamp, false)
	optTS := col("deleted_at", schema.Timestamp, true)
	date := col("date_of_birth", schema.Date, false)
	dec := col("height", schema.Decimal, true)

	ok := []struct {
		col  schema.Column
		in   string
		want Value
	}{
		{optStr, "null", Null()},
		{optTS, "null", Null()},
		{num, "null", Null()},
		{str, "Amina", String("Amina")},
		{str, "", String("")},
		{str, " spaced ", String(" spaced ")},
		{str, "NULL", String("NULL")},
		{str, "12", String("12")},
		{num, "12", Number(12)},
		{num, "-3.5", Number(-3.5)},
		{num, "+.5", Number(0.5)},
		{num, "1e3", Number(1000)},
		{num, "170.00", Number(170)},
		{boolean, "true", Bool(true)},
		{boolean, "TRUE", Bool(true)},
		{boolean, "1", Bool(true)},
		{boolean, "false", Bool(false)},
		{boolean, "0", Bool(false)},
		{js, `{"a": 1, "b": [1, 2]}`, JSONText(`{"a":1,"b":[1,2]}`)},
		{js, ` [ ] `, JSONText(`[]`)},
		{js, `"text"`, JSONText(`"text"`)},
		{js, `42`, JSONText(`42`)},
		{ts, "1700000000000", Int(1700000000000)},
		{ts, "2024-03-01", Int(1709251200000)},
		{ts, "2024-03-01T00:00:00Z", Int(1709251200000)},
		{ts, "2024-03-01T02:00:00.250+02:00", Int(1709251200250)},
		{ts, "1900-01-01", Int(-2208988800000)},
		// Numbers below 4765132800 are seconds (the decoders' rule).
		{ts, "1700000000", Int(1700000000000)},
		{ts, "0", Int(0)},
		{date, "1990-02-28", String("1990-02-28")},
		{dec, "170.00", String("170.00")},
		{dec, "-0.5", String("-0.5")},
	}
	for _, c := range ok {
		got, err := ParseText(c.col, c.in)
		if err != nil {
			t.Errorf("ParseText(%s %s, %q): %v", c.col.Name, c.col.Type, c.in, err)
			continue
		}
		if !got.Equal(c.want) {
			t.Errorf("ParseText(%s %s, %q) = %v (%s), want %v (%s)", c.col.Name, c.col.Type, c.in, got, got.Kind, c.want, c.want.Kind)
		}
	}

	bad := []struct {
		col schema.Column
		in  string
	}{
		{str, "null"}, // required
		{js, "null"},  // required
		{num, "abc"},
		{num, ""},
		{num, "NaN"},
		{num, "Inf"},
		{num, "-Infinity"},
		{num, "0x10"},
		{num, "1_000"},
		{num, "1e400"},
		{num, " 12"},
		{boolean, "yes"},
		{boolean, ""},
		{boolean, "2"},
		{js, "{"},
		{js, "abc"},
		{js, ""},
		{js, `{"a":1} x`},
		{ts, "12.5"},
		{ts, "yesterday"},
		{ts, "99999999999999999999"}, // overflows int64
		{ts, "3000-01-01"},           // implausible year
		{ts, "-9000000000000"},       // 1684: implausible
		{ts, "2024-02-30"},
		{ts, "1000"}, // seconds within 55 days of 1970: neither band
		{date, "1990-2-28"},
		{date, "1990-02-30"},
		{date, "28/02/1990"},
		{date, "1990-02-28T00:00:00Z"},
		{dec, "abc"},
		{dec, "NaN"},
		{dec, ""},
		{dec, "1,5"},
		{str, strings.Repeat("x", MaxTextBytes+1)},
	}
	for _, c := range bad {
		got, err := ParseText(c.col, c.in)
		if err == nil {
			t.Errorf("ParseText(%s %s, %q) = %v, want an error", c.col.Name, c.col.Type, c.in, got)
			continue
		}
		if !errors.Is(err, ErrInvalidValue) {
			t.Errorf("ParseText(%s, %q): error %v does not wrap ErrInvalidValue", c.col.Name, c.in, err)
		}
		msg := err.Error()
		if !strings.Contains(msg, c.col.Name) {
			t.Errorf("ParseText(%s, %q): error %q does not name the column", c.col.Name, c.in, msg)
		}
		if len(c.in) < 64 && !strings.Contains(msg, strconv.Quote(c.in)) {
			t.Errorf("ParseText(%s, %q): error %q does not quote the value", c.col.Name, c.in, msg)
		}
	}
}

// ParseText's output is always a value CheckValue accepts, and parsing
// the text form of a string, number or bool gives it back.
func TestParseTextRoundTrip(t *testing.T) {
	cases := []struct {
		col schema.Column
		v   Value
	}{
		{schema.Column{Name: "n", Type: schema.Number}, Number(0.1)},
		{schema.Column{Name: "n", Type: schema.Number}, Number(-1e-7)},
		{schema.Column{Name: "n", Type: schema.Number}, Int(1 << 53)},
		{schema.Column{Name: "b", Type: schema.Bool}, Bool(true)},
		{schema.Column{Name: "t", Type: schema.Timestamp}, Int(1709251200123)},
		{schema.Column{Name: "j", Type: schema.JSON}, JSONText(`{"x":[1,"y"]}`)},
	}
	for _, c := range cases {
		got, err := ParseText(c.col, c.v.String())
		if err != nil {
			t.Errorf("ParseText(%s, %q): %v", c.col.Type, c.v.String(), err)
			continue
		}
		if !got.Equal(c.v) {
			t.Errorf("ParseText(%s, %q) = %v, want %v", c.col.Type, c.v.String(), got, c.v)
		}
	}
}
