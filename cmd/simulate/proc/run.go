package proc

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/clinicsync/clinicsync/cmd/simulate/sim"
)

// Event is one fault injected, at a time in ms from the workload's
// start: the schedule a report shows.
type Event struct {
	AtMs   int64  `json:"at_ms"`
	Node   string `json:"node"` // the node, or the proxy in front of it
	Kind   string `json:"kind"`
	Detail string `json:"detail,omitempty"`
}

// runner is one run: the deployment, the model, what happened.
type runner struct {
	opts    Options
	plan    Plan
	c       *cluster
	model   *model
	start   time.Time
	proxies []*Proxy

	mu         sync.Mutex // guards events, violations and counts
	events     []Event
	violations []sim.Violation
	counts     map[string]int
}

// Violation kinds of process mode beyond the simulator's.
const kindEngineError = sim.VEngineError

// settleRounds bounds the settling after the heal.
const settleRounds = 8

// Run sets up the deployment, drives the workload with faults, heals,
// settles, stops the processes and checks the stores. An error is a
// run that could not be carried out (setup failed); broken invariants
// are in the report.
func Run(ctx context.Context, o Options) (*Report, error) {
	if err := o.Check(); err != nil {
		return nil, err
	}
	wall := time.Now()
	root := o.Dir
	if root == "" {
		var err error
		if root, err = os.MkdirTemp("", "clinicsync-proc-"); err != nil {
			return nil, fmt.Errorf("proc: %w", err)
		}
	}
	r := &runner{opts: o, c: &cluster{bin: o.NodeBin, root: root, logs: map[string]*bytes.Buffer{}}, model: newModel(), counts: map[string]int{}}
	var names, served, devices []string
	names, served = append(names, "cloud"), append(served, "cloud")
	for k := 1; k <= o.Clinics; k++ {
		hub := fmt.Sprintf("hub%d", k)
		names, served = append(names, hub), append(served, hub)
		for d := 1; d <= o.Devices; d++ {
			names, devices = append(names, fmt.Sprintf("dev%d.%d", k, d)), append(devices, fmt.Sprintf("dev%d.%d", k, d))
		}
	}
	r.plan = plan(o, names, served, devices)
	r.start = time.Now() // proxies count from here until the workload starts
	defer func() {
		for _, p := range r.proxies {
			p.Close()
		}
		for _, n := range r.c.all {
			n.kill()
		}
	}()
	if err := r.setup(ctx); err != nil {
		return nil, fmt.Errorf("proc: setting up the deployment in %s: %w", root, err)
	}
	setupSeconds := time.Since(wall).Seconds()

	// The workload, with the faults.
	r.start = time.Now()
	for _, p := range r.proxies {
		p.Plan(r.start, r.plan.Rates, r.plan.Intervals[p.Name])
	}
	for name, off := range r.plan.Skew {
		r.event(name, "skew", fmt.Sprintf("clock offset %dms", off))
	}
	work, stopWork := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for i, dev := range r.c.devices {
		wg.Add(1)
		go func() { defer wg.Done(); r.device(work, dev, i) }()
	}
	wg.Add(1)
	go func() { defer wg.Done(); r.admin(work) }()
	faultsDone := make(chan struct{})
	go func() { defer close(faultsDone); r.killer(ctx) }()
	wg.Wait()
	stopWork()
	<-faultsDone // every planned kill is carried out
	workSeconds := time.Since(r.start).Seconds()

	// Heal, settle, stop.
	for _, p := range r.proxies {
		p.Heal()
	}
	r.event("all", "heal", "every proxy faithful, every serve process up")
	for _, n := range slices.Concat([]*node{r.c.cloud}, r.c.hubs) {
		if n.serve == nil {
			if err := r.c.restart(ctx, n); err != nil {
				return nil, err
			}
		}
	}
	rounds := r.settle(ctx)
	for _, n := range r.c.all {
		n.stop()
	}
	rep := &Report{Seed: o.Seed, Options: o, Plan: r.plan, Replay: o.ReplayCommand(), Dir: root,
		SetupSeconds: setupSeconds, WorkloadSeconds: workSeconds, SettleRounds: rounds}
	r.check(rep)
	r.mu.Lock()
	rep.Schedule, rep.Violations, rep.Counts = r.events, r.violations, r.counts
	r.mu.Unlock()
	slices.SortStableFunc(rep.Schedule, func(a, b Event) int { return cmp.Compare(a.AtMs, b.AtMs) })
	rep.Creates, rep.Updates, rep.Deletes = r.model.creates, r.model.updates, r.model.deletes
	rep.Faults = map[string]int{}
	for _, e := range rep.Schedule {
		if e.Kind != "heal" {
			rep.Faults[e.Kind]++
		}
	}
	rep.WallSeconds = time.Since(wall).Seconds()
	if !rep.OK() {
		for _, n := range r.c.all {
			if s := r.c.log(n.name); s != "" && n.kind != kindMobile {
				rep.Logs = append(rep.Logs, n.name+": "+s)
			}
		}
	} else if o.Dir == "" {
		os.RemoveAll(root)
		rep.Dir = ""
	}
	return rep, nil
}

// now is the time since the workload started, in ms.
func (r *runner) now() int64 { return time.Since(r.start).Milliseconds() }

func (r *runner) event(node, kind, detail string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, Event{AtMs: r.now(), Node: node, Kind: kind, Detail: detail})
}

func (r *runner) count(what string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.counts[what]++
}

func (r *runner) violate(kind, node, row, format string, a ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, v := range r.violations {
		if v.Kind == kind {
			n++
		}
	}
	if n >= 50 {
		return
	}
	r.violations = append(r.violations, sim.Violation{Kind: kind, Node: node, Row: row,
		At: fmt.Sprintf("%dms", r.now()), Detail: fmt.Sprintf(format, a...)})
}

// proxy puts a fault-injecting proxy in front of one of n's listeners.
func (r *runner) proxy(n *node, target string) (*Proxy, error) {
	p, err := NewProxy(n.name, target, r.opts.Seed^uint64(len(r.proxies)+1)<<32, r.start, func(e Event) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.events = append(r.events, e)
	})
	if err != nil {
		return nil, err
	}
	r.proxies = append(r.proxies, p)
	return p, nil
}

// killer carries out the planned kills of serve processes: kill -9 at
// the planned time (whatever sync is in flight there, served or
// upstream), restart on the same addresses when the downtime is over.
func (r *runner) killer(ctx context.Context) {
	nodes := map[string]*node{"cloud": r.c.cloud}
	for _, h := range r.c.hubs {
		nodes[h.name] = h
	}
	wait := func(at int64) bool {
		t := time.NewTimer(time.Duration(at-r.now()) * time.Millisecond)
		defer t.Stop()
		select {
		case <-t.C:
			return true
		case <-ctx.Done():
			return false
		}
	}
	for _, k := range r.plan.Kills {
		if !wait(k.AtMs) {
			return
		}
		n := nodes[k.Node]
		n.ops.Lock()
		n.kill()
		r.event(n.name, "kill", fmt.Sprintf("serve killed (-9), down %dms", k.DownMs))
		wait(r.now() + k.DownMs)
		err := r.c.restart(context.Background(), n)
		n.ops.Unlock()
		if err != nil {
			r.violate(kindEngineError, n.name, "", "restarting serve: %v", err)
			return
		}
		r.event(n.name, "restart", "serve restarted on the same addresses")
	}
}

// settle lets every device sync with its hub, every hub with the
// cloud and the devices again, round after round, until a round where
// every sync succeeded and moved nothing (bounded). (A device's sync
// with another peer than its last pulls everything again, so the
// settling stays with the hubs.) It
// returns the rounds taken (-1: not quiet within the bound, a
// liveness violation).
func (r *runner) settle(ctx context.Context) int {
	type syncOut struct {
		Outcome string
		Pulled  int
		Pushed  int
		Error   *string
	}
	for round := 1; round <= settleRounds; round++ {
		quiet := true
		syncOne := func(n *node, peer string) {
			var out syncOut
			args := []string{"sync", "--data", n.dir, "--timeout", "30s"}
			if peer != "" {
				args = append(args, "--peer", peer)
			}
			if err := r.c.cliJSON(ctx, n, &out, args...); err != nil || out.Outcome != "ok" || out.Pulled+out.Pushed > 0 {
				quiet = false
			}
		}
		for _, d := range r.c.devices {
			syncOne(d, d.hubPeer)
		}
		for _, h := range r.c.hubs {
			syncOne(h, "")
		}
		for _, d := range r.c.devices {
			syncOne(d, d.hubPeer)
		}
		if quiet {
			return round
		}
	}
	r.violate(sim.VLiveness, "", "", "no quiet round within %d settling rounds", settleRounds)
	return -1
}

// Report is a process-mode run's result.
type Report struct {
	Seed            uint64          `json:"seed"`
	Options         Options         `json:"options"`
	Plan            Plan            `json:"plan"`
	Schedule        []Event         `json:"schedule"`
	Faults          map[string]int  `json:"faults"` // injected, by kind
	Counts          map[string]int  `json:"counts"`
	Creates         int             `json:"creates"`
	Updates         int             `json:"updates"`
	Deletes         int             `json:"deletes"`
	RowsPerNode     map[string]int  `json:"rows_per_node"`
	Conflicts       int             `json:"conflicts_logged"`
	SettleRounds    int             `json:"settle_rounds"`
	Violations      []sim.Violation `json:"violations"`
	Replay          string          `json:"replay"`
	Dir             string          `json:"dir,omitempty"` // kept when the run failed
	Logs            []string        `json:"logs,omitempty"`
	SetupSeconds    float64         `json:"setup_seconds"`
	WorkloadSeconds float64         `json:"workload_seconds"`
	WallSeconds     float64         `json:"wall_seconds"`
}

// OK reports whether every invariant held.
func (rep *Report) OK() bool { return len(rep.Violations) == 0 }

// JSON is the report as indented JSON.
func (rep *Report) JSON() []byte {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		panic(fmt.Sprintf("proc: encoding a report: %v", err))
	}
	return append(b, '\n')
}
