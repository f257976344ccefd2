package actors_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/clinicsync/clinicsync/actors"
	"github.com/clinicsync/clinicsync/codec"
	pb "github.com/clinicsync/clinicsync/proto"
)

// TestCloudOlderAppSchema: a push from an app whose schema lacks
// catalog columns is accepted (defaults filled in), and each client's
// schema version is recorded from its pulls.
func TestCloudOlderAppSchema(t *testing.T) {
	t.Parallel()
	c := newCloud(t, actors.CloudConfig{})
	_, raw := c.pull(nurse, "?last_pulled_at=null&schema_version=8&migration=null")
	t0 := int64(raw["timestamp"].(float64))
	old := patientRaw("p1", "c1", nil)
	delete(old, "citizenship")
	delete(old, "additional_data")
	if ans := c.push(nurse, "", changes(t, t0, "patients", []map[string]any{old}, nil)); ans["experimentalRejectedIds"] != nil {
		t.Fatalf("older-schema push rejected: %v", ans)
	}
	r := c.call("GET", "/api/v2/sync?last_pulled_at=0", nurse, "")
	if !strings.Contains(string(r.body), `"citizenship":""`) || !strings.Contains(string(r.body), `"additional_data":""`) {
		t.Errorf("defaults not served as the device holds them: %s", r.body)
	}
	// An update from the older app leaves the columns it lacks alone.
	full := patientRaw("p1", "c1", map[string]any{"citizenship": "SY", "updated_at": 1709280001000, "_changed": "citizenship", "_status": "updated"})
	c.push(nurse, "", changes(t, t0, "patients", nil, []map[string]any{full}))
	upd := patientRaw("p1", "c1", map[string]any{"phone": "222", "updated_at": 1709280002000, "_changed": "phone", "_status": "updated"})
	delete(upd, "citizenship")
	c.push(nurse, "", changes(t, t0, "patients", nil, []map[string]any{upd}))
	if got, _ := c.store.Get("patients", "p1"); got.Cols["citizenship"].Str != "SY" || got.Cols["phone"].Str != "222" {
		t.Errorf("after the older app's update: %v", got.Row)
	}

	// Schema versions, per client: a user's app (and a second device of
	// the same user, named by device_id), a hub over protobuf.
	if r := c.call("GET", "/api/v2/sync?last_pulled_at=0&schemaVersion=9&device_id=tablet2", nurse, ""); r.status != 200 {
		t.Fatalf("pull: %d %s", r.status, r.body)
	}
	hub := &actors.HTTPTransport{BaseURL: c.srv.URL, Client: c.srv.Client(), Auth: actors.HubAuth(hubKey)}
	if _, err := hub.Pull(context.Background(), &pb.PullRequest{SchemaVersion: 11}); err != nil {
		t.Fatal(err)
	}
	clients, err := c.store.Clients()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, cl := range clients {
		got = append(got, fmt.Sprintf("%s hub=%v v%d", cl.Key(), cl.Hub, cl.SchemaVersion))
	}
	if want := "[hub1 hub=true v11 u1 hub=false v8 u1/tablet2 hub=false v9]"; fmt.Sprint(got) != want {
		t.Errorf("clients %v, want %s", got, want)
	}
	for _, q := range []string{"?schema_version=x", "?schema_version=-1", "?device_id=a/b"} {
		if r := c.call("GET", "/api/v2/sync"+q, nurse, ""); r.status != 400 {
			t.Errorf("%s: %d %s", q, r.status, r.body)
		}
	}
}

// TestCloudMigrationSync: a pull with a migration also returns the rows
// at or below last_pulled_at that the device could not hold before
// (JSON and protobuf, paged), each once; a migration naming an unknown
// table or column is a 400 that changes nothing.
func TestCloudMigrationSync(t *testing.T) {
	t.Parallel()
	c := newCloud(t, actors.CloudConfig{PageSize: 2})
	c.putPatients(5, "p")
	_, err := c.store.Put("patients", "p001", map[string]codec.Value{"citizenship": codec.String("")}) // a default: not served
	if err != nil {
		t.Fatal(err)
	}
	_, raw := c.pull(nurse, "?last_pulled_at=null")
	t1 := int64(raw["timestamp"].(float64))
	c.putPatients(1, "q") // changed after t1: served as an ordinary change
	mig := url.QueryEscape(`{"from":8,"tables":[],"columns":[{"table":"patients","columns":["citizenship"]}]}`)
	r := c.call("GET", fmt.Sprintf("/api/v2/sync?last_pulled_at=%d&schema_version=9&migration=%s", t1, mig), nurse, "")
	if r.status != 200 {
		t.Fatalf("migration pull: %d %s", r.status, r.body)
	}
	var body struct {
		Changes map[string]map[string][]json.RawMessage
	}
	if err := json.Unmarshal(r.body, &body); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, list := range []string{"created", "updated"} {
		for _, row := range body.Changes["patients"][list] {
			var m map[string]any
			json.Unmarshal(row, &m)
			got = append(got, list+":"+m["id"].(string))
		}
	}
	if want := "[created:q000 updated:p000 updated:p002 updated:p003 updated:p004]"; fmt.Sprint(got) != want {
		t.Errorf("JSON migration pull: %v, want %s", got, want)
	}

	// The same over protobuf in pages of 2: every row once.
	tr := &actors.HTTPTransport{BaseURL: c.srv.URL, Client: c.srv.Client(), Auth: actors.BasicAuth(nurseEmail, nursePassword)}
	req := &pb.PullRequest{LastPulledAt: t1, PageSize: 2, Migration: &pb.Migration{From: 8,
		Columns: []*pb.MigrationColumns{{Table: "patients", Columns: []string{"citizenship"}}}}}
	got = nil
	firstCont := ""
	for pages := 0; ; pages++ {
		if pages > 20 {
			t.Fatal("protobuf migration pull does not end")
		}
		resp, err := tr.Pull(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		cs, _, err := codec.DecodeChangeset(resp.GetChanges(), c.store.Catalog())
		if err != nil {
			t.Fatal(err)
		}
		tc := tableOf(cs, "patients")
		for _, row := range tc.Created {
			got = append(got, "created:"+row.ID)
		}
		for _, row := range tc.Updated {
			got = append(got, "updated:"+row.ID)
		}
		if resp.GetContinuation() == "" {
			break
		}
		req.Continuation = resp.GetContinuation()
		if firstCont == "" {
			firstCont = req.Continuation // still in the migration's walk
		}
	}
	slices.Sort(got)
	if want := "[created:q000 updated:p000 updated:p002 updated:p003 updated:p004]"; fmt.Sprint(got) != want {
		t.Errorf("protobuf migration pull: %v, want %s", got, want)
	}

	// Bad migrations: 400 with the reason, nothing recorded or served.
	before, _ := c.store.LastCursor()
	for q, want := range map[string]string{
		`{"from":8,"tables":["nope"],"columns":[]}`:                                  `unknown table "nope"`,
		`{"from":8,"tables":[],"columns":[{"table":"patients","columns":["shoe"]}]}`: `patients has no column "shoe"`,
		`{"from":8`: "migration",
	} {
		r := c.call("GET", fmt.Sprintf("/api/v2/sync?last_pulled_at=%d&schema_version=10&migration=%s", t1, url.QueryEscape(q)), nurse, "")
		if r.status != 400 || !strings.Contains(fmt.Sprint(r.json(t)["error"]), want) {
			t.Errorf("%s: %d %s, want 400 with %q", q, r.status, r.body, want)
		}
	}
	if after, _ := c.store.LastCursor(); after != before {
		t.Errorf("refused migrations changed the store: cursor %d → %d", before, after)
	}
	if cl, _ := c.store.Clients(); len(cl) != 1 || cl[0].SchemaVersion != 9 {
		t.Errorf("refused migrations recorded a schema version: %+v", cl)
	}
	// A migration continuation without the migration is refused.
	req.Migration, req.Continuation = nil, firstCont
	if _, err := tr.Pull(context.Background(), req); err == nil || !strings.Contains(err.Error(), "migration") {
		t.Errorf("migration continuation without the migration: %v", err)
	}
}
