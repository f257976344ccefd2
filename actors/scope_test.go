package actors_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/clinicsync/clinicsync/actors"
	"github.com/clinicsync/clinicsync/codec"
	"github.com/clinicsync/clinicsync/codec/schema"
	"github.com/clinicsync/clinicsync/fsm"
	"github.com/clinicsync/clinicsync/kv"
	pb "github.com/clinicsync/clinicsync/proto"
)

// scopedTables are the tables whose rows belong to a clinic: those
// with a clinic column, and those holding a patient's data (a
// patient_id column), whatever the catalog says they follow.
func scopedTables(cat *schema.Catalog) []*schema.Table {
	var out []*schema.Table
	for _, name := range cat.Names() {
		t, _ := cat.Table(name)
		if _, patients := t.Column("patient_id"); t.Flow != schema.Local && (t.ClinicColumn != "" || patients) {
			out = append(out, t)
		}
	}
	return out
}

// scopeRow is a row of t in clinic k: its clinic column names k, and
// patient_id and visit_id name k's patient and visit. With follow, the
// clinic column is null, so the row follows its parents.
func scopeRow(t *schema.Table, k string, follow bool) map[string]codec.Value {
	cols := map[string]codec.Value{}
	for _, c := range t.Columns {
		if !c.Optional {
			cols[c.Name] = filler(c)
		}
	}
	for col, parent := range map[string]string{"patient_id": "patients", "visit_id": "visits"} {
		if _, ok := t.Column(col); ok {
			cols[col] = codec.String(parent + "-" + k)
		}
	}
	if c, ok := t.Column(t.ClinicColumn); ok {
		switch {
		case follow:
			cols[c.Name] = codec.Null()
		case c.Type == schema.JSON:
			cols[c.Name] = codec.JSONText(`["` + k + `"]`)
		default:
			cols[c.Name] = codec.String(k)
		}
	}
	return cols
}

// scopeID names the row of t in clinic k (a clinic's row is k).
func scopeID(t *schema.Table, k string, follow bool) string {
	switch {
	case t.ClinicColumn == "id":
		return k
	case follow && t.ClinicColumn != "":
		return t.Name + "-f-" + k
	}
	return t.Name + "-" + k
}

// variants are the kinds of row of t: with a clinic of its own, and
// with none (no clinic column, or an optional one left null) when it
// holds a patient's data.
func variants(t *schema.Table) []bool {
	c, own := t.Column(t.ClinicColumn)
	_, patients := t.Column("patient_id")
	switch {
	case t.ClinicColumn == "id" || !patients:
		return []bool{false}
	case !own:
		return []bool{true}
	case c.Optional:
		return []bool{false, true}
	}
	return []bool{false}
}

// touchColumn is a column of t that says nothing of its clinic, to edit.
func touchColumn(t *schema.Table) schema.Column {
	for _, c := range t.Columns {
		if (c.Type == schema.String || c.Type == schema.JSON) && !c.Secret &&
			c.Name != t.ClinicColumn && c.Name != "patient_id" && c.Name != "visit_id" {
			return c
		}
	}
	panic("no column to edit in " + t.Name)
}

func touched(c schema.Column, s string) codec.Value {
	if c.Type == schema.JSON {
		return codec.JSONText(fmt.Sprintf(`{"by":%q}`, s))
	}
	return codec.String(s)
}

// seedClinics writes a row of every scoped table in c1 and in c2 on
// the cloud's store, and returns the ids by clinic ("table/id").
func seedClinics(t *testing.T, st *kv.Store) map[string][]string {
	t.Helper()
	ids := map[string][]string{}
	for _, k := range []string{"c1", "c2"} {
		for _, tbl := range scopedTables(st.Catalog()) {
			for _, follow := range variants(tbl) {
				id := scopeID(tbl, k, follow)
				if _, err := st.Put(tbl.Name, id, scopeRow(tbl, k, follow)); err != nil {
					t.Fatalf("seeding %s/%s: %v", tbl.Name, id, err)
				}
				ids[k] = append(ids[k], tbl.Name+"/"+id)
			}
		}
	}
	return ids
}

// dumpRows prints every stored row with its sync metadata.
func dumpRows(t *testing.T, st *kv.Store) string {
	t.Helper()
	var b strings.Builder
	for _, name := range st.Catalog().Names() {
		err := st.Rows(name, func(r kv.Record) error {
			fmt.Fprintf(&b, "%s/%s %v %v status=%s deleted=%v cursor=%d/%d version=%d origin=%q base=%d changed=%v\n",
				name, r.ID, r.Cols, r.Versions, r.Status, r.Deleted, r.Cursor, r.CreatedCursor, r.Version, r.Origin, r.PushBase, r.Changed)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return b.String()
}

// servedIDs lists the rows ("table/id") of a changeset's created and
// updated lists, and fails on any that mentions c2 in its id or values.
func servedIDs(t *testing.T, how string, cs *codec.Changeset) []string {
	t.Helper()
	var out []string
	for _, name := range cs.TableNames() {
		tc := cs.Tables[name]
		for _, r := range slices.Concat(tc.Created, tc.Updated) {
			out = append(out, name+"/"+r.ID)
			var text strings.Builder
			for name, v := range r.Cols {
				if name != "hashed_password" { // a random salt may spell c2
					fmt.Fprint(&text, v, " ")
				}
			}
			if strings.Contains(r.ID, "c2") || strings.Contains(text.String(), "c2") {
				t.Errorf("%s: a hub of c1 was served %s/%s: %v", how, name, r.ID, r.Cols)
			}
		}
	}
	return out
}

// expectServed checks that every c1 row was served.
func expectServed(t *testing.T, how string, served, c1 []string) {
	t.Helper()
	for _, id := range c1 {
		if !slices.Contains(served, id) {
			t.Errorf("%s: c1's row %s was not served to a hub of c1", how, id)
		}
	}
}

// protoPull pulls every page over protobuf.
func protoPull(t *testing.T, tr *actors.HTTPTransport, req *pb.PullRequest, cat *schema.Catalog) *codec.Changeset {
	t.Helper()
	all := codec.NewChangeset()
	for {
		resp, err := tr.Pull(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		cs, _, err := codec.DecodeChangeset(resp.GetChanges(), cat)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range cs.TableNames() {
			tc, to := cs.Tables[name], all.Table(name)
			to.Created, to.Updated = append(to.Created, tc.Created...), append(to.Updated, tc.Updated...)
			to.Deleted = append(to.Deleted, tc.Deleted...)
		}
		all.Timestamp = resp.GetTimestamp()
		if resp.GetContinuation() == "" {
			return all
		}
		req.Continuation = resp.GetContinuation()
	}
}

// TestScopeHubOfC1 is issue 9: a hub key of clinic c1 can neither read
// nor change, move, delete or create a row of clinic c2, in any table
// whose rows belong to a clinic, through JSON or protobuf, under either
// push policy (the strict one's 409 must not tell it a c2 row
// changed); every attempt comes back rejected and the store is left as
// it was.
func TestScopeHubOfC1(t *testing.T) {
	t.Parallel()
	for _, policy := range []fsm.Policy{fsm.MergePolicy, fsm.StrictPolicy} {
		t.Run(policy.String(), func(t *testing.T) {
			t.Parallel()
			c := newCloud(t, actors.CloudConfig{Policy: policy, PageSize: 7})
			cat := c.store.Catalog()
			seeded := seedClinics(t, c.store)
			hub := "Bearer " + hubKey
			tr := &actors.HTTPTransport{BaseURL: c.srv.URL, Client: c.srv.Client(), Auth: actors.HubAuth(hubKey)}

			// Reads: a first pull, then a migration sync naming every scoped table.
			cs, _ := c.pull(hub, "?peerType=sync_hub")
			expectServed(t, "JSON pull", servedIDs(t, "JSON pull", cs), seeded["c1"])
			lpa := cs.Timestamp
			expectServed(t, "protobuf pull", servedIDs(t, "protobuf pull", protoPull(t, tr, &pb.PullRequest{PageSize: 5}, cat)), seeded["c1"])
			mig := &codec.Migration{From: 1}
			for _, tbl := range scopedTables(cat) {
				mig.Tables = append(mig.Tables, tbl.Name)
			}
			migJSON := codec.MigrationJSON(codec.MigrationToProto(mig))
			cs, _ = c.pull(hub, fmt.Sprintf("?peerType=sync_hub&last_pulled_at=%d&migration=%s", lpa, url.QueryEscape(migJSON)))
			expectServed(t, "JSON migration sync", servedIDs(t, "JSON migration sync", cs), seeded["c1"])
			cs = protoPull(t, tr, &pb.PullRequest{LastPulledAt: lpa, PageSize: 5, Migration: codec.MigrationToProto(mig)}, cat)
			expectServed(t, "protobuf migration sync", servedIDs(t, "protobuf migration sync", cs), seeded["c1"])

			// c2's rows change after the hub's pull; its next pull still
			// gets none of them.
			for _, tbl := range scopedTables(cat) {
				col := touchColumn(tbl)
				for _, follow := range variants(tbl) {
					if _, err := c.store.Put(tbl.Name, scopeID(tbl, "c2", follow), map[string]codec.Value{col.Name: touched(col, "cloud")}); err != nil {
						t.Fatal(err)
					}
				}
			}
			cs, _ = c.pull(hub, fmt.Sprintf("?peerType=sync_hub&last_pulled_at=%d", lpa))
			servedIDs(t, "JSON pull after c2's edits", cs)
			servedIDs(t, "protobuf pull after c2's edits", protoPull(t, tr, &pb.PullRequest{LastPulledAt: lpa}, cat))

			// Writes: each attempt is one push of one row, dated after
			// every stored version, so that its edits would win.
			c.clock.Add(time.Hour)
			now := codec.Int(c.clock.Now().UnixMilli())
			before := dumpRows(t, c.store)
			type attempt struct {
				what, table, id string
				cs              *codec.Changeset
				reason          string // part of the rejection's reason, when it is worth checking
			}
			var attempts []attempt
			for _, tbl := range scopedTables(cat) {
				col := touchColumn(tbl)
				for _, follow := range variants(tbl) {
					one := func(what, id string, cols map[string]codec.Value, list string, changed ...string) {
						if cols != nil {
							cols["updated_at"] = now
						}
						cs := codec.NewChangeset()
						row := codec.Row{ID: id, Cols: cols, Changed: changed}
						switch list {
						case "created":
							cs.Table(tbl.Name).Created = []codec.Row{row}
						case "updated":
							cs.Table(tbl.Name).Updated = []codec.Row{row}
						default:
							cs.Table(tbl.Name).Deleted = []string{id}
						}
						attempts = append(attempts, attempt{what: what, table: tbl.Name, id: id, cs: cs})
					}
					c2, c1 := scopeID(tbl, "c2", follow), scopeID(tbl, "c1", follow)
					edit := scopeRow(tbl, "c2", follow)
					edit[col.Name] = touched(col, "hub")
					one("change c2's row", c2, edit, "updated", col.Name)
					one("delete c2's row", c2, nil, "deleted")
					one("create a row in c2", scopeID(tbl, "c2new", follow), scopeRow(tbl, "c2", follow), "created")
					if tbl.ClinicColumn != "id" {
						claim := scopeRow(tbl, "c1", follow)
						one("claim c2's row for c1", c2, claim, "updated", codec.Row{Cols: claim}.Columns()...)
						move := scopeRow(tbl, "c2", follow)
						one("move c1's row to c2", c1, move, "updated", codec.Row{Cols: move}.Columns()...)
						if tbl.Name == "events" {
							attempts[len(attempts)-1].reason = `patient_id "patients-c2" names no patients row of the caller's clinics`
						}
					}
				}
			}
			for _, a := range attempts {
				// JSON, as WatermelonDB pushes.
				var body bytes.Buffer
				if err := codec.EncodePush(&body, a.cs, lpa, codec.Options{Catalog: cat}); err != nil {
					t.Fatal(err)
				}
				r := c.call("POST", "/api/v2/sync?peerType=sync_hub", hub, body.String(), "Content-Type", "application/json")
				if r.status != 200 {
					t.Errorf("JSON: %s (%s/%s): %d %s", a.what, a.table, a.id, r.status, r.body)
				} else {
					var m struct {
						Rejected map[string][]string                  `json:"experimentalRejectedIds"`
						Reasons  []struct{ Table, ID, Reason string } `json:"rejected"`
					}
					if err := json.Unmarshal(r.body, &m); err != nil {
						t.Fatal(err)
					}
					if !slices.Equal(m.Rejected[a.table], []string{a.id}) || len(m.Reasons) != 1 || !strings.Contains(m.Reasons[0].Reason, a.reason) {
						t.Errorf("JSON: %s (%s/%s): answered %s", a.what, a.table, a.id, r.body)
					}
				}
				// Protobuf, as a Go hub pushes.
				resp, err := tr.Push(context.Background(), &pb.PushRequest{LastPulledAt: lpa, Changes: codec.EncodeChangeset(a.cs)})
				switch {
				case err != nil:
					t.Errorf("protobuf: %s (%s/%s): %v", a.what, a.table, a.id, err)
				case resp.GetAccepted() != 0 || len(resp.GetRejected()) != 1 || resp.GetRejected()[0].GetId() != a.id ||
					!strings.Contains(resp.GetRejected()[0].GetReason(), a.reason):
					t.Errorf("protobuf: %s (%s/%s): answered %v", a.what, a.table, a.id, resp)
				}
			}
			if after := dumpRows(t, c.store); after != before {
				t.Errorf("the hub's refused pushes changed the store:\n%s", lineDiff(before, after))
			}
		})
	}
}

// TestScopeHubOfC1Writes: a hub of c1 creates a c1 patient with its
// visit, events, vitals, problems and attributes in one push, through
// JSON and through protobuf, and reads them all back.
func TestScopeHubOfC1Writes(t *testing.T) {
	t.Parallel()
	c := newCloud(t, actors.CloudConfig{Policy: fsm.StrictPolicy})
	cat := c.store.Catalog()
	hub := "Bearer " + hubKey
	tr := &actors.HTTPTransport{BaseURL: c.srv.URL, Client: c.srv.Client(), Auth: actors.HubAuth(hubKey)}
	cs, _ := c.pull(hub, "?peerType=sync_hub")
	lpa := cs.Timestamp
	family := func(k string) (*codec.Changeset, []string) {
		out := codec.NewChangeset()
		var ids []string
		// Children first in the changeset: the server orders the push.
		for _, name := range []string{"patient_vitals", "events", "patient_problems", "patient_additional_attributes", "visits", "patients"} {
			tbl, _ := cat.Table(name)
			cols := scopeRow(tbl, "c1", false)
			for col, parent := range map[string]string{"patient_id": "patients", "visit_id": "visits"} {
				if _, ok := cols[col]; ok {
					cols[col] = codec.String(parent + "-" + k)
				}
			}
			out.Table(name).Created = []codec.Row{{ID: name + "-" + k, Cols: cols}}
			ids = append(ids, name+"/"+name+"-"+k)
		}
		return out, ids
	}
	jsonSet, jsonIDs := family("json")
	var body bytes.Buffer
	if err := codec.EncodePush(&body, jsonSet, lpa, codec.Options{Catalog: cat}); err != nil {
		t.Fatal(err)
	}
	if m := c.push(hub, "?peerType=sync_hub", body.String()); m["experimentalRejectedIds"] != nil {
		t.Fatalf("JSON push of a new c1 family: %v", m)
	}
	protoSet, protoIDs := family("proto")
	resp, err := tr.Push(context.Background(), &pb.PushRequest{LastPulledAt: lpa, Changes: codec.EncodeChangeset(protoSet)})
	if err != nil || len(resp.GetRejected()) != 0 || resp.GetAccepted() != uint64(len(protoIDs)) {
		t.Fatalf("protobuf push of a new c1 family: %v %v", resp, err)
	}
	// A patient created and deleted downstream before it reached the
	// cloud, with an event a device wrote meanwhile: the delete leaves a
	// tombstone of the hub's clinic, which the event follows.
	orphan := codec.NewChangeset()
	orphan.Table("patients").Deleted = []string{"patients-gone"}
	events, _ := cat.Table("events")
	ev := scopeRow(events, "c1", false)
	ev["patient_id"], ev["visit_id"] = codec.String("patients-gone"), codec.String("")
	orphan.Table("events").Created = []codec.Row{{ID: "events-gone", Cols: ev}}
	resp, err = tr.Push(context.Background(), &pb.PushRequest{LastPulledAt: lpa, Changes: codec.EncodeChangeset(orphan)})
	if err != nil || len(resp.GetRejected()) != 0 || resp.GetAccepted() != 2 {
		t.Fatalf("push of a deleted patient with its event: %v %v", resp, err)
	}
	want := slices.Concat(jsonIDs, protoIDs, []string{"events/events-gone"})
	cs, _ = c.pull(hub, fmt.Sprintf("?peerType=sync_hub&last_pulled_at=%d", lpa))
	expectServed(t, "JSON pull of the hub's rows", servedIDs(t, "JSON pull of the hub's rows", cs), want)
	expectServed(t, "protobuf pull of the hub's rows", servedIDs(t, "protobuf pull", protoPull(t, tr, &pb.PullRequest{LastPulledAt: lpa}, cat)), want)
}

// lineDiff shows the lines of a that b lacks (-) and those it adds (+).
func lineDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	var out []string
	for _, l := range al {
		if !slices.Contains(bl, l) {
			out = append(out, "- "+l)
		}
	}
	for _, l := range bl {
		if !slices.Contains(al, l) {
			out = append(out, "+ "+l)
		}
	}
	return strings.Join(out, "\n")
}
