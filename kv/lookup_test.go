package kv_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/clinicsync/clinicsync/codec"
	"github.com/clinicsync/clinicsync/kv"
)

// TestApplyWithLookup: the merge of ApplyWith reads, in the batch's own
// transaction, the rows the batch wrote before (on both backends, where
// bbolt would deadlock on a second transaction); the Lookup of a read
// finds the committed row, and an unknown table is an error for both.
func TestApplyWithLookup(t *testing.T) {
	eachBackend(t, true, func(t *testing.T, h *harness) {
		h.put("patients", "p0", patient("Old", "1"))
		var seen []string
		b := kv.Batch{Changes: []kv.Change{
			{Row: codec.Row{Table: "patients", ID: "p1", Cols: patient("Amina", "2")}, Created: true},
			{Row: codec.Row{Table: "events", ID: "e1", Cols: map[string]codec.Value{"patient_id": codec.String("p1")}}, Created: true},
			{Row: codec.Row{Table: "events", ID: "e2", Cols: map[string]codec.Value{"patient_id": codec.String("p9")}}, Created: true},
		}}
		res, err := h.s.ApplyWith(b, func(get kv.Lookup) kv.Merge {
			return func(cur *kv.Record, in kv.Change) (kv.Outcome, error) {
				if in.Table == "events" {
					p, err := get("patients", in.Cols["patient_id"].Str)
					if err != nil {
						return kv.Outcome{}, err
					}
					if p == nil {
						return kv.Outcome{Op: kv.Reject, Reason: "no patient"}, nil
					}
					seen = append(seen, in.ID+"->"+p.ID+" "+p.Cols["given_name"].Str)
				}
				if _, err := get("nonesuch", "x"); !errors.Is(err, kv.ErrUnknownTable) {
					t.Errorf("lookup of an unknown table: %v", err)
				}
				return kv.Outcome{Op: kv.Write, Record: kv.Record{Row: codec.Row{Cols: in.Cols}}}, nil
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(seen) != 1 || seen[0] != "e1->p1 Amina" || res.Written != 2 || len(res.Rejected) != 1 || res.Rejected[0].ID != "e2" {
			t.Errorf("seen %v, result %+v", seen, res)
		}
		if p, err := h.s.Lookup("patients", "p1"); err != nil || p == nil || p.Cols["given_name"].Str != "Amina" {
			t.Errorf("Lookup(p1) = %v, %v", p, err)
		}
		if p, err := h.s.Lookup("patients", "nobody"); p != nil || err != nil {
			t.Errorf("Lookup of a missing row = %v, %v", p, err)
		}
		if _, err := h.s.Lookup("nonesuch", "x"); !errors.Is(err, kv.ErrUnknownTable) {
			t.Errorf("Lookup of an unknown table: %v", err)
		}
	})
}

// TestTombstoneKeepsClinic: a tombstone keeps the clinic column of the
// row it replaces (else the one its merge gave it), whichever way the
// row was deleted, and nothing else; rows of tables without one keep
// nothing.
func TestTombstoneKeepsClinic(t *testing.T) {
	eachBackend(t, true, func(t *testing.T, h *harness) {
		p := patient("Amina", "1")
		p["primary_clinic_id"] = codec.String("c2")
		h.put("patients", "p1", p)
		h.put("patients", "p2", p)
		write := func(_ *kv.Record, in kv.Change) (kv.Outcome, error) {
			return kv.Outcome{Op: kv.Write, Record: kv.Record{Row: codec.Row{Cols: in.Cols}}}, nil
		}
		e1 := kv.Change{Row: codec.Row{Table: "events", ID: "e1", Cols: map[string]codec.Value{"patient_id": codec.String("p1")}}}
		if _, err := h.s.Apply(kv.Batch{Changes: []kv.Change{e1}}, write); err != nil {
			t.Fatal(err)
		}
		if err := h.s.Delete("patients", "p1"); err != nil {
			t.Fatal(err)
		}
		del := func(*kv.Record, kv.Change) (kv.Outcome, error) {
			return kv.Outcome{Op: kv.Write, Record: kv.Record{Deleted: true}}, nil
		}
		b := kv.Batch{Changes: []kv.Change{
			{Row: codec.Row{Table: "patients", ID: "p2"}, Delete: true},
			{Row: codec.Row{Table: "events", ID: "e1"}, Delete: true},
			{Row: codec.Row{Table: "patients", ID: "p9"}, Delete: true},
		}}
		if _, err := h.s.Apply(b, del); err != nil {
			t.Fatal(err)
		}
		// A merge may give the tombstone of an id never stored its clinic;
		// a stored row's own clinic wins.
		delIn := func(*kv.Record, kv.Change) (kv.Outcome, error) {
			return kv.Outcome{Op: kv.Write, Record: kv.Record{Deleted: true, Row: codec.Row{
				Cols: map[string]codec.Value{"primary_clinic_id": codec.String("c1"), "phone": codec.String("x")}}}}, nil
		}
		h.put("patients", "p3", p)
		b = kv.Batch{Changes: []kv.Change{
			{Row: codec.Row{Table: "patients", ID: "p3"}, Delete: true},
			{Row: codec.Row{Table: "patients", ID: "p8"}, Delete: true},
		}}
		if _, err := h.s.Apply(b, delIn); err != nil {
			t.Fatal(err)
		}
		h.reopen()
		for id, want := range map[string]string{"patients/p1": `map[primary_clinic_id:"c2"]`, "patients/p2": `map[primary_clinic_id:"c2"]`,
			"events/e1": "map[]", "patients/p9": "map[]", "patients/p3": `map[primary_clinic_id:"c2"]`, "patients/p8": `map[primary_clinic_id:"c1"]`} {
			table, rid, _ := strings.Cut(id, "/")
			r := h.get(table, rid)
			if got := fmt.Sprint(r.Cols); !r.Deleted || got != want || len(r.Versions) != 0 {
				t.Errorf("%s: deleted=%v cols %s versions %v, want a tombstone with %s", id, r.Deleted, got, r.Versions, want)
			}
		}
	})
}
