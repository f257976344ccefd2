package actors

// The control socket: while a process serves a node it holds the
// node's store, so other commands on that node reach it through a unix
// socket in the node's directory instead of opening the store.
//
// The protocol is one request and one answer per connection, each a
// line of JSON: the client sends {"args":[...]} (a whole command line,
// at most MaxControlRequest bytes) and keeps its side open; the server
// runs the command and answers {"stdout":...,"stderr":...,"code":N,
// "pid":P} and closes. A client that closes its side first gives up:
// the command's context ends. A request with no args is a ping: the
// answer just names the serving process.

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
	"runtime"
	"sync"
	"time"
)

// ControlFile is the control socket inside a served node's directory
// (mode 0600; it exists while the node is served).
const ControlFile = "control.sock"

// controlTmp is where ListenControl binds before renaming the socket
// into place with its final mode. It is no longer than ControlFile.
const controlTmp = "control.new"

// MaxControlRequest bounds a control request, in bytes.
const MaxControlRequest = 1 << 20

// MaxControlConns bounds the control connections served at once; more
// wait to be accepted.
const MaxControlConns = 16

// controlIOTimeout bounds reading a request, writing an answer, and a
// ping.
const controlIOTimeout = 10 * time.Second

var (
	// ErrServed: the node's control socket answers: another process
	// serves the node.
	ErrServed = errors.New("actors: node already served")
	// ErrNoControl: nothing answers on the directory's control socket.
	ErrNoControl = errors.New("actors: no control socket")
	// ErrControl: a control exchange failed (refused request, broken
	// connection, malformed answer).
	ErrControl = errors.New("actors: control socket")
)

// ControlRequest is a command line sent to a serving process.
type ControlRequest struct {
	Args []string `json:"args"`
}

// ControlResponse is what the command printed and its exit status.
// Error, when set, says why the server refused the request (nothing
// ran).
type ControlResponse struct {
	Stdout string `json:"stdout"`
	Stderr string `json:"stderr"`
	Code   int    `json:"code"`
	PID    int    `json:"pid"` // the serving process
	Error  string `json:"error,omitempty"`
}

// ControlHandler runs one command line for the control socket. ctx
// ends when the client goes away or the server stops.
type ControlHandler func(ctx context.Context, args []string) ControlResponse

// ControlPath is the control socket of the node in dir.
func ControlPath(dir string) string { return filepath.Join(dir, ControlFile) }

// maxSocketPath is the longest unix socket path the system takes
// (sun_path holds it with its terminating NUL).
func maxSocketPath() int {
	if runtime.GOOS == "linux" {
		return 107
	}
	return 103 // the BSDs and macOS
}

// ListenControl listens on the node's control socket, dir/control.sock,
// mode 0600. A socket file that nothing answers on (left by a process
// that died) is replaced; one that answers is ErrServed. The caller
// serves it with ServeControl; closing it removes the file.
func (n *Node) ListenControl() (net.Listener, error) {
	path := ControlPath(n.dir)
	if len(path) > maxSocketPath() {
		return nil, fmt.Errorf("%w: path %s is %d bytes, over the system's %d for a unix socket: use a shorter data directory",
			ErrControl, path, len(path), maxSocketPath())
	}
	if pid, err := PingControl(n.dir); err == nil {
		return nil, fmt.Errorf("%w: %s answers for pid %d", ErrServed, path, pid)
	}
	// Bind under another name, set the mode, then rename over whatever
	// stale file is there: the socket is never reachable with a looser
	// mode, and no window leaves the directory without it.
	tmp := filepath.Join(n.dir, controlTmp)
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %v", ErrControl, err)
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrControl, err)
	}
	l.SetUnlinkOnClose(false) // the file moves: controlListener removes it
	if err = os.Chmod(tmp, 0o600); err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		l.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("%w: %v", ErrControl, err)
	}
	return &controlListener{UnixListener: l, path: path}, nil
}

// controlListener removes its socket file when closed. The node's
// store lock keeps any other process from binding there meanwhile.
type controlListener struct {
	*net.UnixListener
	path string
	once sync.Once
	err  error // Close's result, set once
}

func (l *controlListener) Close() error {
	l.once.Do(func() {
		l.err = l.UnixListener.Close()
		if err := os.Remove(l.path); err != nil && !errors.Is(err, os.ErrNotExist) && l.err == nil {
			l.err = err
		}
	})
	return l.err
}

// ServeControl answers control connections on l, each in a goroutine
// of its own (at most MaxControlConns at once), with h, until ctx
// ends. It then closes l, waits for the commands under way (their
// context has ended) and returns nil; it returns l's error if
// accepting fails otherwise. log gets refused requests and failed
// answers (nil: slog.Default()).
func ServeControl(ctx context.Context, l net.Listener, h ControlHandler, log *slog.Logger) error {
	if log == nil {
		log = slog.Default()
	}
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait() // after l.Close
	defer l.Close()
	slots := make(chan struct{}, MaxControlConns)
	for {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("%w: accepting: %v", ErrControl, err)
		}
		wg.Go(func() {
			defer func() { <-slots }()
			serveControlConn(ctx, c, h, log)
		})
	}
}

func serveControlConn(ctx context.Context, c net.Conn, h ControlHandler, log *slog.Logger) {
	defer c.Close()
	var req ControlRequest
	var resp ControlResponse
	c.SetReadDeadline(time.Now().Add(controlIOTimeout))
	if err := json.NewDecoder(io.LimitReader(c, MaxControlRequest)).Decode(&req); err != nil {
		resp.Error = fmt.Sprintf("bad request (one JSON line of at most %d bytes wanted): %v", MaxControlRequest, err)
		resp.Code = 2
		log.Warn("control socket: refused a request", "cause", err)
	} else if len(req.Args) > 0 {
		// The client sends nothing more: a read that returns means it
		// went away, and the command need not wait any longer.
		c.SetReadDeadline(time.Time{})
		cctx, cancel := context.WithCancel(ctx)
		go func() {
			var b [1]byte
			c.Read(b[:])
			cancel()
		}()
		resp = h(cctx, req.Args)
		cancel()
	}
	resp.PID = os.Getpid()
	c.SetWriteDeadline(time.Now().Add(controlIOTimeout))
	if err := json.NewEncoder(c).Encode(resp); err != nil {
		log.Warn("control socket: answering", "cause", err)
	}
}

// ControlConn is a connection to a serving process's control socket,
// for one Call.
type ControlConn struct {
	conn net.Conn
}

// DialControl connects to the control socket of the node in dir:
// ErrNoControl when nothing answers there.
func DialControl(dir string) (*ControlConn, error) {
	c, err := net.DialTimeout("unix", ControlPath(dir), controlIOTimeout)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoControl, err)
	}
	return &ControlConn{conn: c}, nil
}

// Call sends a command line, waits for as long as the command runs,
// returns its answer, and closes the connection. A request the server
// refused is ErrControl.
func (c *ControlConn) Call(args []string) (ControlResponse, error) {
	defer c.conn.Close()
	b, err := json.Marshal(ControlRequest{Args: args})
	if err != nil {
		return ControlResponse{}, fmt.Errorf("%w: %v", ErrControl, err)
	}
	if b = append(b, '\n'); len(b) > MaxControlRequest {
		return ControlResponse{}, fmt.Errorf("%w: the command line is %d bytes, over %d", ErrControl, len(b), MaxControlRequest)
	}
	c.conn.SetWriteDeadline(time.Now().Add(controlIOTimeout))
	if _, err := c.conn.Write(b); err != nil {
		return ControlResponse{}, fmt.Errorf("%w: sending: %v", ErrControl, err)
	}
	var resp ControlResponse
	if err := json.NewDecoder(c.conn).Decode(&resp); err != nil {
		return ControlResponse{}, fmt.Errorf("%w: no answer: %v", ErrControl, err)
	}
	if resp.Error != "" {
		return resp, fmt.Errorf("%w: %s", ErrControl, resp.Error)
	}
	return resp, nil
}

// Close closes a connection not used for a Call.
func (c *ControlConn) Close() error { return c.conn.Close() }

// PingControl returns the pid of the process serving the node in dir,
// or ErrNoControl (nothing answers) or ErrControl (something answers,
// but not as a serving node does).
func PingControl(dir string) (int, error) {
	c, err := DialControl(dir)
	if err != nil {
		return 0, err
	}
	c.conn.SetDeadline(time.Now().Add(controlIOTimeout))
	resp, err := c.Call(nil)
	if err != nil {
		return 0, err
	}
	if resp.PID <= 0 {
		return 0, fmt.Errorf("%w: the answer names no process", ErrControl)
	}
	return resp.PID, nil
}
