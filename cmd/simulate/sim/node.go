package sim

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/clinicsync/clinicsync/actors"
	"github.com/clinicsync/clinicsync/fsm"
	"github.com/clinicsync/clinicsync/kv"
)

// Node kinds.
const (
	kindCloud  = "cloud"
	kindHub    = "hub"
	kindMobile = "mobile"
)

// node is one replica: a store over a backend that survives crashes,
// on hubs and Go devices a started sync engine over it (which does
// not), and, on the cloud and hubs, the server that answers downstream
// calls.
type node struct {
	name   string
	kind   string
	clinic string // "" on the cloud
	role   string // a device's job in the clinic (workload)
	user   string // the user id of a device's provider

	dir     string // bbolt directory ("" in memory)
	be      kv.Backend
	opts    kv.Options
	store   *kv.Store
	machine *fsm.Machine // the lab's syncs (engine_test.go); the world's go through eng
	eng     *engine
	server  *actors.Server
	clock   *nodeClock

	// peers are the upstreams, in the order they were added;
	// selected is the one a switching device uses now ("" lets peer
	// resolution choose).
	peers    []string
	selected string

	// epoch counts restarts: a sync run started before a crash finds
	// the epoch moved and dies at its next step.
	epoch    int
	inflight *flight

	// The highest serving cursor and pull cursors seen, for the check
	// that cursors never go back.
	maxCursor int64
	maxPull   map[string]int64

	ids int // row id counter

	// wdb is a WatermelonDB device's database (nil on Go nodes, which
	// have a store); shown is, per column it holds, the model's write
	// it shows (what a local update overwrites knowingly).
	wdb   *wdbClient
	shown map[colKey]int
	// conflicts is a WatermelonDB device's log of resolved conflicts.
	conflicts []kv.Conflict
}

// engine is a node's started actors.Node. busy counts the syncs asked
// of it and not answered yet: a crash replaces the engine at once, but
// one that a sync up the stack waits on stops only when it answers.
type engine struct {
	node *actors.Node
	busy int
}

// flight is a sync run in progress on a node.
type flight struct {
	node   *node
	epoch  int
	pushed []key // rows of the acknowledged pushes
	force  bool  // a force upload or download
}

// open creates or reopens the node's store over its backend. In bolt
// mode a restart closes and reopens the file.
func (n *node) open() error {
	if n.dir != "" {
		if n.store != nil {
			if err := n.store.Close(); err != nil {
				return fmt.Errorf("sim: close %s: %w", n.name, err)
			}
		}
		s, err := kv.Open(n.dir, n.opts)
		if err != nil {
			return fmt.Errorf("sim: open %s: %w", n.name, err)
		}
		n.store, n.be = s, s.Backend()
	} else {
		if n.be == nil {
			n.be = kv.NewMemory()
		}
		s, err := kv.New(n.be, n.opts)
		if err != nil {
			return fmt.Errorf("sim: open %s: %w", n.name, err)
		}
		n.store = s
	}
	n.machine = fsm.NewMachine()
	if n.server != nil {
		n.server.Store = n.store
	}
	return nil
}

// restart is a crash: the in-memory machine and any sync in flight are
// lost; the store is reopened from its backend as after a power cut.
func (n *node) restart() error {
	n.epoch++
	n.inflight = nil
	return n.open()
}

func (n *node) close() {
	if n.eng != nil {
		n.eng.node.Stop()
	}
	if n.store != nil {
		n.store.Close()
	}
}

// newNode builds a node; base is the bolt root ("" for memory).
func newNode(name, kind, clinic string, clock *nodeClock, base string) (*node, error) {
	n := &node{name: name, kind: kind, clinic: clinic, clock: clock, maxPull: map[string]int64{}}
	n.opts = kv.Options{Clock: clock, KeepTombstones: kind != kindMobile, Root: kind == kindCloud, NodeID: name}
	if base != "" {
		n.dir = filepath.Join(base, name)
		if err := os.MkdirAll(n.dir, 0o700); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// nextID returns a fresh row id of this node: prefix.node.counter.
func (n *node) nextID(prefix string) string {
	n.ids++
	return fmt.Sprintf("%s.%s.%d", prefix, n.name, n.ids)
}

// caller is how this node presents itself to an upstream: a hub as a
// hub of its clinic; a device to its hub unscoped (the hub holds only
// its clinic), to the cloud scoped to its clinic.
func (n *node) caller(upstream string) fsm.Caller {
	c := fsm.Caller{ID: n.name, Hub: n.kind == kindHub}
	if n.kind == kindHub || upstream == cloudName {
		c.Clinics = []string{n.clinic}
	}
	return c
}
