package actors

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// signalWriter records what is written and signals each write.
type signalWriter struct {
	mu    sync.Mutex // guards b
	b     bytes.Buffer
	wrote chan struct{}
}

func newSignalWriter() *signalWriter { return &signalWriter{wrote: make(chan struct{}, 1)} }

func (w *signalWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.b.Write(p)
	select {
	case w.wrote <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (w *signalWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// waitFor waits (at most 10 s) until w holds s.
func (w *signalWriter) waitFor(s string) bool {
	deadline := time.After(10 * time.Second)
	for !strings.Contains(w.String(), s) {
		select {
		case <-w.wrote:
		case <-deadline:
			return false
		}
	}
	return true
}

// TestControlRunStreams: Run sends its input, of any size and bytes,
// as the command reads it, and the command's output reaches the client
// while the command runs, whole and in order; a handler that ignores
// the streams answers as before.
func TestControlRunStreams(t *testing.T) {
	dir, _ := initNode(t, KindHub)
	n := openNode(t, dir)
	stdout := newSignalWriter()
	serveControl(t, n, func(ctx context.Context, args []string) ControlResponse {
		st, ok := ControlStreamsOf(ctx)
		if args[0] == "plain" {
			return ControlResponse{Stdout: fmt.Sprintf("streams %v\n", ok), Stderr: "e\n", Code: 4}
		}
		if !ok || st.Stdin == nil || !st.Terminal {
			return ControlResponse{Stderr: fmt.Sprintf("streams %+v %v\n", st, ok), Code: 9}
		}
		fmt.Fprintln(st.Stdout, "started")
		// The client has it before the command goes on.
		if !stdout.waitFor("started\n") {
			return ControlResponse{Stderr: "output held back\n", Code: 3}
		}
		h := sha256.New()
		size, err := io.Copy(h, st.Stdin)
		if err != nil {
			return ControlResponse{Stderr: err.Error(), Code: 5}
		}
		fmt.Fprintf(st.Stderr, "read %d bytes\n", size)
		st.Stdout.Write(bytes.Repeat([]byte("0123456789"), 30_000)) // several lines' worth
		fmt.Fprintf(st.Stdout, "\n%x\n", h.Sum(nil))
		return ControlResponse{Code: 7}
	})

	input := make([]byte, 3*MaxControlRequest+17) // over the request limit, in any bytes
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range input {
		input[i] = byte(rng.Uint32())
	}
	var stderr bytes.Buffer
	c, err := DialControl(dir)
	if err != nil {
		t.Fatal(err)
	}
	code, err := c.Run([]string{"cat"}, ControlStreams{Stdin: bytes.NewReader(input), Stdout: stdout, Stderr: &stderr, Terminal: true})
	sum := sha256.Sum256(input)
	want := "started\n" + strings.Repeat("0123456789", 30_000) + fmt.Sprintf("\n%x\n", sum)
	if err != nil || code != 7 || stdout.String() != want || stderr.String() != fmt.Sprintf("read %d bytes\n", len(input)) {
		t.Errorf("Run: %d, %v; stderr %q; stdout %d bytes, as wanted: %v", code, err, stderr.String(), len(stdout.String()), stdout.String() == want)
	}

	c, err = DialControl(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if code, err := c.Run([]string{"plain"}, ControlStreams{Stdout: &out, Stderr: &errOut}); err != nil || code != 4 || out.String() != "streams true\n" || errOut.String() != "e\n" {
		t.Errorf("Run of a handler that answers whole: %d, %v, %q, %q", code, err, out.String(), errOut.String())
	}
}

// TestControlRunInput: a command that ends before reading its input
// ends Run; an input the client cannot read, or a client that goes
// away in the middle of it, fails the command's Read and ends its
// context.
func TestControlRunInput(t *testing.T) {
	dir, _ := initNode(t, KindHub)
	n := openNode(t, dir)
	type outcome struct {
		err    error
		ctxErr error
	}
	outcomes := make(chan outcome, 1)
	serveControl(t, n, func(ctx context.Context, args []string) ControlResponse {
		st, _ := ControlStreamsOf(ctx)
		if args[0] == "ignore" {
			return ControlResponse{Code: 3}
		}
		_, err := io.Copy(io.Discard, st.Stdin)
		var ctxErr error
		if args[0] == "broken" {
			select {
			case <-ctx.Done():
				ctxErr = ctx.Err()
			case <-time.After(10 * time.Second):
			}
		}
		outcomes <- outcome{err, ctxErr}
		return ControlResponse{Code: 1}
	})

	// An endless input the command never reads.
	c, err := DialControl(dir)
	if err != nil {
		t.Fatal(err)
	}
	if code, err := c.Run([]string{"ignore"}, ControlStreams{Stdin: endless{}, Stdout: io.Discard, Stderr: io.Discard}); err != nil || code != 3 {
		t.Errorf("Run of a command that reads no input: %d, %v", code, err)
	}

	// An input that fails on the client.
	c, err = DialControl(dir)
	if err != nil {
		t.Fatal(err)
	}
	in := io.MultiReader(strings.NewReader("some"), failing{})
	if code, err := c.Run([]string{"read"}, ControlStreams{Stdin: in, Stdout: io.Discard, Stderr: io.Discard}); err != nil || code != 1 {
		t.Errorf("Run with a failing input: %d, %v", code, err)
	}
	if o := <-outcomes; !errors.Is(o.err, ErrControl) || !strings.Contains(o.err.Error(), "disk on fire") {
		t.Errorf("the command's Read of a failing input: %v", o.err)
	}

	// A client that goes away in the middle of its input.
	conn, err := net.Dial("unix", ControlPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	enc := json.NewEncoder(conn)
	enc.Encode(ControlRequest{Args: []string{"broken"}, Stream: true, Input: true})
	enc.Encode(controlInput{Data: []byte("part")})
	conn.Close()
	if o := <-outcomes; !errors.Is(o.err, ErrControl) || !strings.Contains(o.err.Error(), "broke off") || !errors.Is(o.ctxErr, context.Canceled) {
		t.Errorf("the command of a client gone mid-input: Read %v, context %v", o.err, o.ctxErr)
	}
}

type endless struct{}

func (endless) Read(p []byte) (int, error) { return len(p), nil }

type failing struct{}

func (failing) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }
