package actors_test

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"

	"github.com/clinicsync/clinicsync/actors"
	"github.com/clinicsync/clinicsync/codec"
	"github.com/clinicsync/clinicsync/codec/schema"
	"github.com/clinicsync/clinicsync/fsm"
	"github.com/clinicsync/clinicsync/kv"
	pb "github.com/clinicsync/clinicsync/proto"
)

// TestSync runs the protocol scripts under testdata/sync: small worlds
// of cloud, hubs and devices on in-memory stores and network, driven
// step by step. Regenerate the traces with -rewrite and read the diff.
func TestSync(t *testing.T) {
	datadriven.Walk(t, "testdata/sync", func(t *testing.T, path string) {
		w := newWorld(t)
		datadriven.RunTest(t, path, w.run)
	})
}

type world struct {
	t     *testing.T
	clock *kv.ManualClock
	net   *actors.MemNet
	nodes map[string]*node
	// faults are one-shot: the next matching call after skip others
	// gets the fault.
	faults map[actors.Call]*fault
	// duringPush runs once when the named node next pushes, before the
	// push reaches the server; its output joins the sync's trace.
	duringPush map[string]func() string
	trace      []string
}

type fault struct {
	fault actors.Fault
	skip  int // matching calls let through first
}

type node struct {
	name     string
	kind     string
	be       kv.Backend
	opts     kv.Options
	store    *kv.Store
	machine  *fsm.Machine
	server   *actors.Server
	caller   fsm.Caller
	upstream []string
}

func newWorld(t *testing.T) *world {
	w := &world{t: t, clock: kv.NewManualClock(time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)), net: actors.NewMemNet(),
		nodes: map[string]*node{}, faults: map[actors.Call]*fault{}, duringPush: map[string]func() string{}}
	w.net.SetHook(func(c actors.Call) actors.Fault {
		c.Request = nil // faults match on who calls whom for what
		if c.Op == "push" {
			if fn, ok := w.duringPush[c.From]; ok {
				delete(w.duringPush, c.From)
				out := fn()
				w.trace = append(w.trace, "during push: "+strings.ReplaceAll(out, "\n", "\n  "))
			}
		}
		if f, ok := w.faults[c]; ok {
			if f.skip > 0 {
				f.skip--
				return actors.Deliver
			}
			delete(w.faults, c)
			return f.fault
		}
		return actors.Deliver
	})
	return w
}

func (w *world) node(td *datadriven.TestData, i int) *node {
	if len(td.CmdArgs) <= i {
		w.t.Fatalf("%s: missing node name", td.Pos)
	}
	n, ok := w.nodes[td.CmdArgs[i].Key]
	if !ok {
		w.t.Fatalf("%s: no node %q", td.Pos, td.CmdArgs[i].Key)
	}
	return n
}

func arg(td *datadriven.TestData, key string) (string, bool) {
	for _, a := range td.CmdArgs {
		if a.Key == key && len(a.Vals) > 0 {
			return strings.Join(a.Vals, ","), true
		}
	}
	return "", false
}

func (w *world) run(t *testing.T, td *datadriven.TestData) string {
	switch td.Cmd {
	case "node":
		return w.addNode(td)
	case "write":
		return w.write(w.node(td, 0), td.CmdArgs[1].Key, td.CmdArgs[2].Key, td.CmdArgs[3:])
	case "delete":
		n := w.node(td, 0)
		if err := n.store.Delete(td.CmdArgs[1].Key, td.CmdArgs[2].Key); err != nil {
			return "error: " + err.Error()
		}
		return "ok"
	case "during-push":
		n := w.node(td, 0)
		inner := &datadriven.TestData{Pos: td.Pos, Cmd: td.CmdArgs[1].Key, CmdArgs: td.CmdArgs[2:]}
		w.duringPush[n.name] = func() string { return inner.FullCmd() + ": " + w.run(t, inner) }
		return "ok"
	case "fault":
		n := w.node(td, 0)
		to, _ := arg(td, "to")
		op, _ := arg(td, "op")
		what, _ := arg(td, "fault")
		f := &fault{fault: map[string]actors.Fault{"drop-request": actors.DropRequest, "drop-response": actors.DropResponse}[what]}
		if skip, ok := arg(td, "skip"); ok {
			f.skip, _ = strconv.Atoi(skip)
		}
		w.faults[actors.Call{From: n.name, To: to, Op: op}] = f
		return "ok"
	case "partition":
		w.net.Partition(w.node(td, 0).name, true)
		return "ok"
	case "heal":
		w.net.Heal()
		return "ok"
	case "tick":
		d, err := time.ParseDuration(td.CmdArgs[0].Key)
		if err != nil {
			t.Fatal(err)
		}
		w.clock.Add(d)
		return "ok"
	case "sync":
		return w.sync(td)
	case "crash":
		n := w.node(td, 0)
		s, err := kv.New(n.be, n.opts)
		if err != nil {
			t.Fatal(err)
		}
		n.store, n.machine = s, fsm.NewMachine()
		if n.server != nil {
			n.server.Store = s
		}
		return "restarted from store"
	case "dump":
		return w.dump(w.node(td, 0), td.CmdArgs[1:])
	case "peers":
		return w.peers(w.node(td, 0))
	case "conflicts":
		return w.conflicts(w.node(td, 0))
	}
	t.Fatalf("%s: unknown command %s", td.Pos, td.Cmd)
	return ""
}

func (w *world) addNode(td *datadriven.TestData) string {
	name := td.CmdArgs[0].Key
	kind, _ := arg(td, "kind")
	n := &node{name: name, kind: kind, be: kv.NewMemory(), machine: fsm.NewMachine()}
	n.opts = kv.Options{Clock: w.clock, NodeID: name, KeepTombstones: kind != "mobile", Root: kind == "cloud"}
	if skew, ok := arg(td, "skew"); ok {
		d, err := time.ParseDuration(skew)
		if err != nil {
			w.t.Fatalf("%s: skew=%q: %v", td.Pos, skew, err)
		}
		n.opts.Clock = skewed{w.clock, d}
	}
	s, err := kv.New(n.be, n.opts)
	if err != nil {
		w.t.Fatal(err)
	}
	n.store = s
	n.caller = fsm.Caller{ID: name, Hub: kind == "hub"}
	if c, ok := arg(td, "clinics"); ok {
		n.caller.Clinics = strings.Split(c, ",")
	}
	if kind != "mobile" {
		p, _ := arg(td, "policy")
		policy, err := fsm.ParsePolicy(p)
		if err != nil {
			w.t.Fatal(err)
		}
		n.server = &actors.Server{Store: s, Policy: policy, Relay: kind == "hub"}
		if size, ok := arg(td, "page"); ok {
			n.server.PageSize, _ = strconv.Atoi(size)
		}
		w.net.Listen(name, n.server)
	}
	if ups, ok := arg(td, "upstream"); ok {
		for _, up := range strings.Split(ups, ",") {
			u, ok := w.nodes[up]
			if !ok {
				w.t.Fatalf("%s: no upstream %s", td.Pos, up)
			}
			typ := map[string]string{"cloud": kv.PeerCloud, "hub": kv.PeerHub}[u.kind]
			if err := s.PutPeer(kv.Peer{ID: up, Type: typ}); err != nil {
				w.t.Fatal(err)
			}
			w.clock.Add(time.Millisecond) // peers keep the order they were added in
			n.upstream = append(n.upstream, up)
		}
	}
	w.nodes[name] = n
	return "ok"
}

// write is a local write. Required columns missing on create get a
// filler value, so scripts name only the columns they care about.
func (w *world) write(n *node, table, id string, args []datadriven.CmdArg) string {
	t, ok := n.store.Catalog().Table(table)
	if !ok {
		_, err := n.store.Put(table, id, nil)
		return "error: " + err.Error()
	}
	cols := map[string]codec.Value{}
	for _, a := range args {
		col, ok := t.Column(a.Key)
		if !ok {
			cols[a.Key] = codec.String(strings.Join(a.Vals, ","))
			continue
		}
		v, err := codec.ParseText(col, strings.Join(a.Vals, ","))
		if err != nil {
			return "error: " + err.Error()
		}
		cols[a.Key] = v
	}
	if _, err := n.store.Get(table, id); err != nil {
		for _, c := range t.Columns {
			if _, set := cols[c.Name]; !set && !c.Optional && c.Name != "created_at" && c.Name != "updated_at" {
				cols[c.Name] = filler(c)
			}
		}
	}
	r, err := n.store.Put(table, id, cols)
	if err != nil {
		return "error: " + err.Error()
	}
	return fmt.Sprintf("%s/%s %s changed=%s", table, id, r.Status, strings.Join(r.Changed, ","))
}

func filler(c schema.Column) codec.Value {
	switch c.Type {
	case schema.Number:
		return codec.Int(0)
	case schema.Bool:
		return codec.Bool(false)
	case schema.JSON:
		return codec.JSONText("{}")
	case schema.Timestamp:
		return codec.Int(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli())
	case schema.Date:
		return codec.String("2000-01-01")
	case schema.Decimal:
		return codec.String("0")
	}
	return codec.String("")
}

func (w *world) sync(td *datadriven.TestData) string {
	n := w.node(td, 0)
	peers, err := n.store.Peers()
	if err != nil {
		w.t.Fatal(err)
	}
	selected, _ := arg(td, "peer")
	peer, err := actors.ResolvePeer(peers, selected)
	if err != nil {
		return "error: " + err.Error()
	}
	cfg := actors.RunConfig{Store: n.store, Machine: n.machine, Clock: n.opts.Clock, Peer: peer}
	if size, ok := arg(td, "page"); ok {
		cfg.PageSize, _ = strconv.Atoi(size)
	}
	if f, ok := arg(td, "force"); ok {
		cfg.Trigger = map[string]actors.Trigger{"upload": actors.ForceUpload, "download": actors.ForceDownload}[f]
		since, _ := arg(td, "since")
		d, err := time.ParseDuration(since)
		if err != nil {
			w.t.Fatalf("%s: since=%q: %v", td.Pos, since, err)
		}
		cfg.Since = w.clock.Now().Add(-d).UnixMilli()
	}
	tr := w.net.Dial(peer.ID, n.caller)
	outer := w.trace
	w.trace = nil
	defer func() { w.trace = outer }()
	res := actors.NewRun(cfg).Drive(func(s actors.Step) (*pb.PullResponse, *pb.PushResponse, error) {
		ctx := context.Background()
		if s.Pull != nil {
			resp, err := tr.Pull(ctx, s.Pull)
			if err == nil {
				w.trace = append(w.trace, fmt.Sprintf("pull since=%s -> %d records%s", w.rel(s.Pull.LastPulledAt), codec.CountChanges(resp.GetChanges()), more(resp.Continuation)))
			}
			return resp, nil, err
		}
		resp, err := tr.Push(ctx, s.Push)
		if err == nil {
			w.trace = append(w.trace, fmt.Sprintf("push %s -> accepted %d", summary(s.Push.Changes), resp.Accepted))
		}
		return nil, resp, err
	})
	var b strings.Builder
	for _, l := range w.trace {
		b.WriteString(l + "\n")
	}
	fmt.Fprintf(&b, "%s: pulled=%d pushed=%d state=%s", res.Outcome, res.Pulled, res.Pushed, n.machine.State())
	for _, rj := range res.Rejected {
		fmt.Fprintf(&b, "\nrejected %s/%s: %s", rj.Table, rj.Id, rj.Reason)
	}
	if res.Message != "" {
		fmt.Fprintf(&b, "\nmessage: %s", res.Message)
	}
	if res.Err != nil {
		fmt.Fprintf(&b, "\ncause: %v", res.Err)
	}
	return b.String()
}

func more(cont string) string {
	if cont != "" {
		return " (more)"
	}
	return ""
}

// rel prints a cursor as an offset from the world's start, so traces do
// not depend on the epoch.
func (w *world) rel(ms int64) string {
	if ms == 0 {
		return "0"
	}
	base := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC).UnixMilli()
	return fmt.Sprintf("T%+d", ms-base)
}

func summary(b []byte) string {
	var cs pb.Changeset
	if err := codec.Unmarshal(b, &cs); err != nil {
		return err.Error()
	}
	var parts []string
	for _, t := range cs.GetTables() {
		var ids []string
		for _, r := range t.Created {
			ids = append(ids, "+"+r.Id)
		}
		for _, r := range t.Updated {
			s := "~" + r.Id
			if len(r.Changed) > 0 {
				s += "[" + strings.Join(r.Changed, ",") + "]"
			}
			ids = append(ids, s)
		}
		for _, id := range t.Deleted {
			ids = append(ids, "-"+id)
		}
		parts = append(parts, t.Table+"("+strings.Join(ids, " ")+")")
	}
	return strings.Join(parts, " ")
}

// dump prints a node's rows: status, _changed, and the columns that
// differ from the filler values (timestamps left out).
func (w *world) dump(n *node, args []datadriven.CmdArg) string {
	var tables []string
	for _, a := range args {
		tables = append(tables, a.Key)
	}
	if len(tables) == 0 {
		tables = n.store.Catalog().Names()
	}
	var b strings.Builder
	for _, name := range tables {
		t, _ := n.store.Catalog().Table(name)
		err := n.store.Rows(name, func(r kv.Record) error {
			fmt.Fprintf(&b, "%s/%s %s", name, r.ID, r.Status)
			if len(r.Changed) > 0 {
				fmt.Fprintf(&b, " changed=%s", strings.Join(r.Changed, ","))
			}
			if r.Deleted {
				b.WriteString(" tombstone")
			}
			var cols []string
			for _, c := range r.Columns() {
				col, known := t.Column(c)
				if known && (col.Type == schema.Timestamp || r.Cols[c].Equal(filler(col))) {
					continue
				}
				cols = append(cols, c+"="+r.Cols[c].String())
			}
			sort.Strings(cols)
			if len(cols) > 0 {
				b.WriteString(" " + strings.Join(cols, " "))
			}
			b.WriteString("\n")
			return nil
		})
		if err != nil {
			return "error: " + err.Error()
		}
	}
	pending, _ := n.store.PendingCount()
	fmt.Fprintf(&b, "pending=%d", pending)
	return b.String()
}

func (w *world) peers(n *node) string {
	ps, err := n.store.Peers()
	if err != nil {
		return "error: " + err.Error()
	}
	var b strings.Builder
	for _, p := range ps {
		fmt.Fprintf(&b, "%s %s %s cursor=%s last_synced=%s\n", p.ID, p.Type, p.Status, w.rel(p.PullCursor), w.rel(p.LastSyncedAt))
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// conflicts prints a node's conflict log: the values that lost, with
// their versions' writers and times relative to the world's start.
func (w *world) conflicts(n *node) string {
	var b strings.Builder
	err := n.store.Conflicts("", "", func(c kv.Conflict) error {
		if c.Column == "updated_at" {
			return nil // lost with every edit; its value is a time
		}
		fmt.Fprintf(&b, "%s/%s %s=%s by %s at %s lost to %s at %s\n", c.Table, c.ID, c.Column, c.Value,
			c.Version.Node, w.rel(c.Version.Wall), c.Winner.Node, w.rel(c.Winner.Wall))
		return nil
	})
	if err != nil {
		return "error: " + err.Error()
	}
	if b.Len() == 0 {
		return "none"
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// skewed is a node's clock running d ahead of the world's.
type skewed struct {
	base *kv.ManualClock
	d    time.Duration
}

func (c skewed) Now() time.Time { return c.base.Now().Add(c.d) }
