package sim

import (
	"fmt"
	"slices"
	"strings"

	"github.com/clinicsync/clinicsync/codec"
)

// key names one row.
type key struct{ table, id string }

func (k key) String() string { return k.table + "/" + k.id }

// write is one value written to one column by one writer (a device or
// the cloud's admin), as the writer's store acknowledged it.
type write struct {
	writer string
	value  codec.Value
	at     int64 // world ms
	seq    int   // global order of writes
}

// mrow is the model's knowledge of one row: every value ever written to
// each column and by whom, and whether someone deleted it.
type mrow struct {
	key
	creator   string
	createdAt int64
	cols      map[string][]write
	deleted   bool
	deletedBy string
	deletedAt int64
	patient   string // the patient the row belongs to ("" for reference data)
}

// Model is the simulator's own record of what was written, kept apart
// from the engine: a map (table, id) → column → writes. It knows
// nothing of cursors, statuses or merge rules; the checks compare the
// engine's final state with what these writes allow.
type Model struct {
	rows     map[key]*mrow
	patients map[string][]string // clinic → patient ids, in creation order
	children map[string][]key    // patient id → rows that belong to it
	byTable  map[string][]string // table → ids, in creation order
	seq      int

	creates, updates, deletes int
}

func newModel() *Model {
	return &Model{rows: map[key]*mrow{}, patients: map[string][]string{},
		children: map[string][]key{}, byTable: map[string][]string{}}
}

// created records a row creation with all its columns as stored.
func (m *Model) created(writer string, at int64, table, id string, cols map[string]codec.Value, patient, clinic string) {
	k := key{table, id}
	r := &mrow{key: k, creator: writer, createdAt: at, cols: map[string][]write{}, patient: patient}
	for _, c := range sortedKeys(cols) {
		m.seq++
		r.cols[c] = []write{{writer, cols[c], at, m.seq}}
	}
	m.rows[k] = r
	m.byTable[table] = append(m.byTable[table], id)
	if table == "patients" {
		m.patients[clinic] = append(m.patients[clinic], id)
	} else if patient != "" {
		m.children[patient] = append(m.children[patient], k)
	}
	m.creates++
}

// updated records the columns a local update wrote, with the values
// the writer's store kept (updated_at included).
func (m *Model) updated(writer string, at int64, table, id string, cols map[string]codec.Value) {
	r := m.rows[key{table, id}]
	if r == nil {
		panic(fmt.Sprintf("sim: model: update of unknown row %s/%s", table, id))
	}
	for _, c := range sortedKeys(cols) {
		m.seq++
		r.cols[c] = append(r.cols[c], write{writer, cols[c], at, m.seq})
	}
	m.updates++
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

// lastBy returns the last value a writer wrote to a column.
func (r *mrow) lastBy(col, writer string) codec.Value {
	ws := r.cols[col]
	for i := len(ws) - 1; i >= 0; i-- {
		if ws[i].writer == writer {
			return ws[i].value
		}
	}
	panic("sim: model: no write by " + writer)
}

// wrote reports whether anybody wrote v to the column.
func (r *mrow) wrote(col string, v codec.Value) bool {
	return slices.ContainsFunc(r.cols[col], func(w write) bool { return w.value.Equal(v) })
}

// history renders what the model knows of a row, for a violation
// report: the creation, each write of the given columns, the delete.
func (r *mrow) history(base int64, cols ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "    created by %s at %s", r.creator, clockText(r.createdAt-base))
	for _, c := range cols {
		for _, w := range r.cols[c] {
			fmt.Fprintf(&b, "\n    %s %s=%s by %s", clockText(w.at-base), c, clip(w.value.String()), w.writer)
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
