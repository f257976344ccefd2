package fsm_test

import (
	"strconv"
	"strings"
	"testing"

	"github.com/clinicsync/clinicsync/codec"
	"github.com/clinicsync/clinicsync/codec/schema"
	"github.com/clinicsync/clinicsync/fsm"
	pb "github.com/clinicsync/clinicsync/proto"
)

func newSync(dir fsm.Direction) *fsm.Sync {
	n := 0
	return &fsm.Sync{Machine: fsm.NewMachine(), Catalog: schema.Default(), Peer: "cloud", Direction: dir,
		PageSize: 2, MaxDrift: 600, RequestID: func() string { n++; return strconv.Itoa(n) }}
}

// page is a pulled page with p1 (and a continuation when more).
func page(ts int64, more bool) *pb.PullResponse {
	cs := codec.NewChangeset()
	cs.Table("patients").Updated = []codec.Row{{Table: "patients", ID: "p1", Cols: cols("given_name", "Amina")}}
	resp := &pb.PullResponse{Changes: codec.EncodeChangeset(cs), Timestamp: ts}
	if more {
		resp.Continuation = "c"
	}
	return resp
}

func TestSyncSteps(t *testing.T) {
	s := newSync(fsm.BothWays)
	step := s.Start(fsm.Begin{Cursor: 50})
	if step.Pull == nil || step.Pull.LastPulledAt != 50 || step.Pull.PageSize != 2 || s.Machine.State() != fsm.Fetching {
		t.Fatalf("start: %+v in %s", step, s.Machine.State())
	}
	// A page with more to come: apply it, ask for the next; no cursor yet.
	step, err := s.OnPull(page(90, true))
	if err != nil || step.Apply == nil || len(step.Apply.Changes) != 1 || step.Apply.Peer != "" || step.Pull.GetContinuation() != "c" {
		t.Fatalf("first page: %+v, %v", step, err)
	}
	// The last page carries the cursor and the clock, then the push's
	// records are collected after clamping to the peer's time.
	step, err = s.OnPull(page(100, false))
	if err != nil || step.Apply.Peer != "cloud" || step.Apply.PullCursor != 100 || step.Apply.UpstreamTime != 100 ||
		step.Apply.Mirror != nil || step.Clamp != 700 || step.Collect != fsm.CollectPending {
		t.Fatalf("last page: %+v, %v", step, err)
	}
	step = s.Planned([]codec.Pending{{Table: "patients", ID: "p2", Size: 100}}, 0)
	if len(step.Load) != 1 || step.Load[0].ID != "p2" || s.Machine.State() != fsm.Pushing {
		t.Fatalf("planned: %+v", step)
	}
	pending := []codec.Record{{Row: codec.Row{Table: "patients", ID: "p2", Cols: cols("given_name", "Badr")}, Status: codec.Created}}
	step = s.Loaded(pending)
	if step.Push == nil || step.Push.LastPulledAt != 100 {
		t.Fatalf("loaded: %+v", step)
	}
	step = s.OnPush(&pb.PushResponse{Accepted: 1})
	if len(step.MarkSynced) != 1 || !step.Finish {
		t.Fatalf("pushed: %+v", step)
	}
	step = s.Finished()
	if d := step.Done; d == nil || d.Pulled != 2 || d.Pushed != 1 || s.Machine.State() != fsm.Idle {
		t.Fatalf("done: %+v", step.Done)
	}
	// A second sync while one runs is skipped.
	busy := newSync(fsm.BothWays)
	busy.Start(fsm.Begin{})
	if step := busy.Start(fsm.Begin{}); step.Done == nil || !step.Done.Skipped {
		t.Errorf("second start: %+v", step)
	}
}

func TestSyncMirrorsAnotherPeer(t *testing.T) {
	s := newSync(fsm.BothWays)
	if step := s.Start(fsm.Begin{Cursor: 50, Pulled: "hub"}); step.Pull.LastPulledAt != 0 {
		t.Fatalf("a mixed store pulls everything: %+v", step.Pull)
	}
	step, err := s.OnPull(page(100, false))
	if err != nil || step.Apply.Mirror == nil {
		t.Fatalf("last page: %+v, %v", step, err)
	}
	brought := codec.Record{Row: codec.Row{Table: "patients", ID: "p1"}}
	gone := codec.Record{Row: codec.Row{Table: "patients", ID: "p9"}}
	edited := codec.Record{Row: codec.Row{Table: "patients", ID: "p8"}, Status: codec.Updated}
	if step.Apply.Mirror(brought) || !step.Apply.Mirror(gone) || step.Apply.Mirror(edited) {
		t.Error("mirror: deletes exactly the synced rows the pull did not bring")
	}
	if step.Apply.Config[fsm.ConfigForeign] != "" || step.Apply.Config[fsm.ConfigPulledPeer] != "cloud" {
		t.Errorf("a completed mirror: config %v", step.Apply.Config)
	}
	// Pages of another peer's pull were applied since the last complete
	// pull from this one (cut short, then another cut short from this
	// peer): still mixed, so this peer is mirrored.
	again := newSync(fsm.BothWays)
	if step := again.Start(fsm.Begin{Cursor: 50, Pulled: "cloud", Foreign: true}); step.Pull.LastPulledAt != 0 {
		t.Fatalf("foreign pages applied since: %+v", step.Pull)
	}
	// A page from a peer other than the mirrored one marks the store.
	other := newSync(fsm.BothWays)
	other.Peer = "hub"
	other.Start(fsm.Begin{Cursor: 50, Pulled: "cloud"})
	if step, _ := other.OnPull(page(100, true)); step.Apply.Config[fsm.ConfigForeign] != "hub" {
		t.Errorf("a page from another peer: config %v", step.Apply.Config)
	}
	// A force upload pulls from its cursor without mirroring, then
	// collects every record.
	up := newSync(fsm.UploadOnly)
	if step := up.Start(fsm.Begin{Cursor: 50, Pulled: "hub", Foreign: true}); step.Pull.LastPulledAt != 50 {
		t.Fatalf("force upload pull: %+v", step.Pull)
	}
	if step, _ := up.OnPull(page(100, false)); step.Apply.Mirror != nil || step.Collect != fsm.CollectAll {
		t.Fatalf("force upload: %+v", step)
	}
	// A malformed page is an error; nothing to apply.
	bad := newSync(fsm.BothWays)
	bad.Start(fsm.Begin{})
	if _, err := bad.OnPull(&pb.PullResponse{}); err == nil {
		t.Error("a last page without a timestamp was taken")
	}
}

// A pull resumes only from a position of the same peer at the same
// cursor; each page rewrites the position, the last one clears it, and
// a mirroring pull saves none.
func TestSyncResume(t *testing.T) {
	saved := fsm.Resume{Peer: "cloud", From: 50, Continuation: "k", Pulled: 7}.String()
	for _, tc := range []struct {
		name  string
		begin fsm.Begin
		cont  string
		from  int64
	}{
		{"same peer and cursor", fsm.Begin{Cursor: 50, Pulled: "cloud", Resume: saved}, "k", 50},
		{"a first pull cut short (its pages marked the store foreign)", fsm.Begin{Cursor: 50, Foreign: true, Resume: saved}, "k", 50},
		{"the cursor moved since", fsm.Begin{Cursor: 60, Pulled: "cloud", Resume: saved}, "", 60},
		{"another peer's position", fsm.Begin{Cursor: 50, Pulled: "cloud", Resume: fsm.Resume{Peer: "hub", From: 50, Continuation: "k"}.String()}, "", 50},
		{"unreadable", fsm.Begin{Cursor: 50, Pulled: "cloud", Resume: "{"}, "", 50},
	} {
		s := newSync(fsm.BothWays)
		step := s.Start(tc.begin)
		if got := step.Pull.GetContinuation(); got != tc.cont || step.Pull.GetLastPulledAt() != tc.from {
			t.Errorf("%s: first request continuation %q from %d, want %q from %d", tc.name, got, step.Pull.GetLastPulledAt(), tc.cont, tc.from)
		}
	}

	s := newSync(fsm.BothWays)
	s.Start(fsm.Begin{Cursor: 50, Pulled: "cloud"})
	step, _ := s.OnPull(page(90, true))
	if r, ok := fsm.ParseResume(step.Apply.Config[fsm.ConfigResume]); !ok || r.Continuation != "c" || r.From != 50 || r.Pulled != 1 {
		t.Errorf("position saved with a page: %q", step.Apply.Config[fsm.ConfigResume])
	}
	step, _ = s.OnPull(page(100, false))
	if v, ok := step.Apply.Config[fsm.ConfigResume]; !ok || v != "" {
		t.Errorf("the last page leaves position %q", v)
	}

	// A pull mirroring another peer than the last one is not resumable.
	s = newSync(fsm.BothWays)
	s.Start(fsm.Begin{Cursor: 0, Pulled: "hub"})
	step, _ = s.OnPull(page(90, true))
	if v := step.Apply.Config[fsm.ConfigResume]; v != "" {
		t.Errorf("a mirroring pull saved position %q", v)
	}
}

// pushing is a sync past its pull, pushing chunks of at most two rows.
func pushing(t *testing.T) *fsm.Sync {
	t.Helper()
	s := newSync(fsm.BothWays)
	s.MaxPushRows = 2
	s.Start(fsm.Begin{})
	if _, err := s.OnPull(page(100, false)); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSyncPlansPushChunks: a push lists its pending rows, plans chunks
// of at most MaxPushRows in the order a server applies them (deletes
// first, children before parents; then parents before children), and
// reads one chunk's records at a time; a row no longer pending when its
// chunk is read is left out, and each chunk is marked synced when
// acknowledged.
func TestSyncPlansPushChunks(t *testing.T) {
	s := pushing(t)
	rows := []codec.Pending{
		{Table: "events", ID: "e1", Size: 10}, {Table: "patients", ID: "p2", Size: 10}, {Table: "patients", ID: "p1", Size: 10},
		{Table: "events", ID: "e0", Deleted: true}, {Table: "patients", ID: "p0", Deleted: true}, {Table: "event_logs", ID: "x", Size: 10},
	}
	step := s.Planned(rows, 0)
	var order []string
	pushes := 0
	for step.Load != nil {
		if len(step.Load) > 2 {
			t.Fatalf("a chunk of %d rows", len(step.Load))
		}
		var recs []codec.Record
		for _, p := range step.Load {
			order = append(order, p.Table+"/"+p.ID)
			r := codec.Record{Row: codec.Row{Table: p.Table, ID: p.ID, Cols: cols("given_name", "A")}, Status: codec.Created, Deleted: p.Deleted}
			if p.ID == "p2" {
				r.Status = codec.Synced // pushed by another sync meanwhile
			}
			recs = append(recs, r)
		}
		if step = s.Loaded(recs); step.Push != nil {
			pushes++
			cs, _, err := codec.DecodeChangeset(step.Push.GetChanges(), nil)
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, tc := range cs.Tables {
				n += len(tc.Created) + len(tc.Deleted)
			}
			step = s.OnPush(&pb.PushResponse{Accepted: uint64(n)})
			if len(step.MarkSynced) != n {
				t.Errorf("chunk %d: %d to mark synced, want %d", pushes, len(step.MarkSynced), n)
			}
		}
	}
	want := "events/e0 patients/p0 patients/p1 patients/p2 events/e1"
	if got := strings.Join(order, " "); got != want || !step.Finish || pushes != 3 {
		t.Errorf("read %s in %d pushes (finish %v), want %s in 3", got, pushes, step.Finish, want)
	}
	if d := s.Finished().Done; d.Pushed != 4 {
		t.Errorf("pushed %d, want 4 (p2 was no longer pending, event_logs never leave)", d.Pushed)
	}
}

// TestSyncPushesAhead: chunks read ahead (while the one before is in
// flight) go in the planned order, each acknowledgement marks exactly
// the rows its chunk carried, and a chunk whose rows are no longer
// pending is skipped.
func TestSyncPushesAhead(t *testing.T) {
	s := pushing(t)
	rows := []codec.Pending{
		{Table: "patients", ID: "p1", Size: 10}, {Table: "patients", ID: "p2", Size: 10}, {Table: "patients", ID: "p3", Size: 10},
		{Table: "patients", ID: "p4", Size: 10}, {Table: "patients", ID: "p5", Size: 10}, {Table: "patients", ID: "p6", Size: 10},
		{Table: "patients", ID: "p7", Size: 10},
	}
	recs := func(load []codec.Pending) []codec.Record {
		var out []codec.Record
		for _, p := range load {
			r := codec.Record{Row: codec.Row{Table: p.Table, ID: p.ID, Cols: cols("given_name", "A")}, Status: codec.Created}
			if p.ID == "p3" || p.ID == "p4" {
				r.Status = codec.Synced // pushed by another sync meanwhile
			}
			out = append(out, r)
		}
		return out
	}
	step := s.Planned(rows, 0)
	var sent, marked []string
	ahead := 0
	for {
		if step.Load != nil {
			step = s.Loaded(recs(step.Load))
			continue
		}
		if step.Push == nil {
			break
		}
		cs, _, err := codec.DecodeChangeset(step.Push.GetChanges(), nil)
		if err != nil {
			t.Fatal(err)
		}
		var chunk []string
		for _, r := range cs.Tables["patients"].Created {
			chunk = append(chunk, r.ID)
		}
		sent = append(sent, strings.Join(chunk, ","))
		for a := s.Ahead(); a != nil; a = s.Ahead() { // as actors.Run.PushAhead
			ahead++
			s.LoadedAhead(recs(a))
		}
		step = s.OnPush(&pb.PushResponse{Accepted: uint64(len(chunk))})
		var ids []string
		for _, r := range step.MarkSynced {
			ids = append(ids, r.ID)
		}
		marked = append(marked, strings.Join(ids, ","))
	}
	if got, want := strings.Join(sent, " "), "p1,p2 p5,p6 p7"; got != want {
		t.Errorf("sent %s, want %s", got, want)
	}
	if got, want := strings.Join(marked, " "), "p1,p2 p5,p6 p7"; got != want {
		t.Errorf("marked %s, want %s", got, want)
	}
	if ahead != 3 || !step.Finish {
		t.Errorf("%d chunks read ahead (want 3), finish %v", ahead, step.Finish)
	}
	if d := s.Finished().Done; d.Pushed != 5 {
		t.Errorf("pushed %d, want 5", d.Pushed)
	}
}
