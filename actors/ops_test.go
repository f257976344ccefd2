package actors_test

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/clinicsync/clinicsync/actors"
	"github.com/clinicsync/clinicsync/codec"
)

// grant stores the user_clinic_permissions row of user in clinic c1
// granting exactly grants.
func grant(t *testing.T, n *actors.Node, user string, grants ...string) {
	t.Helper()
	cols := map[string]any{"user_id": user, "clinic_id": "c1", "created_at": time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC),
		"updated_at": time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)}
	for _, p := range []string{"can_register_patients", "can_view_history", "can_edit_records", "can_delete_records",
		"is_clinic_admin", "can_edit_other_provider_event", "can_download_patient_reports", "can_prescribe_medications",
		"can_dispense_medications", "can_delete_patient_visits", "can_delete_patient_records"} {
		cols[p] = false
	}
	for _, g := range grants {
		cols[g] = true
	}
	if _, err := n.PutValues("user_clinic_permissions", "perm-"+user, cols); err != nil {
		t.Fatal(err)
	}
}

// userID is the id of the user with email on n.
func userID(t *testing.T, n *actors.Node, email string) string {
	t.Helper()
	rows, err := n.Rows("users", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if r.Cols["email"].Str == email {
			return r.ID
		}
	}
	t.Fatalf("no user %s", email)
	return ""
}

// TestHikmaHubOperations: the Hikma app in online mode registers a
// patient, records a visit, an event, vitals and a problem, reads them
// back, and is refused what its permissions do not grant, a row that is
// not there and a value the rules refuse, with nothing stored then.
func TestHikmaHubOperations(t *testing.T) {
	hub := newHikmaHub(t)
	nurse := userID(t, hub.node, hikmaEmail)
	grant(t, hub.node, nurse, "can_register_patients", "can_edit_records")
	app := newHikmaApp(t, hub.url, "phone-1", new(bytes.Buffer))
	app.handshake()
	if r := app.login(hikmaEmail, hikmaPassword); !r.ok() {
		t.Fatalf("login: %v", r.env)
	}
	patient := hikmaPatientRow("")
	delete(patient, "id")
	delete(patient, "_status")
	delete(patient, "_changed")
	reg := app.command("register_patient", map[string]any{"patient": patient,
		"additional_attributes": []any{map[string]any{"attribute_id": "a1", "attribute": "tribe", "string_value": "North",
			"number_value": nil, "date_value": nil, "boolean_value": nil, "metadata": "{}", "is_deleted": false,
			"created_at": 1772352000000, "updated_at": 1772352000000, "last_modified": 1772352000000,
			"server_created_at": 1772352000000, "deleted_at": nil}}})
	if !reg.ok() || reg.result["created"] != true {
		t.Fatalf("register_patient: %d %v %v", reg.status, reg.env, reg.result)
	}
	pid, _ := reg.result["patient_id"].(string)
	got := app.query("get_patient", map[string]any{"patient_id": pid})
	p, _ := got.result["patient"].(map[string]any)
	attrs, _ := got.result["additional_attributes"].([]any)
	if !got.ok() || p["given_name"] != hikmaPatient || p["created_at"] != float64(1772352000000) || len(attrs) != 1 {
		t.Fatalf("get_patient: %v %v", got.env, got.result)
	}
	if r, err := hub.node.Rows("patients", pid); err != nil || r[0].Versions["given_name"].Wall == 0 || !r[0].Status.Pending() {
		t.Errorf("the registered patient on the hub: %+v %v, want column versions and pending upstream", r, err)
	}
	search := app.query("search_patients", map[string]any{"search_term": "zubay haddad"})
	if !search.ok() || search.result["total"] != float64(1) || search.result["limit"] != float64(20) {
		t.Errorf("search_patients: %v %v", search.env, search.result)
	}
	if none := app.query("search_patients", map[string]any{"search_term": "nobody"}); none.result["total"] != float64(0) {
		t.Errorf("search_patients nobody: %v", none.result)
	}

	visit := app.command("visits.create", map[string]any{"patient_id": pid, "clinic_id": "c1", "provider_id": nurse,
		"provider_name": "Nurse Layla", "check_in_timestamp": 1772355600000, "metadata": "{}", "is_deleted": false,
		"deleted_at": nil, "created_at": 1772355600000, "updated_at": 1772355600000})
	vid, _ := visit.result["id"].(string)
	if !visit.ok() || vid == "" {
		t.Fatalf("visits.create: %v %v", visit.env, visit.result)
	}
	if v := app.query("get_visits", map[string]any{"patient_id": pid}); len(v.result["data"].([]any)) != 1 {
		t.Errorf("get_visits: %v", v.result)
	}
	event := app.command("events.create", map[string]any{"patient_id": pid, "visit_id": vid, "form_id": "f1",
		"event_type": "note", "form_data": "[]", "metadata": "{}", "is_deleted": false, "deleted_at": nil,
		"created_at": 1772355600000, "updated_at": 1772355600000, "recorded_by_user_id": "another-nurse"})
	eid, _ := event.result["id"].(string)
	if !event.ok() {
		t.Fatalf("events.create: %v", event.env)
	}
	if e := app.query("get_visit_events", map[string]any{"visit_id": vid}); len(e.result["data"].([]any)) != 1 {
		t.Errorf("get_visit_events: %v", e.result)
	}
	if e := app.query("events.by_form", map[string]any{"form_id": "f1", "patient_id": pid}); len(e.result["data"].([]any)) != 1 {
		t.Errorf("events.by_form: %v", e.result)
	}
	// Another provider's event: editing it needs can_edit_other_provider_event too.
	app.command("events.update", map[string]any{"id": eid, "event_type": "edited"}).refused(t, 200, "PERMISSION_DENIED", "can_edit_other_provider_event")
	vitals := app.command("vitals.create", map[string]any{"patient_id": pid, "visit_id": vid, "timestamp": 1772355600000,
		"systolic_bp": 120, "diastolic_bp": 80, "is_deleted": false, "created_at": 1772355600000, "updated_at": 1772355600000})
	if !vitals.ok() {
		t.Fatalf("vitals.create: %v", vitals.env)
	}
	if v := app.query("vitals.list", map[string]any{"patient_id": pid}); len(v.result["data"].([]any)) != 1 {
		t.Errorf("vitals.list: %v", v.result)
	}
	problem := app.command("problems.create", map[string]any{"patient_id": pid, "visit_id": vid, "problem_code_system": "icd10",
		"problem_code": "J45", "problem_label": "Asthma", "clinical_status": "active", "verification_status": "confirmed",
		"is_deleted": false, "created_at": 1772355600000, "updated_at": 1772355600000, "last_modified": 1772355600000,
		"server_created_at": 1772355600000})
	prid, _ := problem.result["id"].(string)
	if !problem.ok() {
		t.Fatalf("problems.create: %v", problem.env)
	}
	if u := app.command("problems.update", map[string]any{"id": prid, "clinical_status": "resolved"}); !u.ok() {
		t.Fatalf("problems.update: %v", u.env)
	}
	pr := app.query("problems.get", map[string]any{"id": prid})
	if pr.result["clinical_status"] != "resolved" || pr.result["problem_label"] != "Asthma" {
		t.Errorf("problems.get after the update: %v", pr.result)
	}
	if l := app.query("problems.list", map[string]any{"patient_id": pid}); len(l.result["data"].([]any)) != 1 {
		t.Errorf("problems.list: %v", l.result)
	}

	// Refusals: nothing is stored by any of them.
	before, _ := hub.node.Rows("patients", "")
	app.command("delete_patient", map[string]any{"patient_id": pid}).refused(t, 200, "PERMISSION_DENIED", "can_delete_patient_records")
	app.command("events.delete", map[string]any{"id": eid}).refused(t, 200, "PERMISSION_DENIED", "can_delete_records")
	app.query("get_patient", map[string]any{"patient_id": "nobody"}).refused(t, 200, "NOT_FOUND", "patients nobody")
	app.command("visits.update", map[string]any{"id": "nobody", "metadata": "{}"}).refused(t, 200, "NOT_FOUND", "visits nobody")
	bad := hikmaPatientRow("p-bad")
	delete(bad, "_status")
	delete(bad, "_changed")
	bad["date_of_birth"] = "the ides of March"
	app.command("register_patient", map[string]any{"patient": bad}).refused(t, 200, "VALIDATION_ERROR", "date_of_birth")
	app.command("rows.put", map[string]any{"table": "user_clinic_permissions", "values": map[string]any{}}).refused(t, 200, "PERMISSION_DENIED", "managed on the cloud")
	app.query("get_patients", map[string]any{"limit": 0}).refused(t, 200, "BAD_REQUEST", "limit")
	if after, _ := hub.node.Rows("patients", ""); len(after) != len(before) {
		t.Errorf("refused operations stored patients: %d → %d", len(before), len(after))
	}

	// Granted, the deletes go through.
	grant(t, hub.node, nurse, "can_delete_records", "can_delete_patient_records")
	if d := app.command("events.delete", map[string]any{"id": eid}); !d.ok() {
		t.Errorf("events.delete: %v", d.env)
	}
	if d := app.command("delete_patient", map[string]any{"patient_id": pid}); !d.ok() {
		t.Errorf("delete_patient: %v", d.env)
	}
	if r, err := hub.node.Rows("patients", pid); err != nil || !r[0].Deleted {
		t.Errorf("the deleted patient on the hub: %+v %v", r, err)
	}
	app.query("get_patient", map[string]any{"patient_id": pid}).refused(t, 200, "NOT_FOUND", "not found")
	// Without a token: refused.
	app.token = ""
	app.query("get_patients", nil).refused(t, 200, "AUTH_FAILED", "Authentication required")
}

// TestCloudOperationsHTTP: a cloud answers operations as the Hikma
// app's cloud transport calls them (/rpc/query/<name>?input=
// {"json":...}, POST /rpc/command/<name> {"json":...}) and under
// /api/v2/rpc/: for a user by Basic credentials or a sign-in token;
// refusals in tRPC's error shape with the Hikma code; a hub's key, no
// credentials and a GET command are refused.
func TestCloudOperationsHTTP(t *testing.T) {
	t.Parallel()
	c := newCloud(t, actors.CloudConfig{})
	at := codec.Int(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC).UnixMilli())
	perm := map[string]codec.Value{"user_id": codec.String("u1"), "clinic_id": codec.String("c1"), "created_at": at, "updated_at": at}
	for _, p := range []string{"can_view_history", "can_edit_records", "can_delete_records", "is_clinic_admin",
		"can_edit_other_provider_event", "can_download_patient_reports", "can_prescribe_medications",
		"can_dispense_medications", "can_delete_patient_visits", "can_delete_patient_records"} {
		perm[p] = codec.Bool(false)
	}
	perm["can_register_patients"] = codec.Bool(true)
	if _, err := c.store.Put("user_clinic_permissions", "perm-u1", perm); err != nil {
		t.Fatal(err)
	}
	patient := patientRaw("", "c1", nil)
	delete(patient, "id")
	body, _ := json.Marshal(map[string]any{"json": map[string]any{"patient": patient}})
	r := c.call("POST", "/rpc/command/register_patient", nurse, string(body), "Content-Type", "application/json")
	m := r.json(t)
	res, _ := m["result"].(map[string]any)
	data, _ := res["data"].(map[string]any)
	out, _ := data["json"].(map[string]any)
	pid, _ := out["patient_id"].(string)
	if r.status != 200 || pid == "" || out["created"] != true {
		t.Fatalf("register_patient: %d %s", r.status, r.body)
	}
	if row, err := c.store.Get("patients", pid); err != nil || row.Cols["given_name"].Str == "" {
		t.Fatalf("the registered patient: %+v %v", row, err)
	}

	query := func(path, auth string, params any) reply {
		t.Helper()
		in, _ := json.Marshal(map[string]any{"json": params})
		return c.call("GET", path+"?input="+url.QueryEscape(string(in)), auth, "")
	}
	r = query("/rpc/query/get_patient", nurse, map[string]any{"patient_id": pid})
	if r.status != 200 || !strings.Contains(string(r.body), `"patient":{`) || !strings.Contains(string(r.body), pid) {
		t.Errorf("get_patient: %d %s", r.status, r.body)
	}
	token, _ := c.call("POST", actors.SignInPath, "", signInBody(nurseEmail, nursePassword)).json(t)["token"].(string)
	r = query(actors.OpsPath+"query/get_patients", "Bearer "+token, map[string]any{"limit": 5})
	if r.status != 200 || !strings.Contains(string(r.body), `"total":1`) || !strings.Contains(string(r.body), `"limit":5`) {
		t.Errorf("get_patients with a sign-in token: %d %s", r.status, r.body)
	}

	refused := func(r reply, status int, code, msg string) {
		t.Helper()
		var e struct {
			Error struct {
				JSON struct {
					Message string
					Data    struct{ Code string }
				}
			}
		}
		if json.Unmarshal(r.body, &e) != nil || r.status != status || e.Error.JSON.Data.Code != code || !strings.Contains(e.Error.JSON.Message, msg) {
			t.Errorf("got %d %s, want %d %s %q", r.status, r.body, status, code, msg)
		}
	}
	refused(query("/rpc/query/get_patient", nurse, map[string]any{"patient_id": "nobody"}), 404, actors.CodeNotFound, "not found")
	refused(c.call("POST", "/rpc/command/delete_patient", nurse, `{"json":{"patient_id":"`+pid+`"}}`), 403, actors.CodePermissionDenied, "can_delete_patient_records")
	refused(c.call("POST", "/rpc/command/register_patient", nurse, `{"json":{"patient":{"given_name":"X","date_of_birth":"1990-02-31"}}}`), 400, actors.CodeValidation, "date_of_birth")
	refused(query("/rpc/query/teleport", nurse, nil), 404, actors.CodeNotSupported, "teleport")
	if r := c.call("POST", "/rpc/command/register_patient", nurse, `{"json":`); r.status != 400 {
		t.Errorf("a truncated body: %d %s", r.status, r.body)
	}
	for _, bad := range []struct {
		method, path, auth string
		status             int
	}{
		{"GET", "/rpc/query/get_patients", "", 401},
		{"GET", "/rpc/query/get_patients", basic(nurseEmail, "wrong password"), 401},
		{"GET", "/rpc/query/get_patients", "Bearer not-a-token", 401},
		{"GET", "/rpc/query/get_patients?peerType=sync_hub", "Bearer " + hubKey, 403},
		{"GET", "/rpc/command/register_patient", nurse, 405},
		{"GET", "/rpc/other/get_patients", nurse, 404},
	} {
		if r := c.call(bad.method, bad.path, bad.auth, ""); r.status != bad.status {
			t.Errorf("%s %s (%q): %d %s, want %d", bad.method, bad.path, bad.auth, r.status, r.body, bad.status)
		}
	}
	if live, _, err := c.store.Count("patients"); err != nil || live != 1 {
		t.Errorf("patients after the refusals: %d %v, want 1", live, err)
	}
}

// TestOperationsPage: get_patients answers the page a full sort would
// (newest updated_at first, then id; deleted rows left out; total of
// all) and rows.list pages through the table in id order, while they
// read the table one row at a time.
func TestOperationsPage(t *testing.T) {
	hub := newHikmaHub(t)
	app := newHikmaApp(t, hub.url, "phone-1", new(bytes.Buffer))
	app.handshake()
	if r := app.login(hikmaEmail, hikmaPassword); !r.ok() {
		t.Fatalf("login: %v", r.env)
	}
	type patient struct {
		id      string
		updated int64
	}
	var live []patient
	for i, k := range rand.New(rand.NewPCG(1, 2)).Perm(23) {
		p := patient{fmt.Sprintf("p%02d", k), 1772352000000 + int64(k%3)*1000}
		row := hikmaPatientRow(p.id)
		row["updated_at"] = p.updated
		delete(row, "id")
		delete(row, "_status")
		delete(row, "_changed")
		if _, err := hub.node.PutValues("patients", p.id, row); err != nil {
			t.Fatal(err)
		}
		if i == 4 {
			if err := hub.node.Delete("patients", p.id); err != nil {
				t.Fatal(err)
			}
			continue
		}
		live = append(live, p)
	}
	slices.SortFunc(live, func(a, b patient) int {
		return cmp.Or(cmp.Compare(b.updated, a.updated), strings.Compare(a.id, b.id))
	})
	ids := func(r rpcResult, key string) []string {
		var out []string
		for _, row := range r.result[key].([]any) {
			out = append(out, row.(map[string]any)["id"].(string))
		}
		return out
	}
	for _, pg := range []struct{ limit, offset int }{{5, 0}, {5, 5}, {5, 20}, {5, 30}, {100, 0}, {1, 21}} {
		r := app.query("get_patients", map[string]any{"limit": pg.limit, "offset": pg.offset})
		var want []string
		for _, p := range live[min(pg.offset, len(live)):min(pg.offset+pg.limit, len(live))] {
			want = append(want, p.id)
		}
		if got := ids(r, "data"); !r.ok() || !slices.Equal(got, want) || r.result["total"] != float64(len(live)) {
			t.Errorf("get_patients limit %d offset %d: %v total %v, want %v total %d", pg.limit, pg.offset, got, r.result["total"], want, len(live))
		}
	}
	var listed []string
	for after, more := "", true; more; {
		r := app.query("rows.list", map[string]any{"table": "patients", "after": after, "limit": 7})
		page := ids(r, "data")
		more, _ = r.result["more"].(bool)
		if !r.ok() || len(page) == 0 || more != (len(listed)+len(page) < len(live)) {
			t.Fatalf("rows.list after %q: %v more %v", after, page, more)
		}
		listed, after = append(listed, page...), page[len(page)-1]
	}
	want := make([]string, 0, len(live))
	for _, p := range live {
		want = append(want, p.id)
	}
	slices.Sort(want)
	if !slices.Equal(listed, want) {
		t.Errorf("rows.list pages: %v, want %v", listed, want)
	}
}
