package actors

// A Hikma user's permissions in a clinic: the row of
// user_clinic_permissions for (user, clinic), read again on every
// operation that needs a token (reference §2.4), so a change synced
// down from the cloud takes effect at once.

import (
	"fmt"
	"slices"
	"strings"

	"github.com/clinicsync/clinicsync/kv"
)

// Permissions are the can_* and is_clinic_admin columns of a user's
// user_clinic_permissions row in one clinic, true or false; a user
// without a row there has none (every Allows is false).
type Permissions struct {
	UserID, ClinicID string
	cols             map[string]bool
}

// Allows reports whether the permission named by its column
// (can_register_patients, can_edit_records, is_clinic_admin, ...) is
// granted.
func (p Permissions) Allows(col string) bool { return p.cols[col] }

// Granted lists the granted permissions' columns, sorted.
func (p Permissions) Granted() []string {
	var out []string
	for c, ok := range p.cols {
		if ok {
			out = append(out, c)
		}
	}
	slices.Sort(out)
	return out
}

// loadPermissions reads the permissions of user in clinic: the live
// user_clinic_permissions row with that user_id and clinic_id (the
// table is small: a row per user and clinic).
func loadPermissions(st *kv.Store, user, clinic string) (Permissions, error) {
	p := Permissions{UserID: user, ClinicID: clinic, cols: map[string]bool{}}
	err := st.Rows("user_clinic_permissions", func(r kv.Record) error {
		if r.Deleted || r.Cols["user_id"].Str != user || r.Cols["clinic_id"].Str != clinic {
			return nil
		}
		for c, v := range r.Cols {
			if strings.HasPrefix(c, "can_") || c == "is_clinic_admin" {
				p.cols[c] = p.cols[c] || v.Bool
			}
		}
		return nil
	})
	if err != nil {
		return Permissions{}, fmt.Errorf("Failed to load permissions for user %s: %w", user, err)
	}
	return p, nil
}
