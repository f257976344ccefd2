package actors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/clinicsync/clinicsync/fsm"
	"github.com/clinicsync/clinicsync/kv"
)

// NodeConfig configures a node's sync engine (Node.Start).
type NodeConfig struct {
	// Transports builds the transport to each peer (required):
	// MemNet.Transports for tests and the simulator.
	Transports TransportFactory
	// Logger gets a line for every sync, with the cause of each failure
	// (default slog.Default()). The actor system's own warnings and
	// errors go there too.
	Logger *slog.Logger
	// RequestTimeout bounds one pull or push (default
	// DefaultRequestTimeout).
	RequestTimeout time.Duration
	// PageSize is the number of records asked for per pulled page
	// (default DefaultPageSize; the peer may serve fewer).
	PageSize int
	// Retries is how many times a sync that failed on a passing cause
	// (peer unreachable, busy or failing; a strict conflict) is tried
	// again before its requester gets the failure (0: DefaultRetries;
	// negative: none), after RetryBackoff, doubled each time up to a
	// minute, with jitter (0: DefaultRetryBackoff). A retry resumes
	// a pull from its last applied page.
	Retries      int
	RetryBackoff time.Duration
	// OnSync, if set, is called once for every sync that ended (ok,
	// failed, or aborted), after its store work, from the coordinator:
	// it must not block. The node keeps each peer's last sync in its
	// store (Status.LastSync) before calling it.
	OnSync func(SyncReport)
	// Merge, when set, applies pulled rows instead of fsm.ApplyPulled.
	// Test-only: `bin/simulate --mode process` plants a broken one to
	// show its checks catch it.
	Merge kv.Merge
	// Sequential turns off pipelined pulls: by default the request for
	// a pull's next page leaves before the page applies, so the peer
	// reads and sends it meanwhile. The simulator runs one step at a
	// time, so that its runs replay from their seeds.
	Sequential bool
}

// Defaults of NodeConfig's retries.
const (
	DefaultRetries      = 3
	DefaultRetryBackoff = time.Second
)

// askTimeout bounds the wait for the coordinator's answer to a state
// query or a force reset, which it answers at once.
const askTimeout = 10 * time.Second

// subscriberBuffer bounds each state subscriber's queue.
const subscriberBuffer = 256

// engine is a started node's actor system and coordinator.
type engine struct {
	sys        *actor.ActorSystem
	coord      *actor.PID
	log        *slog.Logger
	transports TransportFactory
	done       chan struct{} // closed once the coordinator has stopped
}

// Start starts the node's sync engine: an actor system with the node's
// coordinator, which owns the sync state machine and spawns one actor
// per peer on first use. Sync, ForceReset and State then talk to it;
// Close stops it.
func (n *Node) Start(cfg NodeConfig) error {
	if cfg.Transports == nil {
		return fmt.Errorf("%w: NodeConfig.Transports is required", ErrInvalidConfig)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("node", n.info.NodeID)
	timeout := cfg.RequestTimeout
	if timeout <= 0 {
		timeout = DefaultRequestTimeout
	}
	switch {
	case cfg.Retries == 0:
		cfg.Retries = DefaultRetries
	case cfg.Retries < 0:
		cfg.Retries = 0
	}
	if cfg.RetryBackoff <= 0 {
		cfg.RetryBackoff = DefaultRetryBackoff
	}

	n.engineMu.Lock()
	defer n.engineMu.Unlock()
	if n.closed {
		return ErrClosed
	}
	if n.engine != nil {
		return ErrAlreadyStarted
	}
	sysLog := slog.New(minLevel{log.Handler(), slog.LevelWarn}).With("lib", "protoactor")
	sys := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return sysLog }))
	props := coordinatorProps(coordinatorConfig{store: n.store, clock: n.clock, transports: cfg.Transports,
		log: log, timeout: timeout, pageSize: cfg.PageSize, retries: cfg.Retries, backoff: cfg.RetryBackoff, merge: cfg.Merge, sequential: cfg.Sequential,
		publish: func(t fsm.Transition) {
			if d := n.feed.publish(t); d > 0 {
				log.Warn("sync state subscribers too slow: transitions dropped", "dropped", d, "event", t.Event)
			}
		},
		done: func(r SyncReport) {
			n.recordSync(log, r) // first, so that OnSync sees it in Status
			if cfg.OnSync != nil {
				cfg.OnSync(r)
			}
		}})
	pid, err := sys.Root.SpawnNamed(props, "coordinator")
	if err != nil {
		sys.Shutdown()
		return fmt.Errorf("actors: starting the sync coordinator: %w", err)
	}
	n.engine = &engine{sys: sys, coord: pid, log: log, transports: cfg.Transports, done: make(chan struct{})}
	return nil
}

// stopEngine stops the coordinator (and with it the peer actors),
// waits until it has stopped, and ends the subscriptions. Later calls
// get ErrClosed.
func (n *Node) stopEngine() {
	n.engineMu.Lock()
	e := n.engine
	n.engine, n.closed = nil, true
	n.engineMu.Unlock()
	if e != nil {
		if err := e.sys.Root.StopFuture(e.coord).Wait(); err != nil {
			e.log.Warn("stopping the sync coordinator", "cause", err)
		}
		close(e.done)
		e.sys.Shutdown()
	}
	n.feed.close()
}

// logger is the sync engine's logger (slog.Default() when the engine
// does not run).
func (n *Node) logger() *slog.Logger {
	if e, err := n.running(); err == nil {
		return e.log
	}
	return slog.Default()
}

func (n *Node) running() (*engine, error) {
	n.engineMu.Lock()
	defer n.engineMu.Unlock()
	switch {
	case n.closed:
		return nil, ErrClosed
	case n.engine == nil:
		return nil, ErrNotStarted
	}
	return n.engine, nil
}

// ask sends msg to the coordinator and waits for its answer, ctx's
// end, or the coordinator's stop. The answer comes to an inbox: a
// one-shot reply process, like a protoactor Future, but read as a
// channel, so that the wait can be cut short without touching the
// future from outside (which races in protoactor).
func (n *Node) ask(ctx context.Context, msg any) (any, error) {
	e, err := n.running()
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("actors: not asking the sync coordinator: %w", err)
	}
	in := &inbox{ch: make(chan any, 1)}
	pid, ok := e.sys.ProcessRegistry.Add(in, "ask"+e.sys.ProcessRegistry.NextId())
	if !ok {
		return nil, fmt.Errorf("actors: registering a reply process %s failed", pid)
	}
	defer e.sys.ProcessRegistry.Remove(pid)
	e.sys.Root.RequestWithCustomSender(e.coord, msg, pid)
	var v any
	select {
	case v = <-in.ch:
	case <-ctx.Done():
		return nil, fmt.Errorf("actors: waiting for the sync coordinator: %w", ctx.Err())
	case <-e.done:
		// Whatever the coordinator answered before it stopped is in the
		// inbox already; a request it never took has no answer.
		select {
		case v = <-in.ch:
		default:
			return nil, ErrClosed
		}
	}
	if _, dead := v.(*actor.DeadLetterResponse); dead {
		return nil, ErrClosed
	}
	return v, nil
}

// inbox receives the one answer to a request made from outside the
// actor system; a second one is dropped.
type inbox struct{ ch chan any }

var _ actor.Process = (*inbox)(nil)

func (b *inbox) SendUserMessage(_ *actor.PID, m any) {
	select {
	case b.ch <- actor.UnwrapEnvelopeMessage(m):
	default:
	}
}

func (b *inbox) SendSystemMessage(*actor.PID, any) {}
func (b *inbox) Stop(*actor.PID)                   {}

// Sync runs one sync and returns how it ended: ok, skipped (a sync was
// already running: Message says so) or error (Message is for the user,
// Err is the cause, also logged). The error return is for a sync that
// could not be asked for or waited on: ErrNotStarted, ErrClosed, or
// ctx's error. ctx bounds the wait, not the sync: a sync whose caller
// gave up still ends as usual (or by ForceReset).
func (n *Node) Sync(ctx context.Context, req SyncRequest) (Result, error) {
	if skip, err := n.onlineSkip(); err == nil && skip != nil { // an error shows in the sync (or ErrClosed)
		return *skip, nil
	}
	v, err := n.ask(ctx, req)
	if err != nil {
		return Result{}, err
	}
	res, ok := v.(Result)
	if !ok {
		return Result{}, fmt.Errorf("actors: sync: unexpected answer %T", v)
	}
	return res, nil
}

// ForceReset returns the sync state machine to idle from any state. A
// running sync is abandoned: its caller gets an error wrapping
// ErrSyncAborted and the peer's late answer is ignored.
func (n *Node) ForceReset() error {
	ctx, cancel := context.WithTimeout(context.Background(), askTimeout)
	defer cancel()
	_, err := n.ask(ctx, ForceResetRequest{})
	return err
}

// ResetResult is what Reset did.
type ResetResult struct {
	// Engine says the sync engine was running: Reset was ForceReset,
	// and a sync in flight (Was not idle) was abandoned.
	Engine bool
	Was    fsm.State
	// Cleared is the resumable pull position Reset cleared when the
	// engine was not running (nil: there was none).
	Cleared *fsm.Resume
}

// Reset returns the node's sync to its starting point. With the engine
// running it is ForceReset: the machine goes back to idle and a sync in
// flight is abandoned (its caller gets an error wrapping
// ErrSyncAborted). Without it nothing runs, and Reset clears what a
// sync left persisted in progress: the resumable pull position
// (fsm.ConfigResume), so that the next sync pulls from the peer's
// cursor instead of resuming an interrupted pull.
func (n *Node) Reset() (ResetResult, error) {
	if _, err := n.running(); err == nil {
		was := n.State()
		return ResetResult{Engine: true, Was: was}, n.ForceReset()
	}
	res := ResetResult{Was: fsm.Idle}
	v, err := n.store.Config(fsm.ConfigResume)
	if errors.Is(err, kv.ErrNotFound) {
		return res, nil
	}
	if err != nil {
		return res, err
	}
	if r, ok := fsm.ParseResume(v); ok {
		res.Cleared = &r
	}
	if v != "" {
		err = n.store.SetConfig(fsm.ConfigResume, "")
	}
	return res, err
}

// State returns the sync state machine's state: idle while the engine
// is not running.
func (n *Node) State() fsm.State {
	ctx, cancel := context.WithTimeout(context.Background(), askTimeout)
	defer cancel()
	v, err := n.ask(ctx, StateRequest{})
	st, ok := v.(StateResponse)
	if err == nil && !ok {
		err = fmt.Errorf("actors: state: unexpected answer %T", v)
	}
	if err != nil {
		if e, _ := n.running(); e != nil {
			e.log.Warn("reading the sync state", "cause", err)
		}
		return fsm.Idle
	}
	return st.State
}

// Subscribe calls fn with every transition of the sync state machine,
// in order, from a goroutine of its own: fn never holds up a sync. A
// subscriber more than subscriberBuffer transitions behind loses the
// newest ones (logged). It may be called before Start; unsubscribe (and
// Close) end the delivery, save a call of fn already under way.
func (n *Node) Subscribe(fn func(fsm.Transition)) (unsubscribe func()) {
	return n.feed.subscribe(fn)
}

// Server returns a Server answering downstream peers from the node's
// store with the given merge policy; a hub's Server relays what it
// accepts toward its own upstream.
func (n *Node) Server(policy fsm.Policy) *Server {
	return &Server{Store: n.store, Policy: policy, Relay: n.info.Kind == KindHub}
}

// Caller is how a node with this identity appears to the servers it
// syncs with: its id, whether it is a hub, its clinics.
func (i Info) Caller() fsm.Caller {
	return fsm.Caller{ID: i.NodeID, Hub: i.Kind == KindHub, Clinics: slices.Clone(i.Clinics)}
}

// transitionFeed fans transitions out to subscribers through bounded
// queues, without ever blocking the publisher.
type transitionFeed struct {
	mu     sync.Mutex // guards subs, next and closed; each done is closed under it, once
	subs   map[uint64]*subscriber
	next   uint64
	closed bool
}

type subscriber struct {
	ch   chan fsm.Transition
	done chan struct{}
}

func (f *transitionFeed) subscribe(fn func(fsm.Transition)) func() {
	s := &subscriber{ch: make(chan fsm.Transition, subscriberBuffer), done: make(chan struct{})}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return func() {}
	}
	if f.subs == nil {
		f.subs = map[uint64]*subscriber{}
	}
	id := f.next
	f.next++
	f.subs[id] = s
	go s.deliver(fn)
	return func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if _, ok := f.subs[id]; ok {
			delete(f.subs, id)
			close(s.done)
		}
	}
}

func (s *subscriber) deliver(fn func(fsm.Transition)) {
	for {
		select {
		case <-s.done:
			return
		case t := <-s.ch:
			select {
			case <-s.done:
				return
			default:
			}
			fn(t)
		}
	}
}

// publish queues t for every subscriber and returns how many queues
// were full.
func (f *transitionFeed) publish(t fsm.Transition) (dropped int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range f.subs {
		select {
		case s.ch <- t:
		default:
			dropped++
		}
	}
	return dropped
}

func (f *transitionFeed) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	for id, s := range f.subs {
		delete(f.subs, id)
		close(s.done)
	}
}

// minLevel drops records below min: the actor system logs routine
// events (its start, dead letters) at info.
type minLevel struct {
	slog.Handler
	min slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(as []slog.Attr) slog.Handler {
	return minLevel{h.Handler.WithAttrs(as), h.min}
}

func (h minLevel) WithGroup(name string) slog.Handler {
	return minLevel{h.Handler.WithGroup(name), h.min}
}
