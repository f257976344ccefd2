package sim

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/clinicsync/clinicsync/codec"
)

// key names one row.
type key struct{ table, id string }

func (k key) String() string { return k.table + "/" + k.id }

// write is one value the workload typed into one column of one row,
// by one writer (a device or the cloud's admin). id numbers the writes
// of the run. versions are the column versions the engine gave this
// edit: the stamp of the local write, then any later dating of it
// (kv.ClampPending renames a device's own pending edits before a push),
// learnt as the edit leaves the device; they identify the edit in the
// replicas and conflict logs, never its value. seen are the writes of
// the same column the writer's replica had already received when the
// user typed this one (the value it showed, what that value had seen,
// and what the replica had seen before): this write must beat them.
type write struct {
	id       int
	writer   string
	value    codec.Value
	at       int64 // world ms
	versions []codec.Version
	seen     map[int]bool
	sent     int64 // the updated_at a JSON client pushed it with (wdbLearn)
}

// version is the edit's latest dating, the one its replicas compare.
func (w *write) version() codec.Version { return w.versions[len(w.versions)-1] }

// mrow is the model's knowledge of one row: every value ever written to
// each column and by whom, and whether someone deleted it.
type mrow struct {
	key
	creator   string
	createdAt int64
	cols      map[string][]*write
	deleted   bool
	deletedBy string
	deletedAt int64
	patient   string // the patient the row belongs to ("" for reference data)
}

// Model is the simulator's own record of what was written, kept apart
// from the engine: a map (table, id) → column → writes, each with the
// writes its writer had seen. It knows nothing of cursors, statuses or
// merge rules; the checks compare the engine's final state with what
// these writes allow.
type Model struct {
	rows     map[key]*mrow
	patients map[string][]string // clinic → patient ids, in creation order
	children map[string][]key    // patient id → rows that belong to it
	byTable  map[string][]string // table → ids, in creation order
	seq      int
	// seen is, per node, per row and column, the writes the node's
	// replica had received by its last local write there.
	seen map[string]map[colKey]map[int]bool

	creates, updates, deletes int
}

// colKey names one column of one row.
type colKey struct {
	key
	col string
}

func newModel() *Model {
	return &Model{rows: map[key]*mrow{}, patients: map[string][]string{},
		children: map[string][]key{}, byTable: map[string][]string{}, seen: map[string]map[colKey]map[int]bool{}}
}

// created records a row creation with all its columns as the workload
// typed them, and the versions the writer's store gave them.
func (m *Model) created(writer string, at int64, table, id string, cols map[string]codec.Value, vers map[string]codec.Version, patient, clinic string) {
	k := key{table, id}
	r := &mrow{key: k, creator: writer, createdAt: at, cols: map[string][]*write{}, patient: patient}
	m.rows[k] = r
	for _, c := range sortedKeys(cols) {
		m.add(r, writer, at, c, cols[c], vers[c], -1)
	}
	m.byTable[table] = append(m.byTable[table], id)
	if table == "patients" {
		m.patients[clinic] = append(m.patients[clinic], id)
	} else if patient != "" {
		m.children[patient] = append(m.children[patient], k)
	}
	m.creates++
}

// updated records the columns a local update typed. before are the
// write ids the writer's replica held in those columns just before (-1
// when unknown), vers the versions the store gave the edit.
func (m *Model) updated(writer string, at int64, table, id string, cols map[string]codec.Value, vers map[string]codec.Version, before map[string]int) {
	r := m.rows[key{table, id}]
	if r == nil {
		panic(fmt.Sprintf("sim: model: update of unknown row %s/%s", table, id))
	}
	for _, c := range sortedKeys(cols) {
		prev, ok := before[c]
		if !ok {
			prev = -1
		}
		m.add(r, writer, at, c, cols[c], vers[c], prev)
	}
	m.updates++
}

// add records one write of a column; prev is the write the replica
// showed in that column (-1 if none): it and everything it had seen
// join what the writer has seen.
func (m *Model) add(r *mrow, writer string, at int64, col string, v codec.Value, ver codec.Version, prev int) {
	m.seq++
	ck := colKey{r.key, col}
	if m.seen[writer] == nil {
		m.seen[writer] = map[colKey]map[int]bool{}
	}
	seen := m.seen[writer][ck]
	if seen == nil {
		seen = map[int]bool{}
		m.seen[writer][ck] = seen
	}
	if prev >= 0 {
		seen[prev] = true
		if p := r.byID(col, prev); p != nil {
			for id := range p.seen {
				seen[id] = true
			}
		}
	}
	wr := &write{id: m.seq, writer: writer, value: v, at: at, versions: []codec.Version{ver}, seen: maps.Clone(seen)}
	seen[wr.id] = true
	r.cols[col] = append(r.cols[col], wr)
}

// byID returns the write of a column with this id (nil if none).
func (r *mrow) byID(col string, id int) *write {
	for _, w := range r.cols[col] {
		if w.id == id {
			return w
		}
	}
	return nil
}

// resolve names the write a column value with this version came from:
// the write that version was given to; else, for a dating the model has
// not seen yet (a device's pending edit clamped before a push), the
// latest write by the version's node with this value, which then
// learns the version. nil if no write fits.
func (r *mrow) resolve(col string, ver codec.Version, v codec.Value) *write {
	ws := r.cols[col]
	for _, w := range ws {
		if slices.Contains(w.versions, ver) {
			return w
		}
	}
	for i := len(ws) - 1; i >= 0; i-- {
		if w := ws[i]; w.writer == ver.Node && ver.Node != "" {
			if !w.value.Equal(v) {
				return nil
			}
			w.versions = append(w.versions, ver)
			return w
		}
	}
	return nil
}

// deletedRow records a local delete.
func (m *Model) deletedRow(writer string, at int64, table, id string) {
	r := m.rows[key{table, id}]
	if r == nil {
		panic(fmt.Sprintf("sim: model: delete of unknown row %s/%s", table, id))
	}
	if !r.deleted {
		r.deleted, r.deletedBy, r.deletedAt = true, writer, at
	}
	m.deletes++
}

// row returns the model's row (nil if nobody created it).
func (m *Model) row(k key) *mrow { return m.rows[k] }

// keys returns every row key, sorted.
func (m *Model) keys() []key {
	out := make([]key, 0, len(m.rows))
	for k := range m.rows {
		out = append(out, k)
	}
	slices.SortFunc(out, func(a, b key) int {
		if c := strings.Compare(a.table, b.table); c != 0 {
			return c
		}
		return strings.Compare(a.id, b.id)
	})
	return out
}

// writers returns who wrote a column, in order of first write.
func (r *mrow) writers(col string) []string {
	var out []string
	for _, w := range r.cols[col] {
		if !slices.Contains(out, w.writer) {
			out = append(out, w.writer)
		}
	}
	return out
}

// history renders what the model knows of a row, for a violation
// report: the creation, each write of the given columns, the delete.
func (r *mrow) history(base int64, cols ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "    created by %s at %s", r.creator, clockText(r.createdAt-base))
	for _, c := range cols {
		for _, w := range r.cols[c] {
			fmt.Fprintf(&b, "\n    %s #%d %s=%s by %s version %s%s", clockText(w.at-base), w.id, c, clip(w.value.String()), w.writer, versionsText(w.versions), seenText(w.seen, w.id))
		}
	}
	if r.deleted {
		fmt.Fprintf(&b, "\n    deleted by %s at %s", r.deletedBy, clockText(r.deletedAt-base))
	}
	return b.String()
}

// clockText renders a world offset in ms as day+hh:mm:ss.mmm.
func clockText(ms int64) string {
	sign := ""
	if ms < 0 {
		sign, ms = "-", -ms
	}
	d := ms / 86_400_000
	ms %= 86_400_000
	return fmt.Sprintf("%sd%d+%02d:%02d:%02d.%03d", sign, d, ms/3_600_000, ms/60_000%60, ms/1000%60, ms%1000)
}

func clip(s string) string {
	if len(s) > 72 {
		return s[:44] + "..." + s[len(s)-25:]
	}
	return s
}

func versionsText(vs []codec.Version) string {
	var parts []string
	for _, v := range vs {
		parts = append(parts, v.String())
	}
	return strings.Join(parts, " → ")
}

// seenText lists the other writes a write's writer had seen.
func seenText(seen map[int]bool, self int) string {
	var ids []int
	for id := range seen {
		if id != self {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return ""
	}
	slices.Sort(ids)
	var parts []string
	for _, id := range ids {
		parts = append(parts, fmt.Sprintf("#%d", id))
	}
	return ", after " + strings.Join(parts, " ")
}
