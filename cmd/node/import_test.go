package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/clinicsync/clinicsync/actors"
)

// patientsNDJSON is n valid patients rows of clinic c1, one JSON object a
// line, as a WatermelonDB client pushes created rows, ids from first.
func patientsNDJSON(first, n int) string {
	var b strings.Builder
	for i := first; i < first+n; i++ {
		fmt.Fprintf(&b, `{"id":"imp%06d","given_name":"Given%d","surname":"Haddad","date_of_birth":"1990-02-28",`+
			`"citizenship":"JO","hometown":"Irbid","phone":"079%07d","sex":"female","camp":null,`+
			`"additional_data":"{}","metadata":"{\"source\":\"import\"}","is_deleted":false,`+
			`"created_at":1700000000000,"updated_at":1700000000000,"government_id":"G%d",`+
			`"external_patient_id":"E%d","primary_clinic_id":"c1","_status":"created","_changed":""}`+"\n", i, i, i, i, i)
	}
	return b.String()
}

// importFile is a file of 2500 rows with refused lines among them.
func importFile(t *testing.T) string {
	t.Helper()
	body := patientsNDJSON(0, 1200) +
		"not json\n" + // line 1201
		`{"id":"bad-dob","given_name":"A","date_of_birth":"yesterday"}` + "\n" + // 1202
		"\n" + // blank
		patientsNDJSON(1200, 1300) +
		`{"id":"extra","given_name":"A","surname":"B","date_of_birth":"1990-02-28","citizenship":"JO","hometown":"I",` +
		`"phone":"1","sex":"f","additional_data":"{}","metadata":"{}","is_deleted":false,"created_at":1700000000000,` +
		`"updated_at":1700000000000,"government_id":"G","external_patient_id":"E","nickname":"Mina"}` + "\n"
	path := filepath.Join(t.TempDir(), "patients.ndjson")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// withoutSeconds drops the timing from an import --json summary.
func withoutSeconds(t *testing.T, out string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil || strings.Count(out, "\n") != 1 {
		t.Fatalf("import --json: %v in %q", err, out)
	}
	if s, ok := m["seconds"].(float64); !ok || s < 0 {
		t.Errorf("import --json: seconds %v", m["seconds"])
	}
	delete(m, "seconds")
	return m
}

// TestImportCommand: import loads a file in batches, reports refused
// lines and the summary as text or JSON, reads stdin for -, and fails
// on one line for what it cannot do.
func TestImportCommand(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cloud")
	ok(t, "init", "--data", dir, "--kind", "cloud", "--clinic", "c1")
	file := importFile(t)

	out := ok(t, "import", "--data", dir, "--table", "patients", "--batch", "1000", file, "--json")
	got := withoutSeconds(t, out)
	want := map[string]any{
		"imported": float64(2501),
		"rejected": float64(2),
		"rejected_rows": []any{
			map[string]any{"line": float64(1201), "id": "", "reason": "codec: malformed input: invalid character 'o' in literal null (expecting 'u')"},
			map[string]any{"line": float64(1202), "id": "bad-dob", "reason": `codec: invalid value: patients/bad-dob.date_of_birth (date): "yesterday": not a date (YYYY-MM-DD, ISO-8601 UTC midnight or epoch ms)`},
		},
		"unknown_columns": map[string]any{"patients.nickname": float64(1)},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("import --json:\n%v\nwant\n%v", got, want)
	}
	if m := okJSON(t, "rows", "--data", dir, "--table", "patients", "--id", "imp002499"); m["rows"].([]any)[0].(map[string]any)["_status"] != "synced" {
		t.Errorf("an imported row on a cloud: %v", m)
	}

	// Again: the same rows change nothing, and count as imported; the
	// text summary.
	out = ok(t, "import", "--data", dir, "--table", "patients", file)
	for _, line := range []string{"table           patients\n", "imported        2501\n", "rejected        2\n",
		"line 1201       codec: malformed input: ", "line 1202       bad-dob: codec: invalid value: ",
		"unknown column  patients.nickname (kept, in 1 rows)\n"} {
		if !strings.Contains(out, line) {
			t.Errorf("import summary lacks %q:\n%s", line, out)
		}
	}
	if !strings.Contains(out, "\nseconds  ") || !strings.Contains(out, "\nrows/s  ") {
		t.Errorf("import summary lacks the timing:\n%s", out)
	}

	// - reads stdin.
	stdin = strings.NewReader(patientsNDJSON(5000, 3))
	t.Cleanup(func() { stdin = os.Stdin })
	if m := withoutSeconds(t, ok(t, "import", "--data", dir, "--table", "patients", "-", "--json")); m["imported"] != float64(3) {
		t.Errorf("import -: %v", m)
	}

	fails(t, 2, "node import: want one FILE.ndjson to import (- for stdin)", "import", "--data", dir, "--table", "patients")
	fails(t, 2, "node import: want one FILE.ndjson", "import", "--data", dir, "--table", "patients", file, file)
	fails(t, 2, "node import: missing --table", "import", "--data", dir, file)
	fails(t, 2, "node import: --batch must be > 0", "import", "--data", dir, "--table", "patients", "--batch", "0", file)
	fails(t, 1, "no such file", "import", "--data", dir, "--table", "patients", filepath.Join(dir, "nope.ndjson"))
	fails(t, 1, `node import: kv: unknown table "patient"`, "import", "--data", dir, "--table", "patient", file)
	fails(t, 1, "node import: actors: table not importable: users", "import", "--data", dir, "--table", "users", file)
}

// TestImportServed: on a served hub, import sends the file through the
// control socket and prints what it prints on an unserved copy; the
// rows are pending for the hub's upstream. Progress goes to a client
// whose stderr is a terminal.
func TestImportServed(t *testing.T) {
	captureServeLog(t)
	root := t.TempDir()
	hub, twin := filepath.Join(root, "hub"), filepath.Join(root, "twin")
	ok(t, "init", "--data", hub, "--kind", "hub", "--clinic", "c1")
	copyNode(t, hub, twin)
	startServe(t, hub)
	file := importFile(t)

	args := func(dir string) []string {
		return []string{"import", "--data", dir, "--table", "patients", "--batch", "700", file, "--json"}
	}
	served, unserved := ok(t, args(hub)...), ok(t, args(twin)...)
	if s, u := withoutSeconds(t, served), withoutSeconds(t, unserved); !reflect.DeepEqual(s, u) || s["imported"] != float64(2501) {
		t.Errorf("import on the served hub:\n%v\non its unserved twin:\n%v", s, u)
	}
	for _, dir := range []string{hub, twin} {
		if st := okJSON(t, "status", "--data", dir); st["pending"] != float64(2501) {
			t.Errorf("%s: %v pending, want the imported rows", dir, st["pending"])
		}
	}
	stdin = strings.NewReader(patientsNDJSON(9000, 2))
	t.Cleanup(func() { stdin = os.Stdin })
	if m := withoutSeconds(t, ok(t, "import", "--data", hub, "--table", "patients", "-", "--json")); m["imported"] != float64(2) {
		t.Errorf("import - on the served hub: %v", m)
	}
	fails(t, 1, "node import: actors: table not importable: users", "import", "--data", hub, "--table", "users", file)

	// A client whose stderr is a terminal sees progress, then the
	// summary.
	c, err := actors.DialControl(hub)
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	code, err := c.Run([]string{"import", "--data", hub, "--table", "patients", "--batch", "10", "x.ndjson"},
		actors.ControlStreams{Stdin: strings.NewReader(patientsNDJSON(9100, 25)), Stdout: &stdout, Stderr: &stderr, Terminal: true})
	if err != nil || code != 0 || !strings.Contains(stdout.String(), "imported  25\n") {
		t.Fatalf("import through Run: %d, %v, %q", code, err, stdout.String())
	}
	if e := stderr.String(); !strings.HasPrefix(e, "\r\x1b[Kimporting patients: 10 rows, ") || !strings.HasSuffix(e, "\r\x1b[K") {
		t.Errorf("progress on a terminal: %q", e)
	}
}

// TestImportProgressOff: off a terminal, import shows no progress.
func TestImportProgressOff(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cloud")
	ok(t, "init", "--data", dir, "--kind", "cloud")
	var out, errOut bytes.Buffer
	stdin = strings.NewReader(patientsNDJSON(0, 30))
	t.Cleanup(func() { stdin = os.Stdin })
	if code := runContext(context.Background(), []string{"import", "--data", dir, "--table", "patients", "--batch", "10", "-"}, &out, &errOut); code != 0 || errOut.Len() != 0 {
		t.Errorf("import: exit %d, stderr %q", code, errOut.String())
	}
}
