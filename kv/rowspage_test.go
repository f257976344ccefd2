package kv_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/clinicsync/clinicsync/codec"
	"github.com/clinicsync/clinicsync/kv"
)

// TestRowsPage: a table read page by page, after the last id of each
// page, yields every row once, tombstones included, in id order, each
// page at most the limit, the same rows as Rows; other tables' rows and
// a row written between pages behind the walk do not disturb it.
func TestRowsPage(t *testing.T) {
	eachBackend(t, true, func(t *testing.T, h *harness) {
		for i := range 23 {
			h.put("patients", fmt.Sprintf("p%02d", i), patient("A", "1"))
		}
		h.put("clinics", "c1", map[string]codec.Value{"name": codec.String("North"), "is_deleted": codec.Bool(false), "is_archived": codec.Bool(false)})
		if err := h.s.Delete("patients", "p07"); err != nil {
			t.Fatal(err)
		}
		var want []string
		if err := h.s.Rows("patients", func(r kv.Record) error { want = append(want, r.ID); return nil }); err != nil {
			t.Fatal(err)
		}
		for _, limit := range []int{1, 5, 23, 24, 100, 0} {
			var got []string
			after, pages := "", 0
			for {
				rows, more, err := h.s.RowsPage("patients", after, limit)
				if err != nil {
					t.Fatal(err)
				}
				pages++
				if limit > 0 && len(rows) > limit {
					t.Fatalf("limit %d: a page of %d rows", limit, len(rows))
				}
				for _, r := range rows {
					if r.Table != "patients" || r.ID == "p07" && !r.Deleted {
						t.Fatalf("limit %d: row %s/%s deleted=%v", limit, r.Table, r.ID, r.Deleted)
					}
					got = append(got, r.ID)
				}
				if !more {
					break
				}
				if len(rows) == 0 {
					t.Fatalf("limit %d: an empty page with more", limit)
				}
				after = rows[len(rows)-1].ID
				if pages == 2 { // a write behind the walk is not read again
					h.put("patients", "p00", map[string]codec.Value{"phone": codec.String("2")})
				}
			}
			if !slices.Equal(got, want) {
				t.Errorf("limit %d: pages gave %v, want %v", limit, got, want)
			}
			if wantPages := max(1, (len(want)+limit-1)/max(limit, 1)); limit > 0 && pages != wantPages {
				t.Errorf("limit %d: %d pages, want %d", limit, pages, wantPages)
			}
		}
		if rows, more, err := h.s.RowsPage("patients", "p22", 5); err != nil || len(rows) != 0 || more {
			t.Errorf("after the last row: %v, %v, %v", rows, more, err)
		}
		if rows, more, err := h.s.RowsPage("visits", "", 5); err != nil || len(rows) != 0 || more {
			t.Errorf("empty table: %v, %v, %v", rows, more, err)
		}
		if _, _, err := h.s.RowsPage("nope", "", 5); !errors.Is(err, kv.ErrUnknownTable) {
			t.Errorf("unknown table: %v", err)
		}
	})
}
