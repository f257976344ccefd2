package actors

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
)

// serveControl serves h on n's control socket until the test ends (or
// stop is called) and returns stop, which waits for ServeControl.
func serveControl(t *testing.T, n *Node, h ControlHandler) (stop func() error) {
	t.Helper()
	l, err := n.ListenControl()
	if err != nil {
		t.Fatalf("ListenControl: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeControl(ctx, l, h, slog.New(slog.DiscardHandler)) }()
	var once sync.Once
	var serr error
	stop = func() error {
		once.Do(func() {
			cancel()
			serr = <-done
		})
		return serr
	}
	t.Cleanup(func() { stop() })
	return stop
}

// echo answers with its arguments: stdout gets them, stderr the first,
// the exit code their count.
func echo(_ context.Context, args []string) ControlResponse {
	return ControlResponse{Stdout: strings.Join(args, " ") + "\n", Stderr: args[0] + "\n", Code: len(args)}
}

func call(t *testing.T, dir string, args ...string) ControlResponse {
	t.Helper()
	c, err := DialControl(dir)
	if err != nil {
		t.Fatalf("DialControl: %v", err)
	}
	resp, err := c.Call(args)
	if err != nil {
		t.Fatalf("Call %q: %v", args, err)
	}
	return resp
}

func TestControlCall(t *testing.T) {
	dir, _ := initNode(t, KindHub)
	n := openNode(t, dir)
	if _, err := PingControl(dir); !errors.Is(err, ErrNoControl) {
		t.Fatalf("PingControl before serving: %v, want ErrNoControl", err)
	}
	stop := serveControl(t, n, echo)

	fi, err := os.Stat(ControlPath(dir))
	if err != nil || fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Fatalf("control socket: %v, %v: want a socket, mode 0600", fi, err)
	}
	if _, err := os.Stat(filepath.Join(dir, controlTmp)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the temporary socket name is left: %v", err)
	}
	if pid, err := PingControl(dir); err != nil || pid != os.Getpid() {
		t.Errorf("PingControl = %d, %v; want %d", pid, err, os.Getpid())
	}
	want := ControlResponse{Stdout: "status --data d <&> é\n", Stderr: "status\n", Code: 4, PID: os.Getpid()}
	if got := call(t, dir, "status", "--data", "d", "<&> é"); !reflect.DeepEqual(got, want) {
		t.Errorf("Call = %+v, want %+v", got, want)
	}

	// Connections are served at once, beyond MaxControlConns.
	var wg sync.WaitGroup
	errs := make(chan error, 3*MaxControlConns)
	for i := range 3 * MaxControlConns {
		wg.Go(func() {
			c, err := DialControl(dir)
			if err != nil {
				errs <- err
				return
			}
			arg := fmt.Sprint(i)
			if resp, err := c.Call([]string{arg}); err != nil || resp.Stdout != arg+"\n" {
				errs <- fmt.Errorf("call %d: %+v, %v", i, resp, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	// A second listener on a served node is refused.
	if _, err := n.ListenControl(); !errors.Is(err, ErrServed) || !strings.Contains(err.Error(), fmt.Sprint(os.Getpid())) {
		t.Errorf("second ListenControl: %v, want ErrServed naming the pid", err)
	}

	if err := stop(); err != nil {
		t.Fatalf("ServeControl: %v", err)
	}
	if _, err := os.Lstat(ControlPath(dir)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("control socket left after ServeControl returned: %v", err)
	}
	if _, err := DialControl(dir); !errors.Is(err, ErrNoControl) {
		t.Errorf("DialControl after the server stopped: %v, want ErrNoControl", err)
	}
}

func TestControlStaleSocket(t *testing.T) {
	dir, _ := initNode(t, KindCloud)
	n := openNode(t, dir)
	// A socket file nothing answers on: a server that died.
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: ControlPath(dir), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	if _, err := os.Lstat(ControlPath(dir)); err != nil {
		t.Fatalf("stale socket: %v", err)
	}
	if _, err := PingControl(dir); !errors.Is(err, ErrNoControl) {
		t.Fatalf("PingControl on a stale socket: %v, want ErrNoControl", err)
	}
	serveControl(t, n, echo)
	if got := call(t, dir, "a", "b"); got.Stdout != "a b\n" || got.Code != 2 {
		t.Errorf("Call through the replaced socket = %+v", got)
	}
}

func TestControlContext(t *testing.T) {
	dir, _ := initNode(t, KindHub)
	n := openNode(t, dir)
	started := make(chan struct{}, 1)
	ended := make(chan error, 1)
	stop := serveControl(t, n, func(ctx context.Context, args []string) ControlResponse {
		started <- struct{}{}
		<-ctx.Done()
		ended <- ctx.Err()
		return ControlResponse{Stderr: "gave up\n", Code: 1}
	})

	// A client that goes away ends its command's context.
	c, err := net.Dial("unix", ControlPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, `{"args":["sync"]}`+"\n"); err != nil {
		t.Fatal(err)
	}
	<-started
	c.Close()
	if err := <-ended; !errors.Is(err, context.Canceled) {
		t.Errorf("handler's context after the client left: %v", err)
	}

	// Stopping the server ends the commands under way, which still
	// answer, and ServeControl waits for them.
	answer := make(chan ControlResponse, 1)
	go func() {
		cc, err := DialControl(dir)
		if err != nil {
			answer <- ControlResponse{Stderr: err.Error()}
			return
		}
		resp, err := cc.Call([]string{"sync"})
		if err != nil {
			resp.Stderr = err.Error()
		}
		answer <- resp
	}()
	<-started
	if err := stop(); err != nil {
		t.Fatalf("ServeControl: %v", err)
	}
	<-ended
	if got := <-answer; got.Stderr != "gave up\n" || got.Code != 1 {
		t.Errorf("answer of a command stopped by the server: %+v", got)
	}
}

func TestControlBadRequests(t *testing.T) {
	dir, _ := initNode(t, KindHub)
	n := openNode(t, dir)
	calls := make(chan []string, 10)
	serveControl(t, n, func(ctx context.Context, args []string) ControlResponse {
		calls <- args
		return echo(ctx, args)
	})

	raw := func(req string) ControlResponse {
		t.Helper()
		c, err := net.Dial("unix", ControlPath(dir))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		go io.WriteString(c, req) // the server may stop reading a long one
		var resp ControlResponse
		if err := json.NewDecoder(c).Decode(&resp); err != nil {
			t.Fatalf("no answer to %.40q: %v", req, err)
		}
		return resp
	}
	for _, req := range []string{
		"status\n",
		`{"args":"status"}` + "\n",
		`{"args":["` + strings.Repeat("x", MaxControlRequest) + `"]}` + "\n",
	} {
		if resp := raw(req); resp.Error == "" || resp.Code != 2 || resp.Stdout != "" || resp.PID != os.Getpid() {
			t.Errorf("answer to %.40q: %+v, want a refusal", req, resp)
		}
	}
	if resp := raw(`{"args":[]}` + "\n"); !reflect.DeepEqual(resp, ControlResponse{PID: os.Getpid()}) {
		t.Errorf("ping answer: %+v", resp)
	}
	// The client refuses to send an oversized request.
	c, err := DialControl(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Call([]string{strings.Repeat("x", MaxControlRequest)}); !errors.Is(err, ErrControl) {
		t.Errorf("oversized Call: %v, want ErrControl", err)
	}
	select {
	case args := <-calls:
		t.Errorf("a refused request ran: %.40q", args)
	default:
	}
}

func TestControlPathTooLong(t *testing.T) {
	dir := filepath.Join(t.TempDir(), strings.Repeat("d", 110))
	if _, err := Init(dir, InitConfig{Kind: KindHub}); err != nil {
		t.Fatal(err)
	}
	n := openNode(t, dir)
	if _, err := n.ListenControl(); !errors.Is(err, ErrControl) || !strings.Contains(err.Error(), "use a shorter data directory") {
		t.Errorf("ListenControl with a long path: %v", err)
	}
}
