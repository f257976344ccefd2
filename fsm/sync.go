package fsm

import (
	"encoding/json"
	"fmt"
	"slices"

	"github.com/clinicsync/clinicsync/codec"
	"github.com/clinicsync/clinicsync/codec/schema"
	pb "github.com/clinicsync/clinicsync/proto"
)

// Direction is what a sync moves: both ways (pull, then push), or one
// way since a time (a force upload or download).
type Direction uint8

const (
	BothWays Direction = iota
	UploadOnly
	DownloadOnly
)

// Config keys, written with the pulled pages: the peer whose pull last
// completed (ConfigPulledPeer, with the last page), and the peer of a
// page applied while the store mirrored another one (ConfigForeign,
// cleared when a mirroring pull completes; "" when none).
const (
	ConfigPulledPeer = "pulled_peer"
	ConfigForeign    = "foreign_pages"
	// ConfigResume is where an interrupted pull stopped (a Resume, as
	// JSON), written with each page it applied; every page of any pull
	// rewrites it ("" when that pull cannot be resumed or is complete).
	ConfigResume = "pull_resume"
)

// Resume is the position of a pull cut short after some pages: the next
// sync with the same peer, while the peer's cursor is still From, asks
// for the page after the last applied one instead of starting over.
// Only pulls that do not mirror are resumed (a mirroring pull needs
// every row it saw, which is not kept).
type Resume struct {
	Peer         string `json:"peer"`
	From         int64  `json:"from"` // the pull's last_pulled_at
	Continuation string `json:"continuation"`
	Pulled       int    `json:"pulled"` // records received so far
}

// ParseResume reads a ConfigResume value ("" or unreadable: none).
func ParseResume(s string) (Resume, bool) {
	var r Resume
	if s == "" || json.Unmarshal([]byte(s), &r) != nil || r.Peer == "" || r.Continuation == "" {
		return Resume{}, false
	}
	return r, true
}

func (r Resume) String() string {
	b, err := json.Marshal(r)
	if err != nil {
		panic("fsm: marshalling a Resume: " + err.Error())
	}
	return string(b)
}

// Sync is one sync with one peer as a pure procedure, in the manner of
// etcd raft's Ready: each call takes what the peer or the store
// answered and returns a Step naming the store work to do and the next
// request to send. It reads no clock and does no I/O; the executor
// (actors.Run) carries out each Step and feeds back the results.
type Sync struct {
	Machine   *Machine
	Catalog   *schema.Catalog
	Peer      string
	Direction Direction
	Since     int64 // ms, for a force upload or download
	PageSize  int
	// RequestID returns a fresh request id.
	RequestID func() string
	// MaxDrift bounds how far ahead of the peer's clock own edits may
	// be dated (ms; see kv.Store.ClampPending).
	MaxDrift int64
	// MaxPushRows bounds the records of one push (0: DefaultPushRows).
	MaxPushRows int

	from       int64  // last_pulled_at of this sync's pull
	cursor     int64  // the peer's pull cursor when the sync began
	pulledPeer string // the peer whose pull last completed
	mixed      bool   // the store held rows from another peer at the start
	pulled     int
	total      int // records of the pull, as the peer counts them
	resumable  bool
	maxPush    int // the peer's push body limit (0: not told)
	clamped    int
	pending    map[string]codec.Record // the records a push sends, by table and id
	chunks     []*codec.Changeset      // chunks of the push not yet acknowledged
	ready      *pb.PushRequest         // chunks[1] encoded, when read ahead
	plan       [][]codec.Pending       // chunks of a pending push not yet read (Planned)
	planned    int                     // rows of the plan
	sent       int                     // records of the push acknowledged
	accepted   int
	rejected   []*pb.Rejection
	msg        string
	// seen collects the rows of a full pull that mirrors a peer other
	// than the last one synced with (nil otherwise).
	seen map[string]bool
}

// Begin is the store's state when a sync begins.
type Begin struct {
	Cursor int64  // the peer's pull cursor
	Pulled string // ConfigPulledPeer ("" if no pull completed)
	// Foreign: pages from a peer other than Pulled were applied since
	// (ConfigForeign is set).
	Foreign bool
	// Resume is ConfigResume.
	Resume string
}

// Collect names the records the executor reads for a push.
type Collect uint8

const (
	CollectNone    Collect = iota
	CollectPending         // the pending rows, listed (Planned), then read chunk by chunk (Load)
	CollectAll             // every record, tombstones included (a force upload)
)

// Writes are a pulled page to apply in one store transaction with
// ApplyPulled: the rows, the rows to delete as the peer no longer has
// them (Mirror, decided inside the transaction), the peer's new pull
// cursor (when Peer is set), config entries, and the peer's clock.
type Writes struct {
	Changes      []codec.Change
	Mirror       func(codec.Record) bool
	Peer         string
	PullCursor   int64
	Config       map[string]string
	UpstreamTime int64
}

// Step is what the sync needs next. The executor does, in this order:
// Apply; then Clamp (bound own pending edits to that time, ms) and
// Collect, feeding the pending rows back with Planned (CollectPending)
// or the records with Collected (CollectAll); MarkSynced; Load, feeding
// the named rows' records back with Loaded; then sends Pull or Push, or
// on Finish records the sync time and calls Finished; Done ends the
// sync.
type Step struct {
	Apply      *Writes
	Clamp      int64
	Collect    Collect
	MarkSynced []codec.Record
	Load       []codec.Pending
	Pull       *pb.PullRequest
	Push       *pb.PushRequest
	Finish     bool
	Done       *Done
}

// Done is how a sync ended.
type Done struct {
	Skipped  bool // another sync was running
	Pulled   int
	Pushed   int
	Rejected []*pb.Rejection
	Clamped  int
	Err      error
}

// Start begins the sync with a pull. A force upload pulls first too,
// from its cursor and never mirroring (the peer may lack the very rows
// it is to receive), so that it pushes merged rows against a fresh
// last_pulled_at, which a strict peer accepts. It is skipped when the
// machine is not idle.
func (s *Sync) Start(b Begin) Step {
	if err := s.Machine.Fire(StartSync, 0, ""); err != nil {
		return Step{Done: &Done{Skipped: true, Err: err}}
	}
	s.cursor, s.pulledPeer = b.Cursor, b.Pulled
	// The store holds rows from another peer when its last completed
	// pull was another's, or pages of another peer's pull were applied
	// since (a pull cut short, whatever came after).
	s.mixed = b.Foreign || b.Pulled != "" && b.Pulled != s.Peer
	switch {
	case s.Direction == DownloadOnly:
		s.from = max(s.Since, 0)
	case s.mixed && s.Direction == BothWays:
		// Rows here came from another peer (or from a pull cut short):
		// mirror this one instead (a full pull; synced rows it does not
		// have are removed), or a row deleted here before the cursor
		// would stay for ever.
		s.from, s.seen = 0, map[string]bool{}
	default:
		s.from = b.Cursor
	}
	s.resumable = s.Direction == BothWays && s.seen == nil
	if r, ok := ParseResume(b.Resume); ok && s.Direction == BothWays && r.Peer == s.Peer && r.From == b.Cursor {
		// The pages applied so far are this peer's, cursor unchanged:
		// go on after the last one (its pages marked the store foreign
		// only when it was a first pull, which mirrors nothing).
		s.from, s.pulled, s.seen, s.mixed, s.resumable = r.From, r.Pulled, nil, false, true
		return Step{Pull: s.pullRequest(r.Continuation)}
	}
	return Step{Pull: s.pullRequest("")}
}

func (s *Sync) pullRequest(continuation string) *pb.PullRequest {
	return &pb.PullRequest{ProtocolVersion: pb.ProtocolVersion_PROTOCOL_VERSION_1, RequestId: s.RequestID(),
		LastPulledAt: s.from, Continuation: continuation, PageSize: uint32(s.PageSize)}
}

// Page is a pulled page's changes, decoded, or why it cannot be
// applied. DecodePage reads nothing but the response, so a caller may
// run it away from the sync, while the page before applies.
type Page struct {
	changes []codec.Change
	count   int // records: rows and deletes
	err     error
}

// DecodePage decodes a pulled page for OnPage. The peer is this node's
// source of truth: a page with a row it cannot take is not applied at
// all (the error names the row).
func DecodePage(resp *pb.PullResponse) Page {
	cs, rejected, err := codec.DecodeChangeset(resp.GetChanges(), nil)
	if err == nil && len(rejected) > 0 {
		err = fmt.Errorf("%s/%s: %w", rejected[0].Table, rejected[0].ID, rejected[0].Err)
	}
	if err != nil {
		return Page{err: fmt.Errorf("pulled changes: %v", err)}
	}
	return Page{changes: Changes(cs), count: cs.Count()}
}

// OnPull is OnPage decoding the page itself.
func (s *Sync) OnPull(resp *pb.PullResponse) (Step, error) { return s.OnPage(resp, DecodePage(resp)) }

// OnPage takes one pulled page, decoded by DecodePage: the page to
// apply (with the last page, the peer's new cursor and, for a
// mirroring pull, the rows to delete, in the same transaction), then
// the next page or the push. A malformed page is an error.
func (s *Sync) OnPage(resp *pb.PullResponse, page Page) (Step, error) {
	if page.err != nil {
		return Step{}, page.err
	}
	last := resp.GetContinuation() == ""
	if last && resp.GetTimestamp() <= 0 {
		return Step{}, fmt.Errorf("pull timestamp %d is not positive", resp.GetTimestamp())
	}
	w := &Writes{Config: map[string]string{}}
	if s.Peer != s.pulledPeer {
		w.Config[ConfigForeign] = s.Peer
	}
	for _, c := range page.changes {
		if t, ok := s.Catalog.Table(c.Table); ok && t.Flow != schema.Local {
			w.Changes = append(w.Changes, c)
			if s.seen != nil {
				s.seen[c.Table+"\x00"+c.ID] = true
			}
		}
	}
	s.pulled += page.count
	s.total = max(int(resp.GetTotal()), s.pulled)
	if n := resp.GetMaxPushBytes(); n > 0 {
		s.maxPush = int(min(n, 1<<40))
	}
	if !last {
		w.Config[ConfigResume] = ""
		if s.resumable {
			w.Config[ConfigResume] = Resume{Peer: s.Peer, From: s.from, Continuation: resp.GetContinuation(), Pulled: s.pulled}.String()
		}
		s.Machine.Progress(s.pulled, s.total)
		return Step{Apply: w, Pull: s.pullRequest(resp.GetContinuation())}, nil
	}
	w.Config[ConfigResume] = ""
	if s.seen != nil {
		w.Mirror = Unmirrored(s.seen, s.Catalog)
	}
	if s.seen != nil || !s.mixed && s.pulledPeer == "" {
		w.Config[ConfigForeign] = "" // the store mirrors this peer now
	}
	// A force download from a time after the cursor skipped the changes
	// in between: keep the cursor then.
	if s.from <= s.cursor || s.Direction != DownloadOnly {
		w.Peer, w.PullCursor = s.Peer, resp.GetTimestamp()
	}
	w.Config[ConfigPulledPeer] = s.Peer
	w.UpstreamTime = resp.GetTimestamp()
	s.fire(StartResolve, s.pulled)
	if s.Direction == DownloadOnly {
		return Step{Apply: w, Finish: true}, nil
	}
	s.from = resp.GetTimestamp()
	collect := CollectPending
	if s.Direction == UploadOnly {
		collect = CollectAll
	}
	return Step{Apply: w, Clamp: s.from + s.MaxDrift, Collect: collect}, nil
}

// Collected takes the records read for the push (and how many versions
// the clamp changed): the push's first chunk (see pushChunks), or the
// end when there is nothing to send.
func (s *Sync) Collected(recs []codec.Record, clamped int) Step {
	s.clamped = clamped
	var cs *codec.Changeset
	if s.Direction == UploadOnly {
		// A force upload leaves sync status alone: nothing to mark.
		cs = ForceUploadSet(recs, s.Since, s.Catalog)
	} else {
		cs = PushSet(recs, s.Catalog)
		s.pending = make(map[string]codec.Record, len(recs))
		for _, r := range recs {
			s.pending[r.Table+"\x00"+r.ID] = r
		}
	}
	n := cs.Count()
	if n == 0 {
		return Step{Finish: true}
	}
	rows, bytes := s.chunkLimits()
	s.chunks = pushChunks(cs, s.Catalog, rows, bytes)
	s.fire(StartPush, n)
	return Step{Push: s.pushRequest()}
}

// Planned takes the rows pending upstream (and how many versions the
// clamp changed) and plans the push: its chunks, in the order a server
// applies a push (Push.Changes), of at most MaxPushRows rows and,
// counting each row's stored size, three quarters of the peer's body
// limit. It asks for the first chunk's records (Load), or ends the
// sync when there is nothing to send. Only one chunk's records are held
// at a time.
func (s *Sync) Planned(rows []codec.Pending, clamped int) Step {
	s.clamped = clamped
	rows = slices.DeleteFunc(rows, func(p codec.Pending) bool {
		t, ok := s.Catalog.Table(p.Table)
		return !ok || t.Flow != schema.Synced
	})
	if len(rows) == 0 {
		return Step{Finish: true}
	}
	order := newPushOrder(s.Catalog, true)
	slices.SortFunc(rows, func(a, b codec.Pending) int { return order.compare(a.Table, a.ID, a.Deleted, b.Table, b.ID, b.Deleted) })
	maxRows, maxBytes := s.chunkLimits()
	s.plan, s.planned = nil, len(rows)
	start, size := 0, 0
	for i, p := range rows {
		n := p.Size
		if p.Deleted {
			n = len(p.ID) + 4
		}
		if i > start && (i-start+1 > maxRows || size+n > maxBytes) {
			s.plan = append(s.plan, rows[start:i])
			start, size = i, 0
		}
		size += n
	}
	s.plan = append(s.plan, rows[start:])
	s.pending = map[string]codec.Record{}
	s.fire(StartPush, len(rows))
	return s.load()
}

// load asks for the next planned chunk's records.
func (s *Sync) load() Step {
	next := s.plan[0]
	s.plan = s.plan[1:]
	return Step{Load: next}
}

// Loaded takes a planned chunk's records, as they are now, and sends
// them (rows no longer pending are left out).
func (s *Sync) Loaded(recs []codec.Record) Step {
	cs := PushSet(recs, s.Catalog)
	clear(s.pending)
	for _, r := range recs {
		s.pending[r.Table+"\x00"+r.ID] = r
	}
	if cs.Count() == 0 {
		if len(s.plan) > 0 {
			return s.load()
		}
		return Step{Finish: true}
	}
	s.chunks = []*codec.Changeset{cs}
	return Step{Push: s.pushRequest()}
}

// Ahead is the next planned chunk to read while the chunk in flight
// is being applied by the peer (nil when there is none, or one is read
// ahead already). LoadedAhead takes its records; the chunk then goes
// when the one in flight is acknowledged (OnPush), so the peer still
// applies chunks one at a time and in order, while this node reads and
// encodes the next. A row written after it was read stays pending, as
// for any chunk (MarkSynced compares versions).
func (s *Sync) Ahead() []codec.Pending {
	if len(s.plan) == 0 || len(s.chunks) != 1 {
		return nil
	}
	next := s.plan[0]
	s.plan = s.plan[1:]
	return next
}

// LoadedAhead takes the records of the chunk Ahead named.
func (s *Sync) LoadedAhead(recs []codec.Record) {
	cs := PushSet(recs, s.Catalog)
	if cs.Count() == 0 {
		return // no longer pending: nothing to send
	}
	for _, r := range recs {
		s.pending[r.Table+"\x00"+r.ID] = r
	}
	s.chunks = append(s.chunks, cs)
	s.ready = s.request(cs) // encoded now too, while the one before is in flight
}

// chunkLimits are the rows and bytes of one push chunk.
func (s *Sync) chunkLimits() (rows, bytes int) {
	rows, bytes = s.MaxPushRows, DefaultPushBytes
	if rows <= 0 {
		rows = DefaultPushRows
	}
	if s.maxPush > 0 {
		bytes = s.maxPush / 4 * 3
	}
	return rows, bytes
}

// pushRequest is the request of the next chunk to send (chunks[0]).
func (s *Sync) pushRequest() *pb.PushRequest {
	if req := s.ready; req != nil {
		s.ready = nil
		return req
	}
	return s.request(s.chunks[0])
}

func (s *Sync) request(cs *codec.Changeset) *pb.PushRequest {
	return &pb.PushRequest{ProtocolVersion: pb.ProtocolVersion_PROTOCOL_VERSION_1,
		RequestId: s.RequestID(), LastPulledAt: s.from, Changes: codec.EncodeChangeset(cs)}
}

// OnPush takes the answer to a chunk: its acknowledged rows to mark
// synced (the store keeps those written since they were collected
// pending), all but those the peer rejected; then the next chunk, or
// the end. Each chunk is applied whole by the peer: a sync cut short
// between chunks has marked what was acknowledged, and the next sync
// sends the rest.
func (s *Sync) OnPush(resp *pb.PushResponse) Step {
	rejected := map[string][]string{}
	for _, rj := range resp.GetRejected() {
		rejected[rj.GetTable()] = append(rejected[rj.GetTable()], rj.GetId())
	}
	s.accepted += int(resp.GetAccepted())
	s.rejected = append(s.rejected, resp.GetRejected()...)
	chunk := s.chunks[0]
	s.chunks = s.chunks[1:]
	var acked []codec.Record
	if s.pending != nil {
		var sent []codec.Record
		for _, name := range chunk.TableNames() {
			tc := chunk.Tables[name]
			for _, rows := range [][]codec.Row{tc.Created, tc.Updated} {
				for _, r := range rows {
					sent = append(sent, s.pending[name+"\x00"+r.ID])
				}
			}
			for _, id := range tc.Deleted {
				sent = append(sent, s.pending[name+"\x00"+id])
			}
		}
		acked = Acknowledged(sent, rejected)
		for _, r := range sent {
			delete(s.pending, r.Table+"\x00"+r.ID)
		}
	}
	s.sent += chunk.Count()
	switch {
	case len(s.chunks) > 0:
		total := s.sent + countAll(s.chunks)
		if s.planned > 0 { // chunks read ahead of a plan
			total = max(s.planned, s.sent)
		}
		s.Machine.Progress(s.sent, total)
		return Step{MarkSynced: acked, Push: s.pushRequest()}
	case len(s.plan) > 0:
		s.Machine.Progress(s.sent, max(s.planned, s.sent))
		step := s.load()
		step.MarkSynced = acked
		return step
	}
	return Step{MarkSynced: acked, Finish: true}
}

func countAll(chunks []*codec.Changeset) int {
	n := 0
	for _, c := range chunks {
		n += c.Count()
	}
	return n
}

// Finished ends a sync that went through, once the executor recorded
// its time.
func (s *Sync) Finished() Step {
	s.fire(FinishSync, 0)
	return Step{Done: &Done{Pulled: s.pulled, Clamped: s.clamped, Pushed: s.accepted, Rejected: s.rejected}}
}

// Fail ends the sync with an error: the machine goes to error with msg
// (the user's message), then back to idle keeping it (Hikma's
// error_sync then finish_sync), so the next request can run.
func (s *Sync) Fail(err error, msg string) Step {
	s.msg = msg
	s.fire(ErrorSync, 0)
	s.Machine.Fire(FinishSync, 0, "")
	return Step{Done: &Done{Pulled: s.pulled, Err: err}}
}

// fire moves the machine; a refusal here is a bug in the procedure.
func (s *Sync) fire(ev Event, n int) {
	if err := s.Machine.Fire(ev, n, s.msg); err != nil {
		panic(fmt.Sprintf("fsm: sync fired %s out of order: %v", ev, err))
	}
}
