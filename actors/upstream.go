package actors

// A serving hub's syncs with its cloud (DESIGN "Relays"): the hub
// applies its devices' pushes, then pushes them upstream, on its own.

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/clinicsync/clinicsync/kv"
)

// Upstream defaults (UpstreamConfig).
const (
	DefaultUpstreamInterval = 5 * time.Minute
	DefaultUpstreamDebounce = 2 * time.Second
	DefaultUpstreamBackoff  = 10 * time.Second
)

// UpstreamConfig configures an Upstream. For each duration 0 is its
// default.
type UpstreamConfig struct {
	// Interval is the time between two syncs when nothing happens
	// (DefaultUpstreamInterval).
	Interval time.Duration
	// Debounce is how long after the last push accepted from a device
	// (Notify) a sync starts (DefaultUpstreamDebounce).
	Debounce time.Duration
	// Backoff is the wait after a failed sync, doubled after each next
	// consecutive failure, up to Interval (DefaultUpstreamBackoff). While
	// syncs fail, pushes from devices do not start syncs sooner: they
	// wait for the backoff.
	Backoff time.Duration
	// After returns a channel that delivers once d from now (nil:
	// time.After). Tests pass a fake one.
	After func(d time.Duration) <-chan time.Time
	// Sync runs one sync with the upstream (nil: Node.Sync with the
	// node's first active cloud peer; with none, a skipped Result whose
	// Err is ErrNoPeer).
	Sync func(ctx context.Context) (Result, error)
	// Logger gets a line for each sync the loop starts, with its reason
	// (nil: slog.Default()); the engine logs the sync's end.
	Logger *slog.Logger
}

// Upstream keeps a hub in sync with its cloud while it serves: one
// sync at start, then one every Interval, and one Debounce after the
// last push a device made (Notify), through the node's sync engine
// (which must be started: Node.Start), so `node sync` through the
// control socket and these syncs never run at once (the second is
// skipped). A Notify during a sync, or a sync skipped because another
// one ran, leads to another sync after Debounce: no push waits for the
// next Interval. A failed sync (after the engine's own retries,
// NodeConfig.Retries) is tried again after Backoff, doubled for each
// consecutive failure up to Interval. Syncs run one at a time, in Run's
// goroutine.
type Upstream struct {
	cfg    UpstreamConfig
	notify chan struct{} // holds at most one pending Notify
}

// NewUpstream returns the upstream loop of node n, whose engine must
// be started before Run (n may be nil when cfg.Sync is given).
func NewUpstream(n *Node, cfg UpstreamConfig) *Upstream {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultUpstreamInterval
	}
	if cfg.Debounce <= 0 {
		cfg.Debounce = DefaultUpstreamDebounce
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = DefaultUpstreamBackoff
	}
	if cfg.After == nil {
		cfg.After = time.After
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Sync == nil {
		cfg.Sync = func(ctx context.Context) (Result, error) { return syncUpstream(ctx, n) }
	}
	return &Upstream{cfg: cfg, notify: make(chan struct{}, 1)}
}

// syncUpstream runs one sync of n with its first active cloud peer.
func syncUpstream(ctx context.Context, n *Node) (Result, error) {
	peers, err := n.Peers()
	if err != nil {
		return Result{}, err
	}
	for _, p := range peers {
		if p.Type == kv.PeerCloud && p.Status == kv.StatusActive {
			return n.Sync(ctx, SyncRequest{PeerID: p.ID, Trigger: Manual})
		}
	}
	return Result{Outcome: OutcomeSkipped, Message: "no active cloud peer", Err: ErrNoPeer}, nil
}

// Notify tells the loop that a device's push was accepted. It never
// blocks; it may be called from any goroutine, before or during Run.
func (u *Upstream) Notify() {
	select {
	case u.notify <- struct{}{}:
	default: // one is pending already
	}
}

// OnPush is a CloudConfig.OnPush: a push that stored something calls
// Notify.
func (u *Upstream) OnPush(r PushResult) {
	if r.Accepted > 0 {
		u.Notify()
	}
}

// Run syncs until ctx ends, then returns nil. A sync under way when
// ctx ends is left to the engine (Node.Close stops it).
func (u *Upstream) Run(ctx context.Context) error {
	var (
		tick     <-chan time.Time // the next sync by the clock: Interval, or the backoff
		debounce <-chan time.Time // armed while a push waits for its sync
		pending  bool             // a push arrived since the last sync started
		failures int              // consecutive failed syncs
		noPeer   bool             // the last sync found no cloud peer (logged once)
	)
	reason := "start"
	for {
		if reason == "" {
			select {
			case <-ctx.Done():
				return nil
			case <-u.notify:
				pending = true
				if failures == 0 {
					debounce = u.cfg.After(u.cfg.Debounce) // again: Debounce after the last push
				}
				continue
			case <-debounce:
				reason = "push"
			case <-tick:
				reason = "interval"
				if failures > 0 {
					reason = "retry"
				}
			}
		}
		pending, debounce = false, nil
		log := u.cfg.Logger
		// The sync's end is the engine's line (sync finished, failed or
		// skipped); the loop says why it starts one.
		start := log.Info
		if noPeer {
			start = log.Debug
		}
		start("upstream sync", "reason", reason, "failures", failures)
		res, err := u.cfg.Sync(ctx)
		if ctx.Err() != nil {
			return nil
		}
		wait := u.cfg.Interval
		switch {
		case err != nil || res.Outcome == OutcomeError:
			failures++
			wait = u.backoff(failures)
			cause := err
			if cause == nil {
				cause = res.Err
			}
			log.Debug("upstream sync: backing off", "cause", cause, "failures", failures, "next_in", wait)
		case res.Outcome == OutcomeSkipped && errors.Is(res.Err, ErrNoPeer):
			if !noPeer {
				log.Info("upstream sync: no active cloud peer (add one with `node peer add --type cloud_server --api-key K`)", "next_in", wait)
			}
			noPeer = true
		case res.Outcome == OutcomeSkipped:
			pending = true // another sync ran: this one's reason still holds
			log.Debug("upstream sync: skipped, tried again after the debounce", "next_in", u.cfg.Debounce)
		default:
			failures, noPeer = 0, false
		}
		reason = ""
		tick = u.cfg.After(wait)
		if pending && failures == 0 {
			debounce = u.cfg.After(u.cfg.Debounce)
		}
	}
}

// backoff is the wait after the nth consecutive failure: Backoff,
// doubled for each one before, at most Interval.
func (u *Upstream) backoff(n int) time.Duration {
	d := u.cfg.Backoff
	for i := 1; i < n && d < u.cfg.Interval; i++ {
		d *= 2
	}
	return min(d, u.cfg.Interval)
}
