package codec

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/clinicsync/clinicsync/codec/schema"
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

// decodeOne decodes one column value through the whole WatermelonDB path.
func decodeOne(t *testing.T, cat *schema.Catalog, col, raw string, strict bool) (Value, Report, error) {
	t.Helper()
	body := `{"t":{"created":[{"id":"r1","` + col + `":` + raw + `}]}}`
	cs, rep, err := DecodeChanges([]byte(body), Options{Catalog: cat, Strict: strict})
	if err != nil {
		return Value{}, rep, err
	}
	return cs.Tables["t"].Created[0].Cols[col], rep, nil
}

func TestNormalize(t *testing.T) {
	cat := normCatalog(t)
	tests := []struct {
		col, raw string
		want     Value
		fallback bool // a problem: counted when lenient, an error when strict
	}{
		// Timestamps: ISO → ms.
		{"ts", `"2024-01-15T10:30:00.000Z"`, ms("2024-01-15T10:30:00Z"), false},
		{"ts", `"2024-01-15T10:30:00Z"`, ms("2024-01-15T10:30:00Z"), false},
		{"ts", `"2024-01-15T10:30:00.123456Z"`, ms("2024-01-15T10:30:00.123Z"), false},
		{"ts", `"2024-01-15T10:30:00+03:00"`, ms("2024-01-15T07:30:00Z"), false},
		{"ts", `"2024-01-15T10:30:00.5-0130"`, ms("2024-01-15T12:00:00.5Z"), false},
		{"ts", `"2024-01-15 10:30:00.123+00"`, ms("2024-01-15T10:30:00.123Z"), false},
		{"ts", `"2024-01-15T10:30:00"`, ms("2024-01-15T10:30:00Z"), false}, // no zone: UTC
		{"ts", `"2024-01-15T10:30"`, ms("2024-01-15T10:30:00Z"), false},
		{"ts", `"2024-01-15"`, ms("2024-01-15T00:00:00Z"), false},
		{"ts", `"1969-07-20T20:17:40Z"`, ms("1969-07-20T20:17:40Z"), false},
		// Numbers and numeric strings are milliseconds, always.
		{"ts", `1700000000000`, Int(1700000000000), false},
		{"ts", `"1700000000000"`, Int(1700000000000), false},
		{"ts", `" 1700000000000 "`, Int(1700000000000), false},
		{"ts", `978307199000`, Int(978307199000), false},                    // 2000-12-31: ms before 2001 stays ms
		{"ts", `"978307199000"`, Int(978307199000), false},                  // same as a string
		{"ts", `1000000`, Int(1000000), false},                              // 1970-01-01T00:16:40Z, not seconds
		{"ts", `1.7e12`, Int(1700000000000), false},                         // exponent form
		{"ts", `-86400000`, Int(-86400000), false},                          // before 1970
		{"ts", `0`, Int(0), false},                                          // required: 0 is 1970
		{"ts_opt", `0`, Null(), false},                                      // optional 0 → null (Hikma rule)
		{"ts_opt", `"0"`, Null(), false},                                    // optional "0" → null
		{"ts_opt", `1705314600000`, Int(1705314600000), false},              // optional keeps values
		{"ts", `1700000000000.7`, Int(1700000000000), true},                 // fractional ms truncated, counted
		{"ts", `"1700-01-01T00:00:00Z"`, Int(0), true},                      // year 1700
		{"ts_opt", `"1700-01-01T00:00:00Z"`, Null(), true},                  //
		{"ts", `"2200-01-01T00:00:00Z"`, Int(0), true},                      // year 2200
		{"ts", `7258118400000`, Int(0), true},                               // 2200 as ms
		{"ts_opt", `-9000000000000`, Null(), true},                          // 1684 as ms
		{"ts", `"garbage"`, Int(0), true},                                   //
		{"ts", `""`, Int(0), true},                                          //
		{"ts", `"2023-02-30T00:00:00Z"`, Int(0), true},                      // not a real day
		{"ts", `"2024-01-15T25:00:00Z"`, Int(0), true},                      //
		{"ts", `"NaN"`, Int(0), true},                                       //
		{"ts", `"1e999"`, Int(0), true},                                     //
		{"ts", `"0x10"`, Int(0), true},                                      //
		{"ts", `true`, Int(0), true},                                        //
		{"ts_opt", `{"$date":1}`, Null(), true},                             //
		{"ts", `null`, Null(), true},                                        // null in a required column: kept, counted
		{"ts_opt", `null`, Null(), false},                                   //
		{"dob", `"1990-05-01"`, String("1990-05-01"), false},                // civil date kept
		{"dob", `"1990-05-01T00:00:00.000Z"`, String("1990-05-01"), false},  // ISO midnight
		{"dob", `"1990-04-30T22:00:00-02:00"`, String("1990-05-01"), false}, // UTC date
		{"dob", `641520000000`, String("1990-05-01"), false},                // epoch ms
		{"dob", `"641520000000"`, String("1990-05-01"), false},              // epoch ms string
		{"dob", `-631152000000`, String("1950-01-01"), false},               // before 1970
		{"dob_opt", `0`, Null(), false},                                     // optional 0 → null
		{"dob", `"0000-00-00"`, Null(), true},                               // placeholder
		{"dob", `""`, Null(), true},                                         //
		{"dob_opt", `"  "`, Null(), true},                                   //
		{"dob", `"garbage"`, Null(), true},                                  // never today's date
		{"dob", `"2023-02-30"`, Null(), true},                               // not a real date
		{"dob", `"2023-13-01"`, Null(), true},                               //
		{"dob", `"1700-01-01"`, Null(), true},                               // out of range
		{"dob", `"01/05/1990"`, Null(), true},                               //
		{"dob", `true`, Null(), true},                                       //
		{"dob_opt", `null`, Null(), false},                                  //
		{"num", `"170.00"`, Number(170), false},                             // Postgres numeric string
		{"num", `" 65.5 "`, Number(65.5), false},                            //
		{"num", `"-1e3"`, Number(-1000), false},                             //
		{"num", `36.6`, Number(36.6), false},                                //
		{"num", `12345678901234567890`, Number(12345678901234567890), false},
		{"num", `"abc"`, Int(0), true},                                              //
		{"num_opt", `"abc"`, Null(), true},                                          //
		{"num_opt", `""`, Null(), true},                                             //
		{"num", `"NaN"`, Int(0), true},                                              //
		{"num", `"Infinity"`, Int(0), true},                                         //
		{"num", `"1e999"`, Int(0), true},                                            //
		{"num", `true`, Int(0), true},                                               // bools are not numbers
		{"num_opt", `[1]`, Null(), true},                                            //
		{"dec", `"170.00"`, String("170.00"), false},                                // decimal string kept as is
		{"dec", `" 0.25"`, String("0.25"), false},                                   //
		{"dec", `170.50`, String("170.5"), false},                                   // number → shortest decimal string
		{"dec", `12345678901234567890.10`, String("12345678901234567890.1"), false}, // exact digits
		{"dec", `1.5e3`, String("1500"), false},                                     //
		{"dec", `-0.0`, String("0"), false},                                         //
		{"dec", `"10mg"`, String("10mg"), true},                                     // not a decimal: kept, counted
		{"dec", `true`, String("true"), true},                                       //
		{"dec_opt", `null`, Null(), false},                                          //
		{"flag", `true`, Bool(true), false},                                         //
		{"flag", `1`, Bool(true), false},                                            // 0/1 accepted
		{"flag", `0`, Bool(false), false},                                           //
		{"flag", `"true"`, Bool(true), true},                                        //
		{"flag", `"0"`, Bool(false), true},                                          //
		{"flag", `2`, Bool(false), true},                                            //
		{"flag_opt", `"yes"`, Null(), true},                                         //
		{"j", `{"b": 1, "a": [1, 2]}`, JSONText(`{"b":1,"a":[1,2]}`), false},        // object → compact text, order kept
		{"j", `[]`, JSONText(`[]`), false},                                          //
		{"j", `"{\"a\": 1}"`, JSONText(`{"a":1}`), false},                           // JSON text in a string: compacted
		{"j", `"[1, 2]"`, JSONText(`[1,2]`), false},                                 //
		{"j", `"\"quoted\""`, JSONText(`"quoted"`), false},                          // a JSON string literal is JSON text
		{"j", `5`, JSONText(`5`), false},                                            //
		{"j", `false`, JSONText(`false`), false},                                    //
		{"j", `"not json"`, JSONText(`"not json"`), true},                           // quoted, counted
		{"j", `""`, JSONText(`""`), true},                                           //
		{"j_opt", `null`, Null(), false},                                            //
		{"j", `null`, Null(), true},                                                 //
		{"s", `"x"`, String("x"), false},                                            //
		{"s", `""`, String(""), false},                                              //
		{"s", `12`, String("12"), true},                                             // number in a string column
		{"s", `1.50`, String("1.50"), true},                                         // its literal text
		{"s", `false`, String("false"), true},                                       //
		{"s", `{"a": 1}`, String(`{"a":1}`), true},                                  // object: its JSON text
		{"s_opt", `null`, Null(), false},                                            //
	}
	for _, tt := range tests {
		name := tt.col + "=" + tt.raw
		t.Run(name, func(t *testing.T) {
			got, rep, err := decodeOne(t, cat, tt.col, tt.raw, false)
			if err != nil {
				t.Fatalf("lenient: %v", err)
			}
			if !got.Equal(tt.want) {
				t.Errorf("lenient: got %s (%s), want %s (%s)", got, got.Kind, tt.want, tt.want.Kind)
			}
			if n := rep.Fallbacks["t."+tt.col]; (n == 1) != tt.fallback || n > 1 {
				t.Errorf("lenient: fallbacks %v, want one for t.%s: %v", rep.Fallbacks, tt.col, tt.fallback)
			}
			if tt.fallback && (len(rep.Samples) != 1 || !strings.HasPrefix(rep.Samples[0], "t/r1."+tt.col+": ")) {
				t.Errorf("lenient: samples %q", rep.Samples)
			}
			got, _, err = decodeOne(t, cat, tt.col, tt.raw, true)
			switch {
			case tt.fallback && err == nil:
				t.Errorf("strict: accepted as %s", got)
			case tt.fallback && (!errors.Is(err, ErrInvalidValue) || !strings.Contains(err.Error(), "t/r1."+tt.col)):
				t.Errorf("strict: error %v does not name t/r1.%s", err, tt.col)
			case !tt.fallback && err != nil:
				t.Errorf("strict: %v", err)
			case !tt.fallback && !got.Equal(tt.want):
				t.Errorf("strict: got %s, want %s", got, tt.want)
			}
		})
	}
}

// TestNormalizeStrictMessage: a strict error names table, id, column and
// the value.
func TestNormalizeStrictMessage(t *testing.T) {
	_, _, err := decodeOne(t, normCatalog(t), "ts", `"1700-01-01T00:00:00Z"`, true)
	want := `codec: invalid value: t/r1.ts (timestamp): "1700-01-01T00:00:00Z": year outside 1850-2120`
	if err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}
}

func TestNormalizeValue(t *testing.T) {
	num := schema.Column{Name: "height_cm", Type: schema.Number, Optional: true}
	ts := schema.Column{Name: "created_at", Type: schema.Timestamp}
	if v, fb, err := NormalizeValue(num, String("170.00"), true); err != nil || fb || !v.Equal(Number(170)) {
		t.Errorf("170.00: %v %v %v", v, fb, err)
	}
	if v, fb, err := NormalizeValue(ts, String("2024-01-15T10:30:00Z"), true); err != nil || fb || !v.Equal(Int(1705314600000)) {
		t.Errorf("ISO: %v %v %v", v, fb, err)
	}
	if _, _, err := NormalizeValue(ts, String("soon"), true); !errors.Is(err, ErrInvalidValue) || !strings.Contains(err.Error(), "created_at") {
		t.Errorf("strict garbage: %v", err)
	}
	if v, fb, err := NormalizeValue(ts, String("soon"), false); err != nil || !fb || !v.Equal(Int(0)) {
		t.Errorf("lenient garbage: %v %v %v", v, fb, err)
	}
	// JSON text is judged by what it holds on non-JSON columns.
	if v, fb, err := NormalizeValue(num, JSONText("42"), true); err != nil || fb || !v.Equal(Number(42)) {
		t.Errorf("JSON 42: %v %v %v", v, fb, err)
	}
	// Canonical values are fixed points.
	for _, tbl := range schema.Default().Names() {
		table, _ := schema.Default().Table(tbl)
		for variant := range 3 {
			for _, c := range table.Columns {
				in := sampleValue(c, variant)
				out, fb, err := NormalizeValue(c, in, true)
				if err != nil || fb || !out.Equal(in) {
					t.Errorf("%s.%s: %s → %s %v %v", tbl, c.Name, in, out, fb, err)
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

// FuzzNormalize: normalization is idempotent (a fallback is a fixed
// point too), its output has the kind of the column type, and a clean
// output passes CheckValue (written independently, for kv).
func FuzzNormalize(f *testing.F) {
	for _, s := range []string{`"2024-01-15T10:30:00.000Z"`, `"170.00"`, `0`, `1.5`, `"0000-00-00"`, `{"a":[1]}`, `"{\"a\":1}"`,
		`"abc"`, `null`, `true`, `"1"`, `-0.0`, `1e308`, `"1e999"`, `" 12 "`, `"1990-05-01"`, `[]`, `"\u00e9\ud800"`} {
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
		out, problem := normalize(col, in)
		if out.Kind != KindNull && out.Kind != want[col.Type] {
			t.Fatalf("%s %q → %s of kind %s", col.Type, raw, out, out.Kind)
		}
		again, problem2 := normalize(col, inputFromValue(out))
		if !again.Equal(out) || (problem == "" && problem2 != "") {
			t.Fatalf("%s %q → %s (%s) → %s (%s): not a fixed point", col.Type, raw, out, problem, again, problem2)
		}
		if problem == "" {
			if err := CheckValue(col, out, 0); err != nil {
				t.Fatalf("%s %q → clean %s, but CheckValue: %v", col.Type, raw, out, err)
			}
		}
	})
}
