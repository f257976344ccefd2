package kv_test

import (
	"testing"
	"time"

	"github.com/clinicsync/clinicsync/codec"
	"github.com/clinicsync/clinicsync/kv"
)

func withNode(node string) func(*kv.Options) {
	return func(o *kv.Options) { o.NodeID = node }
}

// reopenWith reopens the store with changed options (the backend keeps
// what was committed).
func (h *harness) reopenWith(change func(*kv.Options)) {
	change(&h.opts)
	h.reopen()
}

func TestVersionsStampWrittenColumnsAndPersist(t *testing.T) {
	eachBackend(t, false, func(t *testing.T, h *harness) {
		h.reopenWith(withNode("dev-1"))
		first := h.put("patients", "p1", patient("Amina", "111"))
		now := h.clock.Now().UnixMilli()
		for col := range first.Cols {
			if v := first.Versions[col]; v.Wall != now || v.Node != "dev-1" {
				t.Fatalf("column %s: version %v, want wall %d by dev-1", col, v, now)
			}
		}
		h.clock.Add(time.Second)
		h.put("patients", "p1", map[string]codec.Value{"phone": codec.String("222")})
		h.reopen()
		r := h.get("patients", "p1")
		if got, was := r.Versions["phone"], first.Versions["phone"]; got.Compare(was) <= 0 {
			t.Fatalf("phone version %v after the edit, not above %v", got, was)
		}
		if r.Versions["given_name"] != first.Versions["given_name"] {
			t.Fatalf("an unwritten column was stamped again: %v", r.Versions["given_name"])
		}
	})
}

func TestVersionsNeverGoBack(t *testing.T) {
	eachBackend(t, false, func(t *testing.T, h *harness) {
		h.reopenWith(withNode("dev-1"))
		last := h.put("patients", "p1", patient("Amina", "0")).Versions["phone"]
		for i, step := range []func(){
			func() { h.clock.Add(-time.Hour) }, // the clock set back
			func() { h.reopen() },              // a restart
			func() { h.clock.Add(-24 * time.Hour); h.reopen() },
		} {
			step()
			v := h.put("patients", "p1", map[string]codec.Value{"phone": codec.String(string(rune('1' + i)))}).Versions["phone"]
			if v.Compare(last) <= 0 {
				t.Fatalf("step %d: version %v not above the previous %v", i, v, last)
			}
			last = v
		}
	})
}

func TestReceivedVersionsAdvanceTheClock(t *testing.T) {
	eachBackend(t, false, func(t *testing.T, h *harness) {
		h.reopenWith(withNode("dev-1"))
		ahead := codec.Version{Wall: h.clock.Now().Add(time.Hour).UnixMilli(), Counter: 3, Node: "dev-2"}
		row := codec.Row{Table: "patients", ID: "p1", Cols: patient("Amina", "111"), Versions: map[string]codec.Version{}}
		for col := range row.Cols {
			row.Versions[col] = ahead
		}
		if _, err := h.s.Apply(kv.Batch{Changes: []kv.Change{{Row: row}}}, replace); err != nil {
			t.Fatal(err)
		}
		v := h.put("patients", "p1", map[string]codec.Value{"phone": codec.String("222")}).Versions["phone"]
		if v.Compare(ahead) <= 0 {
			t.Fatalf("an edit after receiving %v got %v", ahead, v)
		}
	})
}

func TestClampPending(t *testing.T) {
	eachBackend(t, false, func(t *testing.T, h *harness) {
		h.reopenWith(withNode("dev-1"))
		// The device's clock runs a day ahead of its upstream's.
		upstream := h.clock.Now().UnixMilli()
		h.clock.Add(24 * time.Hour)
		a := h.put("patients", "p1", patient("Amina", "111")).Versions["phone"]
		b := h.put("patients", "p1", map[string]codec.Value{"phone": codec.String("222")}).Versions["phone"]
		limit := upstream + kv.DefaultMaxDrift.Milliseconds()
		n, err := h.s.ClampPending(limit)
		if err != nil || n == 0 {
			t.Fatalf("clamped %d, %v", n, err)
		}
		r := h.get("patients", "p1")
		clamped := r.Versions["phone"]
		if clamped.Wall != limit || clamped.Node != "dev-1" || r.Versions["given_name"].Compare(clamped) >= 0 {
			t.Fatalf("after the clamp: phone %v, given_name %v (before: %v, %v; limit %d)", clamped, r.Versions["given_name"], a, b, limit)
		}

		// A version received afterwards, and a second clamp with an
		// earlier limit (the upstream's clock set back): the next edit
		// still beats both what was clamped before and what was received.
		other := codec.Version{Wall: limit + 5, Node: "dev-2"}
		row := codec.Row{Table: "patients", ID: "p2", Cols: patient("Badr", "333"), Versions: map[string]codec.Version{}}
		for col := range row.Cols {
			row.Versions[col] = other
		}
		if _, err := h.s.Apply(kv.Batch{Changes: []kv.Change{{Row: row}}}, replace); err != nil {
			t.Fatal(err)
		}
		h.put("patients", "p1", map[string]codec.Value{"phone": codec.String("444")})
		if _, err := h.s.ClampPending(upstream - time.Hour.Milliseconds()); err != nil {
			t.Fatal(err)
		}
		after := h.get("patients", "p1").Versions["phone"]
		if after.Compare(clamped) <= 0 || after.Compare(other) <= 0 {
			t.Fatalf("a later edit clamped to %v: not above the earlier clamp %v and the received %v", after, clamped, other)
		}
		h.reopen()
		if again := h.put("patients", "p1", map[string]codec.Value{"phone": codec.String("555")}).Versions["phone"]; again.Compare(after) <= 0 {
			t.Fatalf("an edit after the clamp and a restart got %v, not above %v", again, after)
		}
	})
}

// conflicting is a merge that keeps the stored row and logs the incoming
// phone as beaten.
func conflicting(cur *kv.Record, in kv.Change) (kv.Outcome, error) {
	return kv.Outcome{Op: kv.Skip, Conflicts: []kv.Conflict{{Table: in.Table, ID: in.ID, Column: "phone",
		Value: in.Cols["phone"], Version: codec.Version{Wall: 1, Node: "dev-2"}, Winner: codec.Version{Wall: 2, Node: "dev-1"}}}}, nil
}

func TestConflictLogRetention(t *testing.T) {
	eachBackend(t, false, func(t *testing.T, h *harness) {
		h.reopenWith(func(o *kv.Options) { o.ConflictMax, o.ConflictAge = 3, time.Hour })
		h.put("patients", "p1", patient("Amina", "111"))
		lose := func(phone string) {
			row := codec.Row{Table: "patients", ID: "p1", Cols: map[string]codec.Value{"phone": codec.String(phone)}}
			res, err := h.s.Apply(kv.Batch{Changes: []kv.Change{{Row: row}}}, conflicting)
			if err != nil || res.Conflicts != 1 {
				t.Fatalf("apply: %+v, %v", res, err)
			}
		}
		logged := func() (phones []string) {
			err := h.s.Conflicts("patients", "p1", func(c kv.Conflict) error {
				phones = append(phones, c.Value.Str)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			return phones
		}
		for _, p := range []string{"a", "b", "c", "d", "e"} {
			lose(p)
		}
		if got := logged(); len(got) != 3 || got[0] != "c" || got[2] != "e" {
			t.Fatalf("count bound: log holds %v, want the newest 3 (c d e)", got)
		}
		h.clock.Add(2 * time.Hour)
		lose("f")
		if got := logged(); len(got) != 1 || got[0] != "f" {
			t.Fatalf("age bound: log holds %v, want only f", got)
		}
		if n, err := h.s.ConflictCount(); n != 1 || err != nil {
			t.Fatalf("ConflictCount %d, %v", n, err)
		}
		if err := h.s.Conflicts("visits", "", func(kv.Conflict) error { t.Fatal("filter by table"); return nil }); err != nil {
			t.Fatal(err)
		}
	})
}
