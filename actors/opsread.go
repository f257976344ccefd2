package actors

// The online operations that read (ops.go): rows as a pull serves them,
// within the caller's scope.

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"slices"
	"strings"

	"github.com/clinicsync/clinicsync/codec"
	"github.com/clinicsync/clinicsync/fsm"
	"github.com/clinicsync/clinicsync/kv"
)

// errStop ends a scan of each early.
var errStop = errors.New("stop")

// each calls fn with the live rows of a table the caller may read, in id
// order, that keep says to keep, until fn returns false. Rows are read
// one at a time, so a scan of a large table holds only what fn keeps.
func (c *opCall) each(table string, keep func(kv.Record) bool, fn func(kv.Record) bool) *rpcError {
	var rerr *rpcError
	err := c.h.server.Store.Rows(table, func(r kv.Record) error {
		if r.Deleted || keep != nil && !keep(r) {
			return nil
		}
		var ok bool
		if ok, rerr = c.visible(r); rerr != nil {
			return errStop
		}
		if ok && !fn(r) {
			return errStop
		}
		return nil
	})
	if err != nil && err != errStop {
		return rpcInternal(err)
	}
	return rerr
}

// visible reports whether the caller's scope lets it read a row (a user
// is unscoped, as on /api/v2/sync).
func (c *opCall) visible(r kv.Record) (bool, *rpcError) {
	if len(c.caller.Clinics) == 0 {
		return true, nil
	}
	st := c.h.server.Store
	t, _ := st.Catalog().Table(r.Table)
	scope := fsm.Scope{Catalog: st.Catalog(), Clinics: c.caller.Clinics, Lookup: st.Lookup}
	why, err := scope.Check(t, r.Row)
	if err != nil {
		return false, rpcInternal(err)
	}
	return why == "", nil
}

// live returns the live rows of a table the caller may read, in id
// order, that keep says to keep.
func (c *opCall) live(table string, keep func(kv.Record) bool) ([]kv.Record, *rpcError) {
	var out []kv.Record
	rerr := c.each(table, keep, func(r kv.Record) bool {
		out = append(out, r)
		return true
	})
	return out, rerr
}

// one returns the live row table/id, or NOT_FOUND.
func (c *opCall) one(table, id string) (kv.Record, *rpcError) {
	r, err := c.h.server.Store.Get(table, id)
	if errors.Is(err, kv.ErrNotFound) || err == nil && r.Deleted {
		return kv.Record{}, opError(CodeNotFound, "%s %s not found", table, id)
	}
	if err != nil {
		return kv.Record{}, rpcInternal(err)
	}
	vis, rerr := c.visible(r)
	if rerr != nil {
		return kv.Record{}, rerr
	}
	if !vis {
		return kv.Record{}, opError(CodeNotFound, "%s %s not found", table, id)
	}
	return r, nil
}

// rowsJSON renders records of one table as JSON objects, as a pull
// (/api/v2/sync, the Hikma hub's sync_pull) serves them: timestamps as
// epoch ms, JSON columns as objects.
func (c *opCall) rowsJSON(rs []kv.Record) ([]json.RawMessage, *rpcError) {
	if len(rs) == 0 {
		return []json.RawMessage{}, nil
	}
	cs := codec.NewChangeset()
	cs.Timestamp = 1
	tc := cs.Table(rs[0].Table)
	for _, r := range rs {
		row := r.Row.Clone()
		row.Changed, row.Versions = nil, nil
		tc.Updated = append(tc.Updated, row)
	}
	o := codec.Options{Catalog: c.h.server.Store.Catalog(), KeepUnknownTables: true}
	var b bytes.Buffer
	if err := codec.EncodePullResponse(&b, cs, o); err != nil {
		return nil, rpcInternal(err)
	}
	var doc struct {
		Changes map[string]struct {
			Updated []json.RawMessage `json:"updated"`
		} `json:"changes"`
	}
	if err := json.Unmarshal(b.Bytes(), &doc); err != nil {
		return nil, rpcInternal(err)
	}
	for _, t := range doc.Changes {
		return t.Updated, nil
	}
	return []json.RawMessage{}, nil
}

func (c *opCall) rowJSON(r kv.Record) (json.RawMessage, *rpcError) {
	rows, rerr := c.rowsJSON([]kv.Record{r})
	if rerr != nil {
		return nil, rerr
	}
	return rows[0], nil
}

// paged is a list answer: {data,total,limit,offset}, as the Hikma hub's.
type paged struct {
	Data   []json.RawMessage `json:"data"`
	Total  int               `json:"total"`
	Limit  int               `json:"limit"`
	Offset int               `json:"offset"`
}

// newest answers a page of the live rows of a table the caller may read
// that keep says to keep, newest first by the timestamp column col, then
// by id: {data,total,limit,offset}. It holds offset+limit rows, not the
// table.
func (c *opCall) newest(table, col string, keep func(kv.Record) bool) (any, *rpcError) {
	limit, offset, rerr := c.page()
	if rerr != nil {
		return nil, rerr
	}
	order := newestFirst(col)
	var top []kv.Record // the offset+limit newest so far, in order
	total := 0
	rerr = c.each(table, keep, func(r kv.Record) bool {
		total++
		if i, _ := slices.BinarySearchFunc(top, r, order); i < offset+limit {
			top = slices.Insert(top, i, r)
			top = top[:min(len(top), offset+limit)]
		}
		return true
	})
	if rerr != nil {
		return nil, rerr
	}
	data, rerr := c.rowsJSON(top[min(offset, len(top)):])
	if rerr != nil {
		return nil, rerr
	}
	return paged{Data: data, Total: total, Limit: limit, Offset: offset}, nil
}

// newestFirst orders rows by a timestamp column, newest first, then id.
func newestFirst(col string) func(a, b kv.Record) int {
	return func(a, b kv.Record) int {
		return cmp.Or(cmp.Compare(b.Cols[col].Num, a.Cols[col].Num), strings.Compare(a.ID, b.ID))
	}
}

func getPatient(c *opCall) (any, *rpcError) {
	id, rerr := c.need("patient_id", "id")
	if rerr != nil {
		return nil, rerr
	}
	p, rerr := c.one("patients", id)
	if rerr != nil {
		return nil, rerr
	}
	attrs, rerr := c.live("patient_additional_attributes", func(r kv.Record) bool { return r.Cols["patient_id"].Str == id })
	if rerr != nil {
		return nil, rerr
	}
	prow, rerr := c.rowJSON(p)
	if rerr != nil {
		return nil, rerr
	}
	arows, rerr := c.rowsJSON(attrs)
	if rerr != nil {
		return nil, rerr
	}
	return map[string]any{"patient": prow, "additional_attributes": arows}, nil
}

// patientSearched are the columns search_patients matches.
var patientSearched = []string{"given_name", "surname", "government_id", "external_patient_id", "phone"}

func searchPatients(c *opCall) (any, *rpcError) {
	term, rerr := c.str("search_term", "query", "term")
	if rerr != nil {
		return nil, rerr
	}
	words := strings.Fields(strings.ToLower(term))
	return c.newest("patients", "updated_at", func(r kv.Record) bool {
		for _, w := range words {
			hit := false
			for _, col := range patientSearched {
				hit = hit || strings.Contains(strings.ToLower(r.Cols[col].Str), w)
			}
			if !hit {
				return false
			}
		}
		return true
	})
}

func getPatients(c *opCall) (any, *rpcError) {
	return c.newest("patients", "updated_at", nil)
}

// childRows answers the live rows of table whose col is the parameter
// of that name, newest first by order: {data:[...]}.
func childRows(table, col, order string) opFunc {
	return func(c *opCall) (any, *rpcError) {
		id, rerr := c.need(col)
		if rerr != nil {
			return nil, rerr
		}
		rs, rerr := c.live(table, func(r kv.Record) bool { return r.Cols[col].Str == id })
		if rerr != nil {
			return nil, rerr
		}
		slices.SortFunc(rs, newestFirst(order))
		data, rerr := c.rowsJSON(rs)
		if rerr != nil {
			return nil, rerr
		}
		return map[string]any{"data": data}, nil
	}
}

func eventsByForm(c *opCall) (any, *rpcError) {
	form, rerr := c.need("form_id")
	if rerr != nil {
		return nil, rerr
	}
	patient, rerr := c.str("patient_id")
	if rerr != nil {
		return nil, rerr
	}
	rs, rerr := c.live("events", func(r kv.Record) bool {
		return r.Cols["form_id"].Str == form && (patient == "" || r.Cols["patient_id"].Str == patient)
	})
	if rerr != nil {
		return nil, rerr
	}
	slices.SortFunc(rs, newestFirst("created_at"))
	data, rerr := c.rowsJSON(rs)
	if rerr != nil {
		return nil, rerr
	}
	return map[string]any{"data": data}, nil
}

func getRow(table string) opFunc {
	return func(c *opCall) (any, *rpcError) {
		id, rerr := c.need("id")
		if rerr != nil {
			return nil, rerr
		}
		r, rerr := c.one(table, id)
		if rerr != nil {
			return nil, rerr
		}
		return c.rowJSON(r)
	}
}

func rowsGet(c *opCall) (any, *rpcError) {
	name, rerr := c.need("table")
	if rerr != nil {
		return nil, rerr
	}
	t, rerr := c.table(name, false)
	if rerr != nil {
		return nil, rerr
	}
	return getRow(t.Name)(c)
}

// rowsList answers a table's live rows in id order after the id
// "after": {data, more}.
func rowsList(c *opCall) (any, *rpcError) {
	name, rerr := c.need("table")
	if rerr != nil {
		return nil, rerr
	}
	t, rerr := c.table(name, false)
	if rerr != nil {
		return nil, rerr
	}
	after, rerr := c.str("after")
	if rerr != nil {
		return nil, rerr
	}
	limit, _, rerr := c.page()
	if rerr != nil {
		return nil, rerr
	}
	var rs []kv.Record
	more := false
	rerr = c.each(t.Name, func(r kv.Record) bool { return r.ID > after }, func(r kv.Record) bool {
		more = len(rs) == limit
		if !more {
			rs = append(rs, r)
		}
		return !more
	})
	if rerr != nil {
		return nil, rerr
	}
	data, rerr := c.rowsJSON(rs)
	if rerr != nil {
		return nil, rerr
	}
	return map[string]any{"data": data, "more": more}, nil
}
