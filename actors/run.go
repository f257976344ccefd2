package actors

import (
	"fmt"

	"github.com/clinicsync/clinicsync/codec"
	"github.com/clinicsync/clinicsync/codec/schema"
	"github.com/clinicsync/clinicsync/fsm"
	"github.com/clinicsync/clinicsync/kv"
	pb "github.com/clinicsync/clinicsync/proto"
)

// Trigger is why a sync runs.
type Trigger uint8

const (
	Manual        Trigger = iota // the user asked
	AfterLogin                   // a successful login
	ForceUpload                  // re-send rows created or updated since a time
	ForceDownload                // re-pull since a time
)

var triggerNames = [...]string{"manual", "login", "force-upload", "force-download"}

func (t Trigger) String() string { return triggerNames[t] }

// Outcome values of a Result, as `node sync --json` prints them.
const (
	OutcomeOK      = "ok"
	OutcomeSkipped = "skipped"
	OutcomeError   = "error"
)

// Result is how a sync ended.
type Result struct {
	Outcome string
	Peer    string
	Pulled  int // records received
	Pushed  int // records sent and acknowledged
	// Rejected are rows the peer refused; they stay pending.
	Rejected []*pb.Rejection
	// Clamped counts local versions dated beyond the peer's clock plus
	// kv.DefaultMaxDrift (this node's clock runs far ahead), clamped
	// before the push.
	Clamped int
	Message string // for the user ("" when ok)
	Err     error  // the cause, for the log
}

// Step is what a Run needs next: exactly one of a pull to send, a push
// to send, or the end.
type Step struct {
	Pull *pb.PullRequest
	Push *pb.PushRequest
	Done *Result
}

// Run is one sync with one peer, as a deterministic procedure: the
// caller sends the requests it returns and feeds back the responses
// (the coordinator actor through the peer actor, the simulator through
// its virtual network). Every store change is one transaction: a pulled
// page with the new cursor; the acknowledged rows marked synced.
type Run struct {
	store    *kv.Store
	machine  *fsm.Machine
	clock    kv.Clock
	peer     kv.Peer
	trigger  Trigger
	since    int64
	pageSize int
	ids      func() string
	merge    kv.Merge

	from    int64 // last_pulled_at of this run's pull
	pulled  int
	pushed  []codec.Record
	nextReq int
	clamped int    // versions of pending rows clamped to the peer's clock
	msg     string // the failure message, once failed
	// seen collects the rows of a full pull that mirrors a peer other
	// than the last one synced with (nil otherwise).
	seen map[string]bool
}

// RunConfig configures a Run.
type RunConfig struct {
	Store   *kv.Store
	Machine *fsm.Machine
	Clock   kv.Clock
	Peer    kv.Peer
	Trigger Trigger
	// Since is the time (ms) of a force upload or download.
	Since    int64
	PageSize int
	// RequestID returns a fresh request id (default: a counter).
	RequestID func() string
	// Merge applies pulled rows (default fsm.ApplyPulled). The
	// simulator swaps in a broken one to prove its checks catch it.
	Merge kv.Merge
}

// NewRun prepares a sync; Start begins it.
func NewRun(c RunConfig) *Run {
	r := &Run{store: c.Store, machine: c.Machine, clock: c.Clock, peer: c.Peer, trigger: c.Trigger,
		since: c.Since, pageSize: c.PageSize, ids: c.RequestID, merge: c.Merge}
	if r.pageSize <= 0 {
		r.pageSize = DefaultPageSize
	}
	return r
}

func (r *Run) requestID() string {
	if r.ids != nil {
		return r.ids()
	}
	r.nextReq++
	return fmt.Sprintf("%s-%d", r.trigger, r.nextReq)
}

// Start moves the machine to fetching and returns the first request. If
// a sync already runs, the result is skipped.
func (r *Run) Start() Step {
	if err := r.machine.Fire(fsm.StartSync, 0, ""); err != nil {
		return Step{Done: &Result{Outcome: OutcomeSkipped, Peer: r.peer.ID, Message: ErrSyncInProgress.Error(), Err: ErrSyncInProgress}}
	}
	if r.trigger == ForceUpload {
		return r.forceUpload()
	}
	r.from = r.peer.PullCursor
	if r.trigger == ForceDownload {
		r.from = max(r.since, 0)
	} else if r.mixed() {
		// Rows here came from another peer (or from a pull cut short):
		// mirror this one instead (a full pull; synced rows it does not
		// have are removed), or a row deleted here before the cursor
		// would stay for ever.
		r.from, r.seen = 0, map[string]bool{}
	}
	return Step{Pull: r.pullRequest("")}
}

// Config keys naming the peer whose pull last applied a page
// (ConfigPullingPeer, written with the page) and the peer whose pull
// last completed (ConfigPulledPeer, written with the last page).
const (
	ConfigPullingPeer = "pulling_peer"
	ConfigPulledPeer  = "pulled_peer"
)

// mixed reports whether the store may hold rows from another peer than
// this run's: a pull from another peer applied pages, or one was cut
// short.
func (r *Run) mixed() bool {
	pulling, err1 := r.store.Config(ConfigPullingPeer)
	pulled, err2 := r.store.Config(ConfigPulledPeer)
	if err1 != nil && err2 != nil {
		return false // never pulled
	}
	return pulling != r.peer.ID || pulled != r.peer.ID
}

func (r *Run) pullRequest(continuation string) *pb.PullRequest {
	return &pb.PullRequest{ProtocolVersion: pb.ProtocolVersion_PROTOCOL_VERSION_1, RequestId: r.requestID(),
		LastPulledAt: r.from, Continuation: continuation, PageSize: uint32(r.pageSize)}
}

// OnPull applies one pulled page (and, with the last page, the peer's
// new pull cursor, in the same transaction), then asks for the next
// page or moves on to the push.
func (r *Run) OnPull(resp *pb.PullResponse) Step {
	cat := r.store.Catalog()
	cs, err := codec.ChangesetFromProto(resp.GetChanges(), nil)
	if err != nil {
		return r.Fail(fmt.Errorf("%w: pulled changes: %v", ErrBadRequest, err))
	}
	var changes []codec.Change
	for _, c := range fsm.Changes(cs) {
		if t, ok := cat.Table(c.Table); ok && t.Flow != schema.Local {
			changes = append(changes, c)
		}
	}
	if r.seen != nil {
		for _, c := range changes {
			r.seen[c.Table+"\x00"+c.ID] = true
		}
	}
	batch := kv.Batch{Changes: changes, Config: map[string]string{ConfigPullingPeer: r.peer.ID}}
	last := resp.GetContinuation() == ""
	if last && r.seen != nil {
		batch.Mirror = fsm.Unmirrored(r.seen, cat)
	}
	if last {
		if resp.GetTimestamp() <= 0 {
			return r.Fail(fmt.Errorf("%w: pull timestamp %d is not positive", ErrBadRequest, resp.GetTimestamp()))
		}
		// A force download from a time after the cursor skipped the
		// changes in between: keep the cursor then.
		if r.from <= r.peer.PullCursor || r.trigger != ForceDownload {
			batch.Peer, batch.PullCursor = r.peer.ID, resp.GetTimestamp()
		}
		batch.Config[ConfigPulledPeer] = r.peer.ID
		batch.UpstreamTime = resp.GetTimestamp()
	}
	merge := r.merge
	if merge == nil {
		merge = fsm.ApplyPulled
	}
	if _, err := r.store.Apply(batch, merge); err != nil {
		return r.Fail(fmt.Errorf("actors: apply pulled changes: %w", err))
	}
	r.pulled += cs.Count()
	if !last {
		return Step{Pull: r.pullRequest(resp.GetContinuation())}
	}
	r.fire(fsm.StartResolve, r.pulled)
	if r.trigger == ForceDownload {
		return r.finish(nil)
	}
	r.from = resp.GetTimestamp()
	if r.clamped, err = r.store.ClampPending(r.from + kv.DefaultMaxDrift.Milliseconds()); err != nil {
		return r.Fail(err)
	}
	pending, err := r.store.Collect(0)
	if err != nil {
		return r.Fail(err)
	}
	return r.push(fsm.PushSet(pending, cat), pending)
}

func (r *Run) forceUpload() Step {
	// No pull tells the upstream's time: bound own edits by the
	// estimate from the last one.
	up, err := r.store.UpstreamNow()
	if err != nil {
		return r.Fail(err)
	}
	if r.clamped, err = r.store.ClampPending(up + kv.DefaultMaxDrift.Milliseconds()); err != nil {
		return r.Fail(err)
	}
	var rows []codec.Record
	cat := r.store.Catalog()
	for _, name := range cat.Names() {
		err := r.store.Rows(name, func(rec kv.Record) error {
			rows = append(rows, rec)
			return nil
		})
		if err != nil {
			return r.Fail(err)
		}
	}
	r.fire(fsm.StartResolve, 0)
	r.from = r.peer.PullCursor
	return r.push(fsm.ForceUploadSet(rows, r.since, cat), nil)
}

// push sends cs, or finishes when there is nothing to send. pending are
// the collected records to mark synced once acknowledged (none for a
// force upload, which leaves sync status alone).
func (r *Run) push(cs *codec.Changeset, pending []codec.Record) Step {
	n := cs.Count()
	if n == 0 {
		return r.finish(nil)
	}
	r.pushed = pending
	r.fire(fsm.StartPush, n)
	return Step{Push: &pb.PushRequest{ProtocolVersion: pb.ProtocolVersion_PROTOCOL_VERSION_1,
		RequestId: r.requestID(), LastPulledAt: r.from, Changes: codec.ChangesetToProto(cs)}}
}

// OnPush marks the acknowledged rows synced, except those written since
// they were collected and those the peer rejected, and finishes.
func (r *Run) OnPush(resp *pb.PushResponse) Step {
	rejected := map[string][]string{}
	for _, rj := range resp.GetRejected() {
		rejected[rj.GetTable()] = append(rejected[rj.GetTable()], rj.GetId())
	}
	var refs []kv.Ref
	for _, rec := range fsm.Acknowledged(r.pushed, rejected) {
		refs = append(refs, kv.RefOf(rec))
	}
	if _, err := r.store.MarkSynced(refs); err != nil {
		return r.Fail(err)
	}
	return r.finish(resp)
}

func (r *Run) finish(resp *pb.PushResponse) Step {
	now := r.clock.Now().UnixMilli()
	if err := r.store.UpdatePeer(r.peer.ID, func(p *kv.Peer) { p.LastSyncedAt = now }); err != nil {
		return r.Fail(err)
	}
	res := &Result{Outcome: OutcomeOK, Peer: r.peer.ID, Pulled: r.pulled,
		Pushed: int(resp.GetAccepted()), Rejected: resp.GetRejected(), Clamped: r.clamped}
	r.fire(fsm.FinishSync, 0)
	return Step{Done: res}
}

// Fail ends the run with an error: the machine goes to error with the
// message for the peer's type, then back to idle keeping the message
// (Hikma's error_sync then finish_sync), so the next request can run.
// Nothing half-done stays behind: every store change was its own
// transaction.
func (r *Run) Fail(err error) Step {
	msg := UserMessage(r.peer.Type, err)
	r.msg = msg
	r.fire(fsm.ErrorSync, 0)
	r.machine.Fire(fsm.FinishSync, 0, "")
	return Step{Done: &Result{Outcome: OutcomeError, Peer: r.peer.ID, Pulled: r.pulled, Message: msg, Err: err}}
}

// fire moves the machine; a refusal here is a bug in the run's order.
func (r *Run) fire(ev fsm.Event, n int) {
	if err := r.machine.Fire(ev, n, r.msg); err != nil {
		panic(fmt.Sprintf("actors: sync run fired %s out of order: %v", ev, err))
	}
}

// Drive runs a whole sync synchronously over a transport: Start, then
// each request in turn until the end. The simulator and tests use it;
// the coordinator actor does the same through messages.
func (r *Run) Drive(send func(Step) (*pb.PullResponse, *pb.PushResponse, error)) Result {
	step := r.Start()
	for step.Done == nil {
		pull, push, err := send(step)
		switch {
		case err != nil:
			step = r.Fail(err)
		case step.Pull != nil:
			step = r.OnPull(pull)
		default:
			step = r.OnPush(push)
		}
	}
	return *step.Done
}
