package actors

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/clinicsync/clinicsync/codec"
)

// putPermissions stores a user_clinic_permissions row granting grants
// (and nothing else).
func putPermissions(t *testing.T, n *Node, id, user, clinic string, grants ...string) {
	t.Helper()
	now := codec.Int(time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC).UnixMilli())
	cols := map[string]codec.Value{"user_id": codec.String(user), "clinic_id": codec.String(clinic),
		"created_at": now, "updated_at": now}
	tb, _ := n.store.Catalog().Table("user_clinic_permissions")
	for _, c := range tb.Columns {
		if c.Name == "is_clinic_admin" || strings.HasPrefix(c.Name, "can_") {
			cols[c.Name] = codec.Bool(slices.Contains(grants, c.Name))
		}
	}
	if _, err := n.store.Put("user_clinic_permissions", id, cols); err != nil {
		t.Fatal(err)
	}
}

// TestPermissions: a user's permissions are those of its row in the
// clinic asked for; another clinic's row, another user's, or a deleted
// row grant nothing.
func TestPermissions(t *testing.T) {
	hub := rpcNode(t, KindHub)
	putPermissions(t, hub, "p1", "u1", "c1", "can_register_patients", "can_edit_records")
	putPermissions(t, hub, "p2", "u1", "c2", "can_delete_records")
	putPermissions(t, hub, "p3", "u2", "c1", "is_clinic_admin")
	putPermissions(t, hub, "p4", "u3", "c1", "can_edit_records")
	if err := hub.store.Delete("user_clinic_permissions", "p4"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		user, clinic string
		want         []string
	}{
		{"u1", "c1", []string{"can_edit_records", "can_register_patients"}},
		{"u1", "c2", []string{"can_delete_records"}},
		{"u2", "c1", []string{"is_clinic_admin"}},
		{"u3", "c1", nil},
		{"u1", "c3", nil},
	} {
		p, err := loadPermissions(hub.store, c.user, c.clinic)
		if err != nil || !slices.Equal(p.Granted(), c.want) {
			t.Errorf("permissions of %s in %s: %v %v, want %v", c.user, c.clinic, p.Granted(), err, c.want)
		}
		if p.Allows("can_delete_patient_records") {
			t.Errorf("%s in %s may delete patient records", c.user, c.clinic)
		}
	}
}
