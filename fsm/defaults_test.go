package fsm_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/clinicsync/clinicsync/codec"
	"github.com/clinicsync/clinicsync/codec/schema"
	"github.com/clinicsync/clinicsync/fsm"
)

// older is a patient as an app on an older schema pushes it: without
// citizenship (string), additional_data (JSON), date_of_birth (date)
// and camp (optional).
func older(given string) map[string]codec.Value {
	c := patientCols(given, "111")
	for _, col := range []string{"citizenship", "additional_data", "date_of_birth", "camp"} {
		delete(c, col)
	}
	return c
}

func TestPushDefaults(t *testing.T) {
	cat := schema.Default()
	merge := func(relay bool) func(*codec.Record, codec.Change) (codec.Outcome, error) {
		return fsm.Push{Caller: fsm.Caller{ID: "dev1"}, LastPulledAt: 30, Relay: relay, Catalog: cat, Now: 1772355600000}.Merge()
	}

	// Create: accepted, every missing catalog column takes WatermelonDB's
	// default at the zero version; pushed columns are dated as edits.
	out := must(merge(false)(nil, change(older("Amina"))))
	if out.Op != codec.Write {
		t.Fatalf("create from an older schema: %+v", out)
	}
	want := map[string]codec.Value{
		"citizenship": codec.String(""), "additional_data": codec.String(""),
		"date_of_birth": codec.String(""),
	}
	for col, v := range want {
		if got := out.Record.Cols[col]; !got.Equal(v) {
			t.Errorf("default of %s = %s, want %s", col, got, v)
		}
		if ver, ok := out.Record.Versions[col]; !ok || !ver.IsZero() {
			t.Errorf("version of defaulted %s = %v (present %v), want the zero version", col, ver, ok)
		}
	}
	if ver := out.Record.Versions["given_name"]; ver.IsZero() {
		t.Errorf("a pushed column has the zero version")
	}
	for _, col := range []string{"last_modified", "server_created_at", "camp"} {
		if _, ok := out.Record.Cols[col]; ok {
			t.Errorf("server or optional column %s was filled in", col)
		}
	}
	created := out.Record
	created.Row.Table, created.Row.ID, created.Cursor = "patients", "p1", 40

	// Update from the older app: the missing columns stay as stored.
	stored := &codec.Record{Row: codec.Row{Table: "patients", ID: "p1", Cols: patientCols("Amina", "111")}, Cursor: 20}
	stored.Versions = at(stored.Cols, 10, "a")
	stored.Cols["citizenship"] = codec.String("JO")
	upd := older("Amina")
	upd["phone"], upd["updated_at"] = codec.String("222"), codec.Int(1772355700000)
	out = must(merge(false)(stored, change(upd, "phone")))
	if out.Op != codec.Write || out.Record.Cols["phone"].Str != "222" || out.Record.Cols["citizenship"].Str != "JO" ||
		out.Record.Cols["additional_data"].Str != "{}" {
		t.Errorf("update from an older schema: %+v", out.Record.Cols)
	}
	// The same as a re-sent created row: the row exists, so it is an
	// update, and nothing is defaulted over stored values; with every
	// value as stored, it changes nothing.
	out = must(merge(false)(stored, codec.Change{Row: codec.Row{Table: "patients", ID: "p1", Cols: older("Amina")}, Created: true}))
	if out.Op != codec.Skip {
		t.Errorf("re-sent create of the stored values: %v %+v, want nothing changed", out.Op, out.Record.Cols)
	}
	resent := older("Amina")
	resent["phone"] = codec.String("333")
	out = must(merge(false)(stored, codec.Change{Row: codec.Row{Table: "patients", ID: "p1", Cols: resent}, Created: true}))
	if out.Op != codec.Write || out.Record.Cols["citizenship"].Str != "JO" || out.Record.Cols["phone"].Str != "333" ||
		out.Record.Versions["given_name"] != stored.Versions["given_name"] {
		t.Errorf("re-sent create with a new phone: %v %+v %v, want the phone changed, citizenship kept, given_name's version kept",
			out.Op, out.Record.Cols, out.Record.Versions)
	}
	// Also when the row changed after the pusher's pull: a value it
	// sends as stored is no edit of its (no version of the pusher's).
	changed := *stored
	changed.Cursor = 40
	out = must(merge(false)(&changed, codec.Change{Row: codec.Row{Table: "patients", ID: "p1", Cols: resent}, Created: true}))
	if out.Record.Versions["given_name"] != stored.Versions["given_name"] || out.Record.Versions["phone"].Node != "dev1" {
		t.Errorf("re-sent create over a changed row: versions %v, want given_name's kept and phone the pusher's", out.Record.Versions)
	}

	// A real value beats a default, written later ...
	later := map[string]codec.Value{"citizenship": codec.String("SY"), "updated_at": codec.Int(1772355800000)}
	out = must(merge(false)(&created, change(later, "citizenship")))
	if out.Record.Cols["citizenship"].Str != "SY" {
		t.Errorf("a later real value lost to a default: %s", out.Record.Cols["citizenship"])
	}
	// ... or earlier: a relay pushes the default on, with its zero
	// version, to a node that already has a real value (written before
	// the older app's row reached it, at an older wall time).
	relayed := codec.Change{Row: codec.Row{Table: "patients", ID: "p1", Cols: created.Cols, Versions: created.Versions}, Created: true}
	early := &codec.Record{Row: codec.Row{Table: "patients", ID: "p1", Cols: patientCols("Amina", "111")}, Cursor: 20}
	early.Versions = at(early.Cols, 1, "b")
	early.Cols["citizenship"] = codec.String("JO")
	out = must(merge(false)(early, relayed))
	if out.Record.Cols["citizenship"].Str != "JO" || out.Record.Cols["additional_data"].Str != "{}" || out.Record.Cols["date_of_birth"].Str != "1990-04-01" {
		t.Errorf("a relayed default beat an earlier real value: %+v", out.Record.Cols)
	}
	// A relayed default is accepted, and stays a default (zero version)
	// on the upstream.
	relayed.ID = "p2"
	out = must(merge(false)(nil, relayed))
	if out.Op != codec.Write || !out.Record.Versions["additional_data"].IsZero() || out.Record.Cols["additional_data"].Str != "" {
		t.Errorf("relayed defaulted row: %+v", out)
	}
	// On a relay the defaulted row is pending upstream with its defaults.
	out = must(merge(true)(nil, change(older("Amina"))))
	if out.Record.Status != codec.Created || out.Record.Cols["citizenship"].Str != "" {
		t.Errorf("relay create: %+v", out.Record)
	}

	// The defaults are written to a WatermelonDB pull as the device holds
	// them: '' for a string, JSON text and date column.
	cs := codec.NewChangeset()
	cs.Timestamp = 50
	cs.Table("patients").Updated = []codec.Row{{Table: "patients", ID: "p1", Cols: created.Cols}}
	var buf bytes.Buffer
	if err := codec.EncodePullResponse(&buf, cs, codec.Options{Catalog: cat}); err != nil {
		t.Fatalf("encoding defaults: %v", err)
	}
	for _, s := range []string{`"citizenship":""`, `"additional_data":""`, `"date_of_birth":""`} {
		if !strings.Contains(buf.String(), s) {
			t.Errorf("pull lacks %s: %s", s, buf.String())
		}
	}
}
