package sim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/clinicsync/clinicsync/actors"
	"github.com/clinicsync/clinicsync/codec"
	"github.com/clinicsync/clinicsync/codec/schema"
	"github.com/clinicsync/clinicsync/fsm"
	"github.com/clinicsync/clinicsync/kv"
)

// Violation kinds.
const (
	VConvergence   = "convergence"  // a replica differs from the cloud after settling
	VLiveness      = "liveness"     // not quiet within the bound, or left busy or pending
	VLostRow       = "lost-row"     // a row created and never deleted is missing on the cloud
	VResurrected   = "resurrection" // a deleted row is alive again
	VPhantom       = "phantom"      // a value, column or row nobody wrote
	VBlanked       = "blanked"      // a written column is missing
	VLostWrite     = "lost-write"   // a column holds a value its writers superseded
	VCursor        = "cursor"       // a cursor went back
	VConcurrent    = "concurrent-sync"
	VDuplicate     = "duplicate"      // a row id twice in one table
	VEngineError   = "engine-error"   // the engine refused or failed what it must accept
	VRejected      = "rejected"       // a valid pushed row was rejected
	VServedCreated = "served-created" // a row went back as created to the node whose push created it
	maxRounds      = 8                // settling rounds allowed before liveness fails
	maxPerKind     = 50               // violations kept per kind
	maxFirstRows   = 5                // divergent rows with history in the summary
)

// Violation is one broken invariant.
type Violation struct {
	Kind   string `json:"kind"`
	Node   string `json:"node,omitempty"`
	Row    string `json:"row,omitempty"`
	At     string `json:"at"` // virtual time, day+hh:mm:ss.mmm
	Detail string `json:"detail"`
	// History is the model's record of the row, when there is one.
	History string `json:"history,omitempty"`
	// deletedRow: the model says somebody deleted the row.
	deletedRow bool
	// involved are the row's creator and deleter and the writers of
	// the columns at issue (for test triage).
	involved []string
}

func (v Violation) String() string {
	s := fmt.Sprintf("[%s] %s", v.Kind, v.At)
	if v.Node != "" {
		s += " " + v.Node
	}
	if v.Row != "" {
		s += " " + v.Row
	}
	return s + ": " + v.Detail
}

// violate records a violation (once per kind, node and row).
func (w *World) violate(kind, node, row, format string, a ...any) {
	n := 0
	for _, v := range w.violations {
		if v.Kind == kind {
			n++
			if v.Node == node && v.Row == row {
				return
			}
		}
	}
	if n >= maxPerKind {
		w.stats.Dropped++
		return
	}
	v := Violation{Kind: kind, Node: node, Row: row, At: clockText(w.clock.now - w.base), Detail: fmt.Sprintf(format, a...)}
	if t, id, ok := strings.Cut(row, "/"); ok {
		if r := w.model.row(key{t, id}); r != nil {
			v.History, v.deletedRow = r.history(w.base), r.deleted
			v.involved = []string{r.creator}
			if r.deleted {
				v.involved = append(v.involved, r.deletedBy)
			}
		}
	}
	w.violations = append(w.violations, v)
	w.stats.violated(w.clock.now)
	w.tracef("VIOLATION %s", v)
}

// checkCursors checks that a node's serving cursor and its pull cursor
// of each peer never go back, across syncs, restarts and clock jumps.
func (w *World) checkCursors(n *node) {
	c, err := n.store.LastCursor()
	if err != nil {
		w.violate(VEngineError, n.name, "", "reading the cursor: %v", err)
		return
	}
	if c < n.maxCursor {
		w.violate(VCursor, n.name, "", "serving cursor went back from %d to %d", n.maxCursor, c)
	}
	n.maxCursor = max(n.maxCursor, c)
	peers, err := n.store.Peers()
	if err != nil {
		w.violate(VEngineError, n.name, "", "reading peers: %v", err)
		return
	}
	for _, p := range peers {
		if p.PullCursor < n.maxPull[p.ID] {
			w.violate(VCursor, n.name, "", "pull cursor of %s went back from %d to %d", p.ID, n.maxPull[p.ID], p.PullCursor)
		}
		n.maxPull[p.ID] = max(n.maxPull[p.ID], p.PullCursor)
	}
}

// checkCloudPush checks, after the cloud handled a push, that no row
// the cloud had deleted came back, and notes the rows it now holds as
// deleted.
func (w *World) checkCloudPush(c *call) {
	var rows []key
	for _, t := range changesOf(c.push).GetTables() {
		for _, r := range slices.Concat(t.GetCreated(), t.GetUpdated()) {
			rows = append(rows, key{t.GetTable(), r.GetId()})
		}
		for _, id := range t.GetDeleted() {
			rows = append(rows, key{t.GetTable(), id})
		}
	}
	w.checkCloudRows(c.from, rows)
}

// checkCloudRows is checkCloudPush for the rows a push named.
func (w *World) checkCloudRows(from *node, rows []key) {
	for _, k := range rows {
		rec, err := w.cloud.store.Get(k.table, k.id)
		switch {
		case err != nil:
		case rec.Deleted:
			w.cloudTombs[k] = true
		case w.cloudTombs[k]:
			w.violate(VResurrected, cloudName, k.String(), "deleted on the cloud, alive again after a push from %s", from.name)
		}
	}
}

// settle lets every node sync, devices then hubs, round after round,
// until a round changes nothing anywhere (no row written, nothing
// pending, every sync ok), or the bound is reached. Cursors cannot tell:
// every pull issues one as its timestamp.
func (w *World) settle() {
	start := w.clock.now
	w.stats.settling(w.pending())
	for round := 1; round <= maxRounds; round++ {
		before := w.versions()
		ok := true
		for _, n := range slices.Concat(w.devices, w.hubs) {
			if res := w.syncNode(n, actors.Manual, 0, fmt.Sprintf("settle round %d", round)); res.Outcome != actors.OutcomeOK {
				ok = false
			}
			w.clock.advance(1000)
		}
		pending := w.pending()
		w.stats.SettlePending = append(w.stats.SettlePending, pending)
		if ok && pending == 0 && slices.Equal(before, w.versions()) {
			w.stats.SettleRounds, w.stats.SettleMs = round, w.clock.now-start
			w.tracef("settled after %d rounds", round)
			return
		}
	}
	w.stats.SettleRounds, w.stats.SettleMs = -1, w.clock.now-start
	for _, n := range w.all {
		if c, _ := n.store.PendingCount(); c > 0 {
			recs, _ := n.store.Collect(3)
			var ids []string
			for _, r := range recs {
				ids = append(ids, fmt.Sprintf("%s/%s(%s)", r.Table, r.ID, r.Status))
			}
			w.violate(VLiveness, n.name, "", "still %d rows pending after %d settling rounds: %s", c, maxRounds, strings.Join(ids, " "))
		}
	}
	w.violate(VLiveness, "", "", "no quiet round within %d settling rounds", maxRounds)
}

func (w *World) versions() []uint64 {
	out := make([]uint64, len(w.all))
	for i, n := range w.all {
		out[i], _ = n.store.LastVersion()
	}
	for _, n := range w.wdbs {
		out = append(out, uint64(n.wdb.applied))
	}
	return out
}

func (w *World) pending() int {
	total := 0
	for _, n := range w.all {
		c, _ := n.store.PendingCount()
		total += c
	}
	for _, n := range w.wdbs {
		total += n.wdb.pending()
	}
	return total
}

// scan reads every row of a node once: it hashes the whole replica
// (rows, tombstones, sync metadata, peers) into h, in table and id
// order, and returns the node's live rows of the given tables.
func scan(n *node, tables []string, h io.Writer) (replica, error) {
	fmt.Fprintf(h, "node %s\n", n.name)
	out := replica{cols: map[key]map[string]codec.Value{}, vers: map[key]map[string]codec.Version{}}
	var buf bytes.Buffer
	for _, t := range n.store.Catalog().Names() {
		keep := slices.Contains(tables, t)
		prev := ""
		err := n.store.Rows(t, func(r kv.Record) error {
			if r.ID <= prev && prev != "" {
				return fmt.Errorf("%w: %s/%s listed after %s", errDuplicate, t, r.ID, prev)
			}
			prev = r.ID
			buf.Reset()
			fmt.Fprintf(&buf, "%s/%s %s %t [%s] %d %d %s {", t, r.ID, r.Status, r.Deleted, strings.Join(r.Changed, ","), r.Cursor, r.CreatedCursor, r.Origin)
			for _, c := range r.Columns() {
				buf.WriteString(c)
				buf.WriteByte('=')
				buf.WriteString(r.Cols[c].String())
				buf.WriteByte(' ')
			}
			buf.WriteString("}\n")
			h.Write(buf.Bytes())
			if keep && !r.Deleted {
				out.cols[key{t, r.ID}] = r.Cols
				out.vers[key{t, r.ID}] = r.Versions
			}
			return nil
		})
		if err != nil {
			return replica{}, err
		}
	}
	peers, err := n.store.Peers()
	for _, p := range peers {
		fmt.Fprintf(h, "peer %s %s cursor=%d synced=%d\n", p.ID, p.Status, p.PullCursor, p.LastSyncedAt)
	}
	return out, err
}

var errDuplicate = fmt.Errorf("sim: duplicate row id")

// replica is what a node holds at the end: its live rows (of the tables
// it receives) with their column versions.
type replica struct {
	cols map[key]map[string]codec.Value
	vers map[key]map[string]codec.Version
}

// received lists the tables a node gets from its upstream.
func received(n *node, cat *schema.Catalog) []string { return Received(cat, n.kind) }

// Received lists the tables a node of this kind ("cloud", "hub" or
// "mobile") holds and converges on: the cloud every table that is not
// local, the others what their upstream serves them.
func Received(cat *schema.Catalog, kind string) []string {
	if kind == kindCloud {
		var out []string
		for _, name := range cat.Names() {
			if t, _ := cat.Table(name); t.Flow != schema.Local {
				out = append(out, name)
			}
		}
		return out
	}
	return cat.ServedTables(kind == kindHub)
}

// InScope is the checks' reading of clinic scope for a row of a table
// with a clinic column of its own, or none (then it goes everywhere).
// A row of a table that follows its parents is never in scope here:
// only the simulator's model knows its parents.
func InScope(t *schema.Table, id string, cols map[string]codec.Value, clinic string) bool {
	return inClinic(t, id, cols, clinic, newModel(), nil)
}

// inClinic is the simulator's own reading of clinic scope: a row is a
// clinic's when its clinic column names the clinic or is empty (a
// clinic_ids list: contains it or is empty). A row with no clinic of
// its own whose table follows parents (events follow their patient and
// visit) is the clinic's when some parent it names was created and
// every such parent is the clinic's, as the model recorded it (deleted
// or not: a parent's clinic outlives it); other tables without a
// clinic column go everywhere.
func inClinic(t *schema.Table, id string, cols map[string]codec.Value, clinic string, m *Model, cat *schema.Catalog) bool {
	own := t.ClinicColumn == "id" || t.ClinicColumn != "" && !cols[t.ClinicColumn].IsNull()
	if !own {
		if len(t.Follows) == 0 {
			return true
		}
		some := false
		for _, l := range t.Follows {
			pid := cols[l.Column].Str
			p := m.rows[key{l.Table, pid}]
			if pid == "" || p == nil {
				continue
			}
			pt, _ := cat.Table(l.Table)
			// The workload never moves a row to another clinic: its
			// first clinic is its clinic.
			pcols := map[string]codec.Value{}
			if ws := p.cols[pt.ClinicColumn]; len(ws) > 0 {
				pcols[pt.ClinicColumn] = ws[0].value
			}
			if !inClinic(pt, pid, pcols, clinic, m, cat) {
				return false
			}
			some = true
		}
		return some
	}
	if t.ClinicColumn == "id" {
		return id == clinic
	}
	v := cols[t.ClinicColumn]
	switch v.Kind {
	case codec.KindJSON:
		var ids []string
		if json.Unmarshal([]byte(v.Str), &ids) != nil {
			return false
		}
		return len(ids) == 0 || slices.Contains(ids, clinic)
	}
	return v.Str == clinic
}

// expected is what a node should hold once settled: the cloud's live
// rows of the tables it receives, in its clinic, without the secret
// columns on a device.
func expected(n *node, cloud map[key]map[string]codec.Value, m *Model, cat *schema.Catalog) map[key]map[string]codec.Value {
	tables := received(n, cat)
	out := map[key]map[string]codec.Value{}
	for k, cols := range cloud {
		if !slices.Contains(tables, k.table) {
			continue
		}
		t, _ := cat.Table(k.table)
		if n.wdb == nil && !inClinic(t, k.id, cols, n.clinic, m, cat) { // a user signed in with Basic is unscoped
			continue
		}
		if n.kind == kindMobile {
			c := map[string]codec.Value{}
			for name, v := range cols {
				if col, ok := t.Column(name); !ok || !col.Secret {
					c[name] = v
				}
			}
			cols = c
		}
		out[k] = cols
	}
	return out
}

// checkFinal runs the end-of-run checks: liveness (idle, nothing
// pending), convergence of every replica with the cloud, no duplicate
// ids, and every row and column of every replica against the model.
func (w *World) checkFinal() {
	cat := w.cloud.store.Catalog()
	for _, n := range w.all {
		st := n.machine.State()
		if n.eng != nil {
			st = n.eng.node.State()
		}
		if st != fsm.Idle {
			w.violate(VLiveness, n.name, "", "sync machine left in state %s", st)
		}
	}
	cloud, err := scan(w.cloud, received(w.cloud, cat), w.replicas)
	if err != nil {
		w.violate(VDuplicate, cloudName, "", "%v", err)
		return
	}
	w.stats.RowsPerNode = map[string]int{cloudName: len(cloud.cols)}
	finals := map[string]replica{cloudName: cloud}
	for _, n := range w.all[1:] {
		got, err := scan(n, received(n, cat), w.replicas)
		if err != nil {
			w.violate(VDuplicate, n.name, "", "%v", err)
			continue
		}
		finals[n.name] = got
		w.stats.RowsPerNode[n.name] = len(got.cols)
		w.compare(n, expected(n, cloud.cols, w.model, cat), got.cols)
	}
	for _, n := range w.wdbs {
		got := w.wdbRows(n, w.replicas)
		finals[n.name] = replica{cols: got}
		w.stats.RowsPerNode[n.name] = len(got)
		w.compare(n, expected(n, cloud.cols, w.model, cat), got)
		if c := n.wdb.pending(); c > 0 {
			w.violate(VLiveness, n.name, "", "still %d records not synced after settling", c)
		}
	}
	w.checkModel(finals, w.conflictLogs())
}

// conflictLogs reads every node's conflict log, by row and column.
func (w *World) conflictLogs() map[colKey][]kv.Conflict {
	out := map[colKey][]kv.Conflict{}
	for _, n := range w.all {
		err := n.store.Conflicts("", "", func(c kv.Conflict) error {
			ck := colKey{key{c.Table, c.ID}, c.Column}
			out[ck] = append(out[ck], c)
			return nil
		})
		if err != nil {
			w.violate(VEngineError, n.name, "", "reading the conflict log: %v", err)
		}
	}
	for _, n := range w.wdbs {
		for _, c := range n.conflicts {
			ck := colKey{key{c.Table, c.ID}, c.Column}
			out[ck] = append(out[ck], c)
		}
	}
	return out
}

// compare reports the rows where a replica differs from what it should
// hold.
func (w *World) compare(n *node, want, got map[key]map[string]codec.Value) {
	var keys []key
	for k := range want {
		keys = append(keys, k)
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(a, b key) int { return strings.Compare(a.String(), b.String()) })
	for _, k := range keys {
		wc, inWant := want[k]
		gc, inGot := got[k]
		switch {
		case !inGot:
			w.violate(VConvergence, n.name, k.String(), "missing; the cloud has %s", clipRow(rowText(wc)))
		case !inWant:
			cr, err := w.cloud.store.Get(k.table, k.id)
			state := "absent on the cloud"
			switch {
			case err == nil && cr.Deleted:
				state = "deleted on the cloud"
			case err == nil:
				state = "out of this node's tables or clinic scope"
			}
			w.violate(VConvergence, n.name, k.String(), "alive here, %s: %s", state, clipRow(rowText(gc)))
		default:
			if diff, cols := colDiff(wc, gc); diff != "" {
				w.violate(VConvergence, n.name, k.String(), "differs from the cloud: %s", diff)
				if v := &w.violations[len(w.violations)-1]; v.Row == k.String() && v.Node == n.name {
					if r := w.model.row(k); r != nil {
						v.History = r.history(w.base, cols...)
					}
				}
			}
		}
	}
}

// checkModel checks every replica's final rows against the model
// (DESIGN.md, invariants 2 and 3). A row somebody deleted is alive
// nowhere (a delete beats every edit, whatever the order). A row
// created and never deleted is on the cloud. For each column written:
// every replica holding the row holds one value, a value written to it
// with a version given to that write; the final write was not
// overwritten by a write made where it had been seen; and every other
// write either has the final value, or was seen by a later write
// (overwritten knowingly: nothing to log), or was beaten by a write
// with a higher version and sits in some node's conflict log. No
// written column is missing on the cloud, none nobody wrote is there,
// and no row exists that nobody created.
func (w *World) checkModel(finals map[string]replica, conflicts map[colKey][]kv.Conflict) {
	cloud := finals[cloudName]
	var names []string
	for _, n := range slices.Concat(w.all, w.wdbs) {
		if _, ok := finals[n.name]; ok {
			names = append(names, n.name)
		}
	}
	for _, k := range w.model.keys() {
		r := w.model.row(k)
		cols, alive := cloud.cols[k]
		if r.deleted {
			if alive {
				w.violate(VResurrected, cloudName, k.String(), "deleted by %s, alive on the cloud: %s", r.deletedBy, clipRow(rowText(cols)))
			}
			for _, name := range names[1:] {
				if _, ok := finals[name].cols[k]; ok {
					w.violate(VResurrected, name, k.String(), "deleted by %s, alive on this replica", r.deletedBy)
				}
			}
			continue
		}
		if !alive {
			w.violate(VLostRow, cloudName, k.String(), "created by %s and never deleted, missing on the cloud", r.creator)
			continue
		}
		var phantom, lost, blanked, split, lostCols, phantomCols, splitCols []string
		for _, c := range sortedKeys(cols) {
			if len(r.cols[c]) == 0 {
				phantom = append(phantom, fmt.Sprintf("%s=%s that nobody wrote", c, clip(cols[c].String())))
			}
		}
		for _, c := range sortedKeys(r.cols) {
			v, ok := cols[c]
			if !ok {
				last := r.cols[c][len(r.cols[c])-1]
				blanked = append(blanked, fmt.Sprintf("%s (last written %s)", c, clip(last.value.String())))
				continue
			}
			// Every replica holding the row holds the same value.
			var vals []string
			for _, name := range names {
				if rv, ok := finals[name].cols[k][c]; ok && !rv.Equal(v) {
					vals = append(vals, fmt.Sprintf("%s has %s", name, clip(rv.String())))
				}
			}
			if len(vals) > 0 {
				splitCols = append(splitCols, c)
				split = append(split, fmt.Sprintf("%s: the cloud has %s, %s", c, clip(v.String()), strings.Join(vals, ", ")))
			}
			final := r.resolve(c, cloud.vers[k][c], v)
			if final == nil {
				phantomCols = append(phantomCols, c)
				phantom = append(phantom, fmt.Sprintf("%s=%s at version %s is no write of it", c, clip(v.String()), cloud.vers[k][c]))
				continue
			}
			if !final.value.Equal(v) {
				phantomCols = append(phantomCols, c)
				phantom = append(phantom, fmt.Sprintf("%s=%s at the version of write #%d, which typed %s", c, clip(v.String()), final.id, clip(final.value.String())))
				for _, o := range r.cols[c] {
					if o != final && slices.Contains(o.versions, cloud.vers[k][c]) {
						phantom = append(phantom, fmt.Sprintf("version %s was issued to two writes, #%d and #%d", cloud.vers[k][c], final.id, o.id))
					}
				}
			}
			if p := lostTo(r, c, final, v, conflicts[colKey{k, c}]); p != "" {
				lost = append(lost, p)
				lostCols = append(lostCols, c)
			}
		}
		if len(phantom) > 0 {
			w.violate(VPhantom, cloudName, k.String(), "column %s", strings.Join(phantom, "; "))
			w.annotate(VPhantom, k, r, phantomCols)
		}
		if len(blanked) > 0 {
			w.violate(VBlanked, cloudName, k.String(), "written columns missing: %s", strings.Join(blanked, ", "))
		}
		if len(split) > 0 {
			w.violate(VConvergence, "", k.String(), "replicas disagree: %s", strings.Join(split, "; "))
			w.annotate(VConvergence, k, r, splitCols)
		}
		if len(lost) > 0 {
			w.violate(VLostWrite, "", k.String(), "%s", strings.Join(lost, "; "))
			w.annotate(VLostWrite, k, r, lostCols)
		}
	}
	for _, k := range sortedRowKeys(cloud.cols) {
		if w.model.row(k) == nil {
			w.violate(VPhantom, cloudName, k.String(), "a row nobody created: %s", clipRow(rowText(cloud.cols[k])))
		}
	}
}

// annotate gives the violation just recorded (if it was) the model's
// history of the columns at issue.
func (w *World) annotate(kind string, k key, r *mrow, cols []string) {
	if len(w.violations) == 0 {
		return
	}
	if v := &w.violations[len(w.violations)-1]; v.Kind == kind && v.Row == k.String() {
		v.History = r.history(w.base, cols...)
		for _, c := range cols {
			v.involved = append(v.involved, r.writers(c)...)
		}
	}
}

// lostTo checks invariant 2 for one column whose final value v came
// from write final: it returns what was lost ("" if nothing).
func lostTo(r *mrow, col string, final *write, v codec.Value, logged []kv.Conflict) string {
	var out []string
	ws := r.cols[col]
	for _, later := range ws {
		if later.seen[final.id] && later != final && !later.value.Equal(v) {
			out = append(out, fmt.Sprintf("%s=%s (#%d by %s) is final, but #%d by %s (%s) was written after its replica had it",
				col, clip(v.String()), final.id, final.writer, later.id, later.writer, clip(later.value.String())))
		}
	}
	seenLater := func(wr *write) bool {
		return slices.ContainsFunc(ws, func(o *write) bool { return o != wr && o.seen[wr.id] })
	}
	inLog := func(wr *write) bool {
		return slices.ContainsFunc(logged, func(c kv.Conflict) bool { return c.Value.Equal(wr.value) && r.resolve(col, c.Version, c.Value) == wr })
	}
	for _, wr := range ws {
		if wr == final || wr.value.Equal(v) || seenLater(wr) {
			continue
		}
		// The same value at a higher version (or the same: a JSON client's
		// edit that kept the stored value takes its version), overwritten
		// where it had been seen or kept in a conflict log: this write's
		// value was not lost (merges log no conflict between equal values).
		if slices.ContainsFunc(ws, func(o *write) bool {
			return o != wr && o.value.Equal(wr.value) && o.version().Compare(wr.version()) >= 0 && (seenLater(o) || inLog(o))
		}) {
			continue
		}
		if final.version().Compare(wr.version()) < 0 {
			out = append(out, fmt.Sprintf("%s=%s (#%d by %s, version %s) is final, but #%d by %s (%s) has the higher version %s",
				col, clip(v.String()), final.id, final.writer, final.version(), wr.id, wr.writer, clip(wr.value.String()), wr.version()))
			continue
		}
		if !inLog(wr) {
			out = append(out, fmt.Sprintf("%s: #%d by %s (%s, version %s) lost to #%d by %s (%s) and is in no conflict log",
				col, wr.id, wr.writer, clip(wr.value.String()), wr.version(), final.id, final.writer, clip(v.String())))
		}
	}
	return strings.Join(out, "; ")
}

func sortedRowKeys(m map[key]map[string]codec.Value) []key {
	keys := make([]key, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b key) int { return strings.Compare(a.String(), b.String()) })
	return keys
}

func rowText(cols map[string]codec.Value) string {
	var parts []string
	for _, c := range sortedKeys(cols) {
		parts = append(parts, c+"="+clip(cols[c].String()))
	}
	return "{" + strings.Join(parts, " ") + "}"
}

func colDiff(want, got map[string]codec.Value) (string, []string) {
	var parts, cols []string
	for _, c := range sortedKeys(want) {
		if g, ok := got[c]; !ok {
			parts, cols = append(parts, fmt.Sprintf("%s missing (cloud %s)", c, clip(want[c].String()))), append(cols, c)
		} else if !g.Equal(want[c]) {
			parts, cols = append(parts, fmt.Sprintf("%s=%s (cloud %s)", c, clip(g.String()), clip(want[c].String()))), append(cols, c)
		}
	}
	for _, c := range sortedKeys(got) {
		if _, ok := want[c]; !ok {
			parts, cols = append(parts, fmt.Sprintf("%s=%s (cloud has none)", c, clip(got[c].String()))), append(cols, c)
		}
	}
	return strings.Join(parts, ", "), cols
}

func clipRow(s string) string {
	if len(s) > 160 {
		return s[:150] + " ...}"
	}
	return s
}
