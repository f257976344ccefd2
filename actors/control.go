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
//
// A request with "stream":true (ControlConn.Run) gets the command's
// output as it is printed: lines {"more":true,"out":B} or
// {"more":true,"err":B} (B: bytes in base64, at most controlChunk
// each) before the answer, which then carries only the rest. With
// "input":true the client sends the command's input after the request,
// while the command runs: lines {"data":B}, then {"eof":true} (or
// {"error":"why"} when it cannot read it). The command reads both
// through ControlStreamsOf; nothing of either is held beyond a line.

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
	// Stream asks for the output as it is printed, Input says the
	// client sends the command's input, Terminal and OutTerminal that
	// the client's stderr and stdout are terminals (see ControlStreams).
	Stream      bool `json:"stream,omitempty"`
	Input       bool `json:"input,omitempty"`
	Terminal    bool `json:"terminal,omitempty"`
	OutTerminal bool `json:"out_terminal,omitempty"`
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
// ends when the client goes away or the server stops. For a client
// that streams, ControlStreamsOf(ctx) gives the command's streams.
type ControlHandler func(ctx context.Context, args []string) ControlResponse

// ControlStreams are a command's input and outputs: those a streaming
// client (ControlConn.Run) lends to the command it runs.
type ControlStreams struct {
	// Stdin is the client's input; nil when it sends none. A client
	// that goes away before its input ends makes Read fail.
	Stdin io.Reader
	// Stdout and Stderr send each write on to the client before they
	// return (a client that stops reading holds the command up).
	Stdout, Stderr io.Writer
	// Terminal says that the client's stderr is a terminal, and
	// OutTerminal that its stdout is.
	Terminal, OutTerminal bool
}

type controlStreamsKey struct{}

// ControlStreamsOf returns the streams of the command that ctx (a
// ControlHandler's) runs, when its client streams.
func ControlStreamsOf(ctx context.Context) (ControlStreams, bool) {
	s, ok := ctx.Value(controlStreamsKey{}).(ControlStreams)
	return s, ok
}

// controlChunk bounds the bytes of one streamed line's data.
const controlChunk = 48 << 10

// controlOutput is a line of streamed output; controlAnswer is any
// answer line, as a client reads it.
type controlOutput struct {
	More bool   `json:"more"`
	Out  []byte `json:"out,omitempty"`
	Err  []byte `json:"err,omitempty"`
}

type controlAnswer struct {
	ControlResponse
	More bool   `json:"more,omitempty"`
	Out  []byte `json:"out,omitempty"`
	Err  []byte `json:"err,omitempty"`
}

// controlInput is a line of a client's input.
type controlInput struct {
	Data  []byte `json:"data,omitempty"`
	EOF   bool   `json:"eof,omitempty"`
	Error string `json:"error,omitempty"`
}

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
	if n.dir == "" {
		return nil, fmt.Errorf("%w: %w: no control socket", ErrControl, ErrNoDir)
	}
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
	lr := &io.LimitedReader{R: c, N: MaxControlRequest}
	dec := json.NewDecoder(lr)
	if err := dec.Decode(&req); err != nil {
		resp.Error = fmt.Sprintf("bad request (one JSON line of at most %d bytes wanted): %v", MaxControlRequest, err)
		resp.Code = 2
		log.Warn("control socket: refused a request", "cause", err)
	} else if len(req.Args) > 0 {
		// Once the client has sent all it sends, a read that returns
		// means it went away, and the command need not wait any longer.
		c.SetReadDeadline(time.Time{})
		cctx, cancel := context.WithCancel(ctx)
		gone := func() {
			var b [1]byte
			c.Read(b[:])
			cancel()
		}
		stopped := func() {}
		if req.Stream || req.Input {
			s := streamControl(c, dec, lr, req, gone, cancel)
			cctx = context.WithValue(cctx, controlStreamsKey{}, s)
			// Streams blocked on a client that neither reads nor goes
			// away give up when the command's context ends.
			unblocked := make(chan struct{})
			stop := context.AfterFunc(cctx, func() {
				c.SetDeadline(time.Now())
				close(unblocked)
			})
			stopped = func() {
				if !stop() {
					<-unblocked
				}
			}
		}
		if !req.Input {
			go gone()
		}
		resp = h(cctx, req.Args)
		stopped()
		cancel()
	}
	resp.PID = os.Getpid()
	c.SetWriteDeadline(time.Now().Add(controlIOTimeout))
	if err := json.NewEncoder(c).Encode(resp); err != nil {
		log.Warn("control socket: answering", "cause", err)
	}
}

// streamControl returns the streams of a streaming request on c: the
// outputs write answer lines, the input reads input lines from dec
// (which read the request through lr) and, at its end, starts gone;
// an input that breaks off cancels the command.
func streamControl(c net.Conn, dec *json.Decoder, lr *io.LimitedReader, req ControlRequest, gone, cancel func()) ControlStreams {
	w := &controlWriter{enc: json.NewEncoder(c)}
	s := ControlStreams{Stdout: controlOut{w, false}, Stderr: controlOut{w, true}, Terminal: req.Terminal, OutTerminal: req.OutTerminal}
	if !req.Stream { // the answer comes whole: writes are kept for it
		s.Stdout, s.Stderr = nil, nil
	}
	if req.Input {
		s.Stdin = &controlInputReader{dec: dec, lr: lr, end: func() { go gone() }, broke: cancel}
	}
	return s
}

// controlWriter sends a streamed command's output.
type controlWriter struct {
	mu  sync.Mutex // guards enc and err: the command may write from several goroutines
	enc *json.Encoder
	err error // the first failed send
}

// controlOut is one output of a controlWriter (stderr or stdout).
type controlOut struct {
	w      *controlWriter
	stderr bool
}

func (o controlOut) Write(p []byte) (int, error) {
	w := o.w
	w.mu.Lock()
	defer w.mu.Unlock()
	for n := 0; n < len(p); {
		if w.err != nil {
			return n, w.err
		}
		k := min(len(p)-n, controlChunk)
		line := controlOutput{More: true, Out: p[n : n+k]}
		if o.stderr {
			line.Out, line.Err = nil, line.Out
		}
		if err := w.enc.Encode(line); err != nil {
			w.err = fmt.Errorf("%w: sending output: %v", ErrControl, err)
			return n, w.err
		}
		n += k
	}
	return len(p), nil
}

// controlInputReader reads a client's input lines.
type controlInputReader struct {
	dec   *json.Decoder
	lr    *io.LimitedReader
	end   func() // called at the input's end
	broke func() // called when the input breaks off
	buf   []byte
	err   error // once set, every later Read's
}

func (r *controlInputReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 && r.err == nil {
		var in controlInput
		r.lr.N = MaxControlRequest // bounds each line, not the whole input
		switch err := r.dec.Decode(&in); {
		case err != nil:
			r.err = fmt.Errorf("%w: the client's input broke off: %v", ErrControl, err)
			r.broke()
		case in.Error != "":
			r.err = fmt.Errorf("%w: the client could not send its input: %s", ErrControl, in.Error)
			r.end()
		case in.EOF:
			r.err = io.EOF
			r.end()
		}
		r.buf = in.Data
	}
	if len(r.buf) > 0 {
		n := copy(p, r.buf)
		r.buf = r.buf[n:]
		return n, nil
	}
	return 0, r.err
}

// ControlConn is a connection to a serving process's control socket,
// for one Call or Run.
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
	if err := c.send(ControlRequest{Args: args}); err != nil {
		return ControlResponse{}, err
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

// send sends a request line.
func (c *ControlConn) send(req ControlRequest) error {
	b, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrControl, err)
	}
	if b = append(b, '\n'); len(b) > MaxControlRequest {
		return fmt.Errorf("%w: the command line is %d bytes, over %d", ErrControl, len(b), MaxControlRequest)
	}
	c.conn.SetWriteDeadline(time.Now().Add(controlIOTimeout))
	if _, err := c.conn.Write(b); err != nil {
		return fmt.Errorf("%w: sending: %v", ErrControl, err)
	}
	return nil
}

// Run runs a command line in the serving process with streams: it
// sends s.Stdin (when set) as the command's input while the command
// runs, copies what the command prints to s.Stdout and s.Stderr as it
// prints it, and returns its exit status once it ends; it closes the
// connection. A command that ends before reading all its input ends
// the sending; Run does not wait for a read of s.Stdin under way.
func (c *ControlConn) Run(args []string, s ControlStreams) (int, error) {
	defer c.conn.Close()
	if err := c.send(ControlRequest{Args: args, Stream: true, Input: s.Stdin != nil, Terminal: s.Terminal, OutTerminal: s.OutTerminal}); err != nil {
		return 0, err
	}
	c.conn.SetWriteDeadline(time.Time{}) // the command reads its input at its own pace
	if s.Stdin != nil {
		go c.sendInput(s.Stdin)
	}
	dec := json.NewDecoder(c.conn)
	for {
		var a controlAnswer
		if err := dec.Decode(&a); err != nil {
			return 0, fmt.Errorf("%w: no answer: %v", ErrControl, err)
		}
		if a.Error != "" {
			return a.Code, fmt.Errorf("%w: %s", ErrControl, a.Error)
		}
		out, errOut := a.Out, a.Err
		if !a.More {
			out, errOut = []byte(a.Stdout), []byte(a.Stderr)
		}
		for _, w := range []struct {
			to io.Writer
			b  []byte
		}{{s.Stdout, out}, {s.Stderr, errOut}} {
			if len(w.b) == 0 || w.to == nil {
				continue
			}
			if _, err := w.to.Write(w.b); err != nil {
				return 0, err // closing the connection ends the command
			}
		}
		if !a.More {
			return a.Code, nil
		}
	}
}

// sendInput sends in as input lines, then its end, until a send fails
// (the command ended).
func (c *ControlConn) sendInput(in io.Reader) {
	enc := json.NewEncoder(c.conn)
	buf := make([]byte, controlChunk)
	for {
		n, err := in.Read(buf)
		if n > 0 {
			if enc.Encode(controlInput{Data: buf[:n]}) != nil {
				return
			}
		}
		switch {
		case err == io.EOF:
			enc.Encode(controlInput{EOF: true})
			return
		case err != nil:
			enc.Encode(controlInput{Error: err.Error()})
			return
		}
	}
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
