package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// permissionsRow is a user_clinic_permissions row for user in c1 that
// grants registering and editing only.
func permissionsRow(user string) []string {
	row := []string{"user_id=" + user, "clinic_id=c1", "created_at=2026-03-01", "updated_at=2026-03-01",
		"can_register_patients=true", "can_edit_records=true"}
	for _, p := range []string{"can_view_history", "can_delete_records", "is_clinic_admin", "can_edit_other_provider_event",
		"can_download_patient_reports", "can_prescribe_medications", "can_dispense_medications",
		"can_delete_patient_visits", "can_delete_patient_records"} {
		row = append(row, p+"=false")
	}
	return row
}

// TestModeCommand: `node mode` on a device of a cloud served by its own
// process. The clinic's policy arrives with a sync; offline → online is
// refused while a local change is unsynced and allowed after a sync;
// online, put and rows reach the cloud and nothing lands locally, a
// sync is skipped, a delete the nurse may not make is refused; back
// offline, the local store never saw the online patient.
func TestModeCommand(t *testing.T) {
	root := t.TempDir()
	cloud, phone := filepath.Join(root, "cloud"), filepath.Join(root, "phone")
	ok(t, "init", "--data", cloud, "--kind", "cloud", "--clinic", "c1")
	user := okJSON(t, "user", "add", "--data", cloud, "--email", "nurse@example.org", "--password", "correct horse", "--clinic", "c1")
	_, url := serveProc(t, cloud, "127.0.0.1:0")
	ok(t, append([]string{"put", "--data", cloud, "--table", "user_clinic_permissions", "--id", "perm-1"}, permissionsRow(user["user_id"].(string))...)...)
	ok(t, "put", "--data", cloud, "--table", "app_config", "--id", "mode", "namespace=system", "key=operation_mode",
		"value=user_choice", "data_type=string", "created_at=2026-03-01", "updated_at=2026-03-01", "last_modified=2026-03-01")

	ok(t, "init", "--data", phone, "--kind", "mobile")
	ok(t, "peer", "add", "--data", phone, "--type", "cloud_server", "--url", url)
	if m := okJSON(t, "mode", "--data", phone); m["mode"] != "offline" || m["policy"] != "offline" {
		t.Fatalf("mode before any sync: %v", m)
	}
	okJSON(t, "login", "--data", phone, "--email", "nurse@example.org", "--password", "correct horse")
	ok(t, append([]string{"put", "--data", phone, "--table", "patients", "--id", "local", "primary_clinic_id=c1"}, patient...)...)
	fails(t, 1, "node mode: Sync local changes before switching to online mode (1 pending)", "mode", "--data", phone, "online")
	okJSON(t, "sync", "--data", phone)
	if m := okJSON(t, "mode", "--data", phone, "online"); m["mode"] != "online" || m["policy"] != "user_choice" {
		t.Fatalf("mode online after a sync: %v", m)
	}
	if st := okJSON(t, "status", "--data", phone); st["mode"] != "online" {
		t.Errorf("status in online mode: %v", st)
	}

	ok(t, append([]string{"put", "--data", phone, "--table", "patients", "--id", "online", "primary_clinic_id=c1"}, patient...)...)
	if row := patientRow(t, cloud, "online"); row == nil || row["given_name"] != "Amina" {
		t.Fatalf("the online patient on the cloud: %v", row)
	}
	if row := patientRow(t, phone, "online"); row == nil || row["given_name"] != "Amina" {
		t.Errorf("online rows on the phone (read from the cloud): %v", row)
	}
	if out := okJSON(t, "sync", "--data", phone); out["outcome"] != "skipped" {
		t.Errorf("sync in online mode: %v", out)
	}
	r := runCLI("delete", "--data", phone, "--table", "patients", "--id", "online")
	if r.code != 1 || !strings.Contains(r.stderr, "PERMISSION_DENIED") || !strings.Contains(r.stderr, "can_delete_patient_records") {
		t.Errorf("online delete without the permission: %+v", r)
	}
	if m := okJSON(t, "mode", "--data", phone, "offline"); m["mode"] != "offline" {
		t.Fatalf("mode offline: %v", m)
	}
	if row := patientRow(t, phone, "online"); row != nil {
		t.Errorf("the online patient is in the phone's own store: %v", row)
	}
	if row := patientRow(t, phone, "local"); row == nil || row["_status"] != "synced" {
		t.Errorf("the phone's own patient: %v", row)
	}
}
