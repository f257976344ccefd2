package fsm_test

import (
	"fmt"
	"testing"

	"github.com/clinicsync/clinicsync/codec"
	"github.com/clinicsync/clinicsync/codec/schema"
	"github.com/clinicsync/clinicsync/fsm"
)

func TestServeMigration(t *testing.T) {
	cat := schema.Default()
	patient := func(id, citizenship string, camp codec.Value, clinic string) codec.Record {
		c := patientCols("A", "1")
		c["citizenship"], c["camp"], c["primary_clinic_id"] = codec.String(citizenship), camp, codec.String(clinic)
		return codec.Record{Row: codec.Row{Table: "patients", ID: id, Cols: c}, Cursor: 5, CreatedCursor: 5}
	}
	recs := []codec.Record{
		patient("p1", "JO", codec.Null(), "c1"),                                 // new column citizenship holds a value
		patient("p2", "", codec.Null(), "c1"),                                   // only defaults and nulls: the device has them
		patient("p3", "", codec.String("North"), "c1"),                          // new optional column camp holds a value
		patient("p4", "SY", codec.Null(), "c2"),                                 // outside a hub's scope
		{Row: codec.Row{Table: "patients", ID: "p5"}, Deleted: true, Cursor: 6}, // tombstone: already served
		{Row: codec.Row{Table: "appointments", ID: "a1", Cols: cols("reason", "x")}, Cursor: 7},
		{Row: codec.Row{Table: "visits", ID: "v1", Cols: cols("provider_name", "x")}, Cursor: 8}, // untouched table
		{Row: codec.Row{Table: "users", ID: "u1", Cols: cols("name", "n", "hashed_password", "h")}, Cursor: 9},
	}
	m := &codec.Migration{From: 8, Tables: []string{"appointments", "users"}, Columns: map[string][]string{"patients": {"citizenship", "camp"}}}
	show := func(cs *codec.Changeset) string {
		s := ""
		for _, name := range cs.TableNames() {
			tc := cs.Tables[name]
			s += fmt.Sprintf("%s created=%v updated=%v deleted=%v; ", name, ids(tc.Created), ids(tc.Updated), tc.Deleted)
		}
		return s
	}
	dev, err := fsm.ServeMigration(recs, m, fsm.Caller{ID: "u1"}, cat, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := show(dev), "appointments created=[a1] updated=[] deleted=[]; patients created=[] updated=[p1 p3 p4] deleted=[]; "; got != want {
		t.Errorf("device:\n got %s\nwant %s", got, want)
	}
	hub, err := fsm.ServeMigration(recs, m, fsm.Caller{ID: "h1", Hub: true, Clinics: []string{"c1"}}, cat, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := show(hub), "appointments created=[a1] updated=[] deleted=[]; patients created=[] updated=[p1 p3] deleted=[]; users created=[u1] updated=[] deleted=[]; "; got != want {
		t.Errorf("hub:\n got %s\nwant %s", got, want)
	}
	if hub.Tables["users"].Created[0].Cols["hashed_password"].Str != "h" {
		t.Errorf("hub lost a secret column")
	}
	for _, tc := range []struct {
		table, list string
		ok          bool
	}{{"appointments", "created", true}, {"patients", "updated", true}, {"visits", "", false}} {
		if list, ok := fsm.MigrationTable(m, tc.table); list != tc.list || ok != tc.ok {
			t.Errorf("MigrationTable(%s) = %q %v", tc.table, list, ok)
		}
	}
	if _, ok := fsm.MigrationTable(nil, "patients"); ok {
		t.Errorf("no migration adds a table")
	}
}

func ids(rows []codec.Row) []string {
	out := []string{}
	for _, r := range rows {
		out = append(out, r.ID)
	}
	return out
}
