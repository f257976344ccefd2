package fsm_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/clinicsync/clinicsync/codec"
	"github.com/clinicsync/clinicsync/codec/schema"
	"github.com/clinicsync/clinicsync/fsm"
)

// store is a Lookup over fixed records, counting reads.
type store struct {
	rows  map[string]*codec.Record
	reads int
	fail  error
}

// parents holds patients and visits of c1 and c2, a patient with no
// clinic, deleted patients of c1 and c2 (their tombstones keep the
// clinic), and one deleted without a clinic kept.
func parents() *store {
	s := &store{rows: map[string]*codec.Record{}}
	put := func(table, id, col string, v codec.Value) {
		s.rows[table+"/"+id] = &codec.Record{Row: codec.Row{Table: table, ID: id, Cols: map[string]codec.Value{col: v}}}
	}
	put("patients", "pc1", "primary_clinic_id", codec.String("c1"))
	put("patients", "pc2", "primary_clinic_id", codec.String("c2"))
	put("patients", "pnull", "primary_clinic_id", codec.Null())
	put("visits", "vc1", "clinic_id", codec.String("c1"))
	put("visits", "vc2", "clinic_id", codec.String("c2"))
	s.rows["patients/pdel"] = &codec.Record{Row: codec.Row{Table: "patients", ID: "pdel"}, Deleted: true}
	for _, k := range []string{"c1", "c2"} {
		put("patients", "pdel"+k, "primary_clinic_id", codec.String(k))
		s.rows["patients/pdel"+k].Deleted = true
	}
	return s
}

func (s *store) get(table, id string) (*codec.Record, error) {
	s.reads++
	if s.fail != nil {
		return nil, s.fail
	}
	return s.rows[table+"/"+id], nil
}

// row is a row of table naming its parents (and clinic) by column.
func row(table, id string, kv ...string) codec.Row {
	return codec.Row{Table: table, ID: id, Cols: cols(kv...)}
}

// TestScopeRule checks Scope against the rule written out case by case
// (fsm.Scope's doc), for a caller scoped to c1.
func TestScopeRule(t *testing.T) {
	cat := schema.Default()
	st := parents()
	scope := fsm.Scope{Catalog: cat, Clinics: []string{"c1"}, Lookup: st.get}
	for _, tc := range []struct {
		row codec.Row
		in  bool
	}{
		{row("events", "e", "patient_id", "pc1", "visit_id", "vc1"), true},
		{row("events", "e", "patient_id", "pc1", "visit_id", ""), true},
		{row("events", "e", "patient_id", "", "visit_id", "vc1"), true},
		{row("events", "e", "patient_id", "pnull"), true}, // a patient of no clinic is every clinic's
		{row("events", "e", "patient_id", "gone", "visit_id", "vc1"), true},
		{row("events", "e", "patient_id", "pdel", "visit_id", "vc1"), true},
		{row("events", "e", "patient_id", "pc2", "visit_id", "vc1"), false},
		{row("events", "e", "patient_id", "pc1", "visit_id", "vc2"), false},
		{row("events", "e", "patient_id", "pc2"), false},
		{row("events", "e", "patient_id", "gone"), false},
		{row("events", "e", "patient_id", "pdel"), false},
		{row("events", "e", "patient_id", "pdelc1"), true}, // a deleted patient's clinic still counts
		{row("events", "e", "patient_id", "pdelc2"), false},
		{row("events", "e", "patient_id", "pdelc2", "visit_id", "vc1"), false},
		{row("events", "e", "patient_id", "", "visit_id", ""), false},
		{row("events", "e"), false},
		{row("patient_vitals", "v", "patient_id", "pc1"), true},
		{row("patient_vitals", "v", "patient_id", "pc2"), false},
		{row("patient_problems", "pp", "patient_id", "pc2", "visit_id", "vc2"), false},
		{row("patient_additional_attributes", "a", "patient_id", "pc1"), true},
		{row("patient_additional_attributes", "a", "patient_id", "pc2"), false},
		{row("prescriptions", "rx", "pickup_clinic_id", "c1", "patient_id", "pc2"), true}, // its own clinic decides
		{row("prescriptions", "rx", "pickup_clinic_id", "c2", "patient_id", "pc1"), false},
		{codec.Row{Table: "prescriptions", ID: "rx", Cols: map[string]codec.Value{"pickup_clinic_id": codec.Null(), "patient_id": codec.String("pc1")}}, true},
		{row("prescriptions", "rx", "patient_id", "pc2"), false},
		{row("patients", "pc1", "primary_clinic_id", "c1"), true},
		{row("patients", "p", "primary_clinic_id", "c2"), false},
		{row("patients", "p"), true}, // no clinic: every clinic's
		{row("visits", "v", "clinic_id", "c2", "patient_id", "pc1"), false},
		{row("clinics", "c1"), true},
		{row("clinics", "c2"), false},
		{row("drug_catalogue", "d"), true},
		{row("app_config", "a"), true},
		{codec.Row{Table: "event_forms", ID: "f", Cols: map[string]codec.Value{"clinic_ids": codec.JSONText(`["c2","c1"]`)}}, true},
		{codec.Row{Table: "event_forms", ID: "f", Cols: map[string]codec.Value{"clinic_ids": codec.JSONText(`["c2"]`)}}, false},
		{codec.Row{Table: "event_forms", ID: "f", Cols: map[string]codec.Value{"clinic_ids": codec.JSONText(`[]`)}}, true},
	} {
		tbl, _ := cat.Table(tc.row.Table)
		why, err := scope.Check(tbl, tc.row)
		if err != nil {
			t.Fatalf("%s %v: %v", tc.row.Table, tc.row.Cols, err)
		}
		if (why == "") != tc.in {
			t.Errorf("%s %s %v: in scope %v (%q), want %v", tc.row.Table, tc.row.ID, tc.row.Cols, why == "", why, tc.in)
		}
		unscoped := fsm.Scope{Catalog: cat, Lookup: st.get}
		if why, err := unscoped.Check(tbl, tc.row); why != "" || err != nil {
			t.Errorf("%s %s: out of an unscoped caller's scope: %q %v", tc.row.Table, tc.row.ID, why, err)
		}
	}
}

// TestScopeReasons: a parent out of scope and a missing one read alike,
// so a reason tells nothing of another clinic's rows; a failed read is
// an error, not a reason.
func TestScopeReasons(t *testing.T) {
	cat := schema.Default()
	events, _ := cat.Table("events")
	st := parents()
	scope := fsm.Scope{Catalog: cat, Clinics: []string{"c1"}, Lookup: st.get}
	out, _ := scope.Check(events, row("events", "e", "patient_id", "pc2"))
	missing, _ := scope.Check(events, row("events", "e", "patient_id", "zz9"))
	if want := `patient_id "pc2" names no patients row of the caller's clinics`; out != want {
		t.Errorf("parent out of scope: %q, want %q", out, want)
	}
	if strings.ReplaceAll(missing, "zz9", "pc2") != out {
		t.Errorf("a missing parent reads %q, one out of scope %q", missing, out)
	}
	if why, _ := scope.Check(events, row("events", "e")); !strings.Contains(why, "patient_id, visit_id") {
		t.Errorf("no parent named: %q", why)
	}
	st.fail = errors.New("disk on fire")
	if _, err := scope.Check(events, row("events", "e", "patient_id", "pc1")); err == nil || !strings.Contains(err.Error(), "disk on fire") || !strings.Contains(err.Error(), "patients/pc1") {
		t.Errorf("a failed read: %v", err)
	}
}

// leaked serves with cat, to a hub of c1, one row of c2 of every table
// that follows a parent in the default catalog (each naming c2's
// patient and visit), and returns the tables whose row it got.
func leaked(t *testing.T, cat *schema.Catalog) []string {
	t.Helper()
	st := parents()
	var recs []codec.Record
	for _, name := range schema.Default().Names() {
		tbl, _ := schema.Default().Table(name)
		if len(tbl.Follows) == 0 {
			continue
		}
		c := map[string]codec.Value{"patient_id": codec.String("pc2"), "visit_id": codec.String("vc2")}
		if tbl.ClinicColumn != "" {
			c[tbl.ClinicColumn] = codec.Null()
		}
		recs = append(recs, codec.Record{Row: codec.Row{Table: name, ID: "x", Cols: c}, CreatedCursor: 50})
	}
	cs, err := fsm.ServeWith(recs, 10, fsm.Caller{ID: "hub1", Hub: true, Clinics: []string{"c1"}}, cat, st.get)
	if err != nil {
		t.Fatal(err)
	}
	return cs.TableNames()
}

// TestScopeCatchesPlantedBug: with events' Follows removed from the
// catalog, c2's event reaches a c1 hub, and leaked says so; with the
// catalog as it is, nothing leaks.
func TestScopeCatchesPlantedBug(t *testing.T) {
	if got := leaked(t, schema.Default()); len(got) != 0 {
		t.Fatalf("rows of c2 served to a c1 hub: %v", got)
	}
	var tables []*schema.Table
	for _, name := range schema.Default().Names() {
		tbl, _ := schema.Default().Table(name)
		c := *tbl
		if name == "events" {
			c.Follows = nil // the planted bug
		}
		tables = append(tables, &c)
	}
	broken, err := schema.NewCatalog(tables...)
	if err != nil {
		t.Fatal(err)
	}
	if got := leaked(t, broken); !slices.Equal(got, []string{"events"}) {
		t.Errorf("events without Follows: leaked %v, want [events]", got)
	}
}

// TestServeWithScope: a scoped hub is served the children of its
// clinic's patients only, reading each parent once per call.
func TestServeWithScope(t *testing.T) {
	cat := schema.Default()
	st := parents()
	var recs []codec.Record
	for i, p := range []string{"pc1", "pc2", "pc1", "pc2", "pc1"} {
		recs = append(recs, codec.Record{Row: row("events", fmt.Sprintf("e%d", i), "patient_id", p, "visit_id", ""), CreatedCursor: 50})
	}
	hub, err := fsm.ServeWith(recs, 10, fsm.Caller{ID: "hub1", Hub: true, Clinics: []string{"c1"}}, cat, st.get)
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(hub.Table("events").Created); !slices.Equal(got, []string{"e0", "e2", "e4"}) || st.reads != 2 {
		t.Errorf("c1 hub got events %v after %d reads, want [e0 e2 e4] after 2", got, st.reads)
	}
	dev := fsm.Serve(recs, 10, fsm.Caller{ID: "d"}, cat)
	if got := ids(dev.Table("events").Created); len(got) != 5 {
		t.Errorf("an unscoped device got events %v", got)
	}
	if got := fsm.Serve(recs, 10, fsm.Caller{ID: "hub1", Hub: true, Clinics: []string{"c1"}}, cat); len(got.Tables) != 0 {
		t.Errorf("Serve, which reads no parents, served a scoped hub %v", got.TableNames())
	}
	st.fail = errors.New("disk on fire")
	if _, err := fsm.ServeWith(recs, 10, fsm.Caller{ID: "hub1", Hub: true, Clinics: []string{"c1"}}, cat, st.get); err == nil {
		t.Error("a failed parent read served a page")
	}
}

// TestPushScopeFollows: a hub of c1 writes rows that follow a parent
// only when the stored row's parents and the resulting row's are c1's.
func TestPushScopeFollows(t *testing.T) {
	cat := schema.Default()
	st := parents()
	hub := fsm.Caller{ID: "hub1", Hub: true, Clinics: []string{"c1"}}
	push := fsm.Push{Caller: hub, LastPulledAt: 30, Catalog: cat}
	merge := push.MergeWith(st.get)
	event := func(patient string) map[string]codec.Value {
		return map[string]codec.Value{"patient_id": codec.String(patient), "visit_id": codec.String(""), "form_id": codec.String("f"),
			"event_type": codec.String("note"), "form_data": codec.JSONText("{}"), "metadata": codec.JSONText("{}"),
			"is_deleted": codec.Bool(false), "recorded_by_user_id": codec.String("u1")}
	}
	stored := func(patient string, cursor int64) *codec.Record {
		c := event(patient)
		return &codec.Record{Row: codec.Row{Table: "events", ID: "e1", Cols: c, Versions: at(c, 10, "a")}, Cursor: cursor, CreatedCursor: 5}
	}
	edit := func(patient string, changed ...string) codec.Change {
		c := event(patient)
		c["form_data"] = codec.JSONText(`{"x":1}`)
		return codec.Change{Row: codec.Row{Table: "events", ID: "e1", Cols: c, Changed: changed, Versions: at(c, 50, "hub1")}}
	}
	del := codec.Change{Row: codec.Row{Table: "events", ID: "e1"}, Delete: true}
	losing := edit("pc2", "patient_id")
	losing.Versions = at(losing.Cols, 5, "hub1") // older than the stored row's
	for name, tc := range map[string]struct {
		cur    *codec.Record
		in     codec.Change
		reason string
	}{
		"a new event of c2's patient":       {nil, edit("pc2"), `out of the caller's clinic scope: patient_id "pc2" names no patients row`},
		"a new event of an unknown patient": {nil, edit("zz9"), `out of the caller's clinic scope: patient_id "zz9" names no patients row`},
		"c2's event edited":                 {stored("pc2", 20), edit("pc2", "form_data"), "the stored row is out of the caller's clinic scope"},
		"c2's event claimed for c1":         {stored("pc2", 20), edit("pc1", "form_data", "patient_id"), "the stored row is out"},
		"c2's event deleted":                {stored("pc2", 20), del, "the stored row is out"},
		"c1's event moved to c2's patient":  {stored("pc1", 20), edit("pc2", "patient_id"), `out of the caller's clinic scope: patient_id "pc2" names no patients row`},
		"c1's event moved, losing":          {stored("pc1", 20), losing, `out of the caller's clinic scope: patient_id "pc2" names no patients row`},
		"c1's event to an unknown patient":  {stored("pc1", 20), edit("zz9", "patient_id"), `the row would be out of the caller's clinic scope: patient_id "zz9" names no patients row`},
		"c2's event on a tombstone":         {&codec.Record{Row: codec.Row{Table: "events", ID: "e1"}, Deleted: true, Cursor: 20}, edit("pc2"), "out of the caller's clinic scope"},
	} {
		o := must(merge(tc.cur, tc.in))
		if o.Op != codec.Reject || !strings.Contains(o.Reason, tc.reason) {
			t.Errorf("%s: %s %q, want a rejection %q", name, o.Op, o.Reason, tc.reason)
		}
	}
	for name, tc := range map[string]struct {
		cur *codec.Record
		in  codec.Change
	}{
		"a new event of c1's patient":      {nil, edit("pc1")},
		"c1's event edited":                {stored("pc1", 20), edit("pc1", "form_data")},
		"c1's event moved to another c1":   {stored("pc1", 20), edit("pnull", "patient_id")},
		"c1's event deleted":               {stored("pc1", 20), del},
		"a deleted event pushed again":     {&codec.Record{Row: codec.Row{Table: "events", ID: "e1"}, Deleted: true, Cursor: 20}, edit("pc1")},
		"an unknown event deleted (no-op)": {nil, del},
	} {
		if o := must(merge(tc.cur, tc.in)); o.Op != codec.Write {
			t.Errorf("%s: %s %q, want a write", name, o.Op, o.Reason)
		}
	}
	// Merge reads no parents: rows that follow one are refused, never let through.
	if o := must(push.Merge()(nil, edit("pc1"))); o.Op != codec.Reject {
		t.Errorf("Merge without parents took a scoped hub's event: %s", o.Op)
	}
	st.fail = errors.New("disk on fire")
	if _, err := merge(nil, edit("pc1")); err == nil {
		t.Error("a failed parent read let the push through")
	}
}

// TestStrictScopeBeforeConflict: under the strict policy a row out of
// the caller's scope that changed after its last pull is rejected, not
// answered with a conflict (which would tell the caller it changed).
func TestStrictScopeBeforeConflict(t *testing.T) {
	cat := schema.Default()
	st := parents()
	merge := fsm.Push{Caller: fsm.Caller{ID: "hub1", Hub: true, Clinics: []string{"c1"}}, LastPulledAt: 30,
		Policy: fsm.StrictPolicy, Catalog: cat}.MergeWith(st.get)
	patient := func(clinic string) *codec.Record {
		c := patientCols("Amina", "111")
		c["primary_clinic_id"] = codec.String(clinic)
		return &codec.Record{Row: codec.Row{Table: "patients", ID: "p1", Cols: c, Versions: at(c, 10, "a")}, Cursor: 40, CreatedCursor: 5}
	}
	in := change(patientCols("Amina", "999"), "phone")
	for _, c := range []codec.Change{in, deleteP1} {
		o, err := merge(patient("c2"), c)
		if err != nil || o.Op != codec.Reject {
			t.Errorf("c2's patient changed after the pull, delete=%v: %s %v, want a rejection", c.Delete, o.Op, err)
		}
		if _, err := merge(patient("c1"), c); !errors.Is(err, fsm.ErrConflict) {
			t.Errorf("c1's patient changed after the pull, delete=%v: %v, want a conflict", c.Delete, err)
		}
	}
	vitals := &codec.Record{Row: row("patient_vitals", "v1", "patient_id", "pc2"), Cursor: 40}
	if o, err := merge(vitals, codec.Change{Row: codec.Row{Table: "patient_vitals", ID: "v1"}, Delete: true}); err != nil || o.Op != codec.Reject {
		t.Errorf("c2's vitals changed after the pull: %s %v, want a rejection", o.Op, err)
	}
}

// TestPushDeleteUnknownKeepsClinic: a delete of an id never stored
// leaves a tombstone of the caller's clinic when it has exactly one.
func TestPushDeleteUnknownKeepsClinic(t *testing.T) {
	cat := schema.Default()
	for _, tc := range []struct {
		clinics []string
		table   string
		want    string
	}{
		{[]string{"c1"}, "patients", `map[primary_clinic_id:"c1"]`},
		{[]string{"c1"}, "visits", `map[clinic_id:"c1"]`},
		{[]string{"c1"}, "events", "map[]"},
		{[]string{"c1", "c2"}, "patients", "map[]"},
		{nil, "patients", "map[]"},
	} {
		merge := fsm.Push{Caller: fsm.Caller{ID: "hub1", Hub: true, Clinics: tc.clinics}, Catalog: cat}.Merge()
		o := must(merge(nil, codec.Change{Row: codec.Row{Table: tc.table, ID: "x"}, Delete: true}))
		if o.Op != codec.Write || !o.Record.Deleted || fmt.Sprint(o.Record.Cols) != tc.want {
			t.Errorf("%v deletes an unknown %s: %s %v, want a tombstone with %s", tc.clinics, tc.table, o.Op, o.Record.Cols, tc.want)
		}
	}
}

// TestPushChanges: a push applies its deletes first, children first,
// then parents before the rows that follow them.
func TestPushChanges(t *testing.T) {
	cs := codec.NewChangeset()
	for _, name := range []string{"events", "patient_vitals", "visits", "patients", "peers"} {
		cs.Table(name).Created = []codec.Row{{ID: "n"}}
		cs.Table(name).Deleted = []string{"d"}
	}
	cs.Table("events").Updated = []codec.Row{{ID: "u"}}
	var got []string
	for _, c := range (fsm.Push{Catalog: schema.Default()}).Changes(cs) {
		op := "+"
		switch {
		case c.Delete:
			op = "-"
		case !c.Created:
			op = "~"
		}
		got = append(got, op+c.Table+"/"+c.ID)
	}
	want := "-peers/d -patient_vitals/d -events/d -visits/d -patients/d " +
		"+patients/n +visits/n +events/n ~events/u +patient_vitals/n +peers/n"
	if strings.Join(got, " ") != want {
		t.Errorf("order:\n got %s\nwant %s", strings.Join(got, " "), want)
	}
}
