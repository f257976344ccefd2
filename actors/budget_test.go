package actors

import "testing"

// One caller holds at most half the push budget while it has pushes in
// flight; its first push always fits when the budget does.
func TestBudgetShare(t *testing.T) {
	b := newBudget(100)
	steps := []struct {
		caller string
		n      int64
		ok     bool
	}{
		{"a", 40, true},
		{"a", 20, false}, // a would hold 60, over its half
		{"b", 30, true},  // another caller
		{"b", 20, true},  // b holds 50, its half
		{"b", 1, false},  // b over its share
		{"c", 20, false}, // the budget itself would overrun (110 > 100)
	}
	for i, s := range steps {
		if got := b.take(s.caller, s.n); got != s.ok {
			t.Fatalf("step %d: %s takes %d: %v, want %v", i, s.caller, s.n, got, s.ok)
		}
	}
	if got := b.snapshot(); got.Requests != 3 || got.InFlight != 90 {
		t.Errorf("after the steps: %+v, want 3 requests holding 90 bytes", got)
	}
	b.give("a", 40)
	if !b.take("c", 20) || b.snapshot().InFlight != 70 {
		t.Errorf("after a gave back: %+v", b.snapshot())
	}
	// A request that gives back part of what it took still holds.
	b.shrink("c", 15)
	if got := b.snapshot(); got.Requests != 3 || got.InFlight != 55 {
		t.Errorf("after c shrank: %+v, want 3 requests holding 55 bytes", got)
	}
	b.give("c", 5)
	if got := b.snapshot(); got.Requests != 2 || got.InFlight != 50 {
		t.Errorf("after c gave back: %+v, want 2 requests holding 50 bytes", got)
	}
	// A first push over half the budget fits when nothing else does.
	if b := newBudget(100); !b.take("a", 60) {
		t.Error("a lone push of 60% refused")
	}
}
