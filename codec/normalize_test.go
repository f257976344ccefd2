package codec

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/clinicsync/clinicsync/codec/schema"
	pb "github.com/clinicsync/clinicsync/proto"
)

// normCatalog has, for each type, a required column named after the type
// and an optional one with an _opt suffix.
func normCatalog(t testing.TB) *schema.Catalog {
	t.Helper()
	var cols []schema.Column
	for _, c := range []struct {
		name string
		typ  schema.Type
	}{{"ts", schema.Timestamp}, {"dob", schema.Date}, {"num", schema.Number}, {"dec", schema.Decimal},
		{"flag", schema.Bool}, {"j", schema.JSON}, {"s", schema.String}} {
		cols = append(cols, schema.Column{Name: c.name, Type: c.typ}, schema.Column{Name: c.name + "_opt", Type: c.typ, Optional: true})
	}
	cat, err := schema.NewCatalog(&schema.Table{Name: "t", Flow: schema.Synced, Columns: cols})
	if err != nil {
		t.Fatal(err)
	}
	return cat
}

func ms(s string) Value {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return Int(t.UnixMilli())
}

// decodeOne decodes one column value through the whole WatermelonDB
// path; rejected is the record's rejection, if any.
func decodeOne(t *testing.T, cat *schema.Catalog, col, raw string) (v Value, rejected error) {
	t.Helper()
	body := `{"t":{"created":[{"id":"r1","` + col + `":` + raw + `}]}}`
	cs, rep, err := DecodeChanges([]byte(body), Options{Catalog: cat})
	if err != nil {
		t.Fatalf("%s=%s: whole body refused: %v", col, raw, err)
	}
	if len(rep.Rejected) > 0 {
		if len(rep.Rejected) != 1 || len(cs.Tables["t"].Created) != 0 {
			t.Fatalf("%s=%s: rejected %v, decoded %v", col, raw, rep.Rejected, cs.Tables["t"])
		}
		return Value{}, rep.Rejected[0].Err
	}
	return cs.Tables["t"].Created[0].Cols[col], nil
}

// TestNormalize is the rule table (README.md "Normalization rules"): each
// input is kept, converted by a documented rule, or rejected with a
// reason. Every accepted value then round-trips unchanged through every
// encoding (JSON changes, push, Hikma server shape, protobuf).
func TestNormalize(t *testing.T) {
	cat := normCatalog(t)
	const keep = "" // want: accepted (kept or converted)
	tests := []struct {
		col, raw string
		want     Value
		reject   string // a part of the reason, or keep
	}{
		// Timestamps: integer ms (|n| >= 4765132800) kept.
		{"ts", `1705314600000`, Int(1705314600000), keep},
		{"ts", `978307199000`, Int(978307199000), keep},       // 2000-12-31: ms before 2001 stays ms
		{"ts", `-631152000000`, Int(-631152000000), keep},     // 1950 in ms
		{"ts", `4765132800`, Int(4765132800), keep},           // the band edge: ms (1970-02-25)
		{"ts", `-4765132800`, Int(-4765132800), keep},         //
		{"ts", `0`, Int(0), keep},                             // 1970-01-01 in both units: kept
		{"ts_opt", `0`, Int(0), keep},                         // kept, not turned into null
		{"ts_opt", `1705314600000`, Int(1705314600000), keep}, //
		{"ts", `1.7e12`, Int(1700000000000), keep},            // exponent form of an integer
		// Seconds (|n| < 4765132800) convert by ×1000.
		{"ts", `1705314600`, Int(1705314600000), keep},   // not 1970-01-20
		{"ts", `978307199`, Int(978307199000), keep},     //
		{"ts", `4765132799`, Int(4765132799000), keep},   // 2120-12-31T23:59:59Z
		{"ts", `-631152000`, Int(-631152000000), keep},   // 1950 in seconds
		{"ts", `-3786825600`, Int(-3786825600000), keep}, // 1850-01-01 in seconds
		{"ts", `-86400000`, Int(-86400000000), keep},     // seconds: 1967-04-07
		// Numeric strings: their number, then as above.
		{"ts", `"1705314600000"`, Int(1705314600000), keep},
		{"ts", `" 1705314600000 "`, Int(1705314600000), keep},
		{"ts", `"1705314600"`, Int(1705314600000), keep},
		{"ts_opt", `"0"`, Int(0), keep},
		// ISO-8601 → ms (the same instant).
		{"ts", `"2024-01-15T10:30:00.000Z"`, ms("2024-01-15T10:30:00Z"), keep},
		{"ts", `"2024-01-15T10:30:00Z"`, ms("2024-01-15T10:30:00Z"), keep},
		{"ts", `"2024-01-15T10:30:00.123000Z"`, ms("2024-01-15T10:30:00.123Z"), keep},
		{"ts", `"2024-01-15T10:30:00+03:00"`, ms("2024-01-15T07:30:00Z"), keep},
		{"ts", `"2024-01-15T10:30:00.5-0130"`, ms("2024-01-15T12:00:00.5Z"), keep},
		{"ts", `"2024-01-15 10:30:00.123+00"`, ms("2024-01-15T10:30:00.123Z"), keep},
		{"ts", `"2024-01-15T10:30:00"`, ms("2024-01-15T10:30:00Z"), keep}, // no zone: UTC
		{"ts", `"2024-01-15T10:30"`, ms("2024-01-15T10:30:00Z"), keep},
		{"ts", `"2024-01-15"`, ms("2024-01-15T00:00:00Z"), keep},
		{"ts", `"1969-07-20T20:17:40Z"`, ms("1969-07-20T20:17:40Z"), keep},
		{"ts", `"1970-01-01T00:00:00Z"`, Int(0), keep},
		{"ts_opt", `null`, Null(), keep},
		// Rejected: never a silent 0 or 1970.
		{"ts", `1000000`, Null(), "within 55 days of 1970"},        // seconds → 1970-01-12: neither band
		{"ts", `1000`, Null(), "within 55 days of 1970"},           //
		{"ts", `"1970-01-15T00:00:00Z"`, Null(), "within 55 days"}, // could not be sent back as a number
		{"ts", `1700000000000.7`, Null(), "fractional"},
		{"ts", `1705314600.5`, Null(), "fractional"},
		{"ts", `"2024-01-15T10:30:00.123456Z"`, Null(), "finer than a millisecond"},
		{"ts", `"1700-01-01T00:00:00Z"`, Null(), "year outside 1850-2120"},
		{"ts_opt", `"2200-01-01T00:00:00Z"`, Null(), "year outside 1850-2120"},
		{"ts", `7258118400000`, Null(), "year outside 1850-2120"}, // 2200 as ms
		{"ts", `4765132800000`, Null(), "year outside 1850-2120"}, // 2121 as ms
		{"ts_opt", `-9000000000000`, Null(), "year outside 1850-2120"},
		{"ts", `-3786825601`, Null(), "year outside 1850-2120"}, // 1849 in seconds
		{"ts", `"garbage"`, Null(), "not a timestamp"},
		{"ts", `""`, Null(), "not a timestamp"},
		{"ts", `"2023-02-30T00:00:00Z"`, Null(), "not a timestamp"},
		{"ts", `"2024-01-15T25:00:00Z"`, Null(), "not a timestamp"},
		{"ts", `"NaN"`, Null(), "not a timestamp"},
		{"ts", `"1e999"`, Null(), "not a timestamp"},
		{"ts", `"0x10"`, Null(), "not a timestamp"},
		{"ts", `true`, Null(), "not a timestamp"},
		{"ts_opt", `{"$date":1}`, Null(), "not a timestamp"},
		{"ts", `null`, Null(), "null in a required column"},

		// Dates: civil dates kept; instants at UTC midnight give their date.
		{"dob", `"1990-05-01"`, String("1990-05-01"), keep},
		{"dob", `""`, String(""), keep}, // WatermelonDB's default for a string column
		{"dob", `"1990-05-01T00:00:00.000Z"`, String("1990-05-01"), keep},
		{"dob", `"1990-04-30T22:00:00-02:00"`, String("1990-05-01"), keep},
		{"dob", `641520000000`, String("1990-05-01"), keep},
		{"dob", `"641520000000"`, String("1990-05-01"), keep},
		{"dob", `-631152000000`, String("1950-01-01"), keep},
		{"dob_opt", `null`, Null(), keep},
		{"dob", `"1990-05-01T10:00:00Z"`, Null(), "not a UTC midnight"}, // the time would be lost
		{"dob", `641520000001`, Null(), "not a UTC midnight"},
		{"dob", `641520000`, Null(), "seconds or milliseconds"}, // seconds: never January 1970
		{"dob_opt", `0`, Null(), "0 is not a date"},
		{"dob", `"0000-00-00"`, Null(), "placeholder"},
		{"dob_opt", `"  "`, Null(), "not a date"},
		{"dob", `"garbage"`, Null(), "not a date"}, // never today's date
		{"dob", `"2023-02-30"`, Null(), "not a real date"},
		{"dob", `"2023-13-01"`, Null(), "not a real date"},
		{"dob", `"1700-01-01"`, Null(), "year outside 1850-2120"},
		{"dob", `"01/05/1990"`, Null(), "not a date"},
		{"dob", `true`, Null(), "not a date"},
		{"dob", `null`, Null(), "null in a required column"},

		// Numbers: numeric strings convert to their number (numerically
		// equal; the text "170.00" is not kept). Never blanked.
		{"num", `36.6`, Number(36.6), keep},
		{"num", `12345678901234567890`, Number(12345678901234567890), keep},
		{"num", `"170.00"`, Number(170), keep},
		{"num", `" 65.5 "`, Number(65.5), keep},
		{"num", `"-1e3"`, Number(-1000), keep},
		{"num", `"abc"`, Null(), "not a number"},
		{"num_opt", `""`, Null(), "not a number"},
		{"num", `"NaN"`, Null(), "not a number"},
		{"num", `"Infinity"`, Null(), "not a number"},
		{"num", `"1e999"`, Null(), "not a number"},
		{"num", `true`, Null(), "not a number"},
		{"num_opt", `[1]`, Null(), "not a number"},

		// Decimals: decimal strings kept; numbers give their shortest decimal.
		{"dec", `"170.00"`, String("170.00"), keep},
		{"dec", `""`, String(""), keep},
		{"dec", `" 0.25"`, String("0.25"), keep},
		{"dec", `170.50`, String("170.5"), keep},
		{"dec", `12345678901234567890.10`, String("12345678901234567890.1"), keep},
		{"dec", `1.5e3`, String("1500"), keep},
		{"dec", `-0.0`, String("0"), keep},
		{"dec_opt", `null`, Null(), keep},
		{"dec", `"10mg"`, Null(), "not a decimal"},
		{"dec", `true`, Null(), "not a decimal"},

		// Bools: true/false kept, 0/1 converted; nothing else.
		{"flag", `true`, Bool(true), keep},
		{"flag", `1`, Bool(true), keep},
		{"flag", `0`, Bool(false), keep},
		{"flag", `"maybe"`, Null(), "a string in a bool column"},
		{"flag", `"true"`, Null(), "a string in a bool column"},
		{"flag", `"0"`, Null(), "a string in a bool column"},
		{"flag", `2`, Null(), "not a bool"},
		{"flag_opt", `{}`, Null(), "not a bool"},

		// JSON: a string is kept as it came; raw JSON becomes its text.
		{"j", `""`, String(""), keep},                                       // not "\"\""
		{"j", `"not json"`, String("not json"), keep},                       // not quoted
		{"j", `"{\"a\": 1}"`, JSONText(`{"a": 1}`), keep},                   // JSON text, byte for byte
		{"j", `"[1, 2]"`, JSONText(`[1, 2]`), keep},                         //
		{"j", `"\"quoted\""`, JSONText(`"quoted"`), keep},                   // a JSON string literal is JSON text
		{"j", `"5"`, JSONText(`5`), keep},                                   //
		{"j", `{"b": 1, "a": [1, 2]}`, JSONText(`{"b":1,"a":[1,2]}`), keep}, // compact text, order kept
		{"j", `[]`, JSONText(`[]`), keep},
		{"j", `5`, JSONText(`5`), keep},
		{"j", `false`, JSONText(`false`), keep},
		{"j_opt", `null`, Null(), keep},
		{"j", `null`, Null(), "null in a required column"},

		// Strings: kept byte for byte; other kinds rejected.
		{"s", `"x"`, String("x"), keep},
		{"s", `""`, String(""), keep},
		{"s_opt", `null`, Null(), keep},
		{"s", `12`, Null(), "a number in a string column"},
		{"s", `1.50`, Null(), "a number in a string column"},
		{"s", `false`, Null(), "a bool in a string column"},
		{"s", `{"a": 1}`, Null(), "JSON in a string column"},
	}
	for _, tt := range tests {
		t.Run(tt.col+"="+tt.raw, func(t *testing.T) {
			got, err := decodeOne(t, cat, tt.col, tt.raw)
			if tt.reject != keep {
				if err == nil {
					t.Fatalf("accepted as %s (%s), want rejected: %s", got, got.Kind, tt.reject)
				}
				msg := err.Error()
				if !errors.Is(err, ErrInvalidValue) || !strings.Contains(msg, "t/r1."+tt.col) || !strings.Contains(msg, tt.reject) {
					t.Fatalf("rejection %q does not name t/r1.%s with %q", msg, tt.col, tt.reject)
				}
				return
			}
			if err != nil {
				t.Fatalf("rejected: %v", err)
			}
			if !got.Equal(tt.want) {
				t.Fatalf("got %s (%s), want %s (%s)", got, got.Kind, tt.want, tt.want.Kind)
			}
			col, _ := mustTable(t, cat).Column(tt.col)
			if err := CheckValue(col, got, 0); err != nil {
				t.Errorf("accepted value fails CheckValue: %v", err)
			}
			checkRoundTrips(t, cat, tt.col, got)
		})
	}
}

func mustTable(t *testing.T, cat *schema.Catalog) *schema.Table {
	t.Helper()
	tbl, ok := cat.Table("t")
	if !ok {
		t.Fatal("no table t")
	}
	return tbl
}

// checkRoundTrips sends v through every encoder and back.
func checkRoundTrips(t *testing.T, cat *schema.Catalog, col string, v Value) {
	t.Helper()
	cs := NewChangeset()
	cs.Timestamp = 1705315000000
	cs.Table("t").Updated = []Row{{Table: "t", ID: "r1", Cols: map[string]Value{col: v}}}
	o := Options{Catalog: cat}
	decode := map[string]func([]byte) (*Changeset, Report, error){
		"changes": func(b []byte) (*Changeset, Report, error) { return DecodeChanges(b, o) },
		"pull":    func(b []byte) (*Changeset, Report, error) { return DecodePullResponse(b, o) },
		"hikma":   func(b []byte) (*Changeset, Report, error) { return DecodeHikmaPull(b, o) },
	}
	encode := map[string]func(*bytes.Buffer) error{
		"changes": func(b *bytes.Buffer) error { return EncodeChanges(b, cs, o) },
		"pull":    func(b *bytes.Buffer) error { return EncodePullResponse(b, cs, o) },
		"hikma":   func(b *bytes.Buffer) error { return EncodeHikma(b, cs, o) },
	}
	for _, shape := range []string{"changes", "pull", "hikma"} {
		var buf bytes.Buffer
		if err := encode[shape](&buf); err != nil {
			t.Fatalf("%s: encoding %s: %v", shape, v, err)
		}
		back, rep, err := decode[shape](buf.Bytes())
		if err != nil || len(rep.Rejected) != 0 {
			t.Fatalf("%s: decoding %s: %v %v", shape, buf.Bytes(), err, rep.Rejected)
		}
		if got := back.Tables["t"].Updated[0].Cols[col]; !got.Equal(v) {
			t.Errorf("%s: %s (%s) came back as %s (%s) via %s", shape, v, v.Kind, got, got.Kind, buf.Bytes())
		}
	}
	b, err := Marshal(ChangesetToProto(cs))
	if err != nil {
		t.Fatal(err)
	}
	var p pb.Changeset
	if err := Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	back, _, err := ChangesetFromProto(&p, cat)
	if err != nil {
		t.Fatalf("protobuf: %v", err)
	}
	if got := back.Tables["t"].Updated[0].Cols[col]; !got.Equal(v) {
		t.Errorf("protobuf: %s (%s) came back as %s (%s)", v, v.Kind, got, got.Kind)
	}
}

// TestNormalizeMessage: a rejection names table, id, column, the value
// and the reason.
func TestNormalizeMessage(t *testing.T) {
	_, err := decodeOne(t, normCatalog(t), "flag", `"maybe"`)
	want := `codec: invalid value: t/r1.flag (bool): "maybe": a string in a bool column (send true or false)`
	if err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}
}

func TestNormalizeValue(t *testing.T) {
	num := schema.Column{Name: "height_cm", Type: schema.Number, Optional: true}
	ts := schema.Column{Name: "created_at", Type: schema.Timestamp}
	if v, err := NormalizeValue(num, String("170.00")); err != nil || !v.Equal(Number(170)) {
		t.Errorf("170.00: %v %v", v, err)
	}
	if v, err := NormalizeValue(ts, String("2024-01-15T10:30:00Z")); err != nil || !v.Equal(Int(1705314600000)) {
		t.Errorf("ISO: %v %v", v, err)
	}
	if v, err := NormalizeValue(ts, Int(1705314600)); err != nil || !v.Equal(Int(1705314600000)) {
		t.Errorf("seconds: %v %v", v, err)
	}
	if _, err := NormalizeValue(ts, String("soon")); !errors.Is(err, ErrInvalidValue) || !strings.Contains(err.Error(), "created_at") || !strings.Contains(err.Error(), `"soon"`) {
		t.Errorf("garbage: %v", err)
	}
	// JSON text is judged by what it holds on non-JSON columns.
	if v, err := NormalizeValue(num, JSONText("42")); err != nil || !v.Equal(Number(42)) {
		t.Errorf("JSON 42: %v %v", v, err)
	}
	// Canonical values are fixed points.
	for _, tbl := range schema.Default().Names() {
		table, _ := schema.Default().Table(tbl)
		for variant := range 3 {
			for _, c := range table.Columns {
				in := sampleValue(c, variant)
				out, err := NormalizeValue(c, in)
				if err != nil || !out.Equal(in) {
					t.Errorf("%s.%s: %s → %s %v", tbl, c.Name, in, out, err)
				}
			}
		}
	}
}

func TestParseISO(t *testing.T) {
	good := map[string]string{
		"2024-01-15":                     "2024-01-15T00:00:00Z",
		"2024-02-29T23:59:59.999Z":       "2024-02-29T23:59:59.999Z",
		"2024-01-15t10:30:00z":           "2024-01-15T10:30:00Z",
		"2024-01-15T10:30:00,25Z":        "2024-01-15T10:30:00.25Z",
		"2024-01-15T10:30:00.123456789Z": "2024-01-15T10:30:00.123Z",
		"2024-01-15T00:30:00+01":         "2024-01-14T23:30:00Z",
		"1850-01-01T00:00:00Z":           "1850-01-01T00:00:00Z",
	}
	for in, want := range good {
		got, ok := parseISO(in)
		if w := ms(want); !ok || got != int64(w.Num) {
			t.Errorf("parseISO(%q) = %d %v, want %s", in, got, ok, want)
		}
	}
	for _, in := range []string{"", "2024", "2024-1-15", "2023-02-29", "2024-01-15T", "2024-01-15T10", "2024-01-15T10:3",
		"2024-01-15T10:30:60Z", "2024-01-15T10:30:00.Z", "2024-01-15T10:30:00.1234567890Z", "2024-01-15T10:30:00+1",
		"2024-01-15T10:30:00+01:3", "2024-01-15T10:30:00 UTC", "2024-01-15X10:30", "+2024-01-15", "２０２４-01-15"} {
		if got, ok := parseISO(in); ok {
			t.Errorf("parseISO(%q) accepted as %d", in, got)
		}
	}
}

// FuzzNormalize: an accepted value has the kind of the column type (or
// is a string in a JSON column), is a fixed point, and passes CheckValue
// (written independently, for kv); a rejected value has a reason.
func FuzzNormalize(f *testing.F) {
	for _, s := range []string{`"2024-01-15T10:30:00.000Z"`, `"170.00"`, `0`, `1.5`, `"0000-00-00"`, `{"a":[1]}`, `"{\"a\":1}"`,
		`"abc"`, `null`, `true`, `"1"`, `-0.0`, `1e308`, `"1e999"`, `" 12 "`, `"1990-05-01"`, `[]`, `"\u00e9\ud800"`,
		`1705314600`, `""`, `4765132800`, `-3786825600`} {
		for typ := schema.String; typ <= schema.Decimal; typ++ {
			f.Add(uint8(typ), typ%2 == 0, s)
		}
	}
	want := map[schema.Type]Kind{schema.String: KindString, schema.Number: KindNumber, schema.Bool: KindBool,
		schema.JSON: KindJSON, schema.Timestamp: KindNumber, schema.Date: KindString, schema.Decimal: KindString}
	f.Fuzz(func(t *testing.T, typ uint8, optional bool, raw string) {
		col := schema.Column{Name: "c", Type: schema.Type(typ%7 + 1), Optional: optional}
		if !json.Valid([]byte(raw)) {
			return
		}
		in, err := inputFromJSON([]byte(raw))
		if err != nil {
			if !errors.Is(err, ErrNonFinite) {
				t.Fatalf("inputFromJSON(%q): %v", raw, err)
			}
			return
		}
		out, reason := normalize(col, in)
		if reason != "" {
			return
		}
		if out.Kind != KindNull && out.Kind != want[col.Type] && !(col.Type == schema.JSON && out.Kind == KindString) {
			t.Fatalf("%s %q → %s of kind %s", col.Type, raw, out, out.Kind)
		}
		again, reason2 := normalize(col, inputFromValue(out))
		if !again.Equal(out) || reason2 != "" {
			t.Fatalf("%s %q → %s → %s (%s): not a fixed point", col.Type, raw, out, again, reason2)
		}
		if err := CheckValue(col, out, 0); err != nil {
			t.Fatalf("%s %q → %s, but CheckValue: %v", col.Type, raw, out, err)
		}
	})
}
