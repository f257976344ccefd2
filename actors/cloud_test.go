package actors_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/clinicsync/clinicsync/actors"
	"github.com/clinicsync/clinicsync/codec"
	"github.com/clinicsync/clinicsync/fsm"
	"github.com/clinicsync/clinicsync/kv"
	pb "github.com/clinicsync/clinicsync/proto"
)

// cloudWait bounds every wait of these tests for something under way.
const cloudWait = 2 * time.Minute // generous: a loaded 2-core machine under -race is slow

const (
	nurseEmail    = "nurse@example.org"
	nursePassword = "correct horse"
	hubKey        = "hub-key-1"
	revokedKey    = "hub-key-2"
)

// cloud is a CloudHandler over an in-memory store, served by httptest
// on 127.0.0.1:0.
type cloud struct {
	t     testing.TB
	clock *kv.ManualClock
	be    *hookBackend
	store *kv.Store
	srv   *httptest.Server
	h     *actors.CloudHandler
	logs  *syncBuffer
}

func newCloud(t testing.TB, cfg actors.CloudConfig) *cloud {
	t.Helper()
	c := &cloud{t: t, clock: kv.NewManualClock(time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)),
		be: &hookBackend{Backend: kv.NewMemory()}, logs: &syncBuffer{}}
	st, err := kv.New(c.be, kv.Options{Clock: c.clock, KeepTombstones: true, Root: true})
	if err != nil {
		t.Fatal(err)
	}
	c.store = st
	hash, err := bcrypt.GenerateFromPassword([]byte(nursePassword), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range [][2]string{{"u1", nurseEmail}, {"u2", "gone@example.org"}} {
		id, email := u[0], u[1]
		_, err := st.Put("users", id, map[string]codec.Value{
			"clinic_id": codec.String("c1"), "name": codec.String("Nurse"), "role": codec.String("provider"),
			"email": codec.String(email), "is_deleted": codec.Bool(id == "u2"),
			"hashed_password": codec.String(string(hash)),
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []kv.Device{
		{ID: "hub1", Name: "North hub", ClinicIDs: []string{"c1"}, KeyHash: actors.DeviceKeyHash(hubKey)},
		{ID: "hub2", Name: "Old hub", KeyHash: actors.DeviceKeyHash(revokedKey), Status: kv.StatusRevoked},
	} {
		if err := st.PutDevice(d); err != nil {
			t.Fatal(err)
		}
	}
	if cfg.Clock == nil {
		cfg.Clock = c.clock
	}
	if cfg.RateLimit == 0 {
		cfg.RateLimit = -1
	}
	if cfg.LoginFailures == 0 {
		cfg.LoginFailures = -1
	}
	cfg.Logger = slog.New(slog.NewTextHandler(c.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c.h = actors.NewCloudHandler(st, cfg)
	c.srv = httptest.NewServer(c.h)
	t.Cleanup(c.srv.Close)
	return c
}

// hookBackend runs a function before a chosen View, and can fail reads
// of one bucket: a way into the middle of a request.
type hookBackend struct {
	kv.Backend
	mu       sync.Mutex // guards the fields below
	views    int
	beforeAt int
	before   func()
	failRead string // bucket whose reads fail
	failAll  bool   // every Update fails
}

func (b *hookBackend) View(fn func(kv.Tx) error) error {
	b.mu.Lock()
	b.views++
	var run func()
	if b.before != nil && b.views == b.beforeAt {
		run, b.before = b.before, nil
	}
	fail := b.failRead
	b.mu.Unlock()
	if run != nil {
		run()
	}
	if fail == "" {
		return b.Backend.View(fn)
	}
	return b.Backend.View(func(tx kv.Tx) error { return fn(failTx{tx, fail}) })
}

func (b *hookBackend) Update(fn func(kv.Tx) error) error {
	b.mu.Lock()
	fail := b.failAll
	b.mu.Unlock()
	if fail {
		return errors.New("disk on fire")
	}
	return b.Backend.Update(fn)
}

func (b *hookBackend) set(fn func(*hookBackend)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	fn(b)
}

type failTx struct {
	kv.Tx
	bucket string
}

func (t failTx) Bucket(name string) (kv.Bucket, error) {
	if name == t.bucket {
		return nil, errors.New("bucket " + name + " unreadable")
	}
	return t.Tx.Bucket(name)
}

// syncBuffer is a log destination safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func basic(email, password string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(email+":"+password))
}

var nurse = basic(nurseEmail, nursePassword)

type reply struct {
	status int
	header http.Header
	body   []byte
}

func (r reply) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("status %d, body is not JSON (%v): %q", r.status, err, r.body)
	}
	return m
}

// call makes one request; headers come as name, value pairs.
func (c *cloud) call(method, path, auth, body string, headers ...string) reply {
	c.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, c.srv.URL+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := c.srv.Client().Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("%s %s: reading: %v", method, path, err)
	}
	return reply{resp.StatusCode, resp.Header, b}
}

// pull GETs a JSON pull and decodes it with the codec, strictly.
func (c *cloud) pull(auth, query string) (*codec.Changeset, map[string]any) {
	c.t.Helper()
	r := c.call("GET", "/api/v2/sync"+query, auth, "")
	if r.status != 200 {
		c.t.Fatalf("pull %s: %d %s", query, r.status, r.body)
	}
	cs, rep, err := codec.DecodePullResponse(r.body, codec.Options{Catalog: c.store.Catalog()})
	if err != nil || len(rep.Rejected) != 0 {
		c.t.Fatalf("pull %s: %v %v in %s", query, err, rep.Rejected, r.body)
	}
	return cs, r.json(c.t)
}

// push POSTs a JSON push and returns the decoded answer.
func (c *cloud) push(auth, query, body string) map[string]any {
	c.t.Helper()
	r := c.call("POST", "/api/v2/sync"+query, auth, body, "Content-Type", "application/json")
	if r.status != 200 {
		c.t.Fatalf("push: %d %s", r.status, r.body)
	}
	return r.json(c.t)
}

// patientRaw is a patients record as WatermelonDB pushes it.
func patientRaw(id, clinic string, extra map[string]any) map[string]any {
	m := map[string]any{
		"id": id, "given_name": "Amina", "surname": "Haddad", "date_of_birth": "1990-02-28",
		"citizenship": "JO", "hometown": "Irbid", "phone": "0790000000", "sex": "female", "camp": nil,
		"additional_data": "{}", "metadata": `{"source":"app"}`, "photo_url": nil, "is_deleted": false,
		"deleted_at": nil, "created_at": 1709280000000, "updated_at": 1709280000000, "government_id": "G-1",
		"external_patient_id": "E-1", "primary_clinic_id": clinic, "last_modified_by": nil,
		"_status": "created", "_changed": "",
	}
	for k, v := range extra {
		m[k] = v
	}
	return m
}

// changes builds a push body: {"changes": {...}, "lastPulledAt": lpa},
// or the bare changes object when lpa < 0.
func changes(t *testing.T, lpa int64, table string, created, updated []map[string]any, deleted ...string) string {
	t.Helper()
	if created == nil {
		created = []map[string]any{}
	}
	if updated == nil {
		updated = []map[string]any{}
	}
	if deleted == nil {
		deleted = []string{}
	}
	ch := map[string]any{table: map[string]any{"created": created, "updated": updated, "deleted": deleted}}
	var v any = map[string]any{"changes": ch, "lastPulledAt": lpa}
	if lpa < 0 {
		v = ch
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func ids(rows []codec.Row) []string {
	var out []string
	for _, r := range rows {
		out = append(out, r.ID)
	}
	return out
}

func tableOf(cs *codec.Changeset, name string) codec.TableChanges {
	if tc, ok := cs.Tables[name]; ok {
		return *tc
	}
	return codec.TableChanges{}
}

// TestCloudSyncJSON walks the WatermelonDB protocol over HTTP: first
// sync, a push in either body shape, the pusher's rows served back as
// updated, deletes served as deleted ids but never on a first sync, and
// the record shape WatermelonDB needs.
func TestCloudSyncJSON(t *testing.T) {
	t.Parallel()
	c := newCloud(t, actors.CloudConfig{})

	// First sync: nothing served to a device (users go to hubs only).
	cs, raw := c.pull(nurse, "?last_pulled_at=null&schema_version=9&migration=null")
	t0 := cs.Timestamp
	if t0 <= 0 || cs.Count() != 0 || raw["success"] != true {
		t.Fatalf("first pull: %s", c.call("GET", "/api/v2/sync", nurse, "").body)
	}

	// WatermelonDB's shape: {"changes":..., "lastPulledAt":...}.
	p1 := patientRaw("p1", "c1", nil)
	if m := c.push(nurse, "", changes(t, t0, "patients", []map[string]any{p1}, nil)); !maps(m, map[string]any{"success": true}) {
		t.Fatalf("push answer %v", m)
	}
	// Hikma's shape: the bare changes object, last_pulled_at in the query.
	p2 := patientRaw("p2", "c1", nil)
	c.push(nurse, fmt.Sprintf("?last_pulled_at=%d", t0), changes(t, -1, "patients", []map[string]any{p2}, nil))

	// The pusher gets its rows back as updated; a first sync as created.
	cs, _ = c.pull(nurse, fmt.Sprintf("?lastPulledAt=%d", t0))
	if tc := tableOf(cs, "patients"); len(tc.Created) != 0 || !slices.Equal(ids(tc.Updated), []string{"p1", "p2"}) {
		t.Errorf("pull since the push's last_pulled_at: %+v", tc)
	}
	t1 := cs.Timestamp
	r := c.call("GET", "/api/v2/sync?last_pulled_at=0", nurse, "")
	cs, _ = c.pull(nurse, "?last_pulled_at=0")
	if tc := tableOf(cs, "patients"); !slices.Equal(ids(tc.Created), []string{"p1", "p2"}) || len(tc.Updated) != 0 {
		t.Errorf("first pull: %+v", tc)
	}

	// The record as WatermelonDB reads it: typed, no _status/_changed,
	// every list present.
	var body struct {
		Changes map[string]map[string][]json.RawMessage `json:"changes"`
	}
	if err := json.Unmarshal(r.body, &body); err != nil {
		t.Fatal(err)
	}
	pt := body.Changes["patients"]
	if _, ok := pt["deleted"]; !ok || len(pt["created"]) != 2 {
		t.Fatalf("patients lists: %s", r.body)
	}
	var rec map[string]any
	json.Unmarshal(pt["created"][0], &rec)
	for col, want := range map[string]any{"id": "p1", "metadata": `{"source":"app"}`, "additional_data": "{}",
		"created_at": float64(1709280000000), "is_deleted": false, "date_of_birth": "1990-02-28", "camp": nil} {
		if got, ok := rec[col]; !ok || got != want {
			t.Errorf("served %s = %#v (present %v), want %#v", col, got, ok, want)
		}
	}
	for _, meta := range []string{"_status", "_changed"} {
		if _, ok := rec[meta]; ok {
			t.Errorf("served record has %s", meta)
		}
	}
	if r.header.Get("Content-Type") != "application/json" {
		t.Errorf("Content-Type %q", r.header.Get("Content-Type"))
	}

	// An update and a delete: served as updated and deleted since t1;
	// a first sync has no tombstones.
	up := patientRaw("p2", "c1", map[string]any{"phone": "0791111111", "_status": "updated", "_changed": "phone"})
	c.push(nurse, "", changes(t, t1, "patients", nil, []map[string]any{up}, "p1"))
	cs, _ = c.pull(nurse, fmt.Sprintf("?last_pulled_at=%d", t1))
	tc := tableOf(cs, "patients")
	if !slices.Equal(ids(tc.Updated), []string{"p2"}) || !slices.Equal(tc.Deleted, []string{"p1"}) || tc.Updated[0].Cols["phone"].Str != "0791111111" {
		t.Errorf("pull after update and delete: %+v", tc)
	}
	cs, _ = c.pull(nurse, "")
	if tc := tableOf(cs, "patients"); !slices.Equal(ids(tc.Created), []string{"p2"}) || len(tc.Deleted) != 0 {
		t.Errorf("first pull after delete: %+v", tc)
	}

	// Idempotent re-push of a lost acknowledgement: one copy; an update
	// of the deleted row does not resurrect it.
	c.push(nurse, "", changes(t, t0, "patients", []map[string]any{p2}, nil))
	c.push(nurse, "", changes(t, t1, "patients", nil, []map[string]any{patientRaw("p1", "c1", map[string]any{"_status": "updated", "_changed": "phone", "phone": "1"})}))
	if live, dead, _ := c.store.Count("patients"); live != 1 || dead != 1 {
		t.Errorf("patients live %d tombstones %d, want 1 and 1", live, dead)
	}

	// Device-local tables are skipped, tables no one accepts from a
	// device and unknown ones are refused row by row.
	body2 := `{"changes":{"event_logs":{"created":[{"id":"l1","_status":"created","_changed":""}],"updated":[],"deleted":[]},
		"app_config":{"created":[{"id":"a1","namespace":"x","key":"k","_status":"created"}],"updated":[],"deleted":[]},
		"gadgets":{"created":[{"id":"g1","_status":"created"}],"updated":[],"deleted":["g2"]}},"lastPulledAt":` + fmt.Sprint(t1) + `}`
	m := c.push(nurse, "", body2)
	rej, _ := json.Marshal(m["experimentalRejectedIds"])
	if string(rej) != `{"app_config":["a1"],"gadgets":["g1","g2"]}` || m["success"] != true {
		t.Errorf("push of local, down and unknown tables: %v", m)
	}
}

func maps(a, b map[string]any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

// TestCloudAuth: Basic for users, Bearer device key with
// peerType=sync_hub for hubs, nothing else; secrets and hub tables only
// to hubs, scoped to their clinics.
func TestCloudAuth(t *testing.T) {
	t.Parallel()
	c := newCloud(t, actors.CloudConfig{})
	bearer := func(k string) string { return "Bearer " + k }
	for _, tc := range []struct {
		name, auth, query string
		status            int
		want              string
	}{
		{"no credentials", "", "", 401, "missing Authorization header"},
		{"wrong password", basic(nurseEmail, "wrong horse"), "", 401, "invalid credentials"},
		{"unknown user", basic("who@example.org", nursePassword), "", 401, "invalid credentials"},
		{"deleted user", basic("gone@example.org", nursePassword), "", 401, "invalid credentials"},
		{"email in another case", basic("Nurse@Example.org", nursePassword), "", 200, ""},
		{"not base64", "Basic !!!", "", 401, "not base64"},
		{"no colon", "Basic " + base64.StdEncoding.EncodeToString([]byte("nurse")), "", 401, "not email:password"},
		{"other scheme", "Digest x", "", 401, "not Basic or Bearer"},
		{"user claims to be a hub", nurse, "?peerType=sync_hub", 401, "needs Authorization: Bearer"},
		{"bearer without peerType", bearer(hubKey), "", 401, "only with peerType=sync_hub"},
		{"unknown device key", bearer("nope"), "?peerType=sync_hub", 401, "invalid or revoked device key"},
		{"revoked device", bearer(revokedKey), "?peerType=sync_hub", 401, "invalid or revoked device key"},
		{"hub", bearer(hubKey), "?peerType=sync_hub", 200, ""},
		{"hub, snake_case parameter", bearer(hubKey), "?peer_type=sync_hub", 200, ""},
		{"mobile peerType", nurse, "?peerType=android", 200, ""},
	} {
		r := c.call("GET", "/api/v2/sync"+tc.query, tc.auth, "")
		if r.status != tc.status || (tc.want != "" && !strings.Contains(r.json(t)["error"].(string), tc.want)) {
			t.Errorf("%s: %d %s, want %d %q", tc.name, r.status, r.body, tc.status, tc.want)
		}
		if r.status == 401 && !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Basic") {
			t.Errorf("%s: 401 without WWW-Authenticate", tc.name)
		}
	}
	// A push without credentials changes nothing.
	before, _ := c.store.LastCursor()
	if r := c.call("POST", "/api/v2/sync", "", changes(t, 0, "patients", []map[string]any{patientRaw("px", "c1", nil)}, nil)); r.status != 401 {
		t.Errorf("push without credentials: %d", r.status)
	}
	if after, _ := c.store.LastCursor(); after != before {
		t.Error("a refused push wrote")
	}

	// Users (with their password hashes) go to hubs, never to devices.
	hub := "Bearer " + hubKey
	cs, _ := c.pull(hub, "?peerType=sync_hub")
	users := tableOf(cs, "users")
	if len(users.Created) != 2 || users.Created[0].ID != "u1" || !strings.HasPrefix(users.Created[0].Cols["hashed_password"].Str, "$2") {
		t.Errorf("hub's users: %+v", users)
	}
	cs, raw := c.pull(nurse, "")
	if _, ok := cs.Tables["users"]; ok || strings.Contains(fmt.Sprint(raw), "hashed_password") {
		t.Errorf("a device got users: %v", raw)
	}

	// Clinic scoping: hub1 serves c1 only, and may push only c1 rows.
	t0 := cs.Timestamp
	c.push(nurse, "", changes(t, t0, "patients", []map[string]any{patientRaw("in", "c1", nil), patientRaw("out", "c2", nil)}, nil))
	cs, _ = c.pull(hub, "?peerType=sync_hub&last_pulled_at=0")
	if got := ids(tableOf(cs, "patients").Created); !slices.Equal(got, []string{"in"}) {
		t.Errorf("hub of c1 got patients %v", got)
	}
	m := c.push(hub, "?peerType=sync_hub", changes(t, cs.Timestamp, "patients", []map[string]any{patientRaw("h1", "c1", nil), patientRaw("h2", "c2", nil)}, nil))
	if rej, _ := json.Marshal(m["experimentalRejectedIds"]); string(rej) != `{"patients":["h2"]}` {
		t.Errorf("hub push outside its clinics: %v", m)
	}
	if _, err := c.store.Get("patients", "h2"); !errors.Is(err, kv.ErrNotFound) {
		t.Errorf("out-of-scope row stored: %v", err)
	}
}

// TestCloudPushRejectsGarbage: a value normalization refuses rejects its
// record alone, with a reason naming table, id, column and value, in
// experimentalRejectedIds (the row stays unsynced on the device); nothing
// of it is stored and the other records are applied. Syntax errors still
// refuse the whole body.
func TestCloudPushRejectsGarbage(t *testing.T) {
	t.Parallel()
	c := newCloud(t, actors.CloudConfig{})
	cs, _ := c.pull(nurse, "")
	good := patientRaw("p1", "c1", map[string]any{"additional_data": "", "created_at": 1709280000}) // seconds
	maybe := patientRaw("p2", "c1", map[string]any{"is_deleted": "maybe"})
	noDate := patientRaw("p3", "c1", map[string]any{"date_of_birth": "last spring"})
	m := c.push(nurse, "", changes(t, cs.Timestamp, "patients", []map[string]any{good, maybe, noDate}, nil))
	if rej, _ := json.Marshal(m["experimentalRejectedIds"]); string(rej) != `{"patients":["p2","p3"]}` || m["success"] != true {
		t.Fatalf("push answer %v", m)
	}
	reasons, _ := json.Marshal(m["rejected"])
	for _, want := range []string{`patients/p2.is_deleted (bool): \"maybe\": a string in a bool column`,
		`patients/p3.date_of_birth (date): \"last spring\": not a date`} {
		if !strings.Contains(string(reasons), want) {
			t.Errorf("reasons %s lack %s", reasons, want)
		}
	}
	for _, id := range []string{"p2", "p3"} {
		if _, err := c.store.Get("patients", id); !errors.Is(err, kv.ErrNotFound) {
			t.Errorf("rejected %s stored: %v", id, err)
		}
	}
	p1, err := c.store.Get("patients", "p1")
	if err != nil {
		t.Fatal(err)
	}
	if v := p1.Cols["additional_data"]; !v.Equal(codec.String("")) {
		t.Errorf("empty JSON-text column stored as %s (%s)", v, v.Kind)
	}
	if v := p1.Cols["created_at"]; !v.Equal(codec.Int(1709280000000)) {
		t.Errorf("seconds stored as %s", v)
	}
	// Served back exactly as the client sent it: "" stays "".
	r := c.call("GET", "/api/v2/sync?last_pulled_at=0", nurse, "")
	if !bytes.Contains(r.body, []byte(`"additional_data":""`)) {
		t.Errorf("pulled %s", r.body)
	}
	// Malformed JSON is still the whole request's 400.
	if r := c.call("POST", "/api/v2/sync", nurse, `{"patients":{"created":[{"id":"p4",}]}}`, "Content-Type", "application/json"); r.status != 400 {
		t.Errorf("malformed push: %d %s", r.status, r.body)
	}
}

// TestCloudErrors: every refusal is JSON {"error": ...} with its status,
// names what is wrong, and changes nothing.
func TestCloudErrors(t *testing.T) {
	t.Parallel()
	c := newCloud(t, actors.CloudConfig{MaxBodyBytes: 4096})
	_, raw := c.pull(nurse, "")
	t0 := int64(raw["timestamp"].(float64))
	c.push(nurse, "", changes(t, t0, "patients", []map[string]any{patientRaw("p1", "c1", nil)}, nil))
	snapshot := func() string {
		cur, _ := c.store.LastCursor()
		live, dead, _ := c.store.Count("patients")
		return fmt.Sprint(cur, live, dead)
	}
	before := snapshot()
	big := changes(t, t0, "patients", []map[string]any{patientRaw("p9", "c1", map[string]any{"hometown": strings.Repeat("x", 5000)})}, nil)
	for _, tc := range []struct {
		name, method, path, body string
		headers                  []string
		status                   int
		want                     string
	}{
		{"bad last_pulled_at", "GET", "/api/v2/sync?last_pulled_at=yesterday", "", nil, 400, `last_pulled_at="yesterday" is not a timestamp`},
		{"negative lastPulledAt", "GET", "/api/v2/sync?lastPulledAt=-5", "", nil, 400, "lastPulledAt=\"-5\" is negative"},
		{"two spellings that differ", "GET", "/api/v2/sync?last_pulled_at=5&lastPulledAt=6", "", nil, 400, "differ"},
		{"bad continuation", "GET", "/api/v2/sync?continuation=abc", "", []string{"Accept", "application/x-protobuf"}, 400, "continuation"},
		{"bad page_size", "GET", "/api/v2/sync?page_size=-1", "", []string{"Accept", "application/x-protobuf"}, 400, "page_size"},
		{"truncated JSON", "POST", "/api/v2/sync", `{"patients":{"created":[`, nil, 400, "push body: codec: malformed input"},
		{"not an object", "POST", "/api/v2/sync", `[1]`, nil, 400, "push body"},
		{"bad record id", "POST", "/api/v2/sync", `{"patients":{"created":[{"id":"a/b"}]}}`, nil, 400, "patients.created[0]"},
		{"bad push query", "POST", "/api/v2/sync?last_pulled_at=x", `{}`, nil, 400, "last_pulled_at"},
		{"bad protobuf", "POST", "/api/v2/sync", "\xff\xff\xff", []string{"Content-Type", "application/x-protobuf"}, 400, "push body"},
		{"body over the limit", "POST", "/api/v2/sync", big, nil, 413, "4096-byte limit"},
		{"method", "PUT", "/api/v2/sync", "", nil, 405, "method PUT not allowed"},
		{"path", "GET", "/api/v3/sync", "", nil, 404, "not found"},
	} {
		r := c.call(tc.method, tc.path, nurse, tc.body, tc.headers...)
		if r.status != tc.status || !strings.Contains(fmt.Sprint(r.json(t)["error"]), tc.want) {
			t.Errorf("%s: %d %s, want %d with %q", tc.name, r.status, r.body, tc.status, tc.want)
		}
		if r.header.Get("Content-Type") != "application/json" {
			t.Errorf("%s: error Content-Type %q", tc.name, r.header.Get("Content-Type"))
		}
	}
	if r := c.call("PUT", "/api/v2/sync", nurse, ""); r.header.Get("Allow") != "GET, POST" {
		t.Errorf("405 Allow: %q", r.header.Get("Allow"))
	}
	// A chunked body over the limit (no Content-Length) is refused too.
	req, _ := http.NewRequest("POST", c.srv.URL+"/api/v2/sync", io.MultiReader(strings.NewReader(big)))
	req.Header.Set("Authorization", nurse)
	req.ContentLength = -1
	if resp, err := c.srv.Client().Do(req); err != nil || resp.StatusCode != 413 {
		t.Errorf("chunked body over the limit: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	if after := snapshot(); after != before {
		t.Errorf("refused requests changed the store: %s → %s", before, after)
	}

	// Health.
	if r := c.call("GET", "/healthz", "", ""); r.status != 200 || r.json(t)["status"] != "ok" {
		t.Errorf("healthz: %d %s", r.status, r.body)
	}
}

// TestCloudStrictConflict: under the strict policy a push touching a
// row changed after its last_pulled_at fails whole with 409; the merge
// policy takes the device's changed columns only.
func TestCloudStrictConflict(t *testing.T) {
	t.Parallel()
	for _, policy := range []fsm.Policy{fsm.StrictPolicy, fsm.MergePolicy} {
		t.Run(policy.String(), func(t *testing.T) {
			c := newCloud(t, actors.CloudConfig{Policy: policy})
			_, raw := c.pull(nurse, "")
			t0 := int64(raw["timestamp"].(float64))
			c.push(nurse, "", changes(t, t0, "patients", []map[string]any{patientRaw("p1", "c1", nil)}, nil))
			_, raw = c.pull(nurse, fmt.Sprintf("?last_pulled_at=%d", t0))
			t1 := int64(raw["timestamp"].(float64))
			// Device A edits the phone and syncs.
			// (WatermelonDB sets updated_at on every edit.)
			c.push(nurse, "", changes(t, t1, "patients", nil, []map[string]any{patientRaw("p1", "c1",
				map[string]any{"phone": "A", "updated_at": 1709280001000, "_status": "updated", "_changed": "phone,updated_at"})}))
			// Device B, still at t1, edits the hometown and pushes with a new row.
			bEdit := patientRaw("p1", "c1", map[string]any{"hometown": "B", "updated_at": 1709280002000, "_status": "updated", "_changed": "hometown,updated_at"})
			body := changes(t, t1, "patients", []map[string]any{patientRaw("p2", "c1", nil)}, []map[string]any{bEdit})
			r := c.call("POST", "/api/v2/sync", nurse, body, "Content-Type", "application/json")
			p1, _ := c.store.Get("patients", "p1")
			_, errP2 := c.store.Get("patients", "p2")
			// A last_pulled_at this server never issued is refused whole.
			forged := changes(t, 1<<62, "patients", []map[string]any{patientRaw("p3", "c1", nil)}, []map[string]any{bEdit})
			if f := c.call("POST", "/api/v2/sync", nurse, forged, "Content-Type", "application/json"); f.status != 400 ||
				!strings.Contains(f.json(t)["error"].(string), "never issued") {
				t.Fatalf("forged last_pulled_at: %d %s", f.status, f.body)
			}
			if _, err := c.store.Get("patients", "p3"); !errors.Is(err, kv.ErrNotFound) {
				t.Fatalf("a refused push stored p3: %v", err)
			}
			if policy == fsm.StrictPolicy {
				if r.status != 409 || !strings.Contains(r.json(t)["error"].(string), "patients/p1") {
					t.Fatalf("strict conflict: %d %s", r.status, r.body)
				}
				if p1.Cols["hometown"].Str != "Irbid" || !errors.Is(errP2, kv.ErrNotFound) {
					t.Errorf("a 409 push applied something: p1 %v, p2 %v", p1.Row, errP2)
				}
				return
			}
			if r.status != 200 {
				t.Fatalf("merge push: %d %s", r.status, r.body)
			}
			if p1.Cols["phone"].Str != "A" || p1.Cols["hometown"].Str != "B" || errP2 != nil {
				t.Errorf("merge: p1 %v, p2 %v", p1.Row, errP2)
			}
		})
	}
}

// TestCloudRateLimit: over the limit a client gets 429 with Retry-After
// until its allowance refills; clients are told apart by their
// address, X-Forwarded-For only when trusted.
// Sync requests count per authenticated caller, whatever the address;
// unauthenticated requests (health checks) per address.
func TestCloudRateLimit(t *testing.T) {
	t.Parallel()
	for _, trust := range []bool{false, true} {
		t.Run(fmt.Sprint("trust=", trust), func(t *testing.T) {
			c := newCloud(t, actors.CloudConfig{RateLimit: 3, TrustForwardedFor: trust})
			from := func(ip, auth string) reply {
				return c.call("GET", "/api/v2/sync", auth, "", "X-Forwarded-For", ip+", 10.0.0.1")
			}
			for i := range 3 {
				if r := from("192.0.2.1", nurse); r.status != 200 {
					t.Fatalf("request %d: %d", i, r.status)
				}
			}
			r := from("192.0.2.1", nurse)
			if r.status != 429 || r.header.Get("Retry-After") != "20" || r.json(t)["error"] != "Too many requests. Please try again later." {
				t.Fatalf("over the limit: %d %v %s", r.status, r.header, r.body)
			}
			// The same user from another address is the same caller.
			if r := from("192.0.2.2", nurse); r.status != 429 {
				t.Errorf("the same user from another address: %d", r.status)
			}
			// Another caller (the hub's key) is not slowed.
			if r := c.call("GET", "/api/v2/sync?peerType=sync_hub", "Bearer "+hubKey, ""); r.status != 200 {
				t.Errorf("another caller: %d %s", r.status, r.body)
			}
			// Refused requests do not use up the allowance; 20 s bring one back.
			c.clock.Add(19 * time.Second)
			if r := from("192.0.2.1", nurse); r.status != 429 || r.header.Get("Retry-After") != "1" {
				t.Errorf("after 19s: %d Retry-After %q", r.status, r.header.Get("Retry-After"))
			}
			c.clock.Add(time.Second)
			if r := from("192.0.2.1", nurse); r.status != 200 {
				t.Errorf("after 20s: %d", r.status)
			}
			// Health checks, unauthenticated, count per address.
			health := func(ip string) int {
				return c.call("GET", "/healthz", "", "", "X-Forwarded-For", ip).status
			}
			for range 3 {
				health("192.0.2.7")
			}
			if got := health("192.0.2.7"); got != 429 {
				t.Errorf("health checks over the limit: %d", got)
			}
			if got := health("192.0.2.8"); (got == 200) != trust {
				t.Errorf("health check from another forwarded address: %d", got)
			}
		})
	}
}

func TestRateLimiterForgetsIdleClients(t *testing.T) {
	t.Parallel()
	clk := kv.NewManualClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	l := actors.NewRateLimiter(60, clk)
	for i := range 100 {
		if ok, _ := l.Allow(fmt.Sprint("client-", i)); !ok {
			t.Fatal("a new client was refused")
		}
	}
	clk.Add(time.Minute)
	l.Allow("late")
	if n := l.Len(); n != 1 {
		t.Errorf("%d clients tracked after a minute, want 1", n)
	}
}

// TestCloudServerError: a store failure is a 500 whose cause is logged,
// not sent; a failed push applies nothing.
func TestCloudServerError(t *testing.T) {
	t.Parallel()
	c := newCloud(t, actors.CloudConfig{})
	_, raw := c.pull(nurse, "")
	t0 := int64(raw["timestamp"].(float64))

	c.be.set(func(b *hookBackend) { b.failRead = "cursor" })
	r := c.call("GET", "/api/v2/sync", nurse, "")
	if r.status != 500 || r.json(t)["error"] != "internal server error" {
		t.Errorf("pull with a broken store: %d %s", r.status, r.body)
	}
	if !strings.Contains(c.logs.String(), "bucket cursor unreadable") {
		t.Errorf("500 cause not logged:\n%s", c.logs)
	}
	c.be.set(func(b *hookBackend) { b.failRead, b.failAll = "", true })
	r = c.call("POST", "/api/v2/sync", nurse, changes(t, t0, "patients", []map[string]any{patientRaw("p1", "c1", nil)}, nil))
	if r.status != 500 || strings.Contains(string(r.body), "fire") || !strings.Contains(c.logs.String(), "disk on fire") {
		t.Errorf("push with a broken store: %d %s", r.status, r.body)
	}
	c.be.set(func(b *hookBackend) { b.failAll = false })
	if _, err := c.store.Get("patients", "p1"); !errors.Is(err, kv.ErrNotFound) {
		t.Errorf("failed push stored p1: %v", err)
	}
	c.be.set(func(b *hookBackend) { b.failRead = "meta" })
	if r := c.call("GET", "/healthz", "", ""); r.status != 503 {
		t.Errorf("healthz with a broken store: %d", r.status)
	}
}

// putPatients writes n patients on the cloud's store directly.
func (c *cloud) putPatients(n int, prefix string) {
	c.t.Helper()
	for i := range n {
		cols := map[string]codec.Value{}
		for k, v := range patientRaw("", "c1", nil) {
			switch v := v.(type) {
			case string:
				cols[k] = codec.String(v)
			case bool:
				cols[k] = codec.Bool(v)
			case int:
				cols[k] = codec.Int(int64(v))
			}
		}
		for _, k := range []string{"id", "_status", "_changed"} {
			delete(cols, k)
		}
		cols["additional_data"], cols["metadata"] = codec.JSONText("{}"), codec.JSONText("{}")
		if _, err := c.store.Put("patients", fmt.Sprintf("%s%03d", prefix, i), cols); err != nil {
			c.t.Fatal(err)
		}
	}
}

// TestCloudStreamConsistent: a JSON pull read page by page while rows
// change still sends each row once, and the rows changed during it come
// with the next pull.
func TestCloudStreamConsistent(t *testing.T) {
	t.Parallel()
	c := newCloud(t, actors.CloudConfig{PageSize: 3})
	c.putPatients(20, "p")
	_, raw := c.pull(nurse, "")
	t0 := int64(raw["timestamp"].(float64))
	c.putPatients(10, "q") // q000..q009, changed after t0
	// During the next pull, after a few pages, change a row already sent
	// (q000), one not yet sent (q008), delete one not yet sent (q009),
	// and create one.
	// Reads: the user lookup (the timestamp is issued in a write), then
	// two pages of the pull's one walk of the changes.
	at := 1 + 2 + 1
	c.be.set(func(b *hookBackend) {
		b.views, b.beforeAt = 0, at
		b.before = func() {
			for _, id := range []string{"q000", "q008"} {
				if _, err := c.store.Put("patients", id, map[string]codec.Value{"phone": codec.String("changed")}); err != nil {
					t.Error(err)
				}
			}
			if err := c.store.Delete("patients", "q009"); err != nil {
				t.Error(err)
			}
			c.putPatients(1, "r")
		}
	})
	cs, _ := c.pull(nurse, fmt.Sprintf("?last_pulled_at=%d", t0))
	got := tableOf(cs, "patients")
	if seen := ids(got.Created); !slices.Equal(seen, []string{"q000", "q001", "q002", "q003", "q004", "q005", "q006", "q007"}) || len(got.Updated)+len(got.Deleted) != 0 {
		t.Errorf("pull during changes: created %v updated %v deleted %v", seen, ids(got.Updated), got.Deleted)
	}
	cs, _ = c.pull(nurse, fmt.Sprintf("?last_pulled_at=%d", cs.Timestamp))
	got = tableOf(cs, "patients")
	if !slices.Equal(ids(got.Created), []string{"r000"}) || !slices.Equal(ids(got.Updated), []string{"q000", "q008"}) || !slices.Equal(got.Deleted, []string{"q009"}) {
		t.Errorf("next pull: created %v updated %v deleted %v", ids(got.Created), ids(got.Updated), got.Deleted)
	}
	// A first pull streams every live row once.
	cs, _ = c.pull(nurse, "")
	if n := len(tableOf(cs, "patients").Created); n != 30 {
		t.Errorf("first pull: %d patients, want 30", n)
	}
}

// TestCloudProtobufPaging: Go nodes pull protobuf pages with a
// continuation and totals, and push protobuf.
func TestCloudProtobufPaging(t *testing.T) {
	t.Parallel()
	c := newCloud(t, actors.CloudConfig{PageSize: 4})
	c.putPatients(10, "p")
	tr := &actors.HTTPTransport{BaseURL: c.srv.URL, Client: c.srv.Client(), Auth: actors.BasicAuth(nurseEmail, nursePassword)}
	ctx := context.Background()
	req := &pb.PullRequest{LastPulledAt: 0, PageSize: 100}
	var seen []string
	var pages []string
	for {
		resp, err := tr.Pull(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		cs, _, err := codec.DecodeChangeset(resp.GetChanges(), c.store.Catalog())
		if err != nil {
			t.Fatal(err)
		}
		seen = append(seen, ids(tableOf(cs, "patients").Created)...)
		pages = append(pages, fmt.Sprintf("%d/%d", resp.GetSent(), resp.GetTotal()))
		if resp.GetContinuation() == "" {
			if resp.GetTimestamp() <= 0 {
				t.Errorf("last page timestamp %d", resp.GetTimestamp())
			}
			break
		}
		req.Continuation = resp.GetContinuation()
	}
	// 12 records changed (2 users, not served to a device, and 10
	// patients); pages of 4.
	if len(seen) != 10 || fmt.Sprint(pages) != "[2/12 6/12 10/10]" {
		t.Errorf("pages %v, rows %v", pages, seen)
	}
	cs := codec.NewChangeset()
	cs.Table("patients").Updated = []codec.Row{{ID: "p001", Cols: map[string]codec.Value{"phone": codec.String("proto")}, Changed: []string{"phone"}}}
	cs.Table("patients").Created = []codec.Row{{ID: "bad", Cols: map[string]codec.Value{"phone": codec.Int(5)}}} // a number in a string column
	resp, err := tr.Push(ctx, &pb.PushRequest{LastPulledAt: 1, Changes: codec.EncodeChangeset(cs)})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetRejected()) != 1 || resp.GetRejected()[0].GetId() != "bad" || resp.GetAccepted() != 1 {
		t.Errorf("protobuf push: %v", resp)
	}
	if r, _ := c.store.Get("patients", "p001"); r.Cols["phone"].Str != "proto" {
		t.Errorf("protobuf push not applied: %v", r.Row)
	}

	// The transport's errors.
	bad := &actors.HTTPTransport{BaseURL: c.srv.URL, Client: c.srv.Client(), Auth: actors.BasicAuth(nurseEmail, "nope")}
	if _, err := bad.Pull(ctx, req); !errors.Is(err, actors.ErrUnauthorized) {
		t.Errorf("wrong password: %v", err)
	}
	if _, err := tr.Pull(ctx, &pb.PullRequest{Continuation: "zz"}); !errors.Is(err, actors.ErrBadRequest) {
		t.Errorf("bad continuation: %v", err)
	}
	dead := &actors.HTTPTransport{BaseURL: "http://127.0.0.1:1"}
	if _, err := dead.Pull(ctx, req); !errors.Is(err, actors.ErrUnreachable) {
		t.Errorf("nobody listening: %v", err)
	}
}

// TestHTTPSyncGoNodes: Go nodes sync with a cloud node served over
// HTTP: a mobile with a user's credentials, a hub with its device key,
// through their sync engines.
func TestHTTPSyncGoNodes(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	if _, err := actors.Init(root+"/cloud", actors.InitConfig{Kind: actors.KindCloud, Clinics: []string{"c1"}}); err != nil {
		t.Fatal(err)
	}
	cloudNode := openNodeT(t, root+"/cloud")
	if _, err := cloudNode.AddUser(actors.UserConfig{Email: nurseEmail, Password: nursePassword}); err != nil {
		t.Fatal(err)
	}
	dev, key, err := cloudNode.AddDevice(actors.DeviceConfig{Name: "hub", Clinics: []string{"c1"}})
	if err != nil || len(key) != 43 || dev.Status != kv.StatusActive {
		t.Fatalf("AddDevice: %v %q %v", dev, key, err)
	}
	h, err := cloudNode.CloudHandler(actors.CloudConfig{RateLimit: -1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- actors.Serve(ctx, l, h) }()
	defer func() {
		stop()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	base := "http://" + l.Addr().String()

	start := func(n *actors.Node) {
		t.Helper()
		if err := n.Start(actors.NodeConfig{Transports: n.HTTPTransports(nil), Logger: slog.New(slog.DiscardHandler)}); err != nil {
			t.Fatal(err)
		}
	}
	syncNow := func(n *actors.Node) actors.Result {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), cloudWait)
		defer cancel()
		res, err := n.Sync(ctx, actors.SyncRequest{Trigger: actors.Manual})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}

	// A mobile: no credentials, then a wrong login (refused, not kept),
	// then the right one.
	if _, err := actors.Init(root+"/phone", actors.InitConfig{Kind: actors.KindMobile}); err != nil {
		t.Fatal(err)
	}
	phone := openNodeT(t, root+"/phone")
	peer, err := phone.AddPeer(actors.PeerConfig{Type: kv.PeerCloud, URL: base + "/"})
	if err != nil || peer.URL != base {
		t.Fatalf("AddPeer: %v %v", peer, err)
	}
	if err := phone.UsePeer(peer.ID); err != nil {
		t.Fatal(err)
	}
	start(phone)
	if res := syncNow(phone); res.Outcome != actors.OutcomeError || !errors.Is(res.Err, actors.ErrNoCredentials) {
		t.Errorf("sync before login: %+v", res)
	}
	lctx, cancel := context.WithTimeout(context.Background(), cloudWait)
	defer cancel()
	res, err := phone.Login(lctx, nurseEmail, "wrong horse", "")
	if err != nil || res.Outcome != actors.OutcomeError || !errors.Is(res.Err, actors.ErrUnauthorized) {
		t.Errorf("wrong login: %+v %v", res, err)
	}
	if _, _, err := phone.Credentials(); !errors.Is(err, actors.ErrNoCredentials) {
		t.Errorf("refused credentials kept: %v", err)
	}
	write(t, phone, "p1")
	res, err = phone.Login(lctx, nurseEmail, nursePassword, "")
	if err != nil || res.Outcome != actors.OutcomeOK || res.Pushed != 1 {
		t.Fatalf("login: %+v %v", res, err)
	}
	if r, err := cloudNode.Store().Get("patients", "p1"); err != nil || r.Cols["given_name"].Str != "Amina" {
		t.Errorf("cloud after the phone's push: %v %v", r.Row, err)
	}

	// A hub with the device key pulls the users (with their hashes) and
	// the patient.
	if _, err := actors.Init(root+"/hub", actors.InitConfig{Kind: actors.KindHub, Clinics: []string{"c1"}}); err != nil {
		t.Fatal(err)
	}
	hub := openNodeT(t, root+"/hub")
	if _, err := hub.AddPeer(actors.PeerConfig{Type: kv.PeerCloud, URL: base, APIKey: key}); err != nil {
		t.Fatal(err)
	}
	start(hub)
	if res := syncNow(hub); res.Outcome != actors.OutcomeOK || res.Pulled < 2 {
		t.Fatalf("hub sync: %+v", res)
	}
	users, _ := hub.Rows("users", "")
	if len(users) != 1 || !strings.HasPrefix(users[0].Cols["hashed_password"].Str, "$2") {
		t.Errorf("hub's users: %v", users)
	}
	if _, err := hub.Store().Get("patients", "p1"); err != nil {
		t.Errorf("hub lacks p1: %v", err)
	}
	// The hub serves the same API to its devices: a second phone signs
	// in with the user the hub got from the cloud, pushes to the hub, and
	// the hub relays the row upstream.
	hh, err := hub.CloudHandler(actors.CloudConfig{RateLimit: -1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hctx, hstop := context.WithCancel(context.Background())
	hubServed := make(chan error, 1)
	go func() { hubServed <- actors.Serve(hctx, hl, hh) }()
	if _, err := actors.Init(root+"/phone2", actors.InitConfig{Kind: actors.KindMobile}); err != nil {
		t.Fatal(err)
	}
	phone2 := openNodeT(t, root+"/phone2")
	if _, err := phone2.AddPeer(actors.PeerConfig{Type: kv.PeerHub, URL: "http://" + hl.Addr().String()}); err != nil {
		t.Fatal(err)
	}
	if err := phone2.SetCredentials(nurseEmail, nursePassword); err != nil {
		t.Fatal(err)
	}
	start(phone2)
	write(t, phone2, "p2")
	if res := syncNow(phone2); res.Outcome != actors.OutcomeOK || res.Pushed != 1 || res.Pulled != 1 {
		t.Errorf("phone2 with the hub: %+v", res)
	}
	if r, err := hub.Store().Get("patients", "p2"); err != nil || r.Status != kv.Created {
		t.Errorf("hub's p2: %v %v (want pending upstream)", r.Status, err)
	}
	if res := syncNow(hub); res.Outcome != actors.OutcomeOK || res.Pushed != 1 {
		t.Errorf("hub relay: %+v", res)
	}
	if _, err := cloudNode.Store().Get("patients", "p2"); err != nil {
		t.Errorf("cloud lacks the relayed p2: %v", err)
	}
	hstop()
	if err := <-hubServed; err != nil {
		t.Errorf("hub Serve: %v", err)
	}

	// A revoked hub is refused.
	if err := cloudNode.RevokeDevice(dev.ID); err != nil {
		t.Fatal(err)
	}
	if res := syncNow(hub); res.Outcome != actors.OutcomeError || !errors.Is(res.Err, actors.ErrUnauthorized) {
		t.Errorf("revoked hub: %+v", res)
	}
	// A mobile does not serve.
	if _, err := phone.CloudHandler(actors.CloudConfig{}); !errors.Is(err, actors.ErrNotServing) {
		t.Errorf("mobile CloudHandler: %v", err)
	}
}

func openNodeT(t *testing.T, dir string) *actors.Node {
	t.Helper()
	n, err := actors.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

func write(t *testing.T, n *actors.Node, id string) {
	t.Helper()
	_, err := n.Put("patients", id, map[string]string{
		"given_name": "Amina", "surname": "Haddad", "date_of_birth": "1990-02-28",
		"citizenship": "JO", "hometown": "Irbid", "phone": "0790000000", "sex": "female",
		"additional_data": "{}", "metadata": "{}", "is_deleted": "false",
		"government_id": "G-1", "external_patient_id": "E-1", "primary_clinic_id": "c1",
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestServeGracefulShutdown: once asked to stop, Serve refuses new
// connections but finishes the requests in flight.
func TestServeGracefulShutdown(t *testing.T) {
	t.Parallel()
	entered, release := make(chan struct{}), make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(entered)
			<-release
		}
		io.WriteString(w, "done")
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- actors.Serve(ctx, l, h) }()
	base := "http://" + l.Addr().String()
	got := make(chan string, 1)
	go func() {
		resp, err := http.Get(base + "/slow")
		if err != nil {
			got <- err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		got <- string(b)
	}()
	select {
	case <-entered:
	case <-time.After(cloudWait):
		t.Fatal("request never arrived")
	}
	stop()
	// New connections are refused once the listener is closed.
	deadline := time.Now().Add(cloudWait)
	for {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("still accepting connections")
		}
		runtime.Gosched()
	}
	close(release)
	if s := <-got; s != "done" {
		t.Errorf("in-flight request: %q", s)
	}
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(cloudWait):
		t.Fatal("Serve did not return")
	}
}

// A cloud node serves the HTTP sync API; a device signs in and syncs
// with it over HTTP through its sync engine.
func ExampleNode_CloudHandler() {
	tmp, err := os.MkdirTemp("", "clinicsync-serve-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(tmp)

	// The cloud: a node, a user, the handler served on a local port.
	if _, err := actors.Init(tmp+"/cloud", actors.InitConfig{Kind: actors.KindCloud}); err != nil {
		log.Fatal(err)
	}
	cloud, err := actors.Open(tmp+"/cloud", nil)
	if err != nil {
		log.Fatal(err)
	}
	defer cloud.Close()
	if _, err := cloud.AddUser(actors.UserConfig{Email: "nurse@example.org", Password: "correct horse"}); err != nil {
		log.Fatal(err)
	}
	h, err := cloud.CloudHandler(actors.CloudConfig{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		log.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- actors.Serve(ctx, l, h) }()
	defer func() {
		stop() // graceful: requests in flight finish
		if err := <-served; err != nil {
			log.Fatal(err)
		}
	}()

	// A device: the cloud as its peer, a patient, then login (which syncs).
	if _, err := actors.Init(tmp+"/phone", actors.InitConfig{Kind: actors.KindMobile}); err != nil {
		log.Fatal(err)
	}
	phone, err := actors.Open(tmp+"/phone", nil)
	if err != nil {
		log.Fatal(err)
	}
	defer phone.Close()
	if _, err := phone.AddPeer(actors.PeerConfig{Type: kv.PeerCloud, URL: "http://" + l.Addr().String()}); err != nil {
		log.Fatal(err)
	}
	if err := phone.Start(actors.NodeConfig{Transports: phone.HTTPTransports(nil), Logger: slog.New(slog.DiscardHandler)}); err != nil {
		log.Fatal(err)
	}
	if _, err := phone.Put("patients", "p1", map[string]string{
		"given_name": "Amina", "surname": "Haddad", "date_of_birth": "1990-02-28", "citizenship": "JO",
		"hometown": "Irbid", "phone": "0790000000", "sex": "female", "additional_data": "{}", "metadata": "{}",
		"is_deleted": "false", "government_id": "G-1", "external_patient_id": "E-1",
	}); err != nil {
		log.Fatal(err)
	}
	res, err := phone.Login(context.Background(), "nurse@example.org", "correct horse", "")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("login:", res.Outcome, "pushed", res.Pushed)
	res, err = phone.Sync(context.Background(), actors.SyncRequest{Trigger: actors.Manual})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("sync:", res.Outcome, "pulled", res.Pulled, "pushed", res.Pushed)
	rec, err := cloud.Store().Get("patients", "p1")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("cloud has", rec.ID, rec.Cols["given_name"])
	// Output:
	// login: ok pushed 1
	// sync: ok pulled 1 pushed 0
	// cloud has p1 "Amina"
}
