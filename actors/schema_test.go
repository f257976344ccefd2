package actors_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/clinicsync/clinicsync/actors"
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
