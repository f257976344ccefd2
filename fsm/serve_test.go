package fsm_test

import (
	"testing"

	"github.com/clinicsync/clinicsync/codec"
	"github.com/clinicsync/clinicsync/codec/schema"
	"github.com/clinicsync/clinicsync/fsm"
)

func TestServe(t *testing.T) {
	cat := schema.Default()
	r := func(table, id string, created int64, c map[string]codec.Value) codec.Record {
		return codec.Record{Row: codec.Row{Table: table, ID: id, Cols: c}, CreatedCursor: created}
	}
	recs := []codec.Record{
		r("patients", "new", 50, cols("primary_clinic_id", "c1")),
		r("patients", "old", 5, cols("primary_clinic_id", "c2")),
		{Row: codec.Row{Table: "patients", ID: "gone"}, Deleted: true},
		r("users", "u1", 5, cols("email", "a@b.c", "hashed_password", "$2a$...")),
		r("event_logs", "e1", 50, nil),
		r("event_forms", "f-all", 50, map[string]codec.Value{"clinic_ids": codec.JSONText("[]")}),
		r("event_forms", "f-c2", 50, map[string]codec.Value{"clinic_ids": codec.JSONText(`["c2"]`)}),
	}
	dev := fsm.Serve(recs, 10, fsm.Caller{ID: "d"}, cat)
	if p := dev.Tables["patients"]; len(p.Created) != 1 || p.Created[0].ID != "new" || len(p.Updated) != 1 || len(p.Deleted) != 1 {
		t.Errorf("device patients: %+v", p)
	}
	if _, ok := dev.Tables["users"]; ok {
		t.Error("users served to a device")
	}
	if _, ok := dev.Tables["event_logs"]; ok {
		t.Error("device-local table served")
	}
	hub := fsm.Serve(recs, 10, fsm.Caller{ID: "h", Hub: true, Clinics: []string{"c1"}}, cat)
	if p := hub.Tables["patients"]; len(p.Created) != 1 || len(p.Updated) != 0 {
		t.Errorf("scoped hub got another clinic's patient: %+v", p)
	}
	if u := hub.Tables["users"]; len(u.Updated) != 1 || u.Updated[0].Cols["hashed_password"].Str == "" {
		t.Errorf("hub users: %+v", u)
	}
	if f := hub.Tables["event_forms"]; len(f.Created) != 1 || f.Created[0].ID != "f-all" {
		t.Errorf("hub event forms: %+v", f)
	}
	first := fsm.Serve(recs, 0, fsm.Caller{ID: "d"}, cat)
	if p := first.Tables["patients"]; len(p.Deleted) != 0 || len(p.Created) != 2 {
		t.Errorf("first pull: %+v", p)
	}
}
