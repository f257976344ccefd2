package fsm_test

import (
	"errors"
	"maps"
	"strings"
	"testing"

	"github.com/clinicsync/clinicsync/codec"
	"github.com/clinicsync/clinicsync/codec/schema"
	"github.com/clinicsync/clinicsync/fsm"
)

func cols(kv ...string) map[string]codec.Value {
	m := map[string]codec.Value{}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i]] = codec.String(kv[i+1])
	}
	return m
}

// at dates every column of c at wall (node n).
func at(c map[string]codec.Value, wall int64, n string) map[string]codec.Version {
	vs := map[string]codec.Version{}
	for col := range c {
		vs[col] = codec.Version{Wall: wall, Node: n}
	}
	return vs
}

// rec is a stored p1 whose columns were last set at 10 by node "a".
func rec(status codec.Status, changed string, c map[string]codec.Value) *codec.Record {
	r := &codec.Record{Row: codec.Row{Table: "patients", ID: "p1", Cols: c, Versions: at(c, 10, "a")}, Status: status, Cursor: 10, CreatedCursor: 5}
	if changed != "" {
		r.Changed = strings.Split(changed, ",")
	}
	if status == codec.Deleted {
		r.Deleted, r.Cols = true, nil
	}
	return r
}

func change(c map[string]codec.Value, changed ...string) codec.Change {
	return codec.Change{Row: codec.Row{Table: "patients", ID: "p1", Cols: c, Changed: changed}}
}

// pulled is a change for p1 whose columns were set at wall by node "b".
func pulled(c map[string]codec.Value, wall int64) codec.Change {
	ch := change(c)
	ch.Versions = at(c, wall, "b")
	return ch
}

// edited is rec with column col set to v at wall by this node "a", pending.
func edited(r *codec.Record, col, v string, wall int64) *codec.Record {
	r.Cols[col] = codec.String(v)
	r.Versions[col] = codec.Version{Wall: wall, Node: "a"}
	return r
}

var deleteP1 = codec.Change{Row: codec.Row{Table: "patients", ID: "p1"}, Delete: true}

// TestApplyPulled is the per-column table by version and the delete
// rules.
func TestApplyPulled(t *testing.T) {
	remote := cols("given_name", "Remote", "phone", "222")
	local := func() map[string]codec.Value { return cols("given_name", "Local", "phone", "111") }
	cases := []struct {
		name      string
		cur       *codec.Record
		in        codec.Change
		op        codec.Op
		want      map[string]codec.Value // columns after a write
		st        codec.Status
		changed   string
		conflicts string
	}{
		{"missing locally: created", nil, pulled(remote, 20), codec.Write, remote, codec.Synced, "", ""},
		{"synced, remote newer: remote wins", rec(codec.Synced, "", local()), pulled(remote, 20), codec.Write, remote, codec.Synced, "", ""},
		{"synced, remote older (a lagging peer): local kept", rec(codec.Synced, "", local()), pulled(remote, 5), codec.Skip, nil, 0, "", ""},
		{"name remote wins, newer local edit of phone wins", edited(rec(codec.Updated, "phone", local()), "phone", "333", 30),
			pulled(remote, 20), codec.Write, cols("given_name", "Remote", "phone", "333"), codec.Updated, "phone",
			"patients/p1.phone=\"222\" 20.0@b lost to 30.0@a"},
		{"older local edit loses: leaves _changed, logged", edited(rec(codec.Updated, "phone", local()), "phone", "333", 15),
			pulled(remote, 20), codec.Write, remote, codec.Synced, "",
			"patients/p1.phone=\"333\" 15.0@a lost to 20.0@b"},
		{"local column absent remotely kept", rec(codec.Synced, "", cols("given_name", "L", "phone", "1", "camp", "c")),
			pulled(remote, 20), codec.Write, cols("given_name", "Remote", "phone", "222", "camp", "c"), codec.Synced, "", ""},
		{"identical: skipped (no echo)", rec(codec.Synced, "", remote), change(remote), codec.Skip, nil, 0, "", ""},
		{"identical values and versions: skipped", rec(codec.Synced, "", remote), codec.Change{Row: rec(codec.Synced, "", remote).Row}, codec.Skip, nil, 0, "", ""},
		{"local delete vs remote update: stays deleted", rec(codec.Deleted, "", nil), pulled(remote, 20), codec.Skip, nil, 0, "", ""},
		{"remote delete vs local edit: removed", rec(codec.Updated, "phone", cols("phone", "111")), deleteP1, codec.Purge, nil, 0, "", ""},
		{"remote delete of a local tombstone: purged", rec(codec.Deleted, "", nil), deleteP1, codec.Purge, nil, 0, "", ""},
		{"remote delete of unknown row: skipped", nil, deleteP1, codec.Skip, nil, 0, "", ""},
	}
	for _, c := range cases {
		out, err := fsm.ApplyPulled(c.cur, c.in)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		var logged []string
		for _, cf := range out.Conflicts {
			logged = append(logged, cf.String())
		}
		if got := strings.Join(logged, "; "); got != c.conflicts {
			t.Errorf("%s: conflicts %q, want %q", c.name, got, c.conflicts)
		}
		if out.Op != c.op {
			t.Errorf("%s: op %s, want %s", c.name, out.Op, c.op)
			continue
		}
		if c.op != codec.Write {
			continue
		}
		got := codec.Row{Table: "patients", ID: "p1", Cols: out.Record.Cols}
		want := codec.Row{Table: "patients", ID: "p1", Cols: c.want}
		if got.String() != want.String() || out.Record.Status != c.st {
			t.Errorf("%s: got %s %s, want %s %s", c.name, got, out.Record.Status, want, c.st)
		}
		if strings.Join(out.Record.Changed, ",") != c.changed {
			t.Errorf("%s: _changed %v, want %q", c.name, out.Record.Changed, c.changed)
		}
		for col := range out.Record.Cols {
			if out.Record.Versions[col].IsZero() {
				t.Errorf("%s: column %s has no version", c.name, col)
			}
		}
	}
}

func patientCols(given, phone string) map[string]codec.Value {
	c := map[string]codec.Value{}
	t, _ := schema.Default().Table("patients")
	for _, col := range t.Columns {
		if col.Optional {
			continue
		}
		switch col.Type {
		case schema.Bool:
			c[col.Name] = codec.Bool(false)
		case schema.JSON:
			c[col.Name] = codec.JSONText("{}")
		case schema.Timestamp:
			c[col.Name] = codec.Int(1772355600000)
		case schema.Date:
			c[col.Name] = codec.String("1990-04-01")
		default:
			c[col.Name] = codec.String("x")
		}
	}
	c["given_name"], c["phone"] = codec.String(given), codec.String(phone)
	return c
}

func TestPushMerge(t *testing.T) {
	cat := schema.Default()
	server := func(c map[string]codec.Value) *codec.Record {
		return &codec.Record{Row: codec.Row{Table: "patients", ID: "p1", Cols: c}, Cursor: 20, CreatedCursor: 5}
	}
	push := func(policy fsm.Policy, lastPulled int64, relay bool) func(*codec.Record, codec.Change) (codec.Outcome, error) {
		return fsm.Push{Caller: fsm.Caller{ID: "dev1"}, LastPulledAt: lastPulled, Policy: policy, Relay: relay, Catalog: cat}.Merge()
	}
	base := patientCols("Amina", "111")

	// Created that exists is an update; identical is a no-op.
	out, _ := push(fsm.MergePolicy, 30, false)(server(base), change(base))
	if out.Op != codec.Skip {
		t.Errorf("idempotent re-push: %s", out.Op)
	}
	// A new row is created synced on a cloud, pending on a relay, with
	// the push's last_pulled_at as its creation cursor.
	out, _ = push(fsm.MergePolicy, 30, false)(nil, change(base))
	if out.Op != codec.Write || out.Record.Status != codec.Synced || out.Record.PushBase != 30 || out.Record.Origin != "dev1" {
		t.Errorf("create on cloud: %+v", out)
	}
	out, _ = push(fsm.MergePolicy, 30, true)(nil, change(base, "phone"))
	if out.Record.Status != codec.Created || strings.Join(out.Record.Changed, ",") != "phone" {
		t.Errorf("create on relay: %+v", out)
	}
	// Conflict (server changed at 20 after the pull at 10).
	edited := patientCols("Amina", "999") // device changed phone
	edited["given_name"] = codec.String("stale")
	if _, err := push(fsm.StrictPolicy, 10, false)(server(patientCols("Aminah", "111")), change(edited, "phone")); !errors.Is(err, fsm.ErrConflict) {
		t.Errorf("strict conflict: %v", err)
	}
	out, _ = push(fsm.MergePolicy, 10, false)(server(patientCols("Aminah", "111")), change(edited, "phone"))
	if out.Op != codec.Write || out.Record.Cols["given_name"].Str != "Aminah" || out.Record.Cols["phone"].Str != "999" {
		t.Errorf("merge conflict: %+v", out.Record.Cols)
	}
	// Without a conflict too, only the changed columns are taken: the
	// device's stale copy of given_name (say, pulled from a lagging hub)
	// never overwrites the server's.
	out, _ = push(fsm.MergePolicy, 25, false)(server(patientCols("Aminah", "111")), change(edited, "phone"))
	if out.Record.Cols["given_name"].Str != "Aminah" || out.Record.Cols["phone"].Str != "999" {
		t.Errorf("no conflict: %+v", out.Record.Cols)
	}
	// Deletes: an unknown id leaves a tombstone (no error), so a create
	// delayed elsewhere cannot bring the row back; a tombstone is not
	// resurrected by an update or a create.
	if o := must(push(fsm.MergePolicy, 30, false)(nil, deleteP1)); o.Op != codec.Write || !o.Record.Deleted {
		t.Errorf("unknown delete: %+v", o)
	}
	tomb := &codec.Record{Row: codec.Row{Table: "patients", ID: "p1"}, Deleted: true, Cursor: 5}
	if o := must(push(fsm.MergePolicy, 30, false)(tomb, change(base))); o.Op != codec.Write || !o.Record.Deleted || len(o.Record.Cols) != 0 {
		t.Errorf("update of tombstone: %+v (want the tombstone re-served)", o)
	}
	out, _ = push(fsm.MergePolicy, 30, false)(server(base), deleteP1)
	if out.Op != codec.Write || !out.Record.Deleted {
		t.Errorf("delete: %+v", out)
	}
	// Rejections: invalid value, a down-only table; device-local tables
	// are ignored. (A missing column is no reason: TestPushDefaults.)
	bad := patientCols("A", "1")
	bad["date_of_birth"] = codec.String("1990-02-30")
	for name, c := range map[string]codec.Change{
		"invalid date":    change(bad),
		"down-only table": {Row: codec.Row{Table: "app_config", ID: "a1", Cols: cols("namespace", "system")}},
	} {
		o := must(push(fsm.MergePolicy, 30, false)(nil, c))
		if o.Op != codec.Reject || o.Reason == "" {
			t.Errorf("%s: %+v", name, o)
		}
	}
	if o := must(push(fsm.MergePolicy, 30, false)(nil, codec.Change{Row: codec.Row{Table: "event_logs", ID: "e1"}})); o.Op != codec.Skip {
		t.Errorf("device-local table: %+v", o)
	}
}

func must(o codec.Outcome, err error) codec.Outcome {
	if err != nil {
		panic(err)
	}
	return o
}

func TestPushMergeVersions(t *testing.T) {
	cat := schema.Default()
	const t0 = 1772355600000 // times below are ms after t0
	push := func(caller string, lastPulled int64) func(*codec.Record, codec.Change) (codec.Outcome, error) {
		return fsm.Push{Caller: fsm.Caller{ID: caller}, LastPulledAt: lastPulled, Catalog: cat, Now: t0 + 5000}.Merge()
	}
	// stored is p1 as dev2's push left it: phone edited at t0+2000.
	stored := func() *codec.Record {
		c := patientCols("Amina", "222")
		r := &codec.Record{Row: codec.Row{Table: "patients", ID: "p1", Cols: c, Versions: at(c, t0+1000, "dev0")}, Cursor: 20, CreatedCursor: 5}
		r.Versions["phone"] = codec.Version{Wall: t0 + 2000, Node: "dev2"}
		return r
	}
	// jsonEdit is a WatermelonDB push of p1 with phone edited at updatedAt.
	jsonEdit := func(phone string, updatedAt int64) codec.Change {
		c := patientCols("Amina", phone)
		c["updated_at"] = codec.Int(updatedAt)
		return change(c, "phone", "updated_at")
	}

	// Two nurses: dev1's older edit (t0+1500) syncs after dev2's (t0+2000). It
	// loses, goes to the conflict log, and the row is written again so
	// that dev1 pulls the winner.
	o := must(push("dev1", 10)(stored(), jsonEdit("111", t0+1500)))
	if o.Op != codec.Write || o.Record.Cols["phone"].Str != "222" || len(o.Conflicts) == 0 {
		t.Fatalf("older edit synced last: %+v", o)
	}
	if c := o.Conflicts[0]; c.Column != "phone" || c.Value.Str != "111" || c.Version != (codec.Version{Wall: t0 + 1500, Node: "dev1"}) || c.Winner.Node != "dev2" {
		t.Errorf("conflict entry %v", c)
	}
	// The same edit from a client that had pulled the row as stored (its
	// clock is slow): made after it saw dev2's value, it beats it, dated
	// just after the stored version.
	o = must(push("dev1", 30)(stored(), jsonEdit("111", t0+1500)))
	if o.Record.Cols["phone"].Str != "111" || o.Record.Versions["phone"] != (codec.Version{Wall: t0 + 2000, Counter: 1, Node: "dev1"}) || len(o.Conflicts) != 0 {
		t.Errorf("a slow clock's edit after a pull: %+v, conflicts %v", o.Record, o.Conflicts)
	}
	// Edited away and back to the stored value before syncing: the
	// column is in _changed, so it is the client's edit (the latest
	// write), dated just after the stored version, not the stored one.
	o = must(push("dev1", 30)(stored(), jsonEdit("222", t0+1500)))
	if o.Record.Cols["phone"].Str != "222" || o.Record.Versions["phone"] != (codec.Version{Wall: t0 + 2000, Counter: 1, Node: "dev1"}) {
		t.Errorf("an edit back to the stored value: %+v", o.Record)
	}
	// A push whose answer was lost, sent again: the same edit keeps the
	// version it was given the first time, though the server's clock
	// no longer bounds its updated_at, and even after a pull; an edit
	// made since where it had been seen still beats it.
	fromAhead := push("dev1", 30)
	sent := must(fromAhead(stored(), jsonEdit("444", t0+9000))) // updated_at beyond Now: dated t0+5000
	if v := sent.Record.Versions["phone"]; v != (codec.Version{Wall: t0 + 5000, Node: "dev1"}) {
		t.Fatalf("an edit from a clock ahead: version %v, want Now", v)
	}
	if len(sent.Record.Receipts) == 0 {
		t.Fatalf("an edit from a client without versions left no receipt: %+v", sent.Record)
	}
	// A local bulk load (node import) keeps none: its answer cannot be lost.
	bulk := fsm.Push{Caller: fsm.Caller{ID: "import"}, LastPulledAt: 30, Catalog: cat, Now: t0 + 5000, NoReceipts: true}.Merge()
	if o := must(bulk(stored(), jsonEdit("444", t0+3000))); len(o.Record.Receipts) != 0 || o.Record.Cols["phone"].Str != "444" {
		t.Errorf("a bulk load's edit: %+v", o.Record)
	}
	if o := must(bulk(nil, codec.Change{Row: codec.Row{Table: "patients", ID: "p9", Cols: patientCols("Omar", "9")}, Created: true})); len(o.Record.Receipts) != 0 {
		t.Errorf("a bulk load's created row keeps receipts %v", o.Record.Receipts)
	}
	seen := sent.Record
	seen.Cols, seen.Versions, seen.Cursor = maps.Clone(seen.Cols), maps.Clone(seen.Versions), 40
	seen.Cols["phone"], seen.Versions["phone"] = codec.String("555"), codec.Version{Wall: t0 + 5000, Counter: 3, Node: "dev3"}
	later := fsm.Push{Caller: fsm.Caller{ID: "dev1"}, LastPulledAt: 50, Catalog: cat, Now: t0 + 20000}.Merge()
	o = must(later(&seen, jsonEdit("444", t0+9000)))
	if o.Record.Cols["phone"].Str != "555" || o.Record.Versions["phone"].Node != "dev3" {
		t.Errorf("a re-sent edit beat an edit made since where it had been seen: %+v", o.Record)
	}
	// A new value is a new edit.
	o = must(later(&seen, jsonEdit("666", t0+9000)))
	if o.Record.Cols["phone"].Str != "666" {
		t.Errorf("a new edit after the pull: %+v", o.Record)
	}

	// The newer edit wins whichever syncs last; the value it beat is
	// logged when the pusher had not pulled it.
	o = must(push("dev1", 10)(stored(), jsonEdit("333", t0+2500)))
	if o.Record.Cols["phone"].Str != "333" || o.Record.Versions["phone"] != (codec.Version{Wall: t0 + 2500, Node: "dev1"}) {
		t.Fatalf("newer edit: %+v", o.Record)
	}
	if len(o.Conflicts) == 0 || o.Conflicts[0].Value.Str != "222" {
		t.Errorf("the beaten stored value is not logged: %v", o.Conflicts)
	}
	// A client clock far ahead dates its edit no later than this node's
	// time (Now), so it cannot win forever.
	o = must(push("dev1", 30)(stored(), jsonEdit("444", t0+10*86400000)))
	if v := o.Record.Versions["phone"]; v.Wall != t0+5000 {
		t.Errorf("future edit dated %v, want wall t0+5000", v)
	}
	// A re-sent created row carrying a later edit merges by version: its
	// new value is taken, not acknowledged and dropped.
	created := patientCols("Amina", "111")
	created["updated_at"] = codec.Int(t0 + 2000)
	first := must(push("dev1", 30)(nil, codec.Change{Row: codec.Row{Table: "patients", ID: "p1", Cols: created}, Created: true}))
	resent := patientCols("Amina", "555")
	resent["updated_at"] = codec.Int(t0 + 3000)
	o = must(push("dev1", 30)(&first.Record, codec.Change{Row: codec.Row{Table: "patients", ID: "p1", Cols: resent}, Created: true}))
	if o.Op != codec.Write || o.Record.Cols["phone"].Str != "555" {
		t.Errorf("re-sent created row: %s %v", o.Op, o.Record.Cols["phone"])
	}
	// A clinicsync sender's versions are kept as sent; a copy that is no
	// edit (zero version) never overwrites.
	in := change(patientCols("Amina", "666"))
	in.Versions = map[string]codec.Version{"phone": {Wall: t0 + 2100, Counter: 2, Node: "hub1"}}
	o = must(push("hub1", 30)(stored(), in))
	if o.Record.Versions["phone"] != (codec.Version{Wall: t0 + 2100, Counter: 2, Node: "hub1"}) || o.Record.Cols["given_name"].Str != "Amina" {
		t.Errorf("versioned push: %+v", o.Record)
	}
	// A version from a clock far ahead is kept (one edit, one version
	// everywhere) and counted.
	ahead := 0
	far := fsm.Push{Caller: fsm.Caller{ID: "hub1"}, LastPulledAt: 30, Catalog: cat, Now: t0 + 5000, MaxAhead: 600, Ahead: &ahead}.Merge()
	in.Versions = map[string]codec.Version{"phone": {Wall: t0 + 86400000, Counter: 4, Node: "hub1"}}
	o = must(far(stored(), in))
	if v := o.Record.Versions["phone"]; v != in.Versions["phone"] || ahead != 1 {
		t.Errorf("a version a day ahead: %v (counted %d)", v, ahead)
	}
	in.Versions = nil
	if o = must(push("hub1", 30)(stored(), in)); o.Op != codec.Skip {
		t.Errorf("a copy without edits changed the row: %+v", o)
	}
}

// TestPushScope: a hub scoped to c1 may change a row only when its
// stored clinic and its resulting clinic are c1, whatever it sends.
func TestPushScope(t *testing.T) {
	cat := schema.Default()
	tbl, _ := cat.Table("patients")
	clinic := tbl.ClinicColumn
	push := fsm.Push{Caller: fsm.Caller{ID: "hub1", Hub: true, Clinics: []string{"c1"}}, LastPulledAt: 30, Catalog: cat}.Merge()
	stored := func(c string) *codec.Record {
		cols := patientCols("Amina", "111")
		cols[clinic] = codec.String(c)
		return &codec.Record{Row: codec.Row{Table: "patients", ID: "p1", Cols: cols, Versions: at(cols, 10, "a")}, Cursor: 20, CreatedCursor: 5}
	}
	edit := func(c string, changed ...string) codec.Change {
		cols := patientCols("Amina", "999")
		if c == "" {
			delete(cols, clinic)
		} else {
			cols[clinic] = codec.String(c)
		}
		in := change(cols, changed...)
		in.Versions = at(cols, 50, "hub1")
		return in
	}
	for name, c := range map[string]struct {
		cur *codec.Record
		in  codec.Change
	}{
		"a c2 row, clinic left out": {stored("c2"), edit("", "phone")},
		"a c2 row, claimed as c1":   {stored("c2"), edit("c1", "phone")},
		"a c1 row moved to c2":      {stored("c1"), edit("c2", "phone", clinic)},
		"a c2 row deleted":          {stored("c2"), deleteP1},
		"a new row in c2":           {nil, edit("c2")},
	} {
		o := must(push(c.cur, c.in))
		if o.Op != codec.Reject || o.Reason == "" {
			t.Errorf("%s: %s %v", name, o.Op, o.Record.Cols["phone"])
		}
	}
	if o := must(push(stored("c1"), edit("c1", "phone"))); o.Op != codec.Write || o.Record.Cols["phone"].Str != "999" {
		t.Errorf("a c1 row edited in c1: %+v", o)
	}
}
