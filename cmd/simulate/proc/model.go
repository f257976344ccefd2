package proc

import (
	"fmt"
	"maps"
	"slices"
	"sync"
)

// The model is the run's own record of what the workload typed, kept
// apart from the nodes: rows, and for each tracked column every value
// written, by whom, and which writes of that column its writer's
// replica showed or had shown before. Every value written is unique in
// the run, so a value found in a store or a conflict log names its
// write.

// tracked are the columns whose writes the model follows.
var tracked = map[string][]string{
	"patients": {"given_name", "phone", "hometown"},
	"visits":   {"provider_name"},
}

// write is one value typed into one tracked column.
type write struct {
	id     int
	writer string
	value  string
	atMs   int64
	seen   map[int]bool // writes of the column its writer had seen
}

// mrow is the model's knowledge of one row.
type mrow struct {
	table, id, clinic string
	creator           string
	cols              map[string][]*write
	deleted           bool
	deletedBy         string
}

func (r *mrow) key() string { return r.table + "/" + r.id }

type model struct {
	mu      sync.Mutex // guards everything below
	rows    map[string]*mrow
	byTable map[string][]string // table/clinic → ids, in creation order
	values  map[string]*write   // value → its write
	seen    map[string]map[int]bool
	seq     int

	creates, updates, deletes int
}

func newModel() *model {
	return &model{rows: map[string]*mrow{}, byTable: map[string][]string{}, values: map[string]*write{}, seen: map[string]map[int]bool{}}
}

// value returns a fresh unique value for a column write.
func (m *model) value(writer string) (int, string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.seq++
	return m.seq, fmt.Sprintf("%s#%d", writer, m.seq)
}

// created records a row created with these tracked values (column →
// write id and value), once the node accepted it.
func (m *model) created(writer string, at int64, table, id, clinic string, vals map[string]idValue) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := &mrow{table: table, id: id, clinic: clinic, creator: writer, cols: map[string][]*write{}}
	m.rows[r.key()] = r
	m.byTable[table+"/"+clinic] = append(m.byTable[table+"/"+clinic], id)
	for col, v := range vals {
		m.add(r, writer, at, col, v, "")
	}
	m.creates++
}

type idValue struct {
	id    int
	value string
}

// updated records a write of a tracked column; shown is the value the
// writer's replica held there just before ("" none).
func (m *model) updated(writer string, at int64, table, id, col string, v idValue, shown string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.add(m.rows[table+"/"+id], writer, at, col, v, shown)
	m.updates++
}

func (m *model) add(r *mrow, writer string, at int64, col string, v idValue, shown string) {
	sk := writer + "\x00" + r.key() + "\x00" + col
	seen := m.seen[sk]
	if seen == nil {
		seen = map[int]bool{}
		m.seen[sk] = seen
	}
	if p := m.values[shown]; p != nil {
		seen[p.id] = true
		for id := range p.seen {
			seen[id] = true
		}
	}
	w := &write{id: v.id, writer: writer, value: v.value, atMs: at, seen: maps.Clone(seen)}
	seen[w.id] = true
	m.values[v.value] = w
	r.cols[col] = append(r.cols[col], w)
}

// deletedRow records a delete the node accepted.
func (m *model) deletedRow(writer, table, id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r := m.rows[table+"/"+id]; r != nil && !r.deleted {
		r.deleted, r.deletedBy = true, writer
	}
	m.deletes++
}

// recent returns up to n of the latest ids of a table in a clinic.
func (m *model) recent(table, clinic string, n int) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	ids := m.byTable[table+"/"+clinic]
	return slices.Clone(ids[max(0, len(ids)-n):])
}

// keys returns every row key, sorted.
func (m *model) keys() []string {
	return slices.Sorted(maps.Keys(m.rows))
}

// history renders a row's writes of one column, for a report.
func (r *mrow) history(col string) string {
	s := fmt.Sprintf("created by %s", r.creator)
	for _, w := range r.cols[col] {
		seen := slices.Sorted(maps.Keys(w.seen))
		seen = slices.DeleteFunc(seen, func(id int) bool { return id == w.id })
		s += fmt.Sprintf("; #%d %s=%s by %s at %dms", w.id, col, w.value, w.writer, w.atMs)
		if len(seen) > 0 {
			s += fmt.Sprintf(" after %v", seen)
		}
	}
	if r.deleted {
		s += "; deleted by " + r.deletedBy
	}
	return s
}
