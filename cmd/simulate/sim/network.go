package sim

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"google.golang.org/protobuf/proto"

	"github.com/clinicsync/clinicsync/actors"
	"github.com/clinicsync/clinicsync/codec"
	"github.com/clinicsync/clinicsync/fsm"
	"github.com/clinicsync/clinicsync/kv"
	pb "github.com/clinicsync/clinicsync/proto"
)

// errCrashed ends the step of a sync whose node crashed meanwhile.
var errCrashed = errors.New("sim: node crashed during the sync")

// call is one pull or push in progress over the virtual network.
type call struct {
	from, to *node
	op       string
	push     *pb.PushRequest
	cut      bool         // the network had the two apart when the call left
	fault    actors.Fault // what the hook decided
	handled  bool         // the server processed the request
	// crashServer restarts the server after it handled the call and
	// before its answer leaves.
	crashServer bool
}

// syncNode runs one sync of n with its current peer, through the
// engine's Run procedure over the virtual network, and checks the
// safety invariants around it. A sync requested while n already syncs
// must be skipped by the engine.
func (w *World) syncNode(n *node, trigger actors.Trigger, since int64, why string) actors.Result {
	peers, err := n.store.Peers()
	if err != nil {
		w.violate(VEngineError, n.name, "", "reading peers: %v", err)
		return actors.Result{Outcome: actors.OutcomeError, Err: err}
	}
	peer, err := actors.ResolvePeer(peers, n.selected)
	if err != nil {
		w.violate(VEngineError, n.name, "", "peer resolution: %v", err)
		return actors.Result{Outcome: actors.OutcomeError, Err: err}
	}
	srv := w.nodes[peer.ID]
	f := &flight{node: n, epoch: n.epoch}
	concurrent := n.inflight != nil
	if !concurrent {
		n.inflight = f
	}
	started := w.clock.now
	tr := w.net.Dial(peer.ID, n.caller(peer.ID))
	run := actors.NewRun(actors.RunConfig{
		Store: n.store, Machine: n.machine, Clock: n.clock, Peer: peer,
		Trigger: trigger, Since: since, PageSize: w.plan.PageSize[n.name], Merge: w.countingMerge(w.merge),
	})
	res := run.Drive(func(s actors.Step) (*pb.PullResponse, *pb.PushResponse, error) {
		return w.send(f, srv, tr, s)
	})
	if n.inflight == f {
		n.inflight = nil
	}
	elapsed := w.clock.now - started
	w.stats.sync(trigger, res.Outcome, elapsed)
	if concurrent && res.Outcome != actors.OutcomeSkipped {
		w.violate(VConcurrent, n.name, "", "a %s sync (%s) ran while another sync of the node was in flight: outcome %s", trigger, why, res.Outcome)
	}
	if !concurrent && res.Outcome == actors.OutcomeSkipped && n.epoch == f.epoch {
		w.violate(VEngineError, n.name, "", "a %s sync (%s) was skipped although none was in flight", trigger, why)
	}
	msg := ""
	if res.Err != nil && !errors.Is(res.Err, errCrashed) && !errors.Is(res.Err, actors.ErrUnreachable) &&
		!errors.Is(res.Err, fsm.ErrConflict) && !errors.Is(res.Err, actors.ErrSyncInProgress) {
		w.violate(VEngineError, n.name, "", "%s sync with %s failed: %v", trigger, peer.ID, res.Err)
	}
	switch {
	case res.Outcome != actors.OutcomeError:
	case errors.Is(res.Err, errCrashed):
		msg = " (crashed)"
	case errors.Is(res.Err, actors.ErrUnreachable):
		msg = " (unreachable)"
	case errors.Is(res.Err, fsm.ErrConflict):
		msg = " (conflict)"
	default:
		msg = " (" + res.Message + ")"
	}
	w.tracef("%s sync %s %s via %s -> %s pulled=%d pushed=%d rejected=%d%s", n.name, trigger, why, peer.ID, res.Outcome, res.Pulled, res.Pushed, len(res.Rejected), msg)
	accepted := n.store.Catalog().PushTables(n.kind == kindHub)
	for _, rj := range res.Rejected {
		if trigger == actors.ForceUpload && !slices.Contains(accepted, rj.GetTable()) {
			// A force upload sends every recent row, also of tables the
			// peer never accepts; it changes no sync status, so the
			// rejection is noise, counted apart.
			w.stats.ForceRejected++
			continue
		}
		w.violate(VRejected, n.name, rj.GetTable()+"/"+rj.GetId(), "%s rejected a pushed row: %s", peer.ID, rj.GetReason())
	}
	if n.epoch == f.epoch {
		w.checkCursors(n)
	}
	// A user whose sync with the hub fails moves to the cloud, and back.
	if w.plan.Route[n.name] == "switch" && res.Outcome == actors.OutcomeError && w.phase == phaseRun {
		w.switchPeer(n, "after a failed sync")
	}
	return res
}

// send carries one step of a run over the network, with the faults of
// the plan: the client may crash before the request leaves or after
// the answer arrives (before applying it); the hook decides the rest.
func (w *World) send(f *flight, srv *node, tr actors.Transport, s actors.Step) (*pb.PullResponse, *pb.PushResponse, error) {
	n := f.node
	if n.epoch != f.epoch {
		return nil, nil, errCrashed
	}
	op := "pull"
	if s.Push != nil {
		op = "push"
		w.learnVersions(n, s.Push)
	}
	if w.faulty() && w.chance(w.plan.Crash) {
		w.crash(n, FaultCrash, "before "+op)
		return nil, nil, errCrashed
	}
	c := &call{from: n, to: srv, op: op, push: s.Push}
	w.calls = append(w.calls, c)
	ctx := context.Background()
	var pull *pb.PullResponse
	var push *pb.PushResponse
	var err error
	if s.Pull != nil {
		pull, err = tr.Pull(ctx, s.Pull)
	} else {
		push, err = tr.Push(ctx, s.Push)
	}
	w.calls = w.calls[:len(w.calls)-1]
	if c.handled && s.Push != nil {
		if w.faulty() && w.chance(w.plan.Dup) {
			w.duplicate(c)
		}
		if srv == w.cloud {
			w.checkCloudPush(c)
		}
	}
	if c.handled {
		w.checkCursors(srv)
	}
	if c.crashServer {
		w.crash(srv, FaultCrash, "after handling a "+op+" from "+n.name)
	}
	if n.epoch != f.epoch {
		return nil, nil, errCrashed
	}
	if err == nil && w.faulty() && w.chance(w.plan.Crash) {
		w.crash(n, FaultCrash, "after a "+op+" answer arrived")
		return nil, nil, errCrashed
	}
	return pull, push, err
}

// hook is the MemNet fault hook: it runs when a call leaves, before
// the server sees it. It spends the call's latency, and may lose the
// request or the answer, hold the call while other events run
// (delay), start a second sync on the caller (which must be skipped),
// or crash the server.
func (w *World) hook(ac actors.Call) actors.Fault {
	c := w.calls[len(w.calls)-1]
	if c.from.name != ac.From || c.to.name != ac.To {
		panic(fmt.Sprintf("sim: hook for %s→%s while %s→%s is the innermost call", ac.From, ac.To, c.from.name, c.to.name))
	}
	c.cut = w.down[ac.From] || w.down[ac.To]
	w.clock.advance(w.latency(c))
	fault := actors.Deliver
	if w.faulty() {
		fault = w.networkFault(c)
		if w.chance(w.plan.Concurrent) && c.from.inflight != nil {
			w.stats.fault(FaultConcurrent, w.clock.now)
			w.tracef("fault concurrent: %s sync triggered again during its %s", c.from.name, c.op)
			w.syncNode(c.from, actors.Manual, 0, "second trigger")
		}
		if w.depth < 2 && w.chance(w.plan.Delay) {
			w.delay(c)
		}
		if w.chance(w.plan.Crash / 2) {
			if w.chance(0.5) {
				w.crash(c.to, FaultCrash, "before handling a "+c.op+" from "+c.from.name)
			} else if !c.cut && fault == actors.Deliver {
				fault, c.crashServer = actors.DropResponse, true
			}
		}
	}
	c.fault = fault
	c.handled = !c.cut && fault != actors.DropRequest
	if c.handled && c.push != nil {
		w.countConflicts(c)
	}
	return fault
}

// latency is the virtual time a call takes: a LAN hop to a hub, a WAN
// hop to the cloud, sometimes much slower.
func (w *World) latency(c *call) int64 {
	if c.to.kind == kindHub {
		return 3 + w.netRng.Int64N(40)
	}
	if w.netRng.IntN(50) == 0 {
		return 1000 + w.netRng.Int64N(7000)
	}
	return 40 + w.netRng.Int64N(400)
}

// delay holds a call while up to three other due events run: syncs of
// other nodes, writes (on the caller too: a write during its push),
// faults. It is how messages of different nodes interleave.
func (w *World) delay(c *call) {
	w.stats.fault(FaultDelay, w.clock.now)
	w.tracef("fault delay: %s %s to %s held", c.from.name, c.op, c.to.name)
	w.depth++
	defer func() { w.depth-- }()
	window := 5_000 + w.fault.Int64N(60_000)
	limit := min(w.clock.now+window, w.runEnd)
	ran := 0
	for want := 1 + w.fault.IntN(3); ran < want && w.step(limit); ran++ {
	}
	if ran == 0 {
		w.clock.advanceTo(limit)
	}
}

// duplicate delivers a push a second time, as a network that
// duplicates messages would: the same request through the server again.
func (w *World) duplicate(c *call) {
	w.stats.fault(FaultDup, w.clock.now)
	w.tracef("fault dup: %s push to %s delivered twice", c.from.name, c.to.name)
	req := proto.Clone(c.push).(*pb.PushRequest)
	_, err := c.to.server.Push(c.from.caller(c.to.name), req)
	if err != nil && !errors.Is(err, fsm.ErrConflict) {
		w.violate(VEngineError, c.to.name, "", "duplicate push from %s: %v", c.from.name, err)
	}
}

// countConflicts counts the pushed rows the server will merge per
// column: rows it changed after the pusher's last pull.
func (w *World) countConflicts(c *call) {
	if c.to.server.Policy != fsm.MergePolicy {
		return
	}
	for _, t := range c.push.GetChanges().GetTables() {
		for _, rows := range [][]*pb.Row{t.GetCreated(), t.GetUpdated()} {
			for _, r := range rows {
				rec, err := c.to.store.Get(t.GetTable(), r.GetId())
				if err == nil && !rec.Deleted && rec.Cursor > c.push.GetLastPulledAt() {
					w.stats.Conflicts++
				}
			}
		}
	}
}

// crash restarts a node from its store (kind is the fault counted:
// crash or restart).
func (w *World) crash(n *node, kind, why string) {
	w.stats.fault(kind, w.clock.now)
	w.tracef("fault %s: %s restarts from its store (%s)", kind, n.name, why)
	if err := n.restart(); err != nil {
		panic(fmt.Sprintf("sim: restart %s: %v", n.name, err))
	}
	w.checkCursors(n)
}

// switchPeer moves a switching device to its other peer.
func (w *World) switchPeer(n *node, why string) {
	next := n.peers[0]
	if n.selected == next {
		next = n.peers[1]
	}
	n.selected = next
	w.stats.fault(FaultSwitch, w.clock.now)
	w.tracef("fault switch: %s now syncs with %s (%s)", n.name, next, why)
}

// faulty reports whether faults strike now.
func (w *World) faulty() bool { return w.phase == phaseRun }

// chance draws from the fault stream.
func (w *World) chance(p float64) bool { return p > 0 && w.fault.Float64() < p }

// countingMerge observes a pull merge: it counts the pulled rows that
// met local edits not yet pushed (the merge keeps those columns), and
// otherwise leaves the decision to merge (fsm.ApplyPulled when nil).
func (w *World) countingMerge(merge kv.Merge) kv.Merge {
	if merge == nil {
		merge = fsm.ApplyPulled
	}
	return func(cur *codec.Record, in codec.Change) (codec.Outcome, error) {
		out, err := merge(cur, in)
		if err == nil && out.Op == codec.Write && cur != nil && !cur.Deleted && len(cur.Changed) > 0 {
			w.stats.PullMerges++
		}
		return out, err
	}
}

// brokenMerge is a deliberately wrong pull merge for --break-merge: the
// remote row wins even over columns the device changed and has not yet
// pushed, so those local edits are lost.
func brokenMerge(cur *codec.Record, in codec.Change) (codec.Outcome, error) {
	if cur == nil || cur.Deleted || len(cur.Changed) == 0 || in.Delete {
		return fsm.ApplyPulled(cur, in)
	}
	forget := *cur
	forget.Changed = nil
	out, err := fsm.ApplyPulled(&forget, in)
	if out.Op == codec.Write {
		out.Record.Changed = cur.Changed
	}
	return out, err
}

// learnVersions tells the model how a device dated its own edits in a
// push: kv.ClampPending may have dated them anew since they were
// written (the model learns the version of each edit the first time it
// leaves the device).
func (w *World) learnVersions(n *node, req *pb.PushRequest) {
	cs, err := codec.ChangesetFromProto(req.GetChanges(), nil)
	if err != nil {
		return
	}
	for _, c := range fsm.Changes(cs) {
		r := w.model.row(key{c.Table, c.ID})
		if r == nil || c.Delete {
			continue
		}
		for col, v := range c.Versions {
			if v.Node == n.name {
				r.resolve(col, v, c.Cols[col])
			}
		}
	}
}
