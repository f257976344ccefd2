package codec

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	"github.com/clinicsync/clinicsync/codec/schema"
)

// Fuzz targets: a decoder never panics, and whatever it accepts encodes
// and decodes back to an equal changeset (and the same bytes): a value
// normalization accepts is a fixed point, and nothing accepted is
// rejected on the way back.

var fuzzSeeds = []string{
	`{}`,
	`{"patients":{"created":[{"id":"p1","given_name":"Amina","date_of_birth":"1990-05-01","created_at":1705314600000,"metadata":"{}","is_deleted":false}],"updated":[],"deleted":["p2"]}}`,
	`{"patient_vitals":{"updated":[{"id":"v1","height_cm":"170.00","weight_kg":65.5,"timestamp":"2024-01-15T10:35:00.000Z","_status":"updated","_changed":"height_cm,weight_kg"}]}}`,
	`{"changes":{"visits":{"created":[{"id":"v1","metadata":{"a":[1,2]},"check_in_timestamp":"0"}]}},"lastPulledAt":1700000000000}`,
	`{"changes":{"created":[{"id":"x"}]}}`,
	`{"success":true,"changes":{"drug_catalogue":{"created":[{"id":"d1","sale_price":"0.25","dosage_quantity":500,"is_controlled":1}],"updated":[],"deleted":[]}},"timestamp":1705315000000}`,
	`{"changes":{"event_forms":{"created":[{"id":"f1","form_fields":[{"id":"q1"}],"clinic_ids":null,"translations":"not json"}]},"peers":{"deleted":[{"id":"h1"}]},"future":{"created":[{"id":"z","k":{"x":"\u00e9"}}]}},"timestamp":9}`,
	`{"patients":{"created":[{"id":"p1","date_of_birth":"0000-00-00","created_at":"garbage","sex":12,"is_deleted":"true","zz":[1,{"a":null}]}]}}`,
	`{"users":{"updated":[{"id":"u1","hashed_password":"$2b$10$abc","email":"a@b.c","updated_at":1.5}]}}`,
	`{"registration_forms":{"created":[{"id":"r1","fields":"[]","created_at":"2024-01-01"}]},"patient_registration_forms":{"deleted":["r2"]}}`,
	`{"changes":{"patient_registration_forms":{"updated":[{"id":"r1","clinic_id":"c1","metadata":{}}]}},"timestamp":1}`,
	hikmaPullBody,
}

func fuzzOptions() []Options {
	cat := schema.Default()
	return []Options{
		{Catalog: cat, KeepUnknownTables: true, IncludeSecret: true},
		{Catalog: cat, IncludeSecret: true},
		{Catalog: cat, ServerNames: true, KeepUnknownTables: true, IncludeSecret: true, MaxValueBytes: 64},
	}
}

// roundTrip checks that an accepted changeset survives EncodeChanges and
// DecodeChanges, and that encoding is then stable byte for byte.
func roundTrip(t *testing.T, cs *Changeset, o Options) {
	t.Helper()
	var first bytes.Buffer
	if err := EncodeChanges(&first, cs, o); err != nil {
		t.Fatalf("EncodeChanges of a decoded changeset: %v", err)
	}
	again, rep, err := DecodeChanges(first.Bytes(), o)
	if err != nil || len(rep.Rejected) != 0 {
		t.Fatalf("DecodeChanges of our own output: %v %v\n%s", err, rep.Rejected, first.Bytes())
	}
	if d := diffChangesets(cs, again, true); d != "" {
		t.Fatalf("round trip changed the changeset: %s\n%s", d, first.Bytes())
	}
	var second bytes.Buffer
	if err := EncodeChanges(&second, again, o); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first.Bytes(), second.Bytes()) {
		t.Fatalf("encoding not stable:\n%s\n%s", first.Bytes(), second.Bytes())
	}
}

func addSeeds(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
}

func FuzzDecodeChanges(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, o := range fuzzOptions() {
			cs, _, err := DecodeChanges(data, o)
			if err != nil {
				continue
			}
			roundTrip(t, cs, o)
		}
	})
}

func FuzzDecodePush(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, o := range fuzzOptions() {
			cs, lpa, _, err := DecodePush(data, o)
			if err != nil {
				continue
			}
			if lpa < 0 {
				t.Fatalf("negative lastPulledAt %d", lpa)
			}
			roundTrip(t, cs, o)
			// The push shape keeps _changed and lastPulledAt.
			var b bytes.Buffer
			if err := EncodePush(&b, cs, lpa, o); err != nil {
				t.Fatalf("EncodePush: %v", err)
			}
			again, lpa2, rep, err := DecodePush(b.Bytes(), o)
			if err != nil || len(rep.Rejected) != 0 {
				t.Fatalf("DecodePush of our own output: %v %v\n%s", err, rep.Rejected, b.Bytes())
			}
			if d := diffChangesets(cs, again, false); d != "" || lpa2 != lpa {
				t.Fatalf("push round trip: %s (lastPulledAt %d → %d)\n%s", d, lpa, lpa2, b.Bytes())
			}
		}
	})
}

func FuzzDecodePullResponse(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, o := range fuzzOptions() {
			cs, _, err := DecodePullResponse(data, o)
			if err != nil {
				continue
			}
			if cs.Timestamp <= 0 {
				t.Fatalf("accepted timestamp %d", cs.Timestamp)
			}
			roundTrip(t, cs, o)
			var b bytes.Buffer
			if err := EncodePullResponse(&b, cs, o); err != nil {
				t.Fatalf("EncodePullResponse: %v", err)
			}
			again, rep, err := DecodePullResponse(b.Bytes(), o)
			if err != nil || len(rep.Rejected) != 0 || again.Timestamp != cs.Timestamp {
				t.Fatalf("pull round trip: %v %v\n%s", err, rep.Rejected, b.Bytes())
			}
			if d := diffChangesets(cs, again, true); d != "" {
				t.Fatalf("pull round trip: %s", d)
			}
		}
	})
}

func FuzzDecodeHikmaPull(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, o := range fuzzOptions() {
			cs, _, err := DecodeHikmaPull(data, o)
			if err != nil {
				continue
			}
			roundTrip(t, cs, o)
			// And through the Hikma server shape.
			var b bytes.Buffer
			if err := EncodeHikma(&b, cs, o); err != nil {
				t.Fatalf("EncodeHikma: %v", err)
			}
			again, rep, err := DecodeHikmaPull(b.Bytes(), o)
			if err != nil || len(rep.Rejected) != 0 {
				t.Fatalf("DecodeHikmaPull of our own output: %v %v\n%s", err, rep.Rejected, b.Bytes())
			}
			if d := diffChangesets(cs, again, true); d != "" || again.Timestamp != cs.Timestamp {
				t.Fatalf("hikma round trip: %s\n%s", d, b.Bytes())
			}
		}
	})
}

// FuzzMembers checks the object splitter against encoding/json (an
// independent model): same keys, same values, duplicates refused.
func FuzzMembers(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":1}`, ` { "a" : "x,}\"]" , "b":[1,{"c":"]}"}], "d" :null,"e":-1.5e3}`, `{"\u0061":1,"a":2}`, `{"k":{"":[[]]}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var model map[string]json.RawMessage
		if json.Unmarshal(data, &model) != nil || model == nil {
			return
		}
		got, err := members(bytes.TrimSpace(data), func() string { return "fuzz" })
		if err != nil {
			if errors.Is(err, ErrDuplicateKey) {
				return // the model keeps the last of duplicate keys
			}
			t.Fatalf("members(%q): %v", data, err)
		}
		if len(got) != len(model) {
			t.Fatalf("members(%q): %d members, model %d", data, len(got), len(model))
		}
		for _, f := range got {
			want, ok := model[f.name]
			if !ok {
				t.Fatalf("members(%q): key %q not in model", data, f.name)
			}
			if !bytes.Equal(bytes.TrimSpace(want), f.raw) {
				t.Fatalf("members(%q): %q = %q, model %q", data, f.name, f.raw, want)
			}
		}
	})
}
