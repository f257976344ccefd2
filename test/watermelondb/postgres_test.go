// Package watermelondb runs the real WatermelonDB client's tests
// (sync.test.js, which `make test` also runs on bbolt clouds) against
// clouds whose store is in PostgreSQL.
package watermelondb

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clinicsync/clinicsync/internal/pgtest"
	"github.com/jackc/pgx/v5"
)

// databases is how many clouds sync.test.js may start (t1, t2, ...).
const databases = 40

// TestWatermelonDBOnPostgres runs `node --test` with every cloud over
// a database of a throwaway cluster. It needs node, the npm packages
// (`make test` installs them) and bin/node (`make build`).
func TestWatermelonDBOnPostgres(t *testing.T) {
	skip := t.Skipf
	if os.Getenv(pgtest.EnvRequire) != "" { // CI: nothing may be missing
		skip = t.Fatalf
	}
	if _, err := exec.LookPath("node"); err != nil {
		skip("node is not installed (apt-get install -y nodejs npm)")
	}
	bin, _ := filepath.Abs("../../bin/node")
	for _, need := range []string{"node_modules/@nozbe/watermelondb", bin} {
		if _, err := os.Stat(need); err != nil {
			skip("%s is missing: run `make build` and `make test`, which install it", need)
		}
	}
	c := pgtest.Own(t)
	conn, err := pgx.Connect(context.Background(), c.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= databases; i++ {
		if _, err := conn.Exec(context.Background(), fmt.Sprintf("CREATE DATABASE t%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	conn.Close(context.Background())
	base := strings.TrimSuffix(c.URL("x"), "x?sslmode=disable")
	cmd := exec.Command("node", "--test")
	cmd.Env = append(os.Environ(), "CLINICSYNC_WMDB_PG="+base, "CLINICSYNC_NODE_BIN="+bin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node --test with clouds over PostgreSQL: %v\n%s", err, out)
	}
	t.Logf("%s", lastLines(string(out), 9))
	// The clouds kept their rows there, not in a bbolt file.
	conn, err = pgx.Connect(context.Background(), c.URL("t1"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var rows int
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM kv WHERE substring(bucket FROM 1 FOR 2) = 't/'::bytea").Scan(&rows); err != nil || rows == 0 {
		t.Fatalf("the first cloud's database holds %d rows (%v)", rows, err)
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
