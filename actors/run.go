package actors

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/clinicsync/clinicsync/codec"
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

// LogValue logs a trigger by its name, as text and JSON alike.
func (t Trigger) LogValue() slog.Value { return slog.StringValue(t.String()) }

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
	// Conflicts counts the local values the pulled rows beat (each one
	// in the conflict log).
	Conflicts int
	Message   string // for the user ("" when ok)
	Err       error  // the cause, for the log
}

// Step is what a Run needs next: exactly one of a pull to send, a push
// to send, or the end.
type Step struct {
	Pull *pb.PullRequest
	Push *pb.PushRequest
	Done *Result
}

// Run executes one sync with one peer: the procedure is fsm.Sync, a
// pure step function; Run does the store work each step names and
// hands the requests to its caller, who sends them and feeds back the
// responses (the coordinator actor through the peer actor, the
// simulator through its virtual network). Every store change is one
// transaction: a pulled page with the new cursor and the mirror
// deletions; the acknowledged rows marked synced.
type Run struct {
	store     *kv.Store
	clock     kv.Clock
	peer      kv.Peer
	merge     kv.Merge
	sync      fsm.Sync
	nextReq   int
	conflicts int // values the pulled pages' merges logged as beaten
	overlap   bool
	marks     []codec.Record // acknowledged rows to mark synced once the next chunk is sent
	aheadErr  error          // marking or reading ahead failed (see Sent)
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
	// Overlap marks an acknowledged push chunk synced, and reads the
	// next, after the following chunk is sent (the caller calls Sent
	// once it has sent it), so that this node's work overlaps the
	// peer's. Without it every step runs before the next request.
	Overlap bool
}

// NewRun prepares a sync; Start begins it.
func NewRun(c RunConfig) *Run {
	r := &Run{store: c.Store, clock: c.Clock, peer: c.Peer, merge: c.Merge, overlap: c.Overlap}
	if r.merge == nil {
		r.merge = fsm.ApplyPulled
	}
	dir := map[Trigger]fsm.Direction{ForceUpload: fsm.UploadOnly, ForceDownload: fsm.DownloadOnly}[c.Trigger]
	r.sync = fsm.Sync{Machine: c.Machine, Catalog: c.Store.Catalog(), Peer: c.Peer.ID, Direction: dir,
		Since: c.Since, PageSize: c.PageSize, RequestID: c.RequestID, MaxDrift: kv.DefaultMaxDrift.Milliseconds()}
	if r.sync.PageSize <= 0 {
		r.sync.PageSize = DefaultPageSize
	}
	if r.sync.RequestID == nil {
		r.sync.RequestID = func() string {
			r.nextReq++
			return fmt.Sprintf("%s-%d", c.Trigger, r.nextReq)
		}
	}
	return r
}

// Start begins the sync and returns the first request. If a sync
// already runs, the result is skipped.
func (r *Run) Start() Step {
	pulled, _ := r.store.Config(fsm.ConfigPulledPeer) // "" if none
	foreign, _ := r.store.Config(fsm.ConfigForeign)
	resume, _ := r.store.Config(fsm.ConfigResume)
	step := r.sync.Start(fsm.Begin{Cursor: r.peer.PullCursor, Pulled: pulled, Foreign: foreign != "", Resume: resume})
	if step.Done != nil && step.Done.Skipped {
		return Step{Done: &Result{Outcome: OutcomeSkipped, Peer: r.peer.ID, Message: ErrSyncInProgress.Error(), Err: ErrSyncInProgress}}
	}
	return r.exec(step)
}

// OnPull applies one pulled page and returns the next request.
func (r *Run) OnPull(resp *pb.PullResponse) Step {
	_, apply := r.OnPullAhead(resp, nil)
	return apply()
}

// OnPullAhead is OnPull for a caller that sends the next page's request
// while this page applies: ahead is that request when the page is not
// the pull's last (nil otherwise), and apply applies the page and
// returns the next step (whose Pull is ahead, unless the apply failed).
// A page that fails to apply fails the sync; the answer to ahead is
// then dropped. The pull's position is stored with each applied page,
// so a crash meanwhile resumes after the last page applied.
func (r *Run) OnPullAhead(resp *pb.PullResponse, page *fsm.Page) (ahead *pb.PullRequest, apply func() Step) {
	if page == nil {
		p := fsm.DecodePage(resp)
		page = &p
	}
	step, err := r.sync.OnPage(resp, *page)
	if err != nil {
		return nil, func() Step { return r.Fail(fmt.Errorf("%w: %v", ErrBadRequest, err)) }
	}
	if step.Pull != nil && step.Collect == fsm.CollectNone && len(step.MarkSynced) == 0 && !step.Finish {
		ahead = step.Pull
	}
	return ahead, func() Step { return r.exec(step) }
}

// OnPush marks the acknowledged rows synced, except those written since
// they were collected and those the peer rejected, and sends the next
// chunk or finishes. With Overlap, rows acknowledged while a next chunk
// is ready are marked once it is sent (see Sent).
func (r *Run) OnPush(resp *pb.PushResponse) Step {
	if r.aheadErr != nil {
		return r.Fail(r.aheadErr)
	}
	step := r.sync.OnPush(resp)
	if r.overlap && step.Push != nil {
		r.marks, step.MarkSynced = step.MarkSynced, nil
	}
	return r.exec(step)
}

// Sent is called, with Overlap, once a push chunk is sent: while the
// peer applies it, this node marks the chunk before synced and reads
// the next (fsm.Sync.Ahead; the peer still gets chunks one at a time,
// in order). A failure fails the sync when the answer arrives; marks
// not made leave rows pending, sent again next sync.
func (r *Run) Sent() {
	if !r.overlap || r.aheadErr != nil {
		return
	}
	marks := r.marks
	r.marks = nil
	if err := r.markSynced(marks); err != nil {
		r.aheadErr = err
		return
	}
	for next := r.sync.Ahead(); next != nil; next = r.sync.Ahead() {
		recs, err := r.store.Records(next)
		if err != nil {
			r.aheadErr = fmt.Errorf("actors: reading a push chunk ahead: %w", err)
			return
		}
		r.sync.LoadedAhead(recs) // a chunk no longer pending: on to the next
	}
}

// markSynced marks acknowledged rows synced (those written since they
// were read stay pending).
func (r *Run) markSynced(recs []codec.Record) error {
	if len(recs) == 0 {
		return nil
	}
	refs := make([]kv.Ref, len(recs))
	for i, rec := range recs {
		refs[i] = kv.RefOf(rec)
	}
	_, err := r.store.MarkSynced(refs)
	return err
}

// exec does the store work of steps until one needs the network or ends.
func (r *Run) exec(s fsm.Step) Step {
	for {
		if w := s.Apply; w != nil {
			b := kv.Batch{Changes: w.Changes, Mirror: w.Mirror, Peer: w.Peer, PullCursor: w.PullCursor,
				Config: w.Config, UpstreamTime: w.UpstreamTime}
			res, err := r.store.Apply(b, r.merge)
			if err != nil {
				return r.Fail(fmt.Errorf("actors: apply pulled changes: %w", err))
			}
			r.conflicts += res.Conflicts
		}
		if s.Collect != fsm.CollectNone {
			next, err := r.collect(s.Clamp, s.Collect)
			if err != nil {
				return r.Fail(err)
			}
			s = next
			continue
		}
		if err := r.markSynced(s.MarkSynced); err != nil {
			return r.Fail(err)
		}
		if s.Load != nil {
			recs, err := r.store.Records(s.Load)
			if err != nil {
				return r.Fail(err)
			}
			s = r.sync.Loaded(recs)
			continue
		}
		switch {
		case s.Pull != nil:
			return Step{Pull: s.Pull}
		case s.Push != nil:
			return Step{Push: s.Push}
		case s.Finish:
			now := r.clock.Now().UnixMilli()
			if err := r.store.UpdatePeer(r.peer.ID, func(p *kv.Peer) { p.LastSyncedAt = now }); err != nil {
				return r.Fail(err)
			}
			s = r.sync.Finished()
		default:
			d := s.Done
			return Step{Done: &Result{Outcome: OutcomeOK, Peer: r.peer.ID, Pulled: d.Pulled, Pushed: d.Pushed,
				Rejected: d.Rejected, Clamped: d.Clamped, Conflicts: r.conflicts}}
		}
	}
}

// collect bounds own pending edits to limit, then lists the rows
// pending upstream (the push reads them chunk by chunk) or, for a force
// upload, reads every record.
func (r *Run) collect(limit int64, what fsm.Collect) (fsm.Step, error) {
	clamped, err := r.store.ClampPending(limit)
	if err != nil {
		return fsm.Step{}, err
	}
	if what == fsm.CollectPending {
		rows, err := r.store.PendingRows()
		if err != nil {
			return fsm.Step{}, err
		}
		return r.sync.Planned(rows, clamped), nil
	}
	var recs []codec.Record
	for _, name := range r.store.Catalog().Names() {
		err := r.store.Rows(name, func(rec kv.Record) error {
			recs = append(recs, rec)
			return nil
		})
		if err != nil {
			return fsm.Step{}, err
		}
	}
	return r.sync.Collected(recs, clamped), nil
}

// Fail ends the run with an error: the machine goes to error with the
// message for the peer's type, then back to idle keeping the message.
// Nothing half-done stays behind: every store change was its own
// transaction.
func (r *Run) Fail(err error) Step {
	if errors.Is(err, ErrBadRequest) {
		// A refused page (a continuation the peer no longer takes, or a
		// page this node cannot apply) is not asked for again: the next
		// pull starts over.
		if cerr := r.store.SetConfig(fsm.ConfigResume, ""); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}
	msg := UserMessage(r.peer.Type, err)
	d := r.sync.Fail(err, msg).Done
	return Step{Done: &Result{Outcome: OutcomeError, Peer: r.peer.ID, Pulled: d.Pulled, Conflicts: r.conflicts, Message: msg, Err: err}}
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
