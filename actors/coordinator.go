package actors

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"strconv"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/clinicsync/clinicsync/fsm"
	"github.com/clinicsync/clinicsync/kv"
	pb "github.com/clinicsync/clinicsync/proto"
)

// ConfigActivePeer is the config key (kv.Store.Config) of the peer the
// user selected (`node peer use ID`). A SyncRequest naming a peer
// overrides it; either way ResolvePeer falls back to the first active
// hub, then the first active cloud, when the selected peer is not
// usable.
const ConfigActivePeer = "active_peer"

// DefaultRequestTimeout bounds one pull or push to a peer.
const DefaultRequestTimeout = 60 * time.Second

// Mailbox sizes. A full mailbox makes its senders wait (never the
// coordinator: it sends only to peer actors, which hold at most the one
// call of the running sync, plus stale calls of abandoned ones).
const (
	coordinatorMailbox = 1024
	peerMailbox        = 64
)

// SyncRequest asks the coordinator for one sync. The reply is a Result:
// skipped (with ErrSyncInProgress's text) when a sync already runs, an
// error when there is no peer or the sync failed, ok otherwise.
type SyncRequest struct {
	// PeerID selects a peer; "" uses the config's ConfigActivePeer.
	PeerID  string
	Trigger Trigger
	// Since is the time (ms) of a force upload or download.
	Since int64
	// PageSize is the records to ask for per pulled page (0: the
	// node's NodeConfig.PageSize); the peer may serve fewer.
	PageSize int
}

// ForceResetRequest returns the machine to idle from any state and
// abandons the running sync: its requester gets an error Result
// wrapping ErrSyncAborted, and the peer's late answer is ignored. The
// reply is a StateResponse.
type ForceResetRequest struct{}

// StateRequest asks for the machine's state; the reply is a
// StateResponse.
type StateRequest struct{}

// StateResponse is the sync state machine as its owner sees it.
type StateResponse struct {
	State fsm.State
	Stats fsm.Stats
	Err   string // the last failure's message, until the next start or reset
}

// peerCall asks a peer actor for one pull or push (exactly one is
// set). Seq identifies the call: the coordinator accepts only the reply
// to its one outstanding call.
type peerCall struct {
	seq     uint64
	pull    *pb.PullRequest
	push    *pb.PushRequest
	replyTo *actor.PID
}

// peerReply answers a peerCall: a response of the call's kind, or err.
type peerReply struct {
	seq  uint64
	pull *pb.PullResponse
	page fsm.Page // pull decoded, by the call's goroutine
	push *pb.PushResponse
	err  error
}

// coordinatorConfig is what a coordinator needs, passed in through its
// props producer.
type coordinatorConfig struct {
	store      *kv.Store
	clock      kv.Clock
	transports TransportFactory
	log        *slog.Logger
	timeout    time.Duration // per peer call
	pageSize   int
	retries    int           // automatic retries of a sync that failed on a passing cause
	backoff    time.Duration // the first retry's wait, doubled for each next one
	merge      kv.Merge      // the pull merge (nil: fsm.ApplyPulled); test-only
	sequential bool          // no pipelined pulls (NodeConfig.Sequential)
	// publish sees every transition of the machine. It runs inside
	// Receive and must not block.
	publish func(fsm.Transition)
	// done sees every sync that started, once, when it ends. It runs
	// inside Receive and must not block.
	done func(SyncReport)
}

// coordinatorProps builds the props of a node's coordinator. Its peer
// actors are supervised one-for-one: a failing peer actor is restarted
// alone.
func coordinatorProps(cfg coordinatorConfig) *actor.Props {
	return actor.PropsFromProducer(func() actor.Actor { return &coordinator{cfg: cfg} },
		actor.WithMailbox(actor.Bounded(coordinatorMailbox)),
		actor.WithSupervisor(actor.NewOneForOneStrategy(10, time.Minute, actor.DefaultDecider)))
}

// coordinator is a node's one sync coordinator. It owns the state
// machine, the peer actors (one per peer, spawned on first use) and at
// most one running sync, which it drives by messages: each step of the
// Run goes to the peer actor as a peerCall, and the peerReply is fed
// back to the Run. Its state is touched only in Receive; what must
// survive a crash is in the store, written by the Run.
type coordinator struct {
	cfg     coordinatorConfig
	machine *fsm.Machine
	peers   map[string]peerChild
	sync    *running // nil when idle
	seq     uint64   // the last call's sequence number
}

type peerChild struct {
	pid  *actor.PID
	peer kv.Peer // as it was when the actor was spawned
}

// SyncReport is one sync that ended, as NodeConfig.OnSync sees it.
type SyncReport struct {
	ID       string // the sync's id, also in its log line
	PeerType string // kv.PeerCloud or kv.PeerHub
	Trigger  Trigger
	Result   Result
	// Started is when the sync was asked for, and Duration how long it
	// took to its end (retries included), on the node's clock.
	Started  time.Time
	Duration time.Duration
}

// running is the sync in flight.
type running struct {
	id        string    // the sync's id, in its log line and report
	started   time.Time // when it was asked for
	run       *Run
	peer      kv.Peer
	trigger   Trigger
	since     int64
	pageSize  int
	attempt   int        // retries made
	pid       *actor.PID // the peer actor
	requester *actor.PID // nil when the request was a plain Send
	call      uint64     // the outstanding call's seq
	step      Step       // the outstanding call
}

// Receive handles one message. It never waits for another actor or the
// network: peer calls run in the peer actors' goroutines.
func (c *coordinator) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		c.machine = fsm.NewMachine()
		if c.cfg.publish != nil {
			c.machine.Subscribe(c.cfg.publish)
		}
		c.peers = map[string]peerChild{}
	case SyncRequest:
		c.startSync(ctx, m)
	case *peerReply:
		c.onReply(ctx, m)
	case *retrySync:
		if c.sync == m.sync { // not abandoned meanwhile
			c.begin(ctx, m.sync)
		}
	case ForceResetRequest:
		c.forceReset(ctx)
	case StateRequest:
		reply(ctx, c.state())
	case *actor.Terminated:
		c.onTerminated(ctx, m.Who)
	case *actor.Stopping:
		c.abandon(ctx, fmt.Errorf("%w: the node is closing", ErrSyncAborted))
	case *actor.Restarting:
		c.abandon(ctx, fmt.Errorf("%w: the sync coordinator failed and restarts", ErrSyncAborted))
	case *actor.Stopped:
	default:
		c.cfg.log.Warn("sync coordinator: unexpected message", "type", fmt.Sprintf("%T", m))
	}
}

func (c *coordinator) state() StateResponse {
	return StateResponse{State: c.machine.State(), Stats: c.machine.Stats(), Err: c.machine.Err()}
}

func (c *coordinator) startSync(ctx actor.Context, req SyncRequest) {
	if s := c.sync; s != nil {
		c.cfg.log.Info("sync skipped: one is running", "peer", s.peer.ID, "trigger", req.Trigger)
		reply(ctx, Result{Outcome: OutcomeSkipped, Peer: s.peer.ID, Message: ErrSyncInProgress.Error(), Err: ErrSyncInProgress})
		return
	}
	if req.Trigger > ForceDownload || req.Since < 0 || req.PageSize < 0 {
		err := fmt.Errorf("%w: trigger %d, since %d, page size %d", ErrInvalidRequest, req.Trigger, req.Since, req.PageSize)
		c.refuse(ctx, err, "Sync failed: "+err.Error())
		return
	}
	peer, err := c.resolve(req.PeerID)
	if err != nil {
		msg := UserMessage("", err)
		if errors.Is(err, ErrNoPeer) {
			msg = ErrNoPeer.Error()
		}
		c.refuse(ctx, err, msg)
		return
	}
	id, err := newUUID()
	if err != nil {
		c.refuse(ctx, err, err.Error())
		return
	}
	s := &running{id: id, started: nowOf(c.cfg.clock), peer: peer, trigger: req.Trigger, since: req.Since,
		pageSize: c.cfg.pageSize, pid: c.peerActor(ctx, peer), requester: ctx.Sender()}
	if req.PageSize > 0 {
		s.pageSize = req.PageSize
	}
	c.sync = s
	c.begin(ctx, s)
}

// begin starts (or, after a failure, starts again) a sync's run.
func (c *coordinator) begin(ctx actor.Context, s *running) {
	if peer, err := c.cfg.store.Peer(s.peer.ID); err == nil {
		s.peer = peer // the cursor moved if an earlier attempt pulled
	}
	n := 0
	s.run = NewRun(RunConfig{Store: c.cfg.store, Machine: c.machine, Clock: c.cfg.clock, Peer: s.peer,
		Trigger: s.trigger, Since: s.since, PageSize: s.pageSize, Merge: c.cfg.merge, Overlap: !c.cfg.sequential,
		RequestID: func() string {
			n++
			if id, err := newUUID(); err == nil {
				return id
			}
			return s.trigger.String() + "-" + strconv.Itoa(n)
		}})
	c.cfg.log.Info("sync started", "sync", s.id, "peer", s.peer.ID, "peer_type", s.peer.Type, "trigger", s.trigger, "attempt", s.attempt+1)
	c.advance(ctx, s.run.Start())
}

// retrySync starts a failed sync again, once its backoff has passed.
type retrySync struct{ sync *running }

// retryable reports whether a sync that failed with err may succeed if
// tried again unchanged: the peer was unreachable, busy or failing, or
// (strict policy) the push met a newer change, which the next pull
// brings.
func retryable(err error) bool {
	return errors.Is(err, ErrUnreachable) || errors.Is(err, ErrRateLimited) ||
		errors.Is(err, ErrPeerFailed) || errors.Is(err, fsm.ErrConflict)
}

// retryDelay is the wait before attempt n+1 (n >= 1): the backoff
// doubled per attempt, up to a minute, with up to a quarter more of
// jitter.
func (c *coordinator) retryDelay(n int) time.Duration {
	d := min(c.cfg.backoff<<min(n-1, 10), time.Minute)
	return d + time.Duration(mrand.Int64N(int64(d)/4+1))
}

// resolve picks the peer: the one asked for, else the selected one in
// config, else the first active hub or cloud.
func (c *coordinator) resolve(asked string) (kv.Peer, error) {
	peers, err := c.cfg.store.Peers()
	if err != nil {
		return kv.Peer{}, err
	}
	selected := asked
	if selected == "" {
		selected, err = c.cfg.store.Config(ConfigActivePeer)
		if err != nil && !errors.Is(err, kv.ErrNotFound) {
			return kv.Peer{}, err
		}
	}
	return ResolvePeer(peers, selected)
}

// refuse answers a request that could not start a sync (none is
// running). The machine
// shows the failure as a run's would (error_sync, then back to idle
// keeping the message), so that a UI sees it.
func (c *coordinator) refuse(ctx actor.Context, err error, msg string) {
	c.cfg.log.Warn("sync failed", "message", msg, "cause", err)
	c.fire(fsm.ErrorSync, msg)
	c.fire(fsm.FinishSync, "")
	reply(ctx, Result{Outcome: OutcomeError, Message: msg, Err: err})
}

// reply answers the message being handled, if it was a request (a
// plain Send has no one to answer).
func reply(ctx actor.Context, v any) {
	if ctx.Sender() != nil {
		ctx.Respond(v)
	}
}

func (c *coordinator) fire(ev fsm.Event, msg string) {
	if err := c.machine.Fire(ev, 0, msg); err != nil {
		c.cfg.log.Error("sync coordinator: state machine refused an event", "event", ev, "cause", err)
	}
}

// peerActor returns the peer's actor, spawning it on first use, or
// anew when the peer's address or credentials changed since.
func (c *coordinator) peerActor(ctx actor.Context, p kv.Peer) *actor.PID {
	if ch, ok := c.peers[p.ID]; ok {
		if sameEndpoint(ch.peer, p) {
			return ch.pid
		}
		ctx.Stop(ch.pid)
	}
	pid := ctx.SpawnPrefix(peerProps(peerConfig{peer: p, transports: c.cfg.transports,
		timeout: c.cfg.timeout, log: c.cfg.log}), "peer-")
	c.peers[p.ID] = peerChild{pid: pid, peer: p}
	return pid
}

// sameEndpoint reports whether a peer actor built for a still serves b.
func sameEndpoint(a, b kv.Peer) bool {
	return a.Type == b.Type && a.Status == b.Status && a.URL == b.URL && a.APIKey == b.APIKey &&
		bytes.Equal(a.PublicKey, b.PublicKey)
}

// advance sends the Run's next request to the peer actor, or ends the
// sync.
func (c *coordinator) advance(ctx actor.Context, step Step) {
	s := c.sync
	if d := step.Done; d != nil {
		s.call = 0 // a pipelined pull still in flight is stale
		if d.Outcome == OutcomeError && retryable(d.Err) && s.attempt < c.cfg.retries {
			// The sync stays running (others are skipped) while it waits.
			s.attempt++
			wait := c.retryDelay(s.attempt)
			c.cfg.log.Warn("sync failed; trying again", "sync", s.id, "peer", d.Peer, "trigger", s.trigger, "attempt", s.attempt,
				"of", c.cfg.retries+1, "in", wait.Round(time.Millisecond).String(), "cause", d.Err)
			root, self := ctx.ActorSystem().Root, ctx.Self()
			time.AfterFunc(wait, func() { root.Send(self, &retrySync{s}) })
			return
		}
		c.sync = nil
		c.finish(ctx, s, *d)
		return
	}
	c.send(ctx, s, step)
	if step.Push != nil {
		s.run.Sent() // while the peer applies the chunk just sent
	}
}

// send hands a request of the running sync to its peer actor. A reply
// counts only if it answers the latest request sent.
func (c *coordinator) send(ctx actor.Context, s *running, step Step) {
	c.seq++
	s.call, s.step = c.seq, step
	ctx.Send(s.pid, &peerCall{seq: c.seq, pull: step.Pull, push: step.Push, replyTo: ctx.Self()})
}

func (c *coordinator) onReply(ctx actor.Context, m *peerReply) {
	s := c.sync
	if s == nil || m.seq != s.call {
		c.cfg.log.Debug("sync coordinator: dropped a stale peer reply", "seq", m.seq, "err", m.err)
		return
	}
	var step Step
	switch {
	case m.err != nil:
		step = s.run.Fail(m.err)
	case s.step.Pull != nil:
		// Pipelined: the next page's request leaves before this page
		// applies, so the peer reads and sends it meanwhile.
		ahead, apply := s.run.OnPullAhead(m.pull, &m.page)
		if ahead == nil || c.cfg.sequential {
			step = apply()
			break
		}
		c.send(ctx, s, Step{Pull: ahead})
		if step = apply(); step.Pull == ahead {
			return // already sent
		}
	default:
		step = s.run.OnPush(m.push)
	}
	c.advance(ctx, step)
}

func (c *coordinator) finish(ctx actor.Context, s *running, res Result) {
	d := nowOf(c.cfg.clock).Sub(s.started)
	attrs := []any{"sync", s.id, "peer", res.Peer, "peer_type", s.peer.Type, "trigger", s.trigger, "outcome", res.Outcome,
		"pulled", res.Pulled, "pushed", res.Pushed, "rejected", len(res.Rejected), "duration_ms", float64(d.Microseconds()) / 1000}
	switch res.Outcome {
	case OutcomeOK:
		c.cfg.log.Info("sync finished", attrs...)
	case OutcomeSkipped:
		c.cfg.log.Info("sync skipped", append(attrs, "cause", res.Err)...)
	default:
		c.cfg.log.Warn("sync failed", append(attrs, "message", res.Message, "cause", res.Err)...)
	}
	if c.cfg.done != nil {
		c.cfg.done(SyncReport{ID: s.id, PeerType: s.peer.Type, Trigger: s.trigger, Result: res, Started: s.started, Duration: d})
	}
	if s.requester != nil {
		ctx.Send(s.requester, res)
	}
}

func (c *coordinator) forceReset(ctx actor.Context) {
	c.abandon(ctx, fmt.Errorf("%w by a force reset", ErrSyncAborted))
	c.fire(fsm.ForceReset, "")
	reply(ctx, c.state())
}

// abandon drops the running sync, if any, and tells its requester. Its
// outstanding call's reply will not match and is dropped.
func (c *coordinator) abandon(ctx actor.Context, err error) {
	s := c.sync
	if s == nil {
		return
	}
	c.sync = nil
	c.finish(ctx, s, Result{Outcome: OutcomeError, Peer: s.peer.ID, Message: UserMessage(s.peer.Type, err), Err: err})
}

// onTerminated forgets a peer actor that stopped (after too many
// restarts, or replaced); a sync waiting on it fails.
func (c *coordinator) onTerminated(ctx actor.Context, who *actor.PID) {
	for id, ch := range c.peers {
		if ch.pid.Equal(who) {
			delete(c.peers, id)
		}
	}
	if s := c.sync; s != nil && s.pid.Equal(who) {
		c.advance(ctx, s.run.Fail(fmt.Errorf("%w: the actor of peer %s stopped", ErrUnreachable, s.peer.ID)))
	}
}
