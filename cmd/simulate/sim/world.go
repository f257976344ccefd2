package sim

import (
	"container/heap"
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"os"
	"time"

	"github.com/clinicsync/clinicsync/actors"
	"github.com/clinicsync/clinicsync/kv"
)

// Phases of a run. Faults strike only while the clinics work.
const (
	phaseSetup  = iota // pairing and first syncs
	phaseRun           // clinic days, with faults
	phaseSettle        // faults healed, every node syncs until quiet
)

// Seed streams: each concern draws from its own stream of the seed, so
// that, say, the plan does not shift when the workload changes.
const (
	streamPlan uint64 = iota + 0x5151
	streamWork
	streamFault
	streamNet
)

// epoch is day 0, midnight UTC: a Monday.
var epoch = time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC).UnixMilli()

const (
	hourMs = int64(time.Hour / time.Millisecond)
	dayMs  = 24 * hourMs
	minMs  = int64(time.Minute / time.Millisecond)
	openAt = 8 * hourMs  // clinics open at 08:00
	shutAt = 17 * hourMs // and close at 17:00
)

// World is one whole deployment in one goroutine: the cloud, the hubs
// and devices, the virtual network between them, the clock, the
// workload and faults, and the model the checks compare against.
// Everything that happens is an event from a queue ordered by virtual
// time and sequence number, so a seed replays exactly.
type World struct {
	opts  Options
	plan  Plan
	clock *Clock
	base  int64 // world ms of day 0 midnight

	work, fault, netRng *rand.Rand

	net     *actors.MemNet
	nodes   map[string]*node
	all     []*node // cloud, then each clinic's hub and devices
	cloud   *node
	hubs    []*node
	devices []*node
	clinics []string

	queue  eventQueue
	seq    uint64
	phase  int
	runEnd int64 // world ms when the clinic days (and their nights) are over

	// Network state mirrored from MemNet, and the one-way and uplink
	// cuts that the hook applies.
	down   map[string]bool   // node cut off both ways (MemNet.Partition)
	oneway map[string]string // node → "in" (messages toward it lost) or "out"
	uplink map[string]bool   // hub → its link with the cloud is down
	calls  []*call           // calls in progress, innermost last
	depth  int               // nesting of delayed calls

	model *Model
	merge kv.Merge

	cloudTombs map[key]bool // rows the cloud holds as deleted
	// createdBy is, per server, the callers whose push created a row
	// there (rows served back to them are updated, never created).
	createdBy map[string]map[key]map[string]bool
	// late are pushes held back, delivered after a newer push of the
	// same client to the same server (or at the heal).
	late []*latePush

	// panicked is a panic raised in an engine's call, raised again by
	// the simulator's goroutine.
	panicked any

	// httpH is the cloud's HTTP handler for WatermelonDB devices, made
	// for the cloud's store at restart httpEpoch.
	httpH     *actors.CloudHandler
	httpEpoch int
	wdbs      []*node // the WatermelonDB devices (also in devices)

	stats      Stats
	violations []Violation
	trace      hash.Hash // the event trace
	replicas   hash.Hash // every replica at the end
	traceOut   io.Writer
	tmp        string // bolt root to remove
}

// event is something due at a virtual time.
type event struct {
	at  int64
	seq uint64
	fn  func()
}

type eventQueue []*event

func (q eventQueue) Len() int { return len(q) }
func (q eventQueue) Less(i, j int) bool {
	return q[i].at < q[j].at || q[i].at == q[j].at && q[i].seq < q[j].seq
}
func (q eventQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *eventQueue) Push(x any)   { *q = append(*q, x.(*event)) }
func (q *eventQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

// at schedules fn at world time t.
func (w *World) at(t int64, fn func()) {
	w.seq++
	heap.Push(&w.queue, &event{at: t, seq: w.seq, fn: fn})
}

// step runs the next event due no later than limit; false if none.
func (w *World) step(limit int64) bool {
	if len(w.queue) == 0 || w.queue[0].at > limit {
		return false
	}
	ev := heap.Pop(&w.queue).(*event)
	w.clock.advanceTo(ev.at)
	ev.fn()
	return true
}

func newWorld(o Options) (*World, error) {
	if err := o.Check(); err != nil {
		return nil, err
	}
	w := &World{
		opts:       o,
		clock:      &Clock{now: epoch + 6*hourMs},
		base:       epoch,
		work:       rand.New(rand.NewPCG(o.Seed, streamWork)),
		fault:      rand.New(rand.NewPCG(o.Seed, streamFault)),
		netRng:     rand.New(rand.NewPCG(o.Seed, streamNet)),
		net:        actors.NewMemNet(),
		nodes:      map[string]*node{},
		down:       map[string]bool{},
		oneway:     map[string]string{},
		uplink:     map[string]bool{},
		model:      newModel(),
		cloudTombs: map[key]bool{},
		createdBy:  map[string]map[key]map[string]bool{},
		trace:      sha256.New(),
		replicas:   sha256.New(),
		stats:      newStats(),
	}
	w.plan = derivePlan(o, rand.New(rand.NewPCG(o.Seed, streamPlan)))
	w.traceOut = w.trace
	if o.Trace != nil {
		w.traceOut = io.MultiWriter(w.trace, o.Trace)
	}
	w.merge = plantedMerge(o)
	root := ""
	if o.Store == StoreBolt {
		root = o.Dir
		if root == "" {
			tmp, err := os.MkdirTemp("", "clinicsync-sim-")
			if err != nil {
				return nil, err
			}
			w.tmp, root = tmp, tmp
		}
		root = fmt.Sprintf("%s/seed-%d", root, o.Seed)
	}
	if err := w.build(root); err != nil {
		w.close()
		return nil, err
	}
	w.net.SetHook(w.hook)
	return w, nil
}

// build creates the nodes and pairs them: hubs with the cloud, devices
// with their hub, the cloud, or both.
func (w *World) build(root string) error {
	add := func(name, kind, clinic string) (*node, error) {
		n, err := newNode(name, kind, clinic, &nodeClock{world: w.clock, offset: w.plan.Skew[name]}, root)
		if err != nil {
			return nil, err
		}
		if kind != kindMobile {
			n.server = &actors.Server{Policy: w.plan.Policy[name], Relay: kind == kindHub, PageSize: w.plan.PageSize[name]}
			w.net.Listen(name, n.server)
		}
		if err := n.open(); err != nil {
			return nil, err
		}
		if kind != kindCloud {
			if err := w.startEngine(n); err != nil {
				n.close()
				return nil, err
			}
		}
		w.nodes[name] = n
		w.all = append(w.all, n)
		return n, nil
	}
	pair := func(n *node, peers ...string) error {
		for _, p := range peers {
			typ := kv.PeerHub
			if p == cloudName {
				typ = kv.PeerCloud
			}
			if err := n.store.PutPeer(kv.Peer{ID: p, Type: typ, Name: p}); err != nil {
				return err
			}
			n.peers = append(n.peers, p)
			w.clock.advance(1) // peers keep the order they were added in
		}
		return nil
	}
	var err error
	if w.cloud, err = add(cloudName, kindCloud, ""); err != nil {
		return err
	}
	roles := []string{roleDesk, roleTriage, roleDoctor, rolePharmacy}
	for c := 1; c <= w.opts.Clinics; c++ {
		clinic := clinicID(c)
		w.clinics = append(w.clinics, clinic)
		h, err := add(hubName(c), kindHub, clinic)
		if err != nil {
			return err
		}
		if err := pair(h, cloudName); err != nil {
			return err
		}
		w.hubs = append(w.hubs, h)
		for d := 1; d <= w.opts.Devices; d++ {
			name := deviceName(c, d)
			if w.plan.WDB[name] {
				// A WatermelonDB app: no store of ours, its own database.
				n := &node{name: name, kind: kindMobile, clinic: clinic, role: roles[(d-1)%len(roles)],
					user: "user." + name, clock: &nodeClock{world: w.clock, offset: w.plan.Skew[name]},
					maxPull: map[string]int64{}, peers: []string{cloudName}, wdb: newWDBClient(), shown: map[colKey]int{}}
				w.nodes[name] = n
				w.devices = append(w.devices, n)
				w.wdbs = append(w.wdbs, n)
				continue
			}
			n, err := add(name, kindMobile, clinic)
			if err != nil {
				return err
			}
			n.role = roles[(d-1)%len(roles)]
			n.user = fmt.Sprintf("user.%s", n.name)
			switch w.plan.Route[n.name] {
			case "cloud":
				err = pair(n, cloudName)
			case "switch":
				err = pair(n, h.name, cloudName)
				n.selected = h.name
			default:
				err = pair(n, h.name)
			}
			if err != nil {
				return err
			}
			w.devices = append(w.devices, n)
		}
	}
	return nil
}

func (w *World) close() {
	for _, n := range w.all {
		n.close()
	}
	if w.tmp != "" {
		os.RemoveAll(w.tmp)
	}
}

// tracef adds a line to the event trace (hashed into the digest).
func (w *World) tracef(format string, a ...any) {
	fmt.Fprintf(w.traceOut, "%s ", clockText(w.clock.now-w.base))
	fmt.Fprintf(w.traceOut, format, a...)
	io.WriteString(w.traceOut, "\n")
	w.stats.TraceLines++
}

// run plays the whole simulation: setup, the clinic days with faults,
// the heal, the settling syncs, and the final checks.
func (w *World) run() {
	w.phase = phaseSetup
	w.seedCloud()
	for _, h := range w.hubs {
		w.syncNode(h, actors.AfterLogin, 0, "setup")
	}
	for _, d := range w.devices {
		for _, p := range d.peers {
			// A device paired with both its hub and the cloud logs in
			// through each once, so it holds a cursor for both.
			d.selected = p
			w.syncNode(d, actors.AfterLogin, 0, "setup")
		}
		if w.plan.Route[d.name] == "switch" {
			d.selected = d.peers[0]
		} else {
			d.selected = ""
		}
	}
	w.phase = phaseRun
	for _, n := range w.all {
		if w.plan.Skew[n.name] != 0 {
			w.stats.fault(FaultSkew, n.name, w.clock.now)
		}
	}
	w.runEnd = w.base + int64(w.opts.Days-1)*dayMs + shutAt + 2*hourMs
	w.scheduleWorkload()
	w.scheduleFaults()
	for w.step(w.runEnd) {
	}
	w.clock.advanceTo(w.runEnd)
	w.heal()
	w.settle()
	w.checkFinal()
}

// dayStart returns the world ms of midnight of a day.
func (w *World) dayStart(day int) int64 { return w.base + int64(day)*dayMs }

// open reports whether the clinics are open at world time t, and which
// day it is.
func (w *World) open(t int64) (int, bool) {
	day := int((t - w.base) / dayMs)
	in := (t - w.base) % dayMs
	return day, day < w.opts.Days && in >= openAt && in < shutAt
}
