package kv

import (
	"testing"
	"time"

	"github.com/clinicsync/clinicsync/codec"
)

// unversion rewrites a store as a clinicsync from before column versions
// left it: rows without versions, no format key.
func unversion(t *testing.T, be Backend) {
	t.Helper()
	err := be.Update(func(tx Tx) error {
		for _, bucket := range tx.Buckets(rowsPfx) {
			b, err := tx.Bucket(bucket)
			if err != nil {
				return err
			}
			var rows []Record
			err = b.Ascend(nil, func(k, v []byte) (bool, error) {
				r, err := decodeRecord(bucket[len(rowsPfx):], string(k), v)
				rows = append(rows, r)
				return true, err
			})
			if err != nil {
				return err
			}
			for _, r := range rows {
				r.Versions = nil
				enc, err := encodeRecord(&r)
				if err != nil {
					return err
				}
				if err := b.Put([]byte(r.ID), enc); err != nil {
					return err
				}
			}
		}
		m, err := tx.Bucket(bMeta)
		if err != nil {
			return err
		}
		return m.Delete(kFormat)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestMigrateGivesOldRowsVersions(t *testing.T) {
	be := NewMemory()
	clock := NewManualClock(time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC))
	opts := Options{Clock: clock, NodeID: "dev-1"}
	s, err := New(be, opts)
	if err != nil {
		t.Fatal(err)
	}
	cols := map[string]codec.Value{"given_name": codec.String("Amina"), "surname": codec.String("Doe"),
		"date_of_birth": codec.String("1990-04-01"), "citizenship": codec.String("JO"),
		"hometown": codec.String("Amman"), "phone": codec.String("111"), "sex": codec.String("female"),
		"additional_data": codec.JSONText(`{}`), "metadata": codec.JSONText(`{}`),
		"is_deleted": codec.Bool(false), "government_id": codec.String("G1"), "external_patient_id": codec.String("E1")}
	before, err := s.Put("patients", "p1", cols)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Delete("patients", "p1"); err != nil {
		t.Fatal(err)
	}
	p2, err := s.Put("patients", "p2", cols)
	if err != nil {
		t.Fatal(err)
	}
	unversion(t, be)

	s, err = New(be, opts)
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.Get("patients", "p2")
	if err != nil {
		t.Fatal(err)
	}
	updated := before.Cols["updated_at"].Num
	for col := range r.Cols {
		if v := r.Versions[col]; v != (codec.Version{Wall: int64(updated)}) {
			t.Fatalf("migrated %s: version %v, want {updated_at=%v,0,\"\"}", col, v, updated)
		}
	}
	if r.Status != Created || r.Cursor != p2.Cursor {
		t.Fatalf("migration changed the sync state: %s cursor %d (was %d)", r.Status, r.Cursor, p2.Cursor)
	}
	if p1, err := s.Get("patients", "p1"); err != nil || !p1.Deleted {
		t.Fatalf("the tombstone: %+v, %v", p1, err)
	}
	// It syncs: the push collects both, versioned, and they are marked
	// synced.
	pending, err := s.Collect(0)
	if err != nil || len(pending) != 2 {
		t.Fatalf("collect after the migration: %d records, %v", len(pending), err)
	}
	var refs []Ref
	for _, r := range pending {
		if !r.Deleted && len(r.Versions) != len(r.Cols) {
			t.Fatalf("collected %s without versions: %v", r.ID, r.Versions)
		}
		refs = append(refs, RefOf(r))
	}
	if n, err := s.MarkSynced(refs); err != nil || n != 2 {
		t.Fatalf("mark synced: %d, %v", n, err)
	}
	r, err = s.Get("patients", "p2")
	if err != nil {
		t.Fatal(err)
	}
	// An edit after the migration beats the migrated versions.
	clock.Add(time.Second)
	after, err := s.Put("patients", "p2", map[string]codec.Value{"phone": codec.String("222")})
	if err != nil {
		t.Fatal(err)
	}
	if after.Versions["phone"].Compare(r.Versions["phone"]) <= 0 {
		t.Fatalf("edit version %v not above the migrated %v", after.Versions["phone"], r.Versions["phone"])
	}
	var format uint64
	if err := be.View(func(tx Tx) (err error) { format, err = readFormat(tx); return err }); err != nil || format != formatCurrent {
		t.Fatalf("format %d, %v", format, err)
	}
}

// A store from before the device key index (format 1) gets it when
// opened: its hubs' keys are found again.
func TestMigrateIndexesDeviceKeys(t *testing.T) {
	be := NewMemory()
	opts := Options{Clock: NewManualClock(time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC))}
	s, err := New(be, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.PutDevice(Device{ID: "hub1", KeyHash: []byte("0123456789abcdef0123456789abcdef")}); err != nil {
		t.Fatal(err)
	}
	err = be.Update(func(tx Tx) error { // as format 1 left it: no index
		idx, err := tx.Bucket(bDeviceKey)
		if err != nil {
			return err
		}
		if err := idx.Delete([]byte("0123456789abcdef0123456789abcdef")); err != nil {
			return err
		}
		m, err := tx.Bucket(bMeta)
		if err != nil {
			return err
		}
		return m.Put(kFormat, u64b(formatVersions))
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeviceByKeyHash([]byte("0123456789abcdef0123456789abcdef")); err == nil {
		t.Fatal("the key was found without its index: the test does not remove it")
	}
	s, err = New(be, opts)
	if err != nil {
		t.Fatal(err)
	}
	if d, err := s.DeviceByKeyHash([]byte("0123456789abcdef0123456789abcdef")); err != nil || d.ID != "hub1" {
		t.Errorf("after the migration: %+v %v", d, err)
	}
}
