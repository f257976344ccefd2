package main

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

type result struct {
	code           int
	stdout, stderr string
}

func runCLI(args ...string) result {
	var out, errOut bytes.Buffer
	code := run(args, &out, &errOut)
	return result{code, out.String(), errOut.String()}
}

// ok runs a command that must succeed silently on stderr.
func ok(t *testing.T, args ...string) string {
	t.Helper()
	r := runCLI(args...)
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("node %s: exit %d, stderr %q", strings.Join(args, " "), r.code, r.stderr)
	}
	return r.stdout
}

// okJSON runs a --json command and decodes its output.
func okJSON(t *testing.T, args ...string) map[string]any {
	t.Helper()
	out := ok(t, append(args, "--json")...)
	if strings.Count(out, "\n") != 1 || !strings.HasSuffix(out, "\n") {
		t.Errorf("node %s --json: want one line, got %q", strings.Join(args, " "), out)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("node %s --json: %v in %q", strings.Join(args, " "), err, out)
	}
	return m
}

// fails runs a command that must fail with code and exactly one stderr
// line containing want, and nothing on stdout.
func fails(t *testing.T, code int, want string, args ...string) {
	t.Helper()
	r := runCLI(args...)
	if r.code != code {
		t.Errorf("node %s: exit %d, want %d (stderr %q)", strings.Join(args, " "), r.code, code, r.stderr)
	}
	if strings.Count(r.stderr, "\n") != 1 || !strings.HasSuffix(r.stderr, "\n") {
		t.Errorf("node %s: stderr is not exactly one line: %q", strings.Join(args, " "), r.stderr)
	}
	if !strings.Contains(r.stderr, want) {
		t.Errorf("node %s: stderr %q does not contain %q", strings.Join(args, " "), r.stderr, want)
	}
	if r.stdout != "" {
		t.Errorf("node %s: failed but printed %q", strings.Join(args, " "), r.stdout)
	}
}

func keys(m map[string]any) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

var patient = []string{
	"given_name=Amina", "surname=Haddad", "date_of_birth=1990-02-28", "citizenship=JO",
	"hometown=Irbid", "phone=0790000000", "sex=female", "additional_data={}",
	`metadata={"source": "cli"}`, "is_deleted=false", "government_id=G-1",
	"external_patient_id=E-1", "camp=null", "created_at=2024-03-01",
}

func TestRunWorkflow(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "hub")

	init := okJSON(t, "init", "--data", dir, "--kind", "hub", "--name", "Irbid hub", "--clinic", "c1", "--clinic", "c2")
	if got := keys(init); !reflect.DeepEqual(got, []string{"kind", "node_id", "public_key"}) {
		t.Errorf("init --json keys = %v", got)
	}
	if init["kind"] != "hub" || len(init["node_id"].(string)) != 36 || len(init["public_key"].(string)) != 43 {
		t.Errorf("init --json = %v", init)
	}

	user := okJSON(t, "user", "add", "--data", dir, "--email", "Nurse@Example.org", "--password", "correct horse")
	if got := keys(user); !reflect.DeepEqual(got, []string{"user_id"}) || len(user["user_id"].(string)) != 36 {
		t.Errorf("user add --json = %v", user)
	}

	// Create, with flags after the COL=VALUE arguments too.
	put := okJSON(t, append(append([]string{"put", "--data", dir}, patient...), "--table", "patients", "--id", "p1")...)
	if !reflect.DeepEqual(put, map[string]any{"id": "p1", "_status": "created"}) {
		t.Errorf("put --json = %v", put)
	}
	// Update, human output.
	out := ok(t, "put", "--data", dir, "--table", "patients", "--id", "p1", "phone=0792222222")
	if out != "id       p1\n_status  created\n" {
		t.Errorf("put output = %q", out)
	}
	// A new id when none is given.
	out = ok(t, append([]string{"put", "--data", dir, "--table", "patients"}, patient...)...)
	if !strings.HasPrefix(out, "id       ") || len(strings.SplitN(out, "\n", 2)[0]) != len("id       ")+36 {
		t.Errorf("put without --id: output %q", out)
	}

	rows := okJSON(t, "rows", "--data", dir, "--table", "patients", "--id", "p1")
	list := rows["rows"].([]any)
	if len(list) != 1 {
		t.Fatalf("rows --id p1: %v", rows)
	}
	row := list[0].(map[string]any)
	for col, want := range map[string]any{
		"id": "p1", "_status": "created", "phone": "0792222222", "is_deleted": false,
		"metadata": `{"source":"cli"}`, "camp": nil, "created_at": float64(1709251200000),
		"date_of_birth": "1990-02-28",
	} {
		if got, present := row[col]; !present || !reflect.DeepEqual(got, want) {
			t.Errorf("rows --json: %s = %#v (present %v), want %#v", col, got, present, want)
		}
	}
	// _changed is WatermelonDB's comma-separated list: it names at least
	// the column the update wrote.
	if changed := strings.Split(row["_changed"].(string), ","); !slices.Contains(changed, "phone") {
		t.Errorf("rows --json: _changed %q lacks phone", row["_changed"])
	}

	// Human rows: aligned, columns sorted.
	human := ok(t, "rows", "--data", dir, "--table", "patients", "--id", "p1")
	lines := strings.Split(strings.TrimSuffix(human, "\n"), "\n")
	if !strings.HasPrefix(lines[0], "id ") || !strings.HasPrefix(lines[1], "_status ") || !strings.HasPrefix(lines[2], "_changed ") {
		t.Errorf("rows output starts %q", lines[:3])
	}
	valueAt := func(l string) int {
		key := strings.Fields(l)[0]
		rest := l[len(key):]
		return len(key) + len(rest) - len(strings.TrimLeft(rest, " "))
	}
	var cols []string
	for _, l := range lines[3:] {
		cols = append(cols, strings.Fields(l)[0])
		if valueAt(l) != valueAt(lines[0]) {
			t.Errorf("rows output not aligned: %q", l)
		}
	}
	if !slices.IsSorted(cols) || !slices.Contains(cols, "given_name") || !strings.Contains(human, `given_name           "Amina"`) {
		t.Errorf("rows output:\n%s", human)
	}

	del := okJSON(t, "delete", "--data", dir, "--table", "patients", "--id", "p1")
	if !reflect.DeepEqual(del, map[string]any{"id": "p1"}) {
		t.Errorf("delete --json = %v", del)
	}
	rows = okJSON(t, "rows", "--data", dir, "--table", "patients")
	list = rows["rows"].([]any)
	if len(list) != 2 {
		t.Fatalf("rows after delete: %v", rows)
	}
	var tomb map[string]any
	for _, r := range list {
		if r.(map[string]any)["id"] == "p1" {
			tomb = r.(map[string]any)
		}
	}
	if !reflect.DeepEqual(tomb, map[string]any{"id": "p1", "_status": "deleted", "_changed": ""}) {
		t.Errorf("tombstone in rows --json = %v", tomb)
	}
	if out := ok(t, "rows", "--data", dir, "--table", "visits"); out != "(no rows)\n" {
		t.Errorf("rows of an empty table: %q", out)
	}
	if m := okJSON(t, "rows", "--data", dir, "--table", "visits"); !reflect.DeepEqual(m, map[string]any{"rows": []any{}}) {
		t.Errorf("rows --json of an empty table: %v", m)
	}

	st := okJSON(t, "status", "--data", dir)
	if got := keys(st); !reflect.DeepEqual(got, []string{"mode", "peers", "pending", "state"}) {
		t.Errorf("status --json keys = %v", got)
	}
	// The user, the tombstone of p1 and the second patient.
	if st["state"] != "idle" || st["mode"] != "offline" || st["pending"] != float64(3) || !reflect.DeepEqual(st["peers"], []any{}) {
		t.Errorf("status --json = %v", st)
	}
	human = ok(t, "status", "--data", dir)
	for _, want := range []string{"node_id  " + init["node_id"].(string), "kind     hub", "state    idle", "mode     offline", "pending  3", "peers    none"} {
		if !strings.Contains(human, want+"\n") {
			t.Errorf("status output lacks %q:\n%s", want, human)
		}
	}
}

func TestRunErrors(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "node")
	ok(t, "init", "--data", dir, "--kind", "mobile")
	empty := t.TempDir()

	for _, c := range []struct {
		code int
		want string
		args []string
	}{
		{2, "node: missing command", nil},
		{2, `node: unknown command "frobnicate"`, []string{"frobnicate"}},
		{2, "node put: missing --data DIR", []string{"put", "--table", "patients", "phone=1"}},
		{2, "node status: missing --data DIR", []string{"status"}},
		{2, "node init: missing --kind", []string{"init", "--data", empty}},
		{2, `node init: --kind "server"`, []string{"init", "--data", empty, "--kind", "server"}},
		{2, "node put: flag provided but not defined: -tabel", []string{"put", "--data", dir, "--tabel", "patients"}},
		{2, "node put: flag needs an argument: -data", []string{"put", "--data"}},
		{2, "node put: missing --table", []string{"put", "--data", dir, "phone=1"}},
		{2, "node put: nothing to write", []string{"put", "--data", dir, "--table", "patients"}},
		{2, `node put: argument "phone" is not COL=VALUE`, []string{"put", "--data", dir, "--table", "patients", "phone"}},
		{2, `node put: column "phone" given twice`, []string{"put", "--data", dir, "--table", "patients", "phone=1", "phone=2"}},
		{2, "node delete: missing --id", []string{"delete", "--data", dir, "--table", "patients"}},
		{2, `node rows: unexpected argument "x"`, []string{"rows", "--data", dir, "--table", "patients", "x"}},
		{2, "node user: want `node user add", []string{"user", "list", "--data", dir}},
		{2, "node user add: missing --password", []string{"user", "add", "--data", dir, "--email", "a@b.org"}},
		{2, "node sync: not available yet in this build", []string{"sync", "--data", dir}},
		{2, "node serve: not available yet in this build", []string{"serve", "--data", dir}},
		{2, "node peer: not available yet in this build", []string{"peer", "add"}},
		{1, `node put: kv: unknown table "patient"`, []string{"put", "--data", dir, "--table", "patient", "phone=1"}},
		{1, `node put: kv: unknown column: patients has no column "phnoe" (did you mean "phone"?)`,
			[]string{"put", "--data", dir, "--table", "patients", "--id", "p1", "phnoe=1"}},
		{1, `node put: codec: invalid value: column date_of_birth (date): "1990-13-01"`,
			[]string{"put", "--data", dir, "--table", "patients", "--id", "p1", "date_of_birth=1990-13-01"}},
		{1, "node put: kv: invalid value", []string{"put", "--data", dir, "--table", "patients", "phone=1"}},
		{1, "node rows: kv: not found", []string{"rows", "--data", dir, "--table", "patients", "--id", "nope"}},
		{1, "node delete: kv: not found", []string{"delete", "--data", dir, "--table", "patients", "--id", "nope"}},
		{1, "node init: actors: directory already holds a node", []string{"init", "--data", dir, "--kind", "hub"}},
		{1, "node status: actors: no node in " + empty + ": run `node init --data " + empty, []string{"status", "--data", empty}},
		{1, "node user add: actors: invalid password", []string{"user", "add", "--data", dir, "--email", "a@b.org", "--password", "short"}},
		{1, "node user add: actors: invalid email", []string{"user", "add", "--data", dir, "--email", "nobody", "--password", "long enough"}},
	} {
		fails(t, c.code, c.want, c.args...)
	}

	// Nothing above wrote a row.
	st := okJSON(t, "status", "--data", dir)
	if st["pending"] != float64(0) {
		t.Errorf("failed commands left %v pending rows", st["pending"])
	}
	ok(t, "user", "add", "--data", dir, "--email", "a@b.org", "--password", "long enough")
	fails(t, 1, "node user add: actors: email already in use", "user", "add", "--data", dir, "--email", "A@B.org", "--password", "long enough")
}

func TestRunHelp(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"--help"}, {"put", "-h"}, {"user", "--help"}} {
		r := runCLI(args...)
		if r.code != 0 || r.stderr != "" || !strings.Contains(r.stdout, "node put      --data DIR --table T") {
			t.Errorf("node %s: exit %d stderr %q stdout %q", strings.Join(args, " "), r.code, r.stderr, r.stdout)
		}
	}
	// Every command the usage lists as not available is refused, and
	// every one it lists as available is dispatched.
	r := runCLI("help")
	for name := range notYet {
		if !strings.Contains(r.stdout, name) {
			t.Errorf("usage does not list %s as not available yet", name)
		}
	}
	for name := range commands {
		if !strings.Contains(r.stdout, "  node "+name+" ") {
			t.Errorf("usage does not list %s", name)
		}
	}
}
