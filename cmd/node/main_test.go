package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
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

// okSync runs a command that must succeed with nothing on stderr but
// a sync's plain progress lines (syncProgress).
func okSync(t *testing.T, args ...string) string {
	t.Helper()
	r := runCLI(args...)
	progress := true
	for _, line := range strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n") {
		progress = progress && (line == "" && r.stderr == "" || strings.HasPrefix(line, "pull: ") || strings.HasPrefix(line, "push: "))
	}
	if r.code != 0 || !progress {
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
	if got := keys(st); !reflect.DeepEqual(got, []string{"active_peer", "conflicts", "mode", "peers", "pending", "pending_by_table", "state"}) {
		t.Errorf("status --json keys = %v", got)
	}
	// The user, the tombstone of p1 and the second patient.
	if st["state"] != "idle" || st["mode"] != "offline" || st["pending"] != float64(3) || !reflect.DeepEqual(st["peers"], []any{}) ||
		!reflect.DeepEqual(st["pending_by_table"], map[string]any{"patients": float64(2), "users": float64(1)}) ||
		st["active_peer"] != nil || st["conflicts"] != float64(0) {
		t.Errorf("status --json = %v", st)
	}
	human = ok(t, "status", "--data", dir)
	for _, want := range []string{"node_id      " + init["node_id"].(string), "kind         hub", "state        idle", "mode         offline",
		"pending      3 (patients 2, users 1)", "conflicts    0 in the log (node conflicts)",
		"active_peer  none selected (a sync uses the first active hub, else the cloud)", "peers        none"} {
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
		{1, "node mode: actors: the clinic's operation_mode policy does not allow this mode: it is offline", []string{"mode", "--data", dir, "online"}},
		{2, "node mode: want no argument (show the mode), online or offline", []string{"mode", "--data", dir, "airplane"}},
		{1, "node sync: No sync peer configured.", []string{"sync", "--data", dir}},
		{1, "node serve: actors: this node does not serve: a mobile node", []string{"serve", "--data", dir, "--http", "127.0.0.1:0"}},
		{2, "node serve: --push-policy \"lax\"", []string{"serve", "--data", dir, "--push-policy", "lax"}},
		{1, "node serve: serving metrics: listen tcp: address x: missing port in address", []string{"serve", "--data", dir, "--metrics", "x"}},
		{2, "node peer: want `node peer add|list|use|revoke", []string{"peer"}},
		{2, "node peer add: missing --data DIR", []string{"peer", "add"}},
		{2, "node peer add: --type \"cloud\"", []string{"peer", "add", "--data", dir, "--type", "cloud", "--url", "http://x"}},
		{2, "node peer add: --pairing: actors: malformed pairing string: not JSON", []string{"peer", "add", "--data", dir, "--type", "sync_hub", "--pairing", "x"}},
		{2, "node peer add: --pairing: actors: malformed pairing string: type \"cloud_server\"", []string{"peer", "add", "--data", dir, "--type", "sync_hub", "--pairing", `{"type":"cloud_server","url":"http://h:1","id":"x","pk":"AAAA"}`}},
		{1, "node pairing: only a hub has a pairing string, this is a mobile", []string{"pairing", "--data", dir}},
		{2, "node pairing: --qr and --png: want one of them", []string{"pairing", "--data", dir, "--qr", "--png", "x.png"}},
		{2, "node peer add: --pairing names a hub and its URL", []string{"peer", "add", "--data", dir, "--type", "cloud_server", "--pairing", "{}"}},
		{1, "node peer add: actors: invalid configuration: peer URL \"ftp://x\"", []string{"peer", "add", "--data", dir, "--type", "cloud_server", "--url", "ftp://x"}},
		{1, "node peer use: kv: not found", []string{"peer", "use", "--data", dir, "nope"}},
		{2, "node peer use: missing ID", []string{"peer", "use", "--data", dir}},
		{1, "node device add: actors: this node does not serve: devices are registered with a cloud node", []string{"device", "add", "--data", dir, "--name", "h"}},
		{2, "node device add: missing --name", []string{"device", "add", "--data", dir}},
		{2, "node force-upload: missing --since", []string{"force-upload", "--data", dir}},
		{2, `node force-download: --since "soon"`, []string{"force-download", "--data", dir, "--since", "soon"}},
		{2, "node login: missing --password", []string{"login", "--data", dir, "--email", "a@b.org"}},
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
	// The usage lists every command.
	r := runCLI("help")
	for name := range commands {
		if !strings.Contains(r.stdout, "  node "+name+" ") {
			t.Errorf("usage does not list %s", name)
		}
	}
}

// lockedBuffer is a stderr safe for a command running in a goroutine.
type lockedBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestRunServeAndSync: a cloud served by `node serve`, a phone that
// signs in and syncs, and a hub with its device key.
func TestRunServeAndSync(t *testing.T) {
	root := t.TempDir()
	cloud, phone, hub := filepath.Join(root, "cloud"), filepath.Join(root, "phone"), filepath.Join(root, "hub")
	ok(t, "init", "--data", cloud, "--kind", "cloud", "--clinic", "c1")
	ok(t, "user", "add", "--data", cloud, "--email", "nurse@example.org", "--password", "correct horse")
	dev := okJSON(t, "device", "add", "--data", cloud, "--name", "North hub", "--clinic", "c1")
	if got := keys(dev); !reflect.DeepEqual(got, []string{"api_key", "device_id"}) || len(dev["api_key"].(string)) != 43 {
		t.Fatalf("device add --json = %v", dev)
	}
	if out := ok(t, "device", "list", "--data", cloud); !strings.Contains(out, dev["device_id"].(string)+" active \"North hub\" c1") {
		t.Errorf("device list: %q", out)
	}

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	oldLog := serveLog
	logs := &lockedBuffer{}
	serveLog = logs
	defer func() { serveLog = oldLog }()
	pr, pw := io.Pipe()
	stderr := &lockedBuffer{}
	done := make(chan int, 1)
	go func() {
		done <- runContext(ctx, []string{"serve", "--data", cloud, "--http", "127.0.0.1:0"}, pw, stderr)
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "listening on http://127.0.0.1:") {
		t.Fatalf("serve's first line %q (%v); stderr %q", line, err, stderr)
	}
	url := strings.TrimSpace(strings.TrimPrefix(line, "listening on "))

	ok(t, "init", "--data", phone, "--kind", "mobile")
	peer := okJSON(t, "peer", "add", "--data", phone, "--type", "cloud_server", "--url", url)
	if peer["url"] != url || peer["status"] != "active" {
		t.Errorf("peer add --json = %v", peer)
	}
	ok(t, "peer", "use", "--data", phone, peer["peer_id"].(string))
	fails(t, 1, "node sync: Sync failed: No credentials found. Please sign in.", "sync", "--data", phone)
	ok(t, append([]string{"put", "--data", phone, "--table", "patients", "--id", "p1"}, patient...)...)
	fails(t, 1, "node login: Sync failed: Unauthorized: invalid credentials", "login", "--data", phone,
		"--email", "nurse@example.org", "--password", "wrong horse")
	// --no-sync checks the credentials with one read and keeps them: no
	// sync, p1 still pending.
	fails(t, 1, "node login: Unauthorized: invalid credentials (get_patients", "login", "--data", phone,
		"--email", "nurse@example.org", "--password", "wrong horse", "--no-sync")
	if _, err := os.Stat(filepath.Join(phone, "credentials.json")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("refused credentials kept: %v", err)
	}
	checked := okJSON(t, "login", "--data", phone, "--email", "nurse@example.org", "--password", "correct horse", "--no-sync")
	if !reflect.DeepEqual(checked, map[string]any{"outcome": "ok", "pulled": float64(0), "pushed": float64(0), "error": nil}) {
		t.Errorf("login --no-sync --json = %v", checked)
	}
	if st := okJSON(t, "status", "--data", phone); st["pending"] != float64(1) {
		t.Errorf("pending after login --no-sync: %v", st["pending"])
	}
	login := okJSON(t, "login", "--data", phone, "--email", "nurse@example.org", "--password", "correct horse")
	if !reflect.DeepEqual(login, map[string]any{"outcome": "ok", "pulled": float64(0), "pushed": float64(1), "error": nil}) {
		t.Errorf("login --json = %v", login)
	}
	if fi, err := os.Stat(filepath.Join(phone, "credentials.json")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("credentials file: %v %v", fi, err)
	}
	out := ok(t, "sync", "--data", phone)
	if !strings.Contains(out, "outcome  ok\n") || !strings.Contains(out, "pulled   1\n") || !strings.Contains(out, "pushed   0\n") {
		t.Errorf("sync output %q", out)
	}
	// status keeps the last sync with the peer, in the phone's store.
	st := okJSON(t, "status", "--data", phone)
	ls, _ := st["peers"].([]any)[0].(map[string]any)["last_sync"].(map[string]any)
	if ls == nil || ls["outcome"] != "ok" || ls["trigger"] != "manual" || ls["pulled"] != float64(1) || ls["pushed"] != float64(0) ||
		ls["error"] != nil || st["active_peer"] != peer["peer_id"] {
		t.Errorf("status --json after a sync: %v", st)
	}
	if out := ok(t, "status", "--data", phone); !strings.Contains(out, "last_sync    "+peer["peer_id"].(string)+" ") ||
		!strings.Contains(out, " manual: ok, pulled 1, pushed 0\n") {
		t.Errorf("status after a sync:\n%s", out)
	}
	if m := okJSON(t, "force-upload", "--data", phone, "--since", "2000-01-01"); m["outcome"] != "ok" || m["pushed"] != float64(1) {
		t.Errorf("force-upload --json = %v", m)
	}
	if m := okJSON(t, "force-download", "--data", phone, "--since", "2000-01-01"); m["outcome"] != "ok" || m["pulled"] != float64(1) {
		t.Errorf("force-download --json = %v", m)
	}
	list := okJSON(t, "peer", "list", "--data", phone)
	peers := list["peers"].([]any)
	if len(peers) != 1 || peers[0].(map[string]any)["selected"] != true || peers[0].(map[string]any)["last_synced_at"] == nil {
		t.Errorf("peer list --json = %v", list)
	}

	ok(t, "init", "--data", hub, "--kind", "hub", "--clinic", "c1")
	ok(t, "peer", "add", "--data", hub, "--type", "cloud_server", "--url", url, "--api-key", dev["api_key"].(string))
	if m := okJSON(t, "sync", "--data", hub); m["outcome"] != "ok" || m["pulled"] != float64(2) {
		t.Errorf("hub sync --json = %v", m)
	}
	users := okJSON(t, "rows", "--data", hub, "--table", "users")["rows"].([]any)
	if len(users) != 1 || !strings.HasPrefix(users[0].(map[string]any)["hashed_password"].(string), "$2") {
		t.Errorf("hub's users: %v", users)
	}
	// Two nurses edit p1's phone, the earlier edit syncs last: the later
	// one wins everywhere and the earlier is in the phone's conflict log.
	if out := ok(t, "conflicts", "--data", phone); out != "(no conflicts)\n" {
		t.Errorf("conflicts before any: %q", out)
	}
	ok(t, "put", "--data", phone, "--table", "patients", "--id", "p1", "phone=0791111111")
	// The hub's edit is the later one: wait (bounded) for the wall clock
	// to pass the phone's edit, whose version is stamped at or just
	// after its updated_at.
	edited := okJSON(t, "rows", "--data", phone, "--table", "patients", "--id", "p1")["rows"].([]any)[0].(map[string]any)["updated_at"].(float64)
	for deadline := time.Now().Add(time.Minute); time.Now().UnixMilli() <= int64(edited)+1; runtime.Gosched() {
		if time.Now().After(deadline) {
			t.Fatal("the wall clock does not move")
		}
	}
	ok(t, "put", "--data", hub, "--table", "patients", "--id", "p1", "phone=0793333333")
	ok(t, "sync", "--data", hub)
	ok(t, "sync", "--data", phone)
	ok(t, "sync", "--data", hub)
	for _, dir := range []string{cloud, phone, hub} {
		row := okJSON(t, "rows", "--data", dir, "--table", "patients", "--id", "p1")["rows"].([]any)[0].(map[string]any)
		if row["phone"] != "0793333333" {
			t.Errorf("%s: p1's phone %v, want the later edit", filepath.Base(dir), row["phone"])
		}
	}
	log := okJSON(t, "conflicts", "--data", phone, "--table", "patients", "--id", "p1")["conflicts"].([]any)
	// updated_at, written by both edits, lost too.
	if len(log) != 2 || log[1].(map[string]any)["column"] != "updated_at" {
		t.Fatalf("phone's conflicts: %v", log)
	}
	if c := log[0].(map[string]any); c["column"] != "phone" || c["value"] != "0791111111" ||
		c["winner"].(map[string]any)["wall_ms"].(float64) <= c["version"].(map[string]any)["wall_ms"].(float64) {
		t.Errorf("conflict entry %v", c)
	}
	if out := ok(t, "conflicts", "--data", phone); !strings.Contains(out, ` patients/p1 phone="0791111111" (`) {
		t.Errorf("conflicts output %q", out)
	}
	fails(t, 1, "unknown table", "conflicts", "--data", phone, "--table", "nope")
	// While serve holds the store, the other commands on it run inside
	// it: a revoked hub is refused at once.
	ok(t, "device", "revoke", "--data", cloud, dev["device_id"].(string))
	fails(t, 1, "node sync: Sync failed: Unauthorized", "sync", "--data", hub)

	stop()
	if code := <-done; code != 0 {
		t.Errorf("serve exit %d, stderr %q", code, stderr)
	}
	if !strings.Contains(logs.String(), "msg=\"sync request\"") {
		t.Errorf("serve log:\n%s", logs)
	}
	fails(t, 1, "node sync: Please make sure you have internet or contact your administrator. (actors: peer unreachable: pull http://127.0.0.1:",
		"sync", "--data", phone)
	if out := ok(t, "device", "list", "--data", cloud); !strings.Contains(out, " revoked ") {
		t.Errorf("device list after revoke: %q", out)
	}
}

// TestMobileMemoryLimit: a mobile node's process keeps the Go heap under
// a soft limit (unless GOMEMLIMIT says otherwise); a hub's is left alone.
func TestMobileMemoryLimit(t *testing.T) {
	if os.Getenv("GOMEMLIMIT") != "" {
		t.Fatalf("GOMEMLIMIT=%s is set: this test checks the default", os.Getenv("GOMEMLIMIT"))
	}
	was := debug.SetMemoryLimit(math.MaxInt64)
	defer debug.SetMemoryLimit(was)
	hub, phone := filepath.Join(t.TempDir(), "hub"), filepath.Join(t.TempDir(), "phone")
	ok(t, "init", "--data", hub, "--kind", "hub")
	ok(t, "init", "--data", phone, "--kind", "mobile")
	ok(t, "status", "--data", hub)
	if got := debug.SetMemoryLimit(-1); got != math.MaxInt64 {
		t.Errorf("after a hub command the limit is %d, want none", got)
	}
	ok(t, "status", "--data", phone)
	if got := debug.SetMemoryLimit(-1); got != mobileMemoryLimit {
		t.Errorf("after a mobile command the limit is %d, want %d", got, mobileMemoryLimit)
	}
}
