package sim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"runtime/debug"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/clinicsync/clinicsync/actors"
	"github.com/clinicsync/clinicsync/codec"
	"github.com/clinicsync/clinicsync/fsm"
	"github.com/clinicsync/clinicsync/internal/planted"
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

// syncNode runs one sync of n through its started engine
// (actors.Node.Sync: the coordinator actor resolves the peer and drives
// an actors.Run, the peer actor makes each call over the virtual
// network), and checks the safety invariants around it. A sync
// requested while n already syncs must be skipped by the coordinator.
func (w *World) syncNode(n *node, trigger actors.Trigger, since int64, why string) actors.Result {
	if n.wdb != nil {
		return w.syncWDB(n, trigger, why) // WatermelonDB has no force sync
	}
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
	f := &flight{node: n, epoch: n.epoch, force: trigger == actors.ForceDownload || trigger == actors.ForceUpload}
	concurrent := n.inflight != nil
	if !concurrent {
		n.inflight = f
	}
	started := w.clock.now
	res := w.engineSync(n, actors.SyncRequest{PeerID: n.selected, Trigger: trigger, Since: since, PageSize: w.plan.PageSize[n.name]})
	if res.Outcome != actors.OutcomeSkipped && res.Peer != "" && res.Peer != peer.ID {
		w.violate(VEngineError, n.name, "", "the coordinator synced with %s; peer resolution gives %s", res.Peer, peer.ID)
	}
	if w.opts.BreakMarkSynced && res.Outcome == actors.OutcomeOK && n.epoch == f.epoch {
		w.markAllSynced(n, f.pushed)
	}
	if n.inflight == f {
		n.inflight = nil
	}
	elapsed := w.clock.now - started
	w.stats.sync(n.name, trigger, res, started, elapsed)
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

// engineSync asks n's engine for a sync and waits for the answer.
// Meanwhile only the goroutine making the engine's call does simulator
// work, so the order of events stays the seed's. An engine a crash
// replaced stops here, once its last sync has answered.
func (w *World) engineSync(n *node, req actors.SyncRequest) actors.Result {
	e := n.eng
	e.busy++
	res, err := e.node.Sync(context.Background(), req)
	e.busy--
	if w.panicked != nil {
		panic(w.panicked)
	}
	if e != n.eng && e.busy == 0 {
		e.node.Stop()
	}
	if err != nil {
		return actors.Result{Outcome: actors.OutcomeError, Peer: req.PeerID, Message: err.Error(), Err: err}
	}
	return res
}

// simTransport is what a node's engine calls a peer through: the
// MemNet transport, with the simulator's faults and checks around each
// call (send).
type simTransport struct {
	w      *World
	n, srv *node
	tr     actors.Transport
}

// transports is the engine's TransportFactory for node n.
func (w *World) transports(n *node) actors.TransportFactory {
	return func(p kv.Peer) (actors.Transport, error) {
		srv := w.nodes[p.ID]
		if srv == nil || srv.server == nil {
			return nil, fmt.Errorf("sim: %s has no peer %s that serves", n.name, p.ID)
		}
		tr, err := w.net.Transports(n.caller(p.ID))(p)
		if err != nil {
			return nil, err
		}
		return &simTransport{w: w, n: n, srv: srv, tr: tr}, nil
	}
}

func (t *simTransport) Pull(ctx context.Context, req *pb.PullRequest) (*pb.PullResponse, error) {
	resp, _, err := t.call(ctx, req, nil)
	return resp, err
}

func (t *simTransport) Push(ctx context.Context, req *pb.PushRequest) (*pb.PushResponse, error) {
	_, resp, err := t.call(ctx, nil, req)
	return resp, err
}

// call runs send for the node's sync in flight. A panic (a broken
// invariant of the simulator) is kept for the simulator's goroutine to
// raise again (engineSync): the peer actor would make it an error.
func (t *simTransport) call(ctx context.Context, pull *pb.PullRequest, push *pb.PushRequest) (pr *pb.PullResponse, ps *pb.PushResponse, err error) {
	defer func() {
		if v := recover(); v != nil {
			if t.w.panicked == nil {
				t.w.panicked = fmt.Sprintf("%v\n%s", v, debug.Stack())
			}
			pr, ps, err = nil, nil, errCrashed
		}
	}()
	f := t.n.inflight
	if f == nil { // the node crashed since the sync started
		return nil, nil, errCrashed
	}
	return t.w.send(ctx, f, t.srv, t.tr, pull, push)
}

// send carries one call of a sync over the network, with the faults of
// the plan: the client may crash before the request leaves or after
// the answer arrives (before applying it); the hook decides the rest.
func (w *World) send(ctx context.Context, f *flight, srv *node, tr actors.Transport, pullReq *pb.PullRequest, pushReq *pb.PushRequest) (*pb.PullResponse, *pb.PushResponse, error) {
	n := f.node
	if n.epoch != f.epoch {
		return nil, nil, errCrashed
	}
	op := "pull"
	if pushReq != nil {
		op = "push"
		w.learnVersions(n, pushReq)
	}
	if w.faulty() && w.chance(w.plan.Crash) {
		w.crash(n, FaultCrash, "before "+op)
		return nil, nil, errCrashed
	}
	c := &call{from: n, to: srv, op: op, push: pushReq}
	w.calls = append(w.calls, c)
	var pull *pb.PullResponse
	var push *pb.PushResponse
	var err error
	if pullReq != nil {
		pull, err = tr.Pull(ctx, pullReq)
	} else {
		push, err = tr.Push(ctx, pushReq)
	}
	w.calls = w.calls[:len(w.calls)-1]
	if c.handled && pushReq != nil {
		if w.faulty() && w.chance(w.plan.Dup) {
			w.duplicate(c)
		}
		if srv == w.cloud {
			w.checkCloudPush(c)
		}
		// Pushes of this client held back arrive now, after this newer one.
		for i := 0; i < len(w.late); {
			if lp := w.late[i]; lp.from == n && lp.to == srv {
				w.late = slices.Delete(w.late, i, i+1)
				w.deliverLate(lp)
				continue
			}
			i++
		}
	}
	if err == nil && pullReq != nil {
		w.served(n, srv, pullReq, pull, f.force)
	}
	if err == nil && pushReq != nil && n.epoch == f.epoch {
		f.pushed = append(f.pushed, pushedRows(pushReq, push)...)
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
			w.stats.fault(FaultConcurrent, c.from.name, w.clock.now)
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
	if w.faulty() && c.push != nil && c.from.kind == kindMobile {
		if !c.cut && fault == actors.Deliver && w.chance(w.plan.Late) {
			fault = w.holdBack(c, fault)
		}
		if w.chance(w.plan.MidPush) {
			w.writeDuringPush(c)
		}
	}
	c.fault = fault
	c.handled = !c.cut && fault != actors.DropRequest
	if c.handled && c.push != nil {
		w.arriving(c.from, c.to, c.push)
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
	w.stats.fault(FaultDelay, c.from.name, w.clock.now)
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
	w.stats.fault(FaultDup, c.from.name, w.clock.now)
	w.tracef("fault dup: %s push to %s delivered twice", c.from.name, c.to.name)
	req := proto.Clone(c.push).(*pb.PushRequest)
	w.arriving(c.from, c.to, req)
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
	for _, t := range changesOf(c.push).GetTables() {
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
// crash or restart), with a new engine. The old engine stops now if no
// sync waits on it, else when its sync answers (engineSync): stopping
// it here could be from inside its own call.
func (w *World) crash(n *node, kind, why string) {
	w.stats.fault(kind, n.name, w.clock.now)
	w.tracef("fault %s: %s restarts from its store (%s)", kind, n.name, why)
	old := n.eng
	if err := n.restart(); err != nil {
		panic(fmt.Sprintf("sim: restart %s: %v", n.name, err))
	}
	if old != nil {
		if err := w.startEngine(n); err != nil {
			panic(fmt.Sprintf("sim: restart %s: %v", n.name, err))
		}
		if old.busy == 0 {
			old.node.Stop()
		}
	}
	w.checkCursors(n)
}

// startEngine starts n's sync engine over its store: a node made by
// actors.NewNode on the node's virtual clock, calling its peers through
// simTransport. Nothing in it decides on wall time: no call times out
// within a run, and a failed sync is not retried (retries wait on
// timers).
func (w *World) startEngine(n *node) error {
	kind := actors.KindMobile
	if n.kind == kindHub {
		kind = actors.KindHub
	}
	an := actors.NewNode(n.store, actors.Info{NodeID: n.name, Kind: kind, Name: n.name, Clinics: []string{n.clinic}}, n.clock)
	err := an.Start(actors.NodeConfig{
		Transports:     w.transports(n),
		Logger:         slog.New(slog.DiscardHandler),
		RequestTimeout: noTimeout,
		Retries:        -1,
		Merge:          w.countingMerge(w.merge),
		Sequential:     true, // one step at a time: the run replays from its seed
	})
	if err != nil {
		return fmt.Errorf("sim: starting the engine of %s: %w", n.name, err)
	}
	n.eng = &engine{node: an}
	return nil
}

// noTimeout is the engines' request timeout: far beyond any run's wall
// time, so that no call's outcome depends on it.
const noTimeout = 1000 * time.Hour

// switchPeer moves a switching device to its other peer.
func (w *World) switchPeer(n *node, why string) {
	next := n.peers[0]
	if n.selected == next {
		next = n.peers[1]
	}
	n.selected = next
	w.stats.fault(FaultSwitch, n.name, w.clock.now)
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

// learnVersions tells the model how a device dated its own edits in a
// push: kv.ClampPending may have dated them anew since they were
// written (the model learns the version of each edit the first time it
// leaves the device).
func (w *World) learnVersions(n *node, req *pb.PushRequest) {
	cs, _, err := codec.DecodeChangeset(req.GetChanges(), nil)
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

// latePush is a push held back by the network, to arrive after a newer
// push of the same client.
type latePush struct {
	from, to *node
	req      *pb.PushRequest
	dup      bool // the original arrived too
}

// holdBack keeps a copy of a device's push to deliver after its next
// push to the same server: with dup faults on, half the time the
// original arrives as well (a late duplicate); otherwise the original
// is lost (the pushes arrive reordered), and the user soon deletes a
// record the held push creates, so that the delete reaches the server
// before the create.
func (w *World) holdBack(c *call, fault actors.Fault) actors.Fault {
	lp := &latePush{from: c.from, to: c.to, req: proto.Clone(c.push).(*pb.PushRequest)}
	lp.dup = w.opts.has(FaultDup) && w.fault.IntN(2) == 0
	w.late = append(w.late, lp)
	w.stats.fault(FaultDelay, c.from.name, w.clock.now)
	if lp.dup {
		w.tracef("fault late: %s push to %s delivered, and again after its next push", c.from.name, c.to.name)
		return fault
	}
	w.tracef("fault late: %s push to %s held until after its next push", c.from.name, c.to.name)
	var victims []key
	for _, t := range changesOf(c.push).GetTables() {
		if !slices.Contains(discardable, t.GetTable()) {
			continue
		}
		for _, r := range t.GetCreated() {
			victims = append(victims, key{t.GetTable(), r.GetId()})
		}
	}
	if len(victims) > 0 && w.fault.IntN(2) == 0 {
		k, n := victims[w.fault.IntN(len(victims))], c.from
		w.at(w.clock.now+30_000+w.fault.Int64N(3*minMs), func() {
			if w.live(n, k.table, k.id) {
				w.tracef("%s deletes %s, whose create is held back", n.name, k)
				w.remove(n, k.table, k.id)
			}
		})
	}
	return actors.DropRequest
}

// discardable are the tables whose records users delete when entered in
// error.
var discardable = []string{"patient_vitals", "events", "patient_problems", "appointments", "patient_additional_attributes"}

// deliverLate hands a held-back push to its server.
func (w *World) deliverLate(lp *latePush) {
	w.tracef("late push from %s arrives at %s", lp.from.name, lp.to.name)
	w.arriving(lp.from, lp.to, lp.req)
	_, err := lp.to.server.Push(lp.from.caller(lp.to.name), lp.req)
	if err != nil && !errors.Is(err, fsm.ErrConflict) {
		w.violate(VEngineError, lp.to.name, "", "late push from %s: %v", lp.from.name, err)
	}
	if lp.to == w.cloud {
		w.checkCloudPush(&call{from: lp.from, to: lp.to, op: "push", push: lp.req})
	}
	w.checkCursors(lp.to)
}

// writeDuringPush is a user editing, while its push is in flight, a row
// the push carries (the engine must push that edit next time).
func (w *World) writeDuringPush(c *call) {
	n := c.from
	var rows []key
	for _, t := range changesOf(c.push).GetTables() {
		for _, r := range slices.Concat(t.GetCreated(), t.GetUpdated()) {
			if editable(t.GetTable()) && w.live(n, t.GetTable(), r.GetId()) {
				rows = append(rows, key{t.GetTable(), r.GetId()})
			}
		}
	}
	if len(rows) == 0 {
		return
	}
	k := rows[w.work.IntN(len(rows))]
	w.tracef("%s edits %s during its push to %s", n.name, k, c.to.name)
	w.update(n, k.table, k.id, w.edit(n, k.table))
}

// arriving notes what a push that reaches a server creates there, and,
// with --break-unknown-delete, strips its deletes of rows the server
// does not know (so that they leave no tombstone).
func (w *World) arriving(from, to *node, req *pb.PushRequest) {
	cs := changesOf(req)
	if w.opts.BreakUnknownDelete {
		defer setChanges(req, cs)
	}
	for _, t := range cs.GetTables() {
		for _, r := range t.GetCreated() {
			k := key{t.GetTable(), r.GetId()}
			if _, err := to.store.Get(k.table, k.id); errors.Is(err, kv.ErrNotFound) {
				w.createdByAdd(to.name, k, from.name)
			}
		}
		if w.opts.BreakUnknownDelete {
			t.Deleted = slices.DeleteFunc(t.Deleted, func(id string) bool {
				_, err := to.store.Get(t.GetTable(), id)
				return errors.Is(err, kv.ErrNotFound)
			})
		}
	}
}

// createdByAdd notes that a push of caller created row k on server.
func (w *World) createdByAdd(server string, k key, caller string) {
	if w.createdBy[server] == nil {
		w.createdBy[server] = map[key]map[string]bool{}
	}
	if w.createdBy[server][k] == nil {
		w.createdBy[server][k] = map[string]bool{}
	}
	w.createdBy[server][k][caller] = true
}

// served checks a pulled page: a row whose creation the puller pushed
// to this server comes back to it as updated, never as created (except
// on a full pull, since 0, and on a force download, which re-pulls
// since any time). With --break-serve-created every row of the page is
// made created first.
func (w *World) served(n, srv *node, req *pb.PullRequest, resp *pb.PullResponse, force bool) {
	cs := changesOf(resp)
	if w.opts.BreakServeCreated {
		defer setChanges(resp, cs)
	}
	for _, t := range cs.GetTables() {
		if w.opts.BreakServeCreated {
			t.Created, t.Updated = append(t.Created, t.Updated...), nil
		}
		if req.GetLastPulledAt() == 0 || force {
			continue
		}
		for _, r := range t.GetCreated() {
			k := key{t.GetTable(), r.GetId()}
			if w.createdBy[srv.name][k][n.name] {
				w.violate(VServedCreated, n.name, k.String(), "served as created by %s (since %d), although this node's push created it there", srv.name, req.GetLastPulledAt())
			}
		}
	}
}

// pushedRows lists the rows of an acknowledged push, less the rejected.
func pushedRows(req *pb.PushRequest, resp *pb.PushResponse) []key {
	rejected := map[key]bool{}
	for _, rj := range resp.GetRejected() {
		rejected[key{rj.GetTable(), rj.GetId()}] = true
	}
	var out []key
	for _, t := range changesOf(req).GetTables() {
		for _, r := range slices.Concat(t.GetCreated(), t.GetUpdated()) {
			if k := (key{t.GetTable(), r.GetId()}); !rejected[k] {
				out = append(out, k)
			}
		}
	}
	return out
}

// markAllSynced is --break-mark-synced: the rows a sync pushed are
// marked synced at their current write version, so an edit made during
// the push is never pushed.
func (w *World) markAllSynced(n *node, rows []key) {
	var refs []kv.Ref
	for _, k := range rows {
		if r, err := n.store.Get(k.table, k.id); err == nil && r.Status.Pending() {
			refs = append(refs, kv.RefOf(r))
		}
	}
	if _, err := n.store.MarkSynced(refs); err != nil {
		w.violate(VEngineError, n.name, "", "marking synced: %v", err)
	}
}

// plantedMerge is the pull merge of a run: fsm.ApplyPulled, or a
// deliberately broken one for the --break-* switches that break it.
func plantedMerge(o Options) kv.Merge {
	var merge kv.Merge
	switch {
	case o.BreakMerge:
		merge = planted.Merge
	case o.BreakVersions:
		merge = versionlessMerge
	}
	if o.BreakPullDelete {
		inner := merge
		if inner == nil {
			inner = fsm.ApplyPulled
		}
		merge = func(cur *codec.Record, in codec.Change) (codec.Outcome, error) {
			if in.Delete {
				return codec.Outcome{Op: codec.Skip}, nil
			}
			return inner(cur, in)
		}
	}
	return merge
}

// versionlessMerge is --break-versions: the pull merge of old, by sync
// order: remote values win over every column but the local unpushed
// edits, whatever the versions say.
func versionlessMerge(cur *codec.Record, in codec.Change) (codec.Outcome, error) {
	if in.Delete || cur == nil || cur.Deleted {
		return fsm.ApplyPulled(cur, in)
	}
	r := *cur
	r.Cols, r.Versions = maps.Clone(cur.Cols), maps.Clone(cur.Versions)
	if r.Versions == nil {
		r.Versions = map[string]codec.Version{}
	}
	for _, col := range in.Columns() {
		if cur.Status == codec.Created || slices.Contains(cur.Changed, col) {
			continue
		}
		r.Cols[col], r.Versions[col] = in.Cols[col], in.Versions[col]
	}
	r.CreatedCursor = 0
	return codec.Outcome{Op: codec.Write, Record: r}, nil
}

// changesOf decodes the changeset a pull response or push request
// carries, as generated messages (which the simulator reads and, for
// some --break-* switches, changes). The engine encoded it: one that
// does not decode is a broken engine.
func changesOf(m interface{ GetChanges() []byte }) *pb.Changeset {
	var cs pb.Changeset
	if err := codec.Unmarshal(m.GetChanges(), &cs); err != nil {
		panic(fmt.Sprintf("sim: a changeset the engine sent does not decode: %v", err))
	}
	return &cs
}

// setChanges re-encodes a changeset changesOf read into the message.
func setChanges(m interface{ GetChanges() []byte }, cs *pb.Changeset) {
	b, err := codec.Marshal(cs)
	if err != nil {
		panic(fmt.Sprintf("sim: re-encode a changeset: %v", err))
	}
	switch m := m.(type) {
	case *pb.PushRequest:
		m.Changes = b
	case *pb.PullResponse:
		m.Changes = b
	}
}
