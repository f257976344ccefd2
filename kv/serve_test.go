package kv_test

import (
	"fmt"
	"testing"

	"github.com/clinicsync/clinicsync/codec"
)

func TestTableChangesSince(t *testing.T) {
	eachBackend(t, true, func(t *testing.T, h *harness) {
		start, _ := h.s.LastCursor()
		for i := range 7 {
			h.put("patients", fmt.Sprintf("p%d", i), patient("A", "1"))
			h.put("clinics", fmt.Sprintf("c%d", i), map[string]codec.Value{"name": codec.String("North"), "is_deleted": codec.Bool(false), "is_archived": codec.Bool(false)})
		}
		upto, _ := h.s.LastCursor()
		h.put("patients", "p1", map[string]codec.Value{"phone": codec.String("2")}) // moves above upto
		if err := h.s.Delete("patients", "p2"); err != nil {                        // a tombstone above upto
			t.Fatal(err)
		}

		walk := func(table string, since, upto int64, limit int) (ids []string, pages int) {
			t.Helper()
			for {
				p, err := h.s.TableChangesSince(table, since, upto, limit)
				if err != nil {
					t.Fatal(err)
				}
				pages++
				for _, r := range p.Records {
					if r.Table != table {
						t.Fatalf("walk of %s returned %s/%s", table, r.Table, r.ID)
					}
					if upto > 0 && r.Cursor > upto {
						t.Fatalf("walk up to %d returned cursor %d", upto, r.Cursor)
					}
					ids = append(ids, r.ID)
				}
				if !p.More {
					return ids, pages
				}
				if p.Next <= since {
					t.Fatalf("page did not advance: next %d since %d", p.Next, since)
				}
				since = p.Next
			}
		}
		ids, pages := walk("patients", start, upto, 2)
		if fmt.Sprint(ids) != "[p0 p3 p4 p5 p6]" || pages != 3 {
			t.Errorf("patients up to T: %v in %d pages", ids, pages)
		}
		ids, _ = walk("patients", start, 0, 2)
		if fmt.Sprint(ids) != "[p0 p3 p4 p5 p6 p1 p2]" {
			t.Errorf("patients, unbounded: %v", ids)
		}
		ids, _ = walk("clinics", start, upto, 0)
		if len(ids) != 7 {
			t.Errorf("clinics: %v", ids)
		}
		if _, err := h.s.TableChangesSince("nope", 0, 0, 0); err == nil {
			t.Error("unknown table: no error")
		}

		n, err := h.s.CountSince(start)
		if err != nil || n != 14 {
			t.Errorf("CountSince(start) = %d, %v; want 14", n, err)
		}
		n, err = h.s.CountSince(upto)
		if err != nil || n != 2 {
			t.Errorf("CountSince(upto) = %d, %v; want 2", n, err)
		}
	})
}
