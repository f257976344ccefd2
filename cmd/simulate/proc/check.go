package proc

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/clinicsync/clinicsync/actors"
	"github.com/clinicsync/clinicsync/cmd/simulate/sim"
	"github.com/clinicsync/clinicsync/codec"
	"github.com/clinicsync/clinicsync/codec/schema"
	"github.com/clinicsync/clinicsync/kv"
)

// rows are a replica's live rows, by "table/id".
type rows map[string]map[string]codec.Value

// readStore opens a stopped node's store and returns its live rows of
// the tables it converges on, and its conflict log.
func readStore(n *node) (rows, []kv.Conflict, *schema.Catalog, error) {
	nd, err := actors.Open(n.dir, nil)
	if err != nil {
		return nil, nil, nil, err
	}
	defer nd.Close()
	st := nd.Store()
	cat := st.Catalog()
	out := rows{}
	for _, t := range sim.Received(cat, n.kind) {
		err := st.Rows(t, func(rec kv.Record) error {
			if !rec.Deleted {
				out[t+"/"+rec.ID] = rec.Cols
			}
			return nil
		})
		if err != nil {
			return nil, nil, nil, err
		}
	}
	var log []kv.Conflict
	err = st.Conflicts("", "", func(c kv.Conflict) error { log = append(log, c); return nil })
	return out, log, cat, err
}

// check reads every store and checks convergence and the model.
func (r *runner) check(rep *Report) {
	finals := map[string]rows{}
	var conflicts []kv.Conflict
	var cat *schema.Catalog
	for _, n := range r.c.all {
		got, log, c, err := readStore(n)
		if err != nil {
			r.violate(kindEngineError, n.name, "", "reading the store after the run: %v", err)
			continue
		}
		finals[n.name], cat = got, c
		conflicts = append(conflicts, log...)
	}
	cloud, ok := finals["cloud"]
	if !ok {
		return
	}
	rep.RowsPerNode, rep.Conflicts = map[string]int{}, len(conflicts)
	for name, f := range finals {
		rep.RowsPerNode[name] = len(f)
	}
	for _, n := range r.c.all[1:] {
		if got, ok := finals[n.name]; ok {
			r.compare(n, expected(n, cloud, cat), got)
		}
	}
	r.checkModel(finals, conflicts)
}

// expected is what a node holds once settled: the cloud's live rows of
// the tables it receives, in its clinic, without secret columns on a
// device.
func expected(n *node, cloud rows, cat *schema.Catalog) rows {
	tables := sim.Received(cat, n.kind)
	out := rows{}
	for k, cols := range cloud {
		table, id, _ := strings.Cut(k, "/")
		t, ok := cat.Table(table)
		if !ok || !slices.Contains(tables, table) || !sim.InScope(t, id, cols, n.clinic) {
			continue
		}
		if n.kind == kindMobile {
			cols = maps.Clone(cols)
			for name := range cols {
				if c, ok := t.Column(name); ok && c.Secret {
					delete(cols, name)
				}
			}
		}
		out[k] = cols
	}
	return out
}

// compare reports each row where a replica differs from what it should
// hold.
func (r *runner) compare(n *node, want, got rows) {
	keys := slices.Sorted(maps.Keys(want))
	for k := range got {
		if _, ok := want[k]; !ok {
			keys = append(keys, k)
		}
	}
	for _, k := range keys {
		wc, inWant := want[k]
		gc, inGot := got[k]
		switch {
		case !inGot:
			r.violate(sim.VConvergence, n.name, k, "missing; the cloud has it")
		case !inWant:
			r.violate(sim.VConvergence, n.name, k, "alive here, deleted, absent or out of scope on the cloud")
		default:
			var diff []string
			for _, c := range slices.Sorted(maps.Keys(wc)) {
				if g, ok := gc[c]; !ok || !g.Equal(wc[c]) {
					diff = append(diff, fmt.Sprintf("%s=%s (cloud %s)", c, g, wc[c]))
				}
			}
			for _, c := range slices.Sorted(maps.Keys(gc)) {
				if _, ok := wc[c]; !ok {
					diff = append(diff, fmt.Sprintf("%s=%s (cloud has none)", c, gc[c]))
				}
			}
			if len(diff) > 0 {
				r.violate(sim.VConvergence, n.name, k, "differs from the cloud: %s", strings.Join(diff, ", "))
			}
		}
	}
}

// checkModel checks the final replicas against the model: a deleted
// row is alive nowhere; a row created and never deleted is on the
// cloud; in each tracked column the cloud holds a value written there;
// no write made after its writer had seen the final one was beaten by
// it; and every other write that is not the final value was seen by a
// later write or is in some node's conflict log.
func (r *runner) checkModel(finals map[string]rows, conflicts []kv.Conflict) {
	logged := map[string]bool{} // "table/id/col=value"
	for _, c := range conflicts {
		logged[c.Table+"/"+c.ID+"/"+c.Column+"="+c.Value.Str] = true
	}
	cloud := finals["cloud"]
	m := r.model
	for _, k := range m.keys() {
		row := m.rows[k]
		cols, alive := cloud[k]
		if row.deleted {
			for _, name := range slices.Sorted(maps.Keys(finals)) {
				if _, ok := finals[name][k]; ok {
					r.violate(sim.VResurrected, name, k, "deleted by %s, alive on this replica", row.deletedBy)
				}
			}
			continue
		}
		if !alive {
			r.violate(sim.VLostRow, "cloud", k, "created by %s and never deleted, missing on the cloud", row.creator)
			continue
		}
		for _, col := range slices.Sorted(maps.Keys(row.cols)) {
			v := cols[col].Str
			final := m.values[v]
			if final == nil || !slices.Contains(row.cols[col], final) {
				r.violate(sim.VPhantom, "cloud", k, "%s=%q is no write of this column; %s", col, v, row.history(col))
				continue
			}
			var lost []string
			for _, w := range row.cols[col] {
				if w == final {
					continue
				}
				if w.seen[final.id] {
					lost = append(lost, fmt.Sprintf("#%d by %s was written after its replica had the final #%d, and lost to it", w.id, w.writer, final.id))
					continue
				}
				seenLater := slices.ContainsFunc(row.cols[col], func(o *write) bool { return o != w && o.seen[w.id] })
				if !seenLater && !logged[k+"/"+col+"="+w.value] {
					lost = append(lost, fmt.Sprintf("#%d by %s (%s) lost to #%d by %s and is in no conflict log", w.id, w.writer, w.value, final.id, final.writer))
				}
			}
			if len(lost) > 0 {
				r.violate(sim.VLostWrite, "", k, "%s: %s; %s", col, strings.Join(lost, "; "), row.history(col))
			}
		}
	}
}
