package main

// The node processes a benchmark runs: commands run to their end, and
// serve processes that run until the benchmark stops them. Every
// process started is tracked, so that the harness kills what is left
// when it ends, whether it succeeded, failed or was interrupted.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// procs starts node processes and remembers the live ones.
type procs struct {
	nodeBin string

	mu   sync.Mutex // guards live
	live map[*exec.Cmd]chan struct{}
}

func newProcs(nodeBin string) *procs {
	return &procs{nodeBin: nodeBin, live: map[*exec.Cmd]chan struct{}{}}
}

// track starts cmd and remembers it until it exits; the returned
// channel closes when it has exited (its Wait returned, kept in *waitErr).
func (ps *procs) track(cmd *exec.Cmd, waitErr *error) (chan struct{}, error) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.live == nil {
		return nil, errors.New("the harness is shutting down")
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	done := make(chan struct{})
	ps.live[cmd] = done
	go func() {
		*waitErr = cmd.Wait()
		ps.mu.Lock()
		delete(ps.live, cmd)
		ps.mu.Unlock()
		close(done)
	}()
	return done, nil
}

// killAll kills (SIGKILL) every live process and waits for them; no
// process starts after it.
func (ps *procs) killAll() {
	ps.mu.Lock()
	live := ps.live
	ps.live = nil
	ps.mu.Unlock()
	for cmd, done := range live {
		cmd.Process.Kill()
		<-done
	}
}

// run runs a node command to its end, bounded by ctx, and returns its
// stdout; a failure names the step and carries the command's stderr.
func (ps *procs) run(ctx context.Context, step string, args ...string) (string, error) {
	var out bytes.Buffer
	p, err := ps.start(ctx, step, &out, args...)
	if err != nil {
		return "", err
	}
	if err := p.wait(ctx); err != nil {
		if out.Len() > 0 {
			err = fmt.Errorf("%w; stdout: %s", err, clip(out.String()))
		}
		return out.String(), err
	}
	return out.String(), nil
}

// runJSON runs a node command with --json and decodes its output.
func (ps *procs) runJSON(ctx context.Context, step string, v any, args ...string) error {
	out, err := ps.run(ctx, step, append(args, "--json")...)
	if err != nil {
		return err
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		return fmt.Errorf("%s: node %s printed %q, not the JSON expected: %w", step, args[0], clip(out), err)
	}
	return nil
}

// proc is one started node process.
type proc struct {
	step    string
	args    []string
	cmd     *exec.Cmd
	stderr  *tailBuffer
	done    chan struct{}
	waitErr error // set when done is closed
}

// start starts a node command writing its stdout to stdout (exec
// copies it there, done before the process counts as exited).
func (ps *procs) start(ctx context.Context, step string, stdout io.Writer, args ...string) (*proc, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", step, err)
	}
	cmd := exec.Command(ps.nodeBin, args...)
	p := &proc{step: step, args: args, cmd: cmd, stderr: &tailBuffer{max: 4096}}
	cmd.Stdout, cmd.Stderr = stdout, p.stderr
	cmd.WaitDelay = 10 * time.Second // a child holding its output open does not hang Wait
	var err error
	if p.done, err = ps.track(cmd, &p.waitErr); err != nil {
		return nil, fmt.Errorf("%s: starting node %s: %w", step, args[0], err)
	}
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// wait waits for p to exit, killing it when ctx ends first. A
// non-zero exit is an error.
func (p *proc) wait(ctx context.Context) error {
	select {
	case <-p.done:
	case <-ctx.Done():
		p.kill()
		return fmt.Errorf("%s: node %s did not finish: %w; stderr: %s", p.step, p.args[0], ctx.Err(), p.stderr)
	}
	if p.waitErr != nil {
		return fmt.Errorf("%s: node %s: %v: %s", p.step, p.args[0], p.waitErr, p.stderr)
	}
	return nil
}

// serve is a running serve process and the addresses it printed.
type serve struct {
	*proc
	addrs map[string]string // what follows "listening on", by scheme ("http", "https", "rpc", "metrics")
}

// startServe starts `node serve` and waits (at most a minute) for its
// want "listening on" lines.
func (ps *procs) startServe(ctx context.Context, step string, want int, args ...string) (*serve, error) {
	pr, pw := io.Pipe()
	p, err := ps.start(ctx, step, pw, append([]string{"serve"}, args...)...)
	if err != nil {
		return nil, err
	}
	go func() { <-p.done; pw.Close() }()
	s := &serve{proc: p, addrs: map[string]string{}}
	lines := make(chan string)
	go func() {
		defer close(lines)
		r := bufio.NewReader(pr)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			lines <- line
		}
	}()
	err = s.readAddrs(ctx, lines, want)
	go func() { // drain stdout from now on, so that serve never blocks writing it
		for range lines {
		}
	}()
	if err != nil {
		p.kill()
		return nil, fmt.Errorf("%s: %w", step, err)
	}
	return s, nil
}

// readAddrs reads serve's lines until it said where it listens, want
// addresses, within a minute.
func (s *serve) readAddrs(ctx context.Context, lines <-chan string, want int) error {
	bound := time.NewTimer(time.Minute)
	defer bound.Stop()
	for len(s.addrs) < want {
		select {
		case line, ok := <-lines:
			if !ok {
				<-s.done
				return fmt.Errorf("serve exited before saying where it listens: %v; stderr: %s", s.waitErr, s.stderr)
			}
			rest, found := strings.CutPrefix(strings.TrimSpace(line), "listening on ")
			if !found {
				continue
			}
			u := strings.Fields(rest)[0]
			scheme, _, _ := strings.Cut(u, "://")
			if strings.HasSuffix(rest, "(Prometheus metrics)") {
				scheme = "metrics"
			}
			s.addrs[scheme] = u
		case <-bound.C:
			return fmt.Errorf("serve printed %d of %d addresses within a minute; stderr: %s", len(s.addrs), want, s.stderr)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// kill ends p with SIGKILL and waits for it.
func (p *proc) kill() {
	p.cmd.Process.Kill()
	<-p.done
}

// stop ends p with SIGTERM (SIGKILL after 30s) and waits for it.
func (p *proc) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		p.kill()
	}
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex // guards b
	b   []byte
	max int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.b))
}

// clip shortens s for an error message.
func clip(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 500 {
		return s[:500] + "..."
	}
	return s
}
