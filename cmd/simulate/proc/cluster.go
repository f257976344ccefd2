package proc

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/clinicsync/clinicsync/actors"
)

// Node kinds, as bin/node init names them.
const (
	kindCloud  = "cloud"
	kindHub    = "hub"
	kindMobile = "mobile"
)

const password = "correct horse battery"

// node is one bin/node data directory, and its serve process when it
// has one (the cloud and the hubs).
type node struct {
	name, kind, clinic string
	dir                string
	env                []string // the test hooks: clock offset, planted bug

	// ops is held by every workload command on a device (see hold), and
	// held (read) by every workload command on a served node and
	// (write) while its serve process is killed and restarted, so that a
	// command never straddles a restart: its outcome is then known.
	ops sync.RWMutex

	// A served node's: its serve arguments (fixed addresses after the
	// first start) and process.
	serveArgs []string
	serve     *exec.Cmd
	served    chan struct{} // closed when serve exits
	addrs     []string      // host:port of what it serves, in the order it prints them

	// A device's: its hub and cloud peer ids ("" none), its user.
	hubPeer, cloudPeer string
	email              string
	proxied            []*Proxy // the proxies in front of its listeners
}

// cluster is the deployment: the node binary and the nodes.
type cluster struct {
	bin     string
	root    string
	cloud   *node
	hubs    []*node
	devices []*node
	all     []*node
	// stderr of the serve processes, for a failure's report.
	mu   sync.Mutex // guards logs
	logs map[string]*bytes.Buffer
}

// cli runs one bin/node command on n to its end, bounded by ctx, and
// returns its stdout; a failure carries its stderr.
func (c *cluster) cli(ctx context.Context, n *node, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Env = append(os.Environ(), n.env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("node %s on %s: %w: %s", args[0], n.name, err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// cliJSON runs a command with --json and decodes its output into v.
func (c *cluster) cliJSON(ctx context.Context, n *node, v any, args ...string) error {
	out, err := c.cli(ctx, n, append(args, "--json")...)
	if err != nil {
		return err
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		return fmt.Errorf("node %s on %s: reading its JSON %q: %w", args[0], n.name, out, err)
	}
	return nil
}

// start starts n's serve process and waits for its "listening on"
// lines (want of them); the first start picks free ports, which later
// starts reuse.
func (c *cluster) start(ctx context.Context, n *node, want int) error {
	cmd := exec.Command(c.bin, n.serveArgs...)
	cmd.Env = append(os.Environ(), n.env...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	c.mu.Lock()
	logb := c.logs[n.name]
	if logb == nil {
		logb = &bytes.Buffer{}
		c.logs[n.name] = logb
	}
	c.mu.Unlock()
	cmd.Stderr = &lockedWriter{mu: &c.mu, w: logb}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("proc: starting %s: %w", n.name, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	lines := make(chan string, want)
	go func() {
		r := bufio.NewReader(out)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			if strings.HasPrefix(line, "listening on ") {
				lines <- line
			}
		}
	}()
	var addrs []string
	bound := time.NewTimer(30 * time.Second)
	defer bound.Stop()
	for len(addrs) < want {
		select {
		case line := <-lines:
			u := strings.Fields(strings.TrimPrefix(line, "listening on "))[0]
			_, hostport, _ := strings.Cut(u, "://")
			addrs = append(addrs, hostport)
		case <-done:
			return fmt.Errorf("proc: serve on %s exited at start: %s", n.name, c.log(n.name))
		case <-bound.C:
			cmd.Process.Kill()
			return fmt.Errorf("proc: serve on %s: no address within 30s: %s", n.name, c.log(n.name))
		case <-ctx.Done():
			cmd.Process.Kill()
			return ctx.Err()
		}
	}
	n.serve, n.served = cmd, done
	if n.addrs == nil {
		n.addrs = addrs
		// Restarts serve on the same addresses, where the proxies point.
		for i, flag := range serveAddrFlags(n.kind) {
			n.serveArgs = replaceFlag(n.serveArgs, flag, addrs[i])
		}
	}
	return nil
}

// start a serve process again after a kill: the port may take a moment
// to be free, so a few tries.
func (c *cluster) restart(ctx context.Context, n *node) error {
	var err error
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for try := 0; try < 25; try++ {
		if err = c.start(ctx, n, len(n.addrs)); err == nil {
			return nil
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return err
}

// kill ends n's serve process with SIGKILL (a crash) and waits for it.
func (n *node) kill() {
	if n.serve == nil {
		return
	}
	n.serve.Process.Kill()
	<-n.served
	n.serve = nil
}

// stop ends n's serve process with SIGTERM, SIGKILL after 10s.
func (n *node) stop() {
	if n.serve == nil {
		return
	}
	n.serve.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.served:
	case <-time.After(10 * time.Second):
		n.serve.Process.Kill()
		<-n.served
	}
	n.serve = nil
}

func serveAddrFlags(kind string) []string {
	if kind == kindHub {
		return []string{"--http", "--https"}
	}
	return []string{"--http"}
}

func replaceFlag(args []string, flag, value string) []string {
	out := append([]string(nil), args...)
	for i := range out[:len(out)-1] {
		if out[i] == flag {
			out[i+1] = value
		}
	}
	return out
}

func (c *cluster) log(name string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := strings.TrimSpace(c.logs[name].String())
	if len(s) > 2000 {
		s = "..." + s[len(s)-2000:]
	}
	return s
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// setup creates the deployment: the cloud with a user per clinic, a
// hub per clinic (registered on the cloud, its upstream through the
// cloud's proxy), devices paired with their hub through the hub's
// proxy, some also with the cloud. Every node is logged in and has
// synced once before the workload starts.
func (r *runner) setup(ctx context.Context) error {
	c := r.c
	newNode := func(name, kind, clinic string) *node {
		n := &node{name: name, kind: kind, clinic: clinic, dir: filepath.Join(c.root, name)}
		if off := r.plan.Skew[name]; off != 0 {
			n.env = append(n.env, fmt.Sprintf("CLINICSYNC_TEST_CLOCK_OFFSET=%dms", off))
		}
		if r.opts.BreakMerge {
			n.env = append(n.env, "CLINICSYNC_TEST_BREAK=merge")
		}
		c.all = append(c.all, n)
		return n
	}
	c.cloud = newNode("cloud", kindCloud, "")
	initArgs := []string{"init", "--data", c.cloud.dir, "--kind", kindCloud}
	for k := 1; k <= r.opts.Clinics; k++ {
		initArgs = append(initArgs, "--clinic", clinicID(k))
	}
	if _, err := c.cli(ctx, c.cloud, initArgs...); err != nil {
		return err
	}
	for k := 1; k <= r.opts.Clinics; k++ {
		if _, err := c.cli(ctx, c.cloud, "user", "add", "--data", c.cloud.dir, "--email", email(k), "--password", password, "--clinic", clinicID(k)); err != nil {
			return err
		}
	}
	c.cloud.serveArgs = []string{"serve", "--data", c.cloud.dir, "--http", "127.0.0.1:0"}
	if err := c.start(ctx, c.cloud, 1); err != nil {
		return err
	}
	cloudProxy, err := r.proxy(c.cloud, c.cloud.addrs[0])
	if err != nil {
		return err
	}
	for k := 1; k <= r.opts.Clinics; k++ {
		hub := newNode(fmt.Sprintf("hub%d", k), kindHub, clinicID(k))
		c.hubs = append(c.hubs, hub)
		var dev struct {
			APIKey string `json:"api_key"`
		}
		if err := c.cliJSON(ctx, c.cloud, &dev, "device", "add", "--data", c.cloud.dir, "--name", hub.name, "--clinic", hub.clinic); err != nil {
			return err
		}
		if _, err := c.cli(ctx, hub, "init", "--data", hub.dir, "--kind", kindHub, "--clinic", hub.clinic); err != nil {
			return err
		}
		hub.serveArgs = []string{"serve", "--data", hub.dir, "--http", "127.0.0.1:0", "--https", "127.0.0.1:0",
			"--discovery", "off", "--upstream-interval", "1s"}
		if err := c.start(ctx, hub, 2); err != nil {
			return err
		}
		if _, err := c.cli(ctx, hub, "peer", "add", "--data", hub.dir, "--type", "cloud_server",
			"--url", "http://"+cloudProxy.Addr(), "--api-key", dev.APIKey); err != nil {
			return err
		}
		hubProxy, err := r.proxy(hub, hub.addrs[1])
		if err != nil {
			return err
		}
		out, err := c.cli(ctx, hub, "pairing", "--data", hub.dir)
		if err != nil {
			return err
		}
		// Devices pair over TLS, through the proxy; the pinned
		// certificate goes through it unchanged.
		var p actors.Pairing
		if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &p); err != nil {
			return fmt.Errorf("proc: %s's pairing string %q: %w", hub.name, out, err)
		}
		p.HTTPS, p.RPC, p.Disc = "https://"+hubProxy.Addr(), "", ""
		for d := 1; d <= r.opts.Devices; d++ {
			dev := newNode(fmt.Sprintf("dev%d.%d", k, d), kindMobile, hub.clinic)
			dev.email = email(k)
			c.devices = append(c.devices, dev)
			if _, err := c.cli(ctx, dev, "init", "--data", dev.dir, "--kind", kindMobile); err != nil {
				return err
			}
			var peer struct {
				ID string `json:"peer_id"`
			}
			if err := c.cliJSON(ctx, dev, &peer, "peer", "add", "--data", dev.dir, "--type", "sync_hub", "--pairing", p.String()); err != nil {
				return err
			}
			dev.hubPeer = peer.ID
			if r.plan.CloudDevices[dev.name] {
				if err := c.cliJSON(ctx, dev, &peer, "peer", "add", "--data", dev.dir, "--type", "cloud_server", "--url", "http://"+cloudProxy.Addr()); err != nil {
					return err
				}
				dev.cloudPeer = peer.ID
			}
		}
	}
	// The hubs learn their users from the cloud on their own; a login
	// waits for that (bounded).
	for _, dev := range c.devices {
		for _, peer := range []string{dev.cloudPeer, dev.hubPeer} {
			if peer == "" {
				continue
			}
			if err := c.login(ctx, dev, peer); err != nil {
				return err
			}
		}
	}
	return nil
}

// login logs a device in with a peer, trying again (bounded) while the
// peer does not know the user yet.
func (c *cluster) login(ctx context.Context, dev *node, peer string) error {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	var err error
	for try := 0; try < 120; try++ {
		if _, err = c.cli(ctx, dev, "login", "--data", dev.dir, "--email", dev.email, "--password", password, "--peer", peer, "--timeout", "20s"); err == nil {
			return nil
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return fmt.Errorf("proc: %s could not log in with %s within 120 tries: %w", dev.name, peer, err)
}

func clinicID(k int) string { return fmt.Sprintf("c%d", k) }
func email(k int) string    { return fmt.Sprintf("nurse@c%d.example.org", k) }
