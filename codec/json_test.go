package codec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/clinicsync/clinicsync/codec/schema"
)

// diffChangesets describes how two changesets differ ("" when equal).
// nil and empty slices are equal; Changed is skipped when ignoreChanged
// (EncodeChanges does not write _changed). Timestamps are not compared.
func diffChangesets(a, b *Changeset, ignoreChanged bool) string {
	if !slices.Equal(a.TableNames(), b.TableNames()) {
		return fmt.Sprintf("tables %v != %v", a.TableNames(), b.TableNames())
	}
	for _, name := range a.TableNames() {
		ta, tb := a.Tables[name], b.Tables[name]
		for _, l := range []struct {
			list   string
			ra, rb []Row
		}{{"created", ta.Created, tb.Created}, {"updated", ta.Updated, tb.Updated}} {
			if len(l.ra) != len(l.rb) {
				return fmt.Sprintf("%s.%s: %d rows != %d rows", name, l.list, len(l.ra), len(l.rb))
			}
			for i := range l.ra {
				if d := diffRows(l.ra[i], l.rb[i], ignoreChanged); d != "" {
					return fmt.Sprintf("%s.%s[%d]: %s", name, l.list, i, d)
				}
			}
		}
		if !slices.Equal(ta.Deleted, tb.Deleted) {
			return fmt.Sprintf("%s.deleted: %q != %q", name, ta.Deleted, tb.Deleted)
		}
	}
	return ""
}

func diffRows(a, b Row, ignoreChanged bool) string {
	if a.Table != b.Table || a.ID != b.ID {
		return fmt.Sprintf("row %s/%s != %s/%s", a.Table, a.ID, b.Table, b.ID)
	}
	if !slices.Equal(a.Columns(), b.Columns()) {
		return fmt.Sprintf("columns %v != %v", a.Columns(), b.Columns())
	}
	for k, v := range a.Cols {
		if !v.Equal(b.Cols[k]) {
			return fmt.Sprintf("%s/%s.%s: %s (%s) != %s (%s)", a.Table, a.ID, k, v, v.Kind, b.Cols[k], b.Cols[k].Kind)
		}
	}
	if !ignoreChanged && !slices.Equal(a.Changed, b.Changed) {
		return fmt.Sprintf("%s/%s changed %q != %q", a.Table, a.ID, a.Changed, b.Changed)
	}
	return ""
}

// sampleValue is a representative value of a column, chosen by type
// only, so that every table of every catalog is covered. Variant 1 makes
// optional columns null and uses edge values; variant 2 other edges.
func sampleValue(c schema.Column, variant int) Value {
	if c.Optional && variant == 1 {
		return Null()
	}
	switch c.Type {
	case schema.String:
		return String([]string{"Amina \"A\" <b>&amp;</b>\n\té 中 😀 \u2028 \\ \x01", "", "0123"}[variant])
	case schema.Number:
		return Number([]float64{170.5, 9007199254740991, 1e-7}[variant])
	case schema.Bool:
		return Bool(variant != 1)
	case schema.JSON:
		if variant == 1 {
			return String("") // WatermelonDB's default: an empty JSON-text column
		}
		return JSONText([]string{`{"a":[1,2.5,"x"],"b":{"c":null},"d":"<>&\u00e9"}`, `[]`, `"a \"string\""`}[variant])
	case schema.Timestamp:
		return Int([]int64{1705314600123, 978307199000, -631152000000}[variant])
	case schema.Date:
		return String([]string{"1990-05-01", "1850-01-01", "2120-12-31"}[variant])
	case schema.Decimal:
		return String([]string{"170.00", "-0.5", "12345678901234567890.123456789"}[variant])
	}
	panic("sampleValue: unknown type " + c.Type.String())
}

func sampleRow(t *schema.Table, id string, variant int) Row {
	r := Row{Table: t.Name, ID: id, Cols: map[string]Value{}}
	for _, c := range t.Columns {
		r.Cols[c.Name] = sampleValue(c, variant)
	}
	// A column from a newer peer, kept with its kind.
	r.Cols["zz_future_col"] = []Value{String("new"), Number(3), JSONText(`{"k":[true]}`)}[variant]
	switch variant {
	case 0:
		for _, c := range t.Columns[:min(2, len(t.Columns))] {
			r.Changed = append(r.Changed, c.Name)
		}
	case 2:
		r.Changed = []string{"zz_future_col"}
	}
	return r
}

func sampleChangeset(t *schema.Table) *Changeset {
	cs := NewChangeset()
	cs.Timestamp = 1705314600999
	tc := cs.Table(t.Name)
	tc.Created = []Row{sampleRow(t, "c1", 0)}
	tc.Updated = []Row{sampleRow(t, "u-1", 1), sampleRow(t, "U.2_x", 2)}
	tc.Deleted = []string{"d1", "0195f3a2-7c1e-7d4b-9a51-2f0c8e6b1a33"}
	return cs
}

// TestRoundTripEveryTable encodes a row of every column of every table
// of schema.Default() in each JSON shape and decodes it back, nothing rejected.
func TestRoundTripEveryTable(t *testing.T) {
	cat := schema.Default()
	o := Options{Catalog: cat, IncludeSecret: true}
	for _, name := range cat.Names() {
		tbl, _ := cat.Table(name)
		t.Run(name, func(t *testing.T) {
			cs := sampleChangeset(tbl)
			noFallbacks := func(what string, rep Report) {
				t.Helper()
				if len(rep.Rejected) != 0 {
					t.Errorf("%s: rejected %v", what, rep.Rejected)
				}
				if rep.Unknown[name+".zz_future_col"] != 3 {
					t.Errorf("%s: unknown %v, want %s.zz_future_col counted 3 times", what, rep.Unknown, name)
				}
			}

			var buf bytes.Buffer
			if err := EncodeChanges(&buf, cs, o); err != nil {
				t.Fatal(err)
			}
			checkWatermelonTypes(t, tbl, buf.Bytes())
			got, rep, err := DecodeChanges(buf.Bytes(), o)
			if err != nil {
				t.Fatalf("DecodeChanges: %v\n%s", err, buf.Bytes())
			}
			noFallbacks("changes", rep)
			if d := diffChangesets(cs, got, true); d != "" {
				t.Fatalf("changes round trip: %s", d)
			}

			buf.Reset()
			if err := EncodePullResponse(&buf, cs, o); err != nil {
				t.Fatal(err)
			}
			got, rep, err = DecodePullResponse(buf.Bytes(), o)
			if err != nil {
				t.Fatalf("DecodePullResponse: %v", err)
			}
			noFallbacks("pull", rep)
			if d := diffChangesets(cs, got, true); d != "" || got.Timestamp != cs.Timestamp {
				t.Fatalf("pull round trip: %s (timestamp %d)", d, got.Timestamp)
			}

			buf.Reset()
			if err := EncodePush(&buf, cs, 1705000000000, o); err != nil {
				t.Fatal(err)
			}
			got, lpa, rep, err := DecodePush(buf.Bytes(), o)
			if err != nil {
				t.Fatalf("DecodePush: %v", err)
			}
			noFallbacks("push", rep)
			if d := diffChangesets(cs, got, false); d != "" || lpa != 1705000000000 {
				t.Fatalf("push round trip: %s (lastPulledAt %d)", d, lpa)
			}

			buf.Reset()
			if err := EncodeHikma(&buf, cs, o); err != nil {
				t.Fatal(err)
			}
			checkHikmaTypes(t, tbl, buf.Bytes())
			got, rep, err = DecodeHikmaPull(buf.Bytes(), o)
			if err != nil {
				t.Fatalf("DecodeHikmaPull: %v\n%s", err, buf.Bytes())
			}
			noFallbacks("hikma", rep)
			if d := diffChangesets(cs, got, true); d != "" || got.Timestamp != cs.Timestamp {
				t.Fatalf("hikma round trip: %s (timestamp %d)", d, got.Timestamp)
			}

			// Server names, where the table has one.
			so := o
			so.ServerNames = true
			buf.Reset()
			if err := EncodeChanges(&buf, cs, so); err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(buf.Bytes(), []byte(`{"`+tbl.ServerName+`":`)) {
				t.Errorf("server-name output starts %.40s, want key %s", buf.Bytes(), tbl.ServerName)
			}
			got, _, err = DecodeChanges(buf.Bytes(), so)
			if err != nil {
				t.Fatalf("DecodeChanges with server names: %v", err)
			}
			if d := diffChangesets(cs, got, true); d != "" {
				t.Fatalf("server-name round trip: %s", d)
			}
		})
	}
}

// genericRecord decodes the first created record of the only table.
func genericRecord(t *testing.T, data []byte, hikma bool) map[string]any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, data)
	}
	if hikma {
		if doc["success"] != true {
			t.Errorf("hikma output has no success:true")
		}
		doc = doc["changes"].(map[string]any)
	}
	for _, tv := range doc {
		tm := tv.(map[string]any)
		for _, k := range []string{"created", "updated", "deleted"} {
			if _, ok := tm[k].([]any); !ok {
				t.Fatalf("table has no %s array: %v", k, tm)
			}
		}
		return tm["created"].([]any)[0].(map[string]any)
	}
	t.Fatal("no table in output")
	return nil
}

var isoMillis = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`)

// checkWatermelonTypes checks, independently of the decoder, that values
// have the JSON types WatermelonDB's sanitizedRaw keeps.
func checkWatermelonTypes(t *testing.T, tbl *schema.Table, data []byte) {
	t.Helper()
	rec := genericRecord(t, data, false)
	for _, k := range []string{"_status", "_changed"} {
		if _, ok := rec[k]; ok {
			t.Errorf("%s written in a changes object", k)
		}
	}
	for _, c := range tbl.Columns {
		v, ok := rec[c.Name]
		if !ok {
			t.Errorf("%s missing", c.Name)
			continue
		}
		var good bool
		switch c.Type {
		case schema.String, schema.Date, schema.Decimal:
			_, good = v.(string)
		case schema.JSON:
			s, isString := v.(string)
			good = isString && json.Valid([]byte(s))
		case schema.Number:
			_, good = v.(json.Number)
		case schema.Timestamp:
			n, isNum := v.(json.Number)
			good = isNum && !strings.ContainsAny(string(n), ".eE")
		case schema.Bool:
			_, good = v.(bool)
		}
		if !good {
			t.Errorf("%s (%s) written as %T %v", c.Name, c.Type, v, v)
		}
	}
}

// checkHikmaTypes checks the Hikma server shapes: ISO timestamps with
// milliseconds, jsonb objects and arrays as such.
func checkHikmaTypes(t *testing.T, tbl *schema.Table, data []byte) {
	t.Helper()
	rec := genericRecord(t, data, true)
	for _, c := range tbl.Columns {
		v := rec[c.Name]
		var good bool
		switch c.Type {
		case schema.Timestamp:
			s, isString := v.(string)
			good = isString && isoMillis.MatchString(s)
		case schema.JSON:
			_, good = v.(map[string]any) // variant 0 is an object
		case schema.Date, schema.Decimal, schema.String:
			_, good = v.(string)
		case schema.Number:
			_, good = v.(json.Number)
		case schema.Bool:
			_, good = v.(bool)
		}
		if !good {
			t.Errorf("%s (%s) written as %T %v", c.Name, c.Type, v, v)
		}
	}
}

// tinyCatalog has one column of each type.
func tinyCatalog(t testing.TB) *schema.Catalog {
	t.Helper()
	cat, err := schema.NewCatalog(&schema.Table{Name: "t", ServerName: "server_t", Flow: schema.Synced, Columns: []schema.Column{
		{Name: "b", Type: schema.Bool},
		{Name: "d", Type: schema.Date, Optional: true},
		{Name: "j", Type: schema.JSON},
		{Name: "m", Type: schema.Decimal},
		{Name: "n", Type: schema.Number},
		{Name: "s", Type: schema.String},
		{Name: "pw", Type: schema.String, Optional: true, Secret: true},
		{Name: "ts", Type: schema.Timestamp},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return cat
}

func tinyChangeset() *Changeset {
	cs := NewChangeset()
	cs.Timestamp = 5
	cs.Table("t").Created = []Row{{Table: "t", ID: "a", Cols: map[string]Value{
		"ts": Int(1700000000000), "n": Number(1.5), "j": JSONText(`{"x":1}`), "b": Bool(true),
		"d": String("1990-05-01"), "m": String("170.00"), "s": String("é\"<"), "pw": String("hash"),
	}, Changed: []string{"s", "n"}}}
	cs.Table("t").Deleted = []string{"z"}
	return cs
}

// TestEncodeExact pins the exact bytes of each shape.
func TestEncodeExact(t *testing.T) {
	o := Options{Catalog: tinyCatalog(t)}
	row := `{"id":"a","b":true,"d":"1990-05-01","j":"{\"x\":1}","m":"170.00","n":1.5,"s":"é\"<","ts":1700000000000}`
	hrow := `{"id":"a","b":true,"d":"1990-05-01","j":{"x":1},"m":"170.00","n":1.5,"s":"é\"<","ts":"2023-11-14T22:13:20.000Z"}`
	prow := strings.TrimSuffix(row, "}") + `,"_status":"created","_changed":"s,n"}`
	tests := []struct {
		name string
		enc  func(*bytes.Buffer, Options) error
		want string
	}{
		{"changes", func(b *bytes.Buffer, o Options) error { return EncodeChanges(b, tinyChangeset(), o) },
			`{"t":{"created":[` + row + `],"updated":[],"deleted":["z"]}}`},
		{"pull", func(b *bytes.Buffer, o Options) error { return EncodePullResponse(b, tinyChangeset(), o) },
			`{"changes":{"t":{"created":[` + row + `],"updated":[],"deleted":["z"]}},"timestamp":5,"success":true}`},
		{"push", func(b *bytes.Buffer, o Options) error { return EncodePush(b, tinyChangeset(), 4, o) },
			`{"changes":{"t":{"created":[` + prow + `],"updated":[],"deleted":["z"]}},"lastPulledAt":4}`},
		{"hikma", func(b *bytes.Buffer, o Options) error { return EncodeHikma(b, tinyChangeset(), o) },
			`{"success":true,"changes":{"t":{"created":[` + hrow + `],"updated":[],"deleted":["z"]}},"timestamp":5}`},
		{"server names", func(b *bytes.Buffer, o Options) error {
			o.ServerNames = true
			return EncodeChanges(b, tinyChangeset(), o)
		}, `{"server_t":{"created":[` + row + `],"updated":[],"deleted":["z"]}}`},
		{"secret included", func(b *bytes.Buffer, o Options) error {
			o.IncludeSecret = true
			return EncodeChanges(b, tinyChangeset(), o)
		}, `{"t":{"created":[` + strings.Replace(row, `"n":1.5,`, `"n":1.5,"pw":"hash",`, 1) + `],"updated":[],"deleted":["z"]}}`},
		{"empty", func(b *bytes.Buffer, o Options) error { return EncodeChanges(b, NewChangeset(), o) }, `{}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := tt.enc(&b, o); err != nil {
				t.Fatal(err)
			}
			if b.String() != tt.want {
				t.Errorf("got\n%s\nwant\n%s", b.String(), tt.want)
			}
		})
	}
}

func TestEncodeErrors(t *testing.T) {
	cat := tinyCatalog(t)
	o := Options{Catalog: cat}
	mk := func(edit func(cs *Changeset)) *Changeset {
		cs := tinyChangeset()
		edit(cs)
		return cs
	}
	tests := []struct {
		name string
		cs   *Changeset
		o    Options
		want error
		says string
	}{
		{"unknown table", mk(func(cs *Changeset) { cs.Table("nope") }), o, ErrUnknownTable, "nope"},
		{"invalid id", mk(func(cs *Changeset) { cs.Tables["t"].Deleted = []string{"a b"} }), o, ErrInvalidID, "a b"},
		{"duplicate id", mk(func(cs *Changeset) { cs.Tables["t"].Deleted = []string{"a"} }), o, ErrDuplicateID, "t/a"},
		{"bad column", mk(func(cs *Changeset) { cs.Tables["t"].Created[0].Cols["Bad"] = Int(1) }), o, ErrInvalidColumn, "Bad"},
		{"unknown column rejected", mk(func(cs *Changeset) { cs.Tables["t"].Created[0].Cols["extra"] = Int(1) }),
			Options{Catalog: cat, RejectUnknownColumns: true}, ErrUnknownColumn, "extra"},
		{"garbage timestamp", mk(func(cs *Changeset) { cs.Tables["t"].Created[0].Cols["ts"] = String("soon") }), o, ErrInvalidValue, "t/a.ts"},
		{"NaN", mk(func(cs *Changeset) { cs.Tables["t"].Created[0].Cols["n"] = Number(nan()) }), o, ErrNonFinite, "t/a.n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := EncodeChanges(&bytes.Buffer{}, tt.cs, tt.o)
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.says) {
				t.Errorf("got %v, want %v naming %q", err, tt.want, tt.says)
			}
		})
	}
	var b bytes.Buffer
	if err := EncodePullResponse(&b, NewChangeset(), o); !errors.Is(err, ErrInvalidTimestamp) {
		t.Errorf("pull response without timestamp: %v", err)
	}
	if err := EncodePush(&b, NewChangeset(), -1, o); !errors.Is(err, ErrInvalidTimestamp) {
		t.Errorf("push with negative lastPulledAt: %v", err)
	}
}

func nan() float64 { var z float64; return z / z }

// TestEncodeRefusesNonCanonical: encoders write stored (canonical)
// values only and never convert: a value that is not canonical is an
// error naming the row and column, whatever the normalizer would make
// of it.
func TestEncodeRefusesNonCanonical(t *testing.T) {
	for col, v := range map[string]Value{
		"ts": String("2023-11-14T22:13:20Z"), "n": String("170.00"), "m": Number(12.5), "b": Int(1),
	} {
		cs := NewChangeset()
		cs.Table("t").Created = []Row{{Table: "t", ID: "a", Cols: map[string]Value{col: v}}}
		err := EncodeChanges(&bytes.Buffer{}, cs, Options{Catalog: tinyCatalog(t)})
		if !errors.Is(err, ErrInvalidValue) || !strings.Contains(err.Error(), "t/a."+col) {
			t.Errorf("%s=%s: %v", col, v, err)
		}
	}
	cs := NewChangeset()
	cs.Table("t").Created = []Row{{Table: "t", ID: "a", Cols: map[string]Value{
		"ts": Int(1700000000000), "n": Number(170), "m": String("12.5"), "j": JSONText(`{ "x" : 1 }`),
		"b": Bool(true), "d": Null(), "s": String("x"),
	}}}
	var b bytes.Buffer
	if err := EncodeChanges(&b, cs, Options{Catalog: tinyCatalog(t)}); err != nil {
		t.Fatal(err)
	}
	want := `{"t":{"created":[{"id":"a","b":true,"d":null,"j":"{ \"x\" : 1 }","m":"12.5","n":170,"s":"x","ts":1700000000000}],"updated":[],"deleted":[]}}`
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}

func TestEncodeSecretOmittedByDefault(t *testing.T) {
	cat := schema.Default()
	users, _ := cat.Table("users")
	cs := NewChangeset()
	cs.Table("users").Updated = []Row{sampleRow(users, "u1", 0)}
	for _, include := range []bool{false, true} {
		var b bytes.Buffer
		if err := EncodeChanges(&b, cs, Options{Catalog: cat, IncludeSecret: include}); err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(b.String(), `"hashed_password"`); got != include {
			t.Errorf("IncludeSecret=%v: hashed_password written = %v", include, got)
		}
	}
}

// TestDecodeBadInput: each bad body fails with its sentinel and a message
// naming what was wrong; a bad record's content rejects that record alone
// (Report.Rejected) with such an error.
func TestDecodeBadInput(t *testing.T) {
	cat := schema.Default()
	lenient := Options{Catalog: cat}
	tests := []struct {
		name string
		body string
		o    Options
		want error
		says []string
	}{
		{"malformed", `{"patients":{"created":[}}}`, lenient, ErrMalformed, []string{"invalid character"}},
		{"truncated", `{"patients":{"created":[{"id":"p1","given_name":"Am`, lenient, ErrMalformed, []string{"truncated"}},
		{"truncated after a row", `{"patients":{"created":[{"id":"p1"}`, lenient, ErrMalformed, []string{"truncated"}},
		{"empty body", ``, lenient, ErrMalformed, []string{"truncated"}},
		{"trailing data", `{} {}`, lenient, ErrMalformed, []string{"after the JSON value"}},
		{"unknown table", `{"nope":{"created":[]}}`, lenient, ErrUnknownTable, []string{`"nope"`}},
		{"invalid table name", `{"No Pe":{}}`, Options{Catalog: cat, KeepUnknownTables: true}, ErrUnknownTable, []string{`"No Pe"`}},
		{"unknown column rejected", `{"patients":{"created":[{"id":"p1","shoe_size":42}]}}`,
			Options{Catalog: cat, RejectUnknownColumns: true}, ErrUnknownColumn, []string{"patients/p1", "shoe_size"}},
		{"invalid column name", `{"patients":{"updated":[{"id":"p1","Given Name":"x"}]}}`, lenient, ErrInvalidColumn, []string{"patients/p1", "Given Name"}},
		{"invalid id", `{"patients":{"created":[{"id":"p/1"}]}}`, lenient, ErrInvalidID, []string{"patients.created[0]", "p/1"}},
		{"numeric id", `{"patients":{"created":[{"id":12}]}}`, lenient, ErrInvalidID, []string{"patients.created[0]", "12"}},
		{"empty id", `{"patients":{"created":[{"id":""}]}}`, lenient, ErrInvalidID, []string{"patients.created[0]"}},
		{"invalid deleted id", `{"patients":{"deleted":["ok","x'y"]}}`, lenient, ErrInvalidID, []string{"patients.deleted[1]", "x'y"}},
		{"missing id", `{"patients":{"created":[{"id":"p0"},{"given_name":"x"}]}}`, lenient, ErrMissingID, []string{"patients.created[1]"}},
		{"value too large", `{"patients":{"created":[{"id":"p1","given_name":"abcdefghijk"}]}}`,
			Options{Catalog: cat, MaxValueBytes: 10}, ErrTooLarge, []string{"patients/p1.given_name", "11 bytes", "limit 10"}},
		{"JSON value too large", `{"patients":{"created":[{"id":"p1","metadata":{"k":"abcdefghijk"}}]}}`,
			Options{Catalog: cat, MaxValueBytes: 10}, ErrTooLarge, []string{"patients/p1.metadata"}},
		{"duplicate id created/deleted", `{"patients":{"created":[{"id":"p1"}],"deleted":["p1"]}}`, lenient, ErrDuplicateID,
			[]string{"patients/p1", "created", "deleted"}},
		{"duplicate id in updated", `{"visits":{"updated":[{"id":"v1"},{"id":"v1"}]}}`, lenient, ErrDuplicateID, []string{"visits/v1", "twice"}},
		{"NaN literal", `{"patient_vitals":{"created":[{"id":"v1","height_cm":NaN}]}}`, lenient, ErrMalformed, []string{"invalid character"}},
		{"Infinity literal", `{"patient_vitals":{"created":[{"id":"v1","height_cm":-Infinity}]}}`, lenient, ErrMalformed, nil},
		{"number overflow", `{"patient_vitals":{"created":[{"id":"v1","height_cm":1e999}]}}`, lenient, ErrNonFinite,
			[]string{"patient_vitals/v1.height_cm", "1e999"}},
		{"number overflow in unknown column", `{"patient_vitals":{"created":[{"id":"v1","x":-1e400}]}}`, lenient, ErrNonFinite, []string{"v1.x"}},
		{"top level array", `[{"patients":{}}]`, lenient, ErrWrongType, []string{"an array"}},
		{"top level string", `"patients"`, lenient, ErrWrongType, []string{"a string"}},
		{"top level null", `null`, lenient, ErrWrongType, []string{"null"}},
		{"table not an object", `{"patients":[]}`, lenient, ErrWrongType, []string{"table patients"}},
		{"list not an array", `{"patients":{"created":{}}}`, lenient, ErrWrongType, []string{"patients.created"}},
		{"record not an object", `{"patients":{"updated":["p1"]}}`, lenient, ErrWrongType, []string{"patients.updated[0]"}},
		{"deleted not a string", `{"patients":{"deleted":[7]}}`, lenient, ErrWrongType, []string{"patients.deleted[0]"}},
		{"unexpected table key", `{"patients":{"created":[],"moved":[]}}`, lenient, ErrMalformed, []string{"patients", "moved"}},
		{"duplicate table", `{"patients":{},"patients":{}}`, lenient, ErrDuplicateKey, []string{"patients"}},
		{"same table by both names", `{"registration_forms":{},"patient_registration_forms":{}}`, lenient, ErrUnknownTable, []string{"patient_registration_forms"}},
		{"duplicate list", `{"patients":{"deleted":[],"deleted":[]}}`, lenient, ErrDuplicateKey, []string{"patients", "deleted"}},
		{"duplicate column", `{"patients":{"created":[{"id":"p1","sex":"f","sex":"m"}]}}`, lenient, ErrDuplicateKey, []string{"patients.created[0]", "sex"}},
		{"garbage timestamp", `{"patients":{"created":[{"id":"p1","created_at":"garbage"}]}}`, lenient, ErrInvalidValue,
			[]string{"patients/p1.created_at", `"garbage"`, "timestamp"}},
		{"bad _changed", `{"patients":{"updated":[{"id":"p1","_changed":"sex,Bad Col"}]}}`, lenient, ErrInvalidColumn,
			[]string{"patients/p1._changed", "Bad Col"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs, rep, err := DecodeChanges([]byte(tt.body), tt.o)
			if err == nil && len(rep.Rejected) == 1 {
				// A problem in a record's content rejects that record only.
				if cs.Count() != 0 {
					t.Errorf("rejected record decoded: %v", cs.Tables)
				}
				err = rep.Rejected[0].Err
			}
			if err == nil {
				t.Fatalf("no error; decoded %v", cs.Tables)
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("error %q is not %v", err, tt.want)
			}
			if !strings.HasPrefix(err.Error(), "codec: ") {
				t.Errorf("error %q lacks the codec: prefix", err)
			}
			for _, s := range tt.says {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
		})
	}
}

func TestDecodePullResponseErrors(t *testing.T) {
	o := Options{Catalog: schema.Default()}
	tests := []struct {
		body string
		want error
		says string
	}{
		{`{"changes":{},"timestamp":0}`, ErrInvalidTimestamp, "> 0"},
		{`{"changes":{},"timestamp":-5}`, ErrInvalidTimestamp, "-5"},
		{`{"changes":{},"timestamp":1.5}`, ErrInvalidTimestamp, "integer"},
		{`{"changes":{},"timestamp":"1700000000000"}`, ErrInvalidTimestamp, "integer"},
		{`{"changes":{},"timestamp":null}`, ErrInvalidTimestamp, "integer"},
		{`{"changes":{},"timestamp":1e999}`, ErrInvalidTimestamp, "timestamp"},
		{`{"changes":{}}`, ErrInvalidTimestamp, "no timestamp"},
		{`{"timestamp":5}`, ErrMalformed, "no changes"},
		{`{"changes":{},"timestamp":5,"timestamp":6}`, ErrDuplicateKey, "timestamp"},
		{`{"changes":[],"timestamp":5}`, ErrWrongType, "changes"},
		{`["changes"]`, ErrWrongType, "pull response"},
		{`{"changes":{},"timestamp":5`, ErrMalformed, "truncated"},
	}
	for _, tt := range tests {
		for _, dec := range []func([]byte, Options) (*Changeset, Report, error){DecodePullResponse, DecodeHikmaPull} {
			_, _, err := dec([]byte(tt.body), o)
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.says) {
				t.Errorf("%s: got %v, want %v mentioning %q", tt.body, err, tt.want, tt.says)
			}
		}
	}
	cs, _, err := DecodePullResponse([]byte(`{"success":true,"changes":{"clinics":{"created":[],"updated":[],"deleted":[]}},"timestamp":1.7e12,"experimentalStrategy":{"x":[1]}}`), o)
	if err != nil || cs.Timestamp != 1700000000000 || cs.Tables["clinics"] == nil {
		t.Errorf("valid pull: %v %+v", err, cs)
	}
}

func TestDecodePushShapes(t *testing.T) {
	cat := schema.Default()
	o := Options{Catalog: cat}
	keep := Options{Catalog: cat, KeepUnknownTables: true}
	tests := []struct {
		name    string
		body    string
		o       Options
		tables  []string
		lpa     int64
		wantErr error
	}{
		{"bare (Hikma)", `{"patients":{"created":[{"id":"p1"}],"updated":[],"deleted":[]}}`, o, []string{"patients"}, 0, nil},
		{"wrapped (WatermelonDB)", `{"changes":{"visits":{"updated":[{"id":"v1"}]}},"lastPulledAt":1700000000000}`, o, []string{"visits"}, 1700000000000, nil},
		{"lastPulledAt first", `{"lastPulledAt":null,"changes":{"visits":{}}}`, o, []string{"visits"}, 0, nil},
		{"wrapped without lastPulledAt", `{"changes":{"visits":{"deleted":["v1"]}}}`, o, []string{"visits"}, 0, nil},
		{"wrapped, empty", `{"changes":{}}`, o, nil, 0, nil},
		{"a table named changes", `{"changes":{"created":[{"id":"x"}],"deleted":[]}}`, keep, []string{"changes"}, 0, nil},
		{"a table named changes, not kept", `{"changes":{"created":[{"id":"x"}]}}`, o, nil, 0, ErrUnknownTable},
		{"changes beside tables is a table", `{"changes":{"visits":{}},"visits":{}}`, o, nil, 0, ErrUnknownTable},
		{"lastPulledAt without changes", `{"lastPulledAt":5}`, o, nil, 0, ErrMalformed},
		{"negative lastPulledAt", `{"changes":{},"lastPulledAt":-1}`, o, nil, 0, ErrInvalidTimestamp},
		{"string lastPulledAt", `{"changes":{},"lastPulledAt":"5"}`, o, nil, 0, ErrInvalidTimestamp},
		{"wrapped changes not an object", `{"changes":[],"lastPulledAt":5}`, o, nil, 0, ErrWrongType},
		{"not an object", `[]`, o, nil, 0, ErrWrongType},
		{"duplicate changes", `{"changes":{},"changes":{}}`, o, nil, 0, ErrDuplicateKey},
		{"device-local tables kept", `{"peers":{"updated":[{"id":"hub1","peer_id":"h"}]},"event_logs":{"created":[{"id":"e1"}]}}`, o, []string{"event_logs", "peers"}, 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs, lpa, _, err := DecodePush([]byte(tt.body), tt.o)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("got %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if names := cs.TableNames(); !slices.Equal(names, tt.tables) && !(len(names) == 0 && len(tt.tables) == 0) {
				t.Errorf("tables %v, want %v", names, tt.tables)
			}
			if lpa != tt.lpa {
				t.Errorf("lastPulledAt %d, want %d", lpa, tt.lpa)
			}
		})
	}
}

func TestDecodePushRecordMetadata(t *testing.T) {
	body := `{"patients":{"created":[{"id":"p1","_status":"created","_changed":" given_name, surname,given_name,,","given_name":"A"}],
		"updated":[{"id":"p2","_status":"updated","_changed":""},{"id":"p5","_changed":"sex,Bad Col","sex":"f"},{"id":"p6","_changed":7}],
		"deleted":["p3",{"id":"p4","_status":"deleted","given_name":"raw row from the hub bug"}]}}`
	cs, lpa, rep, err := DecodePush([]byte(body), Options{Catalog: schema.Default()})
	if err != nil {
		t.Fatal(err)
	}
	tc := cs.Tables["patients"]
	r := tc.Created[0]
	if !slices.Equal(r.Changed, []string{"given_name", "surname"}) {
		t.Errorf("changed %q", r.Changed)
	}
	if _, ok := r.Cols["_status"]; ok || len(r.Cols) != 1 {
		t.Errorf("cols %v", r.Cols)
	}
	if tc.Updated[0].Changed != nil {
		t.Errorf("empty _changed gave %q", tc.Updated[0].Changed)
	}
	if !slices.Equal(tc.Deleted, []string{"p3", "p4"}) || lpa != 0 {
		t.Errorf("deleted %q lastPulledAt %d", tc.Deleted, lpa)
	}
	// A bad _changed rejects its record, never drops names silently.
	if len(tc.Updated) != 1 || len(rep.Rejected) != 2 || rep.Rejected[0].ID != "p5" || rep.Rejected[1].ID != "p6" ||
		!errors.Is(rep.Rejected[0].Err, ErrInvalidColumn) || !errors.Is(rep.Rejected[1].Err, ErrInvalidValue) {
		t.Errorf("updated %v, rejected %v", tc.Updated, rep.Rejected)
	}
}

func TestDecodeUnknownColumnsAndTables(t *testing.T) {
	cat := schema.Default()
	body := `{"patients":{"updated":[{"id":"p1","given_name":"A","shoe_size":42,"prefs":{"a": [1, 2]},"nick":"Al","vip":true,"gone":null}]},
		"future_table":{"created":[{"id":"x1","a":1,"b":{"c":"d"}}],"deleted":["x2"]}}`
	cs, rep, err := DecodeChanges([]byte(body), Options{Catalog: cat, KeepUnknownTables: true})
	if err != nil {
		t.Fatal(err)
	}
	r := cs.Tables["patients"].Updated[0]
	want := map[string]Value{"given_name": String("A"), "shoe_size": Number(42), "prefs": JSONText(`{"a":[1,2]}`),
		"nick": String("Al"), "vip": Bool(true), "gone": Null()}
	if d := diffRows(r, Row{Table: "patients", ID: "p1", Cols: want}, true); d != "" {
		t.Error(d)
	}
	if rep.Unknown["patients.shoe_size"] != 1 || rep.Unknown["patients.prefs"] != 1 || rep.Unknown["future_table"] != 1 {
		t.Errorf("unknown %v", rep.Unknown)
	}
	ft := cs.Tables["future_table"]
	if ft.Created[0].Cols["b"].Str != `{"c":"d"}` || ft.Deleted[0] != "x2" {
		t.Errorf("future_table %+v", ft)
	}
	// Encoding keeps them (unknown tables only when asked).
	var b bytes.Buffer
	if err := EncodeChanges(&b, cs, Options{Catalog: cat}); !errors.Is(err, ErrUnknownTable) {
		t.Errorf("encoding an unknown table without KeepUnknownTables: %v", err)
	}
	b.Reset()
	if err := EncodeChanges(&b, cs, Options{Catalog: cat, KeepUnknownTables: true}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), `"prefs":{"a":[1,2]}`) || !strings.Contains(b.String(), `"shoe_size":42`) {
		t.Errorf("unknown columns not written with their kind: %s", b.String())
	}
}

func TestDecodeServerNames(t *testing.T) {
	cat := schema.Default()
	so := Options{Catalog: cat, ServerNames: true}
	cs, _, err := DecodeChanges([]byte(`{"patient_registration_forms":{"created":[{"id":"f1","name":"Intake"}]}}`), so)
	if err != nil {
		t.Fatal(err)
	}
	if r := cs.Tables["registration_forms"].Created[0]; r.Table != "registration_forms" || r.Cols["name"].Str != "Intake" {
		t.Errorf("row %v", r)
	}
	for _, keep := range []bool{false, true} {
		so.KeepUnknownTables = keep
		if _, _, err := DecodeChanges([]byte(`{"registration_forms":{}}`), so); !errors.Is(err, ErrUnknownTable) {
			t.Errorf("mobile name with ServerNames (KeepUnknownTables=%v): %v", keep, err)
		}
	}
	if _, _, err := DecodeChanges([]byte(`{"patient_registration_forms":{}}`), Options{Catalog: cat}); !errors.Is(err, ErrUnknownTable) {
		t.Errorf("server name without ServerNames: %v", err)
	}
}

// A pull response as the Hikma cloud sends it (reference §1.3).
const hikmaPullBody = `{"success":true,"changes":{
 "patients":{"created":[{"id":"0195f3a2-7c1e-7d4b-9a51-2f0c8e6b1a33","given_name":"Amina","surname":"Diallo",
   "date_of_birth":"1990-05-01T00:00:00.000Z","citizenship":"ML","hometown":"Bamako","phone":"+22370000000","sex":"female",
   "camp":null,"additional_data":{"blood_type":"O+"},"metadata":{},"photo_url":null,"is_deleted":false,"deleted_at":null,
   "created_at":"2024-01-15T10:30:00.000Z","updated_at":"2024-01-15T10:31:00.500Z","government_id":"","external_patient_id":"",
   "primary_clinic_id":"c1","last_modified_by":null,"image_timestamp":"2024-01-15T10:30:00.000Z",
   "last_modified":"2024-01-15T10:31:01.000Z","server_created_at":"2024-01-15T10:30:01.000Z"}],"updated":[],"deleted":[]},
 "patient_vitals":{"created":[],"updated":[{"id":"v1","patient_id":"p1","visit_id":null,"timestamp":"2024-01-15T10:35:00.000Z",
   "height_cm":"170.00","weight_kg":"65.5","bmi":"22.49","temperature_celsius":"36.6","oxygen_saturation":"98.00","systolic_bp":120,
   "metadata":{},"is_deleted":false,"created_at":"2024-01-15T10:35:00.000Z","updated_at":"2024-01-15T10:35:00.000Z"}],"deleted":["v0"]},
 "drug_catalogue":{"created":[{"id":"d1","generic_name":"Paracetamol","dosage_quantity":"500.00","sale_price":"0.25","is_controlled":false,
   "metadata":{"atc":"N02BE01"},"created_at":"2024-01-15T10:30:00.000Z","updated_at":"2024-01-15T10:30:00.000Z"}],"updated":[],"deleted":[]},
 "event_forms":{"created":[{"id":"f1","name":"Intake","form_fields":[{"id":"q1","type":"text"}],"clinic_ids":null,"translations":[],
   "created_at":"2024-01-15T10:30:00.000Z","updated_at":"2024-01-15T10:30:00.000Z"}],"updated":[],"deleted":[]},
 "app_config":{"created":[],"updated":[],"deleted":[]}},"timestamp":1705315000000}`

func TestDecodeHikmaPull(t *testing.T) {
	cs, rep, err := DecodeHikmaPull([]byte(hikmaPullBody), Options{Catalog: schema.Default()})
	if err != nil {
		t.Fatal(err)
	}
	if cs.Timestamp != 1705315000000 {
		t.Errorf("timestamp %d", cs.Timestamp)
	}
	p := cs.Tables["patients"].Created[0].Cols
	checks := []struct {
		got, want Value
		what      string
	}{
		{p["date_of_birth"], String("1990-05-01"), "date_of_birth"},
		{p["created_at"], Int(1705314600000), "created_at"},
		{p["updated_at"], Int(1705314660500), "updated_at"},
		{p["additional_data"], JSONText(`{"blood_type":"O+"}`), "additional_data"},
		{p["metadata"], JSONText(`{}`), "metadata"},
		{p["deleted_at"], Null(), "deleted_at"},
		{p["server_created_at"], Int(1705314601000), "server_created_at"},
		{p["image_timestamp"], String("2024-01-15T10:30:00.000Z"), "image_timestamp (unknown, kept)"},
	}
	v := cs.Tables["patient_vitals"].Updated[0].Cols
	checks = append(checks, []struct {
		got, want Value
		what      string
	}{
		{v["height_cm"], Number(170), "height_cm"},
		{v["weight_kg"], Number(65.5), "weight_kg"},
		{v["bmi"], Number(22.49), "bmi"},
		{v["systolic_bp"], Number(120), "systolic_bp"},
		{v["timestamp"], Int(1705314900000), "vitals timestamp"},
		{cs.Tables["drug_catalogue"].Created[0].Cols["sale_price"], String("0.25"), "sale_price"},
		{cs.Tables["event_forms"].Created[0].Cols["form_fields"], JSONText(`[{"id":"q1","type":"text"}]`), "form_fields"},
		{cs.Tables["event_forms"].Created[0].Cols["clinic_ids"], Null(), "clinic_ids null (all clinics) kept"},
	}...)
	for _, c := range checks {
		if !c.got.Equal(c.want) {
			t.Errorf("%s: %s, want %s", c.what, c.got, c.want)
		}
	}
	if rep.Unknown["patients.image_timestamp"] != 1 {
		t.Errorf("unknown %v", rep.Unknown)
	}
	if len(rep.Rejected) != 0 {
		t.Errorf("realistic body has rejections: %v", rep.Rejected)
	}
	if _, ok := cs.Tables["app_config"]; !ok {
		t.Error("empty app_config dropped")
	}
	// Hub pulls may key tables by server name.
	cs, _, err = DecodeHikmaPull([]byte(`{"changes":{"patient_registration_forms":{"created":[{"id":"r1","clinic_id":"c1"}]}},"timestamp":9}`), Options{Catalog: schema.Default()})
	if err != nil || cs.Tables["registration_forms"] == nil {
		t.Errorf("server-name table in a Hikma pull: %v", err)
	}
}

// TestDecodeRejectsPerRecord: bad values reject their records, each with
// a reason naming table, id, column and value; the other records decode.
func TestDecodeRejectsPerRecord(t *testing.T) {
	var rows []string
	for i := range 30 {
		rows = append(rows, fmt.Sprintf(`{"id":"p%d","created_at":"never"}`, i))
	}
	rows = append(rows, `{"id":"ok","created_at":1705314600000}`)
	body := `{"patients":{"created":[` + strings.Join(rows, ",") + `]}}`
	cs, rep, err := DecodeChanges([]byte(body), Options{Catalog: schema.Default()})
	if err != nil {
		t.Fatal(err)
	}
	if got := cs.Tables["patients"].Created; len(got) != 1 || got[0].ID != "ok" {
		t.Errorf("created %v", got)
	}
	if len(rep.Rejected) != 30 || rep.Clean() {
		t.Fatalf("%d rejected", len(rep.Rejected))
	}
	rj := rep.Rejected[0]
	want := `codec: invalid value: patients/p0.created_at (timestamp): "never": not a timestamp`
	if rj.Table != "patients" || rj.ID != "p0" || !errors.Is(rj.Err, ErrInvalidValue) || !strings.HasPrefix(rj.Err.Error(), want) {
		t.Errorf("rejection %s/%s %q, want prefix %q", rj.Table, rj.ID, rj.Err, want)
	}
}

// failWriter fails after n bytes.
type failWriter struct{ n int }

func (w *failWriter) Write(p []byte) (int, error) {
	if len(p) > w.n {
		return 0, errors.New("disk full")
	}
	w.n -= len(p)
	return len(p), nil
}

func TestEncodeWriteError(t *testing.T) {
	cat := schema.Default()
	pt, _ := cat.Table("patients")
	cs := NewChangeset()
	for i := range 200 {
		cs.Table("patients").Created = append(cs.Table("patients").Created, sampleRow(pt, fmt.Sprintf("p%d", i), 0))
	}
	err := EncodeChanges(&failWriter{n: 1000}, cs, Options{Catalog: cat})
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("got %v", err)
	}
}

func benchChangeset(b *testing.B, rows int) (*Changeset, Options) {
	cat := schema.Default()
	pt, _ := cat.Table("patients")
	cs := NewChangeset()
	for i := range rows {
		cs.Table("patients").Created = append(cs.Table("patients").Created, sampleRow(pt, fmt.Sprintf("p%d", i), i%3))
	}
	return cs, Options{Catalog: cat}
}

func BenchmarkEncodeChanges(b *testing.B) {
	cs, o := benchChangeset(b, 1000)
	var buf bytes.Buffer
	for b.Loop() {
		buf.Reset()
		if err := EncodeChanges(&buf, cs, o); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(buf.Len()))
}

func BenchmarkDecodeChanges(b *testing.B) {
	cs, o := benchChangeset(b, 1000)
	var buf bytes.Buffer
	if err := EncodeChanges(&buf, cs, o); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(buf.Len()))
	for b.Loop() {
		if _, _, err := DecodeChanges(buf.Bytes(), o); err != nil {
			b.Fatal(err)
		}
	}
}
