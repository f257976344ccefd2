// Package pgtest starts a throwaway PostgreSQL cluster for tests: initdb
// and pg_ctl in a temporary directory, listening on a free port of
// 127.0.0.1, never a system service, and removed afterwards. initdb
// refuses root, so as root the cluster runs as the postgres user the
// Debian package creates.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5"
)

// Cluster is a running throwaway cluster.
type Cluster struct {
	dir  string
	port int
	bin  string
	as   *user.User // nil: the current user
	dbs  atomic.Int64
}

// ErrMissing says what a machine lacks to run a cluster.
var ErrMissing = errors.New("pgtest: PostgreSQL is not installed (apt-get install -y postgresql)")

// Start initializes and starts a cluster. Stop removes it.
func Start() (*Cluster, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	c := &Cluster{bin: bin}
	if os.Geteuid() == 0 {
		if c.as, err = user.Lookup("postgres"); err != nil {
			return nil, fmt.Errorf("%w: running as root needs the postgres user: %v", ErrMissing, err)
		}
	}
	c.reap()
	if c.dir, err = os.MkdirTemp("", dirPrefix); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(c.dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		os.RemoveAll(c.dir)
		return nil, err
	}
	if err := c.chown(c.dir); err != nil {
		os.RemoveAll(c.dir)
		return nil, err
	}
	if c.port, err = freePort(); err != nil {
		os.RemoveAll(c.dir)
		return nil, err
	}
	data := filepath.Join(c.dir, "data")
	if out, err := c.run("initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"); err != nil {
		os.RemoveAll(c.dir)
		return nil, fmt.Errorf("pgtest: initdb: %v: %s", err, out)
	}
	if err := c.Resume(); err != nil {
		os.RemoveAll(c.dir)
		return nil, err
	}
	return c, nil
}

// Pause stops the server, keeping its data: the database goes away.
func (c *Cluster) Pause() error {
	if out, err := c.run("pg_ctl", "-D", filepath.Join(c.dir, "data"), "-m", "immediate", "-w", "stop"); err != nil {
		return fmt.Errorf("pgtest: pg_ctl stop: %v: %s", err, out)
	}
	return nil
}

// Resume starts the server (again) on the same port.
func (c *Cluster) Resume() error {
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200", c.port, c.dir)
	if out, err := c.run("pg_ctl", "-D", filepath.Join(c.dir, "data"), "-o", opts, "-l", filepath.Join(c.dir, "log"), "-w", "start"); err != nil {
		log, _ := os.ReadFile(filepath.Join(c.dir, "log"))
		return fmt.Errorf("pgtest: pg_ctl start: %v: %s %s", err, out, log)
	}
	return nil
}

// A cluster's directory: its prefix in the temporary directory, and the
// file naming the process that started it.
const (
	dirPrefix = "clinicsync-pg-"
	ownerFile = "owner.pid"
)

// reap stops and removes the clusters whose test process died without
// stopping them (a test binary that timed out panics past its cleanup).
func (c *Cluster) reap() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPrefix+"*"))
	for _, dir := range dirs {
		b, err := os.ReadFile(filepath.Join(dir, ownerFile))
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 || syscall.Kill(pid, 0) == nil {
			continue // not ours to judge, or its process lives
		}
		old := &Cluster{dir: dir, bin: c.bin, as: c.as}
		old.Stop()
	}
}

// Stop stops the cluster and removes its directory.
func (c *Cluster) Stop() error {
	var err error
	if _, serr := os.Stat(filepath.Join(c.dir, "data", "postmaster.pid")); serr == nil {
		err = c.Pause()
	}
	return errors.Join(err, os.RemoveAll(c.dir))
}

// Port is the port the cluster listens on at 127.0.0.1.
func (c *Cluster) Port() int { return c.port }

// URL is the connection URL of a database of the cluster.
func (c *Cluster) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.port, db)
}

// NewDB creates an empty database and returns its URL.
func (c *Cluster) NewDB(ctx context.Context) (string, error) {
	name := fmt.Sprintf("t%d", c.dbs.Add(1))
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", err
	}
	return c.URL(name), nil
}

func (c *Cluster) run(cmd string, args ...string) ([]byte, error) {
	path := filepath.Join(c.bin, cmd)
	if c.as != nil {
		args = append([]string{"-u", "postgres", "--", path}, args...)
		path = "runuser"
	}
	x := exec.Command(path, args...)
	x.Dir = os.TempDir()
	return x.CombinedOutput()
}

func (c *Cluster) chown(dir string) error {
	if c.as == nil {
		return nil
	}
	uid, _ := strconv.Atoi(c.as.Uid)
	gid, _ := strconv.Atoi(c.as.Gid)
	return os.Chown(dir, uid, gid)
}

// binDir finds the newest installed PostgreSQL's bin directory (Debian
// keeps initdb and pg_ctl there, off PATH), or the one on PATH.
func binDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", fmt.Errorf("%w: no initdb in /usr/lib/postgresql/*/bin or on PATH", ErrMissing)
}

func version(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// EnvRequire, set (as .ci/run sets it), turns the skip of a machine
// without PostgreSQL into a failure.
const EnvRequire = "CLINICSYNC_REQUIRE_POSTGRES"

// Shared is one cluster for a test binary, started on first use:
// Shared(t) returns a new database's URL, or skips the test naming what
// the machine lacks (unless EnvRequire is set). Call StopShared from TestMain after m.Run.
func Shared(t testing.TB) string {
	t.Helper()
	shared.once.Do(func() { shared.c, shared.err = Start() })
	need(t, shared.err)
	url, err := shared.c.NewDB(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return url
}

// need fails t on a cluster that did not start, or skips it when the
// machine lacks PostgreSQL and EnvRequire is unset.
func need(t testing.TB, err error) {
	t.Helper()
	switch {
	case err == nil:
	case errors.Is(err, ErrMissing) && os.Getenv(EnvRequire) == "":
		t.Skip(err)
	default:
		t.Fatal(err)
	}
}

// Own starts a cluster of the test's own (one it may pause), stopped
// when the test ends; it skips as Shared does.
func Own(t testing.TB) *Cluster {
	t.Helper()
	c, err := Start()
	need(t, err)
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Error(err)
		}
	})
	return c
}

// Main runs a test binary's tests and then stops the shared cluster: a
// TestMain of packages that use Shared.
func Main(m *testing.M) {
	code := m.Run()
	if err := StopShared(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	}
	os.Exit(code)
}

// StopShared stops the shared cluster if one was started.
func StopShared() error {
	if shared.c == nil {
		return nil
	}
	return shared.c.Stop()
}

var shared struct {
	once sync.Once
	c    *Cluster
	err  error
}
