package sim

import (
	"errors"
	"maps"
	"slices"
	"strings"

	"github.com/clinicsync/clinicsync/actors"
	"github.com/clinicsync/clinicsync/kv"
)

// Timeline is what the report page draws per node, recorded as the
// run goes (by Stats.sync, Stats.fault, Stats.cut, Stats.healed and
// Stats.violated). Times are world ms.
type Timeline struct {
	Syncs []SyncSpan
	Cuts  []Cut  // intervals: partitions, uplinks down, one-way cuts, offline
	Marks []Mark // point faults: crash, restart, jump, switch, ...
	// ViolationAt is when each kept violation was found, in the order
	// of Report.Violations.
	ViolationAt []int64
	HealAt      int64 // when every fault ended (0: not yet)
	open        map[[2]string]int
}

// SyncSpan is one sync a node ran, from its request to its result.
type SyncSpan struct {
	Node, Peer, Trigger, Outcome string
	From, To                     int64
	Pulled, Pushed               int
}

// Cut is an interval a node spent cut off, wholly or in part. Kind is
// a fault kind (partition, oneway, offline) or "uplink" for a clinic's
// internet down; To is 0 while the cut lasts.
type Cut struct {
	Node, Kind string
	From, To   int64
}

// Mark is a fault that struck a node at one time.
type Mark struct {
	Node, Kind string
	At         int64
}

func (s *Stats) sync(node string, t actors.Trigger, res actors.Result, from, ms int64) {
	s.Syncs++
	s.Outcomes[res.Outcome]++
	s.Triggers[t.String()]++
	if res.Outcome == actors.OutcomeOK {
		s.Latencies = append(s.Latencies, ms)
	}
	s.Timeline.Syncs = append(s.Timeline.Syncs, SyncSpan{node, res.Peer, t.String(), res.Outcome, from, from + ms, res.Pulled, res.Pushed})
	if n := len(s.SettlePending); n > 0 {
		// Settling: round n is running (SettlePending holds the
		// pending rows at the heal and after each round done).
		if len(s.SettleMoved) < n {
			s.SettleMoved = append(s.SettleMoved, 0)
		}
		s.SettleMoved[n-1] += res.Pulled + res.Pushed
	}
}

// settling notes the rows pending at the heal, as the settling rounds
// begin.
func (s *Stats) settling(pending int) { s.SettlePending = append(s.SettlePending, pending) }

func (s *Stats) fault(kind, node string, at int64) {
	s.Faults[kind]++
	s.FaultTimes[kind] = append(s.FaultTimes[kind], at)
	s.Timeline.Marks = append(s.Timeline.Marks, Mark{node, kind, at})
}

// cut opens (down) or closes an interval of a node cut off. Opening an
// open one, or closing a closed one, changes nothing.
func (s *Stats) cut(kind, node string, at int64, down bool) {
	tl := &s.Timeline
	if tl.open == nil {
		tl.open = map[[2]string]int{}
	}
	k := [2]string{node, kind}
	i, open := tl.open[k]
	switch {
	case down && !open:
		tl.open[k] = len(tl.Cuts)
		tl.Cuts = append(tl.Cuts, Cut{node, kind, at, 0})
	case !down && open:
		tl.Cuts[i].To = at
		delete(tl.open, k)
	}
}

// healed closes every open cut at the heal.
func (s *Stats) healed(at int64) {
	s.Timeline.HealAt = at
	for _, k := range slices.Collect(maps.Keys(s.Timeline.open)) {
		s.cut(k[1], k[0], at, false)
	}
}

// violated notes when the violation just kept was found.
func (s *Stats) violated(at int64) { s.Timeline.ViolationAt = append(s.Timeline.ViolationAt, at) }

// RowHistory is what the model and the replicas say of one row, for a
// violation on the page: the writes the model recorded and each node's
// final value of the columns written.
type RowHistory struct {
	Row       string
	Creator   string
	CreatedAt int64
	DeletedBy string // "" if nobody deleted it
	DeletedAt int64
	Writes    []RowWrite
	Cols      []string   // the columns written, sorted
	Finals    []FinalRow // one per node, in plan order
	Unknown   bool       // the model has no such row
}

// RowWrite is one write the model recorded.
type RowWrite struct {
	ID    int
	Node  string
	Col   string
	Value string
	At    int64
	Final bool // the value the cloud holds at the end
}

// FinalRow is a node's replica of the row at the end: absent, deleted,
// or these values of the written columns ("" for a column it lacks).
type FinalRow struct {
	Node   string
	State  string // "live", "deleted" or "absent"
	Values []string
}

// rowHistories gathers, after the final checks, the history of every
// row a kept violation names (by row).
func (w *World) rowHistories() map[string]*RowHistory {
	out := map[string]*RowHistory{}
	for _, v := range w.violations {
		if v.Row == "" || out[v.Row] != nil {
			continue
		}
		out[v.Row] = w.rowHistory(v.Row)
	}
	return out
}

func (w *World) rowHistory(row string) *RowHistory {
	h := &RowHistory{Row: row}
	table, id, _ := strings.Cut(row, "/")
	r := w.model.row(key{table, id})
	if r == nil {
		h.Unknown = true
	} else {
		h.Creator, h.CreatedAt = r.creator, r.createdAt
		if r.deleted {
			h.DeletedBy, h.DeletedAt = r.deletedBy, r.deletedAt
		}
		h.Cols = sortedKeys(r.cols)
		for _, c := range h.Cols {
			for _, wr := range r.cols[c] {
				h.Writes = append(h.Writes, RowWrite{ID: wr.id, Node: wr.writer, Col: c, Value: clip(wr.value.String()), At: wr.at})
			}
		}
		slices.SortStableFunc(h.Writes, func(a, b RowWrite) int { return int(a.At - b.At) })
	}
	for _, n := range w.all {
		f := FinalRow{Node: n.name, State: "live"}
		rec, err := n.store.Get(table, id)
		switch {
		case errors.Is(err, kv.ErrNotFound):
			f.State = "absent"
		case err != nil:
			f.State = "unreadable: " + err.Error()
		case rec.Deleted:
			f.State = "deleted"
		default:
			for _, c := range h.Cols {
				if v, ok := rec.Cols[c]; ok {
					f.Values = append(f.Values, clip(v.String()))
				} else {
					f.Values = append(f.Values, "")
				}
			}
		}
		if n == w.cloud && f.State == "live" {
			for i := range h.Writes {
				wr := &h.Writes[i]
				wr.Final = f.Values[slices.Index(h.Cols, wr.Col)] == wr.Value
			}
		}
		h.Finals = append(h.Finals, f)
	}
	return h
}
