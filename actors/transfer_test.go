package actors

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/clinicsync/clinicsync/codec"
	"github.com/clinicsync/clinicsync/fsm"
	pb "github.com/clinicsync/clinicsync/proto"
	"google.golang.org/protobuf/proto"
)

// pullLog records the pull requests a pair's mobile sends, and drops
// them from a chosen one on.
type pullLog struct {
	mu     sync.Mutex
	reqs   []*pb.PullRequest
	pushes []*pb.PushRequest
	dropAt int // drop the pull with this index and later ones (0: never)
}

func (l *pullLog) hook(c Call) Fault {
	l.mu.Lock()
	defer l.mu.Unlock()
	if c.Op == "push" {
		l.pushes = append(l.pushes, c.Request.(*pb.PushRequest))
		return Deliver
	}
	l.reqs = append(l.reqs, c.Request.(*pb.PullRequest))
	if l.dropAt > 0 && len(l.reqs) >= l.dropAt {
		return DropRequest
	}
	return Deliver
}

func (l *pullLog) take() (pulls []*pb.PullRequest, pushes []*pb.PushRequest) {
	l.mu.Lock()
	defer l.mu.Unlock()
	pulls, pushes, l.reqs, l.pushes = l.reqs, l.pushes, nil, nil
	return pulls, pushes
}

// A pull cut short resumes from the page after the last applied one:
// the next sync's first request carries the saved continuation, and no
// page is fetched twice. Pages report progress on the way.
func TestPullResumesAfterCut(t *testing.T) {
	p := newPairWith(t, KindCloud, func(c *NodeConfig) { c.PageSize = 5 })
	for i := range 23 {
		write(t, p.up, fmt.Sprintf("p%02d", i))
	}
	log := &pullLog{dropAt: 3}
	p.net.SetHook(log.hook)
	if res := p.sync(t); res.Outcome != OutcomeError || res.Pulled != 10 {
		t.Fatalf("cut sync = %+v, want an error after 10 rows", res)
	}
	saved, _ := p.mobile.Store().Config(fsm.ConfigResume)
	r, ok := fsm.ParseResume(saved)
	if !ok || r.Pulled != 10 || r.Peer != p.peer || r.From != 0 {
		t.Fatalf("saved position %q", saved)
	}
	if n := countRows(t, p.mobile, "patients"); n != 10 {
		t.Fatalf("%d rows applied, want 10", n)
	}
	pulls, _ := log.take()
	if len(pulls) != 3 || pulls[2].GetContinuation() != r.Continuation {
		t.Fatalf("cut pulls: %v", pulls)
	}

	log.dropAt = 0
	progress := subscribe(t, p.mobile)
	res := p.sync(t)
	if res.Outcome != OutcomeOK || res.Pulled != 23 {
		t.Fatalf("resumed sync = %+v", res)
	}
	pulls, _ = log.take()
	if len(pulls) != 3 || pulls[0].GetContinuation() != r.Continuation {
		t.Errorf("resumed with %d pulls, first continuation %q; want 3 from the saved one", len(pulls), pulls[0].GetContinuation())
	}
	if n := countRows(t, p.mobile, "patients"); n != 23 {
		t.Errorf("%d rows after the resumed pull, want 23", n)
	}
	if saved, _ := p.mobile.Store().Config(fsm.ConfigResume); saved != "" {
		t.Errorf("position kept after a complete pull: %q", saved)
	}
	var seen []string
	for _, x := range progress.waitFor(t, fsm.FinishSync) {
		if x.Event == fsm.Progress {
			seen = append(seen, fmt.Sprintf("%d/%d", x.Stats.Done, x.Stats.Total))
		}
	}
	if fmt.Sprint(seen) != "[15/23 20/23]" {
		t.Errorf("progress %v, want [15/23 20/23]", seen)
	}

	// A position the peer refuses (its store replaced) is dropped: the
	// sync fails once, and the next one starts the pull over.
	write(t, p.up, "q1")
	write(t, p.up, "q2")
	bad := Resume(t, p, "not-a-token")
	if res := p.sync(t); res.Outcome != OutcomeError {
		t.Fatalf("sync with a forged position = %+v", res)
	}
	if saved, _ := p.mobile.Store().Config(fsm.ConfigResume); saved != "" {
		t.Errorf("refused position %q kept (was %q)", saved, bad)
	}
	if res := p.sync(t); res.Outcome != OutcomeOK || res.Pulled != 2 {
		t.Errorf("sync after a refused position = %+v", res)
	}
}

// Resume stores a pull position with continuation cont for the pair's
// peer at its current cursor.
func Resume(t *testing.T, p *pair, cont string) string {
	t.Helper()
	s := fsm.Resume{Peer: p.peer, From: p.peerRecord(t).PullCursor, Continuation: cont}.String()
	if err := p.mobile.Store().SetConfig(fsm.ConfigResume, s); err != nil {
		t.Fatal(err)
	}
	return s
}

func countRows(t *testing.T, n *Node, table string) int {
	t.Helper()
	rows, err := n.Rows(table, "")
	if err != nil {
		t.Fatal(err)
	}
	return len(rows)
}

// A push goes out in chunks under the peer's body limit, each
// acknowledged and marked synced on its own: a sync cut between chunks
// keeps what was acknowledged and sends only the rest next time.
func TestPushInChunks(t *testing.T) {
	p := newPair(t, KindCloud)
	srv := p.up.Server(fsm.MergePolicy)
	srv.MaxPushBytes = 4 << 10 // chunks of at most 3 KiB of rows: a few rows each
	p.net.Listen(p.peer, srv)
	for i := range 40 {
		write(t, p.mobile, fmt.Sprintf("m%02d", i))
	}
	log := &pullLog{}
	p.net.SetHook(func(c Call) Fault {
		if c.Op == "push" {
			log.mu.Lock()
			n := len(log.pushes)
			log.mu.Unlock()
			if n == 2 {
				log.hook(c)
				return DropRequest // the third chunk is lost
			}
		}
		return log.hook(c)
	})
	if res := p.sync(t); res.Outcome != OutcomeError {
		t.Fatalf("sync with a lost chunk = %+v", res)
	}
	_, pushes := log.take()
	sent := 0
	for _, req := range pushes[:2] {
		cs, _, err := codec.DecodeChangeset(req.GetChanges(), nil)
		if err != nil {
			t.Fatal(err)
		}
		sent += cs.Count()
		if sz := proto.Size(req); sz > 4<<10 {
			t.Errorf("a chunk of %d bytes is over the 4 KiB limit", sz)
		}
	}
	if len(pushes) != 3 || sent == 0 || sent >= 40 {
		t.Fatalf("%d chunks sent, %d rows acknowledged", len(pushes), sent)
	}
	if n, _ := p.mobile.Store().PendingCount(); n != 40-sent {
		t.Errorf("pending after two acknowledged chunks: %d, want %d", n, 40-sent)
	}
	p.net.SetHook(log.hook)
	if res := p.sync(t); res.Outcome != OutcomeOK || res.Pushed != 40-sent {
		t.Fatalf("next sync = %+v, want %d pushed", res, 40-sent)
	}
	if n := countRows(t, p.up, "patients"); n != 40 {
		t.Errorf("cloud holds %d rows, want 40", n)
	}
	if n, _ := p.mobile.Store().PendingCount(); n != 0 {
		t.Errorf("pending after the sync: %d", n)
	}
}

// While a chunk is in flight the pusher reads the next one ahead; a row
// written after it was read (here while that next chunk is in flight)
// stays pending with the new value and goes with the next sync.
func TestPushAheadKeepsWrites(t *testing.T) {
	p := newPair(t, KindCloud)
	srv := p.up.Server(fsm.MergePolicy)
	srv.MaxPushBytes = 4 << 10
	p.net.Listen(p.peer, srv)
	for i := range 40 {
		write(t, p.mobile, fmt.Sprintf("m%02d", i))
	}
	var mu sync.Mutex
	pushes, edited := 0, ""
	p.net.SetHook(func(c Call) Fault {
		mu.Lock()
		defer mu.Unlock()
		if c.Op != "push" {
			return Deliver
		}
		if pushes++; pushes == 2 { // read ahead while the first was in flight
			cs, _, err := codec.DecodeChangeset(c.Request.(*pb.PushRequest).GetChanges(), nil)
			if err != nil {
				t.Error(err)
				return Deliver
			}
			edited = cs.Tables["patients"].Created[0].ID
			if _, err := p.mobile.Put("patients", edited, map[string]string{"phone": "0799999999"}); err != nil {
				t.Error(err)
			}
		}
		return Deliver
	})
	if res := p.sync(t); res.Outcome != OutcomeOK || res.Pushed != 40 || pushes < 3 {
		t.Fatalf("sync = %+v in %d chunks", res, pushes)
	}
	if n, _ := p.mobile.Store().PendingCount(); n != 1 || edited == "" {
		t.Fatalf("pending after the sync: %d, want 1 (%s, edited during its push)", n, edited)
	}
	p.net.SetHook(func(Call) Fault { return Deliver })
	if res := p.sync(t); res.Outcome != OutcomeOK || res.Pushed != 1 {
		t.Fatalf("next sync = %+v, want the edit pushed", res)
	}
	rows, err := p.up.Rows("patients", edited)
	if err != nil || len(rows) != 1 || rows[0].Cols["phone"].Str != "0799999999" {
		t.Errorf("the cloud holds %v (%v), want the edit", rows, err)
	}
}

// A sync that fails on a passing cause is tried again after a backoff,
// and its requester gets the outcome of the last attempt.
func TestSyncRetries(t *testing.T) {
	p := newPairWith(t, KindCloud, func(c *NodeConfig) { c.Retries, c.RetryBackoff = 2, time.Millisecond })
	write(t, p.up, "u1")
	var mu sync.Mutex
	fails := 2
	p.net.SetHook(func(c Call) Fault {
		mu.Lock()
		defer mu.Unlock()
		if c.Op == "pull" && fails > 0 {
			fails--
			return DropRequest
		}
		return Deliver
	})
	if res := p.sync(t); res.Outcome != OutcomeOK || res.Pulled != 1 {
		t.Fatalf("sync after two failed attempts = %+v", res)
	}
	// Refusals are not retried.
	p.net.SetHook(func(c Call) Fault { return Deliver })
	if !retryable(ErrRateLimited) || retryable(ErrUnauthorized) || retryable(ErrBadRequest) {
		t.Error("retryable misclassifies")
	}
}
