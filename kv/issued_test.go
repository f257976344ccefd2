package kv_test

import (
	"testing"
	"time"

	"github.com/clinicsync/clinicsync/kv"
)

// TestIssuedTimestamps: every pull timestamp IssueCursor hands out is
// recorded with it, across reopens; row cursors and timestamps above
// the last cursor are never issued; the record drops the oldest
// timestamps past its age and count bounds, and what it dropped is
// below its floor (no longer known either way). Checked against a
// model: the list of timestamps the test was handed.
func TestIssuedTimestamps(t *testing.T) {
	eachBackend(t, true, func(t *testing.T, h *harness) {
		lookup := func(ts int64) kv.Issued {
			t.Helper()
			i, err := h.s.IssuedTimestamp(ts)
			if err != nil {
				t.Fatal(err)
			}
			return i
		}
		issue := func() int64 {
			t.Helper()
			c, err := h.s.IssueCursor()
			if err != nil {
				t.Fatal(err)
			}
			return c
		}
		var issued []int64
		for i := range 5 {
			issued = append(issued, issue())
			h.clock.Add(time.Millisecond)
			if i == 2 {
				h.reopen()
			}
		}
		row := h.put("patients", "p1", patient("Amina", "111")).Cursor
		issued = append(issued, issue())
		for _, ts := range issued {
			if i := lookup(ts); !i.Issued || i.Unknown(ts) {
				t.Errorf("issued %d: %+v", ts, i)
			}
		}
		last := issued[len(issued)-1]
		for _, ts := range []int64{row, last + 1, issued[0] + 1_000_000, -1} {
			if i := lookup(ts); i.Issued || !i.Unknown(ts) {
				t.Errorf("never issued %d: %+v", ts, i)
			}
		}
		if i := lookup(0); i.Unknown(0) {
			t.Errorf("0 (a first sync) is unknown: %+v", i)
		}

		// Past the age bound the oldest go, a few at each issue, and
		// fall below the floor: older than the record.
		h.clock.Add(kv.DefaultIssuedAge + time.Hour)
		fresh := issue()
		for _, ts := range issued {
			i := lookup(ts)
			if i.Issued || i.Unknown(ts) || i.Floor < ts {
				t.Errorf("aged %d: %+v", ts, i)
			}
		}
		if i := lookup(row); i.Unknown(row) {
			t.Errorf("a row cursor below the floor is still unknown: %+v", i)
		}
		if i := lookup(fresh); !i.Issued {
			t.Errorf("fresh %d: %+v", fresh, i)
		}

		// Past the count bound too.
		h.opts.IssuedMax = 3
		h.reopen()
		var recent []int64
		for range 6 {
			recent = append(recent, issue())
		}
		for k, ts := range append([]int64{fresh}, recent...) {
			i := lookup(ts)
			kept := k >= 4 // the 3 newest of the 7
			if i.Issued != kept || i.Unknown(ts) || kept == (i.Floor >= ts) {
				t.Errorf("count bound, timestamp %d of 7 (%d): %+v", k+1, ts, i)
			}
		}
	})
}
