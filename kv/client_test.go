package kv_test

import (
	"testing"
	"time"

	"github.com/clinicsync/clinicsync/kv"
)

func TestClientsRecordSchemaVersion(t *testing.T) {
	eachBackend(t, true, func(t *testing.T, h *harness) {
		t0 := h.clock.Now().UnixMilli()
		for _, c := range []kv.Client{
			{ID: "u1", SchemaVersion: 8},
			{ID: "u1", Device: "phone2", SchemaVersion: 9},
			{ID: "hub1", Hub: true, SchemaVersion: 9},
		} {
			if err := h.s.RecordClient(c); err != nil {
				t.Fatal(err)
			}
		}
		if err := h.s.RecordClient(kv.Client{}); err == nil {
			t.Error("a client without an id was recorded")
		}
		// The same version soon after writes nothing (LastSeen stays);
		// an upgrade is recorded at once; a minute later LastSeen moves.
		h.clock.Add(time.Second)
		if err := h.s.RecordClient(kv.Client{ID: "u1", SchemaVersion: 8}); err != nil {
			t.Fatal(err)
		}
		if err := h.s.RecordClient(kv.Client{ID: "hub1", Hub: true, SchemaVersion: 10}); err != nil {
			t.Fatal(err)
		}
		h.reopen()
		cs, err := h.s.Clients()
		if err != nil || len(cs) != 3 {
			t.Fatalf("clients: %+v %v", cs, err)
		}
		byKey := map[string]kv.Client{}
		for _, c := range cs {
			byKey[c.Key()] = c
		}
		if c := byKey["u1"]; c.SchemaVersion != 8 || c.LastSeen != t0 || c.FirstSeen != t0 {
			t.Errorf("u1: %+v", c)
		}
		if c := byKey["u1/phone2"]; c.SchemaVersion != 9 {
			t.Errorf("u1's second device: %+v", c)
		}
		if c := byKey["hub1"]; c.SchemaVersion != 10 || !c.Hub || c.LastSeen != t0+1000 || c.FirstSeen != t0 {
			t.Errorf("hub1 after its upgrade: %+v", c)
		}
		h.clock.Add(kv.ClientSeenEvery)
		if err := h.s.RecordClient(kv.Client{ID: "u1"}); err != nil { // no version reported
			t.Fatal(err)
		}
		cs, _ = h.s.Clients()
		if cs[1].SchemaVersion != 8 {
			t.Errorf("a pull without a version lost u1's: %+v", cs[1])
		}
		if cs[1].Key() != "u1" || cs[1].LastSeen != h.clock.Now().UnixMilli() {
			t.Errorf("u1 a minute later: %+v", cs)
		}
	})
}
