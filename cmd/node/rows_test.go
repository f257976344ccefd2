package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clinicsync/clinicsync/actors"
	"github.com/clinicsync/clinicsync/kv"
)

// pollUntil polls cond every millisecond for at most relayWait (a
// bound for something stuck, not a speed test) and reports whether it
// came to hold.
func pollUntil(cond func() bool) bool {
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	deadline := time.After(relayWait)
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline:
			return false
		}
	}
	return true
}

// pagedRows sets the page `rows` reads to size, and watches the pages:
// check is called with each page and those before it.
func pagedRows(t *testing.T, size int, check func(page []kv.Record, before [][]kv.Record)) (pages func() [][]kv.Record) {
	t.Helper()
	var mu sync.Mutex // guards seen: pages are read in serve's goroutine
	var seen [][]kv.Record
	oldSize, oldHook := rowsPage, rowsPageRead
	rowsPage = size
	rowsPageRead = func(page []kv.Record) {
		mu.Lock()
		before := seen
		mu.Unlock()
		check(page, before)
		mu.Lock()
		seen = append(seen, page)
		mu.Unlock()
	}
	t.Cleanup(func() { rowsPage, rowsPageRead = oldSize, oldHook })
	return func() [][]kv.Record {
		mu.Lock()
		defer mu.Unlock()
		return seen
	}
}

// rowsJSONWhole renders rows as `rows --json` did when it printed a
// table in one piece: the reference for the paged output.
func rowsJSONWhole(t *testing.T, dir, table string) string {
	t.Helper()
	n, err := actors.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	rows, err := n.Rows(table, "")
	if err != nil {
		t.Fatal(err)
	}
	objs := []json.RawMessage{}
	for _, r := range rows {
		obj, err := rowJSON(r)
		if err != nil {
			t.Fatal(err)
		}
		objs = append(objs, obj)
	}
	var b bytes.Buffer
	if err := writeJSON(&b, struct {
		Rows []json.RawMessage `json:"rows"`
	}{objs}); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestRowsPaged: rows reads a table a page at a time and prints each
// page before it reads the next, so the process that runs it holds one
// page: on a node served by another process, the client has printed
// page k before the server reads page k+1 (were the server to hold the
// output, it would not). The output is what printing the table whole
// gave.
func TestRowsPaged(t *testing.T) {
	captureServeLog(t)
	dir := filepath.Join(t.TempDir(), "cloud")
	ok(t, "init", "--data", dir, "--kind", "cloud", "--clinic", "c1")
	file := filepath.Join(t.TempDir(), "p.ndjson")
	if err := os.WriteFile(file, []byte(patientsNDJSON(0, 30)), 0o600); err != nil {
		t.Fatal(err)
	}
	ok(t, "import", "--data", dir, "--table", "patients", file)
	ok(t, "delete", "--data", dir, "--table", "patients", "--id", "imp000013") // a tombstone is a row too
	wantJSON := rowsJSONWhole(t, dir, "patients")
	wantText := ok(t, "rows", "--data", dir, "--table", "patients")
	if strings.Count(wantText, "\nid ") != 29 || !strings.HasPrefix(wantText, "id ") {
		t.Fatalf("rows:\n%s", wantText)
	}

	const size = 7
	var mu sync.Mutex // guards problems
	var problems []string
	problem := func(format string, a ...any) {
		mu.Lock()
		defer mu.Unlock()
		problems = append(problems, fmt.Sprintf(format, a...))
	}
	// watch checks the pages read against printed, what the command
	// has printed so far where it is printed: a page is read only once
	// the one before is printed (the last row of a page is printed with
	// its id).
	watch := func(where string, printed func() string) (pages func() [][]kv.Record) {
		return pagedRows(t, size, func(page []kv.Record, before [][]kv.Record) {
			if len(page) > size {
				problem("%s: a page of %d rows", where, len(page))
			}
			if len(before) == 0 || len(before[len(before)-1]) == 0 {
				return
			}
			last := before[len(before)-1]
			if id := last[len(last)-1].ID; !pollUntil(func() bool { return strings.Contains(printed(), id) }) {
				problem("%s: page %d read before page %d was printed", where, len(before)+1, len(before))
			}
		})
	}
	checkPages := func(what string, pages func() [][]kv.Record) {
		t.Helper()
		mu.Lock()
		defer mu.Unlock()
		if got := pages(); len(got) != 5 || len(problems) > 0 {
			t.Errorf("%s: %d pages, want 5: %v", what, len(got), problems)
		}
		problems = nil
	}

	// In this process.
	out := &lockedBuffer{}
	pages := watch("rows --json", out.String)
	e := &env{ctx: context.Background(), out: out, errOut: out}
	e.open = func(dir string, engine bool) (*actors.Node, func() error, error) { return openLocal(dir, engine, nil) }
	if err := cmdRows(e, "rows", []string{"--data", dir, "--table", "patients", "--json"}); err != nil || out.String() != wantJSON {
		t.Errorf("rows --json: %v\n%s\nwant\n%s", err, out.String(), wantJSON)
	}
	checkPages("rows --json", pages)

	// Served: the client prints each page as the server sends it.
	startServe(t, dir)
	for _, args := range [][]string{{"--json"}, {}} {
		client := &lockedBuffer{}
		what := fmt.Sprintf("served rows %v", args)
		pages := watch(what, client.String)
		var stderr bytes.Buffer
		code := runContext(context.Background(), append([]string{"rows", "--data", dir, "--table", "patients"}, args...), client, &stderr)
		want := wantText
		if len(args) > 0 {
			want = wantJSON
		}
		if code != 0 || stderr.Len() > 0 || client.String() != want {
			t.Errorf("%s: exit %d, stderr %q\n%s\nwant\n%s", what, code, stderr.String(), client.String(), want)
		}
		checkPages(what, pages)
	}

	// An empty table, and a failure before the first page, print as
	// before.
	if out := ok(t, "rows", "--data", dir, "--table", "visits", "--json"); out != `{"rows":[]}`+"\n" {
		t.Errorf("rows of an empty table: %q", out)
	}
	if out := ok(t, "rows", "--data", dir, "--table", "visits"); out != "(no rows)\n" {
		t.Errorf("rows of an empty table: %q", out)
	}
	fails(t, 1, `node rows: kv: unknown table "visit"`, "rows", "--data", dir, "--table", "visit", "--json")
}
