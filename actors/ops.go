package actors

// Online operations (reference §3.6): the reads and writes a device in
// online mode makes straight through its peer instead of its own store.
// One set of operations, served on the Hikma RPC (/rpc/command and
// /rpc/query, sealed), on HTTP (/api/v2/rpc/{query,command}/<name>,
// and on a cloud also /rpc/{query,command}/<name>, the Hikma app's
// cloud transport) and on native RPC. Writes are one-row pushes through
// the same engine as a sync (normalization, merge by column version,
// scope, the hub's relay upstream); reads answer rows as a pull would.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"

	"github.com/clinicsync/clinicsync/codec"
	"github.com/clinicsync/clinicsync/codec/schema"
	"github.com/clinicsync/clinicsync/fsm"
	"github.com/clinicsync/clinicsync/kv"
)

// Codes of refused operations, beside the Hikma RPC's (CodeAuthFailed,
// ...).
const (
	CodeNotFound         = "NOT_FOUND"
	CodePermissionDenied = "PERMISSION_DENIED"
	CodeValidation       = "VALIDATION_ERROR"
)

// Page bounds of the list operations.
const (
	opDefaultLimit = 20
	opMaxLimit     = 500
)

// opCall is one operation being served.
type opCall struct {
	h      *CloudHandler
	caller hikmaCaller
	params map[string]json.RawMessage
}

type opFunc func(*opCall) (any, *rpcError)

// queries and commands are the operations, by name. rows.* are
// clinicsync's own, for Go devices: any synced table by name.
var (
	queries  map[string]opFunc
	commands map[string]opFunc
)

func init() {
	queries = map[string]opFunc{
		"get_patient":      getPatient,
		"search_patients":  searchPatients,
		"get_patients":     getPatients,
		"get_visits":       childRows("visits", "patient_id", "check_in_timestamp"),
		"get_visit_events": childRows("events", "visit_id", "created_at"),
		"events.by_form":   eventsByForm,
		"vitals.list":      childRows("patient_vitals", "patient_id", "timestamp"),
		"problems.list":    childRows("patient_problems", "patient_id", "created_at"),
		"problems.get":     getRow("patient_problems"),
		"rows.get":         rowsGet,
		"rows.list":        rowsList,
	}
	commands = map[string]opFunc{
		"register_patient": registerPatient,
		"delete_patient":   deleteRow("patients", "patient_id"),
		"visits.create":    createRow("visits"),
		"visits.update":    updateRow("visits"),
		"events.create":    createRow("events"),
		"create_event":     createRow("events"),
		"events.update":    updateRow("events"),
		"events.delete":    deleteRow("events", "id"),
		"vitals.create":    createRow("patient_vitals"),
		"vitals.update":    updateRow("patient_vitals"),
		"problems.create":  createRow("patient_problems"),
		"problems.update":  updateRow("patient_problems"),
		"rows.put":         rowsPut,
		"rows.delete":      rowsDelete,
	}
}

// Operations lists the operations a serving node answers: queries and
// commands, sorted.
func Operations() (queryNames, commandNames []string) {
	return slices.Sorted(maps.Keys(queries)), slices.Sorted(maps.Keys(commands))
}

// operation runs the named operation for caller with params (a JSON
// object, or null).
func (h *CloudHandler) operation(caller hikmaCaller, command bool, name string, params json.RawMessage) (any, *rpcError) {
	ops, kind := queries, "query"
	if command {
		ops, kind = commands, "command"
	}
	f, ok := ops[name]
	if !ok {
		q, c := Operations()
		return nil, opError(CodeNotSupported, "%s %q is not served here (queries: %s; commands: %s, sync_push, login, ping)",
			kind, name, strings.Join(q, ", "), strings.Join(c, ", "))
	}
	var p map[string]json.RawMessage
	if len(bytes.TrimSpace(params)) > 0 && string(bytes.TrimSpace(params)) != "null" {
		if err := json.Unmarshal(params, &p); err != nil {
			return nil, opError(CodeBadRequest, "%s %s: the parameters are not a JSON object: %v", kind, name, err)
		}
	}
	return f(&opCall{h: h, caller: caller, params: p})
}

// ---- parameters ----

func (c *opCall) str(names ...string) (string, *rpcError) {
	for _, n := range names {
		raw, ok := c.params[n]
		if !ok || string(raw) == "null" {
			continue
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", opError(CodeBadRequest, "parameter %s must be a string, got %s", n, raw)
		}
		return s, nil
	}
	return "", nil
}

func (c *opCall) need(names ...string) (string, *rpcError) {
	s, rerr := c.str(names...)
	if rerr == nil && s == "" {
		rerr = opError(CodeBadRequest, "parameter %s is required", names[0])
	}
	return s, rerr
}

func (c *opCall) int(name string, def int) (int, *rpcError) {
	raw, ok := c.params[name]
	if !ok || string(raw) == "null" {
		return def, nil
	}
	var n int
	if err := json.Unmarshal(raw, &n); err != nil || n < 0 {
		return 0, opError(CodeBadRequest, "parameter %s must be a whole number >= 0, got %s", name, raw)
	}
	return n, nil
}

// page reads limit (default 20, at most 500) and offset.
func (c *opCall) page() (limit, offset int, rerr *rpcError) {
	if limit, rerr = c.int("limit", opDefaultLimit); rerr != nil {
		return
	}
	if limit == 0 || limit > opMaxLimit {
		return 0, 0, opError(CodeBadRequest, "limit must be 1 to %d, got %d", opMaxLimit, limit)
	}
	offset, rerr = c.int("offset", 0)
	return
}

// table is a table online operations may read and write by name: a
// synced table the catalog knows; writes also refuse tables that only
// flow down (user_clinic_permissions, app_config) and users.
func (c *opCall) table(name string, write bool) (*schema.Table, *rpcError) {
	t, ok := c.h.server.Store.Catalog().Table(name)
	switch {
	case !ok:
		return nil, opError(CodeBadRequest, "unknown table %q", name)
	case write && (t.Flow == schema.Down || t.Name == "users"):
		return nil, opError(CodePermissionDenied, "table %s is managed on the cloud and cannot be written online", t.Name)
	}
	return t, nil
}

// ---- reading ----

// live returns the live rows of a table the caller may read, in id
// order, that keep says to keep.
func (c *opCall) live(table string, keep func(kv.Record) bool) ([]kv.Record, *rpcError) {
	var out []kv.Record
	err := c.h.server.Store.Rows(table, func(r kv.Record) error {
		if !r.Deleted && (keep == nil || keep(r)) {
			out = append(out, r)
		}
		return nil
	})
	if err != nil {
		return nil, rpcInternal(err)
	}
	return c.visible(out)
}

// visible keeps the rows the caller's scope lets it read (a user is
// unscoped, as on /api/v2/sync).
func (c *opCall) visible(rs []kv.Record) ([]kv.Record, *rpcError) {
	if len(c.caller.Clinics) == 0 {
		return rs, nil
	}
	st := c.h.server.Store
	scope := fsm.Scope{Catalog: st.Catalog(), Clinics: c.caller.Clinics, Lookup: st.Lookup}
	var out []kv.Record
	for _, r := range rs {
		t, _ := st.Catalog().Table(r.Table)
		why, err := scope.Check(t, r.Row)
		if err != nil {
			return nil, rpcInternal(err)
		}
		if why == "" {
			out = append(out, r)
		}
	}
	return out, nil
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
	vis, rerr := c.visible([]kv.Record{r})
	if rerr != nil {
		return kv.Record{}, rerr
	}
	if len(vis) == 0 {
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

func (c *opCall) paged(rs []kv.Record) (any, *rpcError) {
	limit, offset, rerr := c.page()
	if rerr != nil {
		return nil, rerr
	}
	total := len(rs)
	rs = rs[min(offset, total):min(offset+limit, total)]
	data, rerr := c.rowsJSON(rs)
	if rerr != nil {
		return nil, rerr
	}
	return paged{Data: data, Total: total, Limit: limit, Offset: offset}, nil
}

// newestFirst sorts rows by a timestamp column, newest first, then id.
func newestFirst(rs []kv.Record, col string) {
	slices.SortStableFunc(rs, func(a, b kv.Record) int {
		if d := b.Cols[col].Num - a.Cols[col].Num; d != 0 {
			if d > 0 {
				return 1
			}
			return -1
		}
		return strings.Compare(a.ID, b.ID)
	})
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
	rs, rerr := c.live("patients", func(r kv.Record) bool {
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
	if rerr != nil {
		return nil, rerr
	}
	newestFirst(rs, "updated_at")
	return c.paged(rs)
}

func getPatients(c *opCall) (any, *rpcError) {
	rs, rerr := c.live("patients", nil)
	if rerr != nil {
		return nil, rerr
	}
	newestFirst(rs, "updated_at")
	return c.paged(rs)
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
		newestFirst(rs, order)
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
	newestFirst(rs, "created_at")
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
	rs, rerr := c.live(t.Name, func(r kv.Record) bool { return r.ID > after })
	if rerr != nil {
		return nil, rerr
	}
	more := len(rs) > limit
	data, rerr := c.rowsJSON(rs[:min(limit, len(rs))])
	if rerr != nil {
		return nil, rerr
	}
	return map[string]any{"data": data, "more": more}, nil
}

// ---- writing ----

// The permissions (user_clinic_permissions columns) writes need.
const (
	permRegister       = "can_register_patients"
	permEdit           = "can_edit_records"
	permEditOthers     = "can_edit_other_provider_event"
	permDelete         = "can_delete_records"
	permDeletePatients = "can_delete_patient_records"
	permDeleteVisits   = "can_delete_patient_visits"
)

// permit refuses a write the caller's permissions in its clinic do not
// grant. Creating a patient needs can_register_patients; creating
// other rows none; changing a row can_edit_records (an event recorded
// by another user also can_edit_other_provider_event); deleting a
// patient can_delete_patient_records, a visit can_delete_patient_visits,
// anything else can_delete_records.
func (c *opCall) permit(table string, stored *kv.Record, del bool) *rpcError {
	var need []string
	switch {
	case del && table == "patients":
		need = []string{permDeletePatients}
	case del && table == "visits":
		need = []string{permDeleteVisits}
	case del:
		need = []string{permDelete}
	case stored == nil && table == "patients":
		need = []string{permRegister}
	case stored == nil:
	case table == "events" && stored.Cols["recorded_by_user_id"].Str != "" && stored.Cols["recorded_by_user_id"].Str != c.caller.ID:
		need = []string{permEdit, permEditOthers}
	default:
		need = []string{permEdit}
	}
	for _, p := range need {
		if !c.caller.Perms.Allows(p) {
			return opError(CodePermissionDenied, "user %s may not do this in clinic %q: user_clinic_permissions.%s is not granted",
				c.caller.ID, c.caller.ClinicID, p)
		}
	}
	return nil
}

// stored returns the live row table/id, or nil when there is none.
func (c *opCall) stored(table, id string) (*kv.Record, *rpcError) {
	r, err := c.h.server.Store.Get(table, id)
	switch {
	case errors.Is(err, kv.ErrNotFound):
		return nil, nil
	case err != nil:
		return nil, rpcInternal(err)
	case r.Deleted:
		return nil, nil
	}
	vis, rerr := c.visible([]kv.Record{r})
	if rerr != nil {
		return nil, rerr
	}
	if len(vis) == 0 {
		return nil, opError(CodeNotFound, "%s %s not found", table, id)
	}
	return &r, nil
}

// put writes one row from a JSON object of columns (an id among them,
// or id, or a new one): created when absent, else its given columns
// changed, through the push engine. It answers the id and whether the
// row was created.
func (c *opCall) put(table string, raw json.RawMessage, id string, mustExist bool) (string, bool, *rpcError) {
	t, rerr := c.table(table, true)
	if rerr != nil {
		return "", false, rerr
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil || fields == nil {
		return "", false, opError(CodeBadRequest, "the %s row must be a JSON object of its columns", t.Name)
	}
	if v, ok := fields["id"]; ok {
		var s string
		if json.Unmarshal(v, &s) != nil || s == "" {
			return "", false, opError(CodeBadRequest, "the %s row's id must be a non-empty string", t.Name)
		}
		if id != "" && s != id {
			return "", false, opError(CodeBadRequest, "the %s row's id %q is not %q", t.Name, s, id)
		}
		id = s
	}
	for _, k := range []string{"_status", "_changed"} {
		delete(fields, k)
	}
	if id == "" {
		if mustExist {
			return "", false, opError(CodeBadRequest, "an update names its row: id is required")
		}
		var err error
		if id, err = newUUID(); err != nil {
			return "", false, rpcInternal(err)
		}
	}
	fields["id"], _ = json.Marshal(id)
	prev, rerr := c.stored(t.Name, id)
	if rerr != nil {
		return "", false, rerr
	}
	if prev == nil && mustExist {
		return "", false, opError(CodeNotFound, "%s %s not found", t.Name, id)
	}
	if rerr := c.permit(t.Name, prev, false); rerr != nil {
		return "", false, rerr
	}
	body, err := json.Marshal(map[string]any{t.Name: map[string]any{"updated": []any{fields}}})
	if err != nil {
		return "", false, rpcInternal(err)
	}
	cs, rep, err := codec.DecodeChanges(body, c.h.pushOptions())
	if err != nil {
		return "", false, opError(CodeBadRequest, "%s %s: %v", t.Name, id, err)
	}
	if len(rep.Rejected) > 0 {
		return "", false, opError(CodeValidation, "%s %s: %v", t.Name, id, rep.Rejected[0].Err)
	}
	tc := cs.Table(t.Name)
	row := tc.Updated[0]
	tc.Updated = nil
	if prev == nil {
		tc.Created = []codec.Row{row}
	} else { // the stored row with the given columns changed
		given := slices.Sorted(maps.Keys(row.Cols))
		merged := prev.Row.Clone()
		merged.Changed, merged.Versions = given, nil
		for _, col := range given {
			merged.Cols[col] = row.Cols[col]
		}
		tc.Updated = []codec.Row{merged}
	}
	return id, prev == nil, c.push(cs)
}

// push applies a one-row changeset as the caller's push.
func (c *opCall) push(cs *codec.Changeset) *rpcError {
	lpa, err := c.h.server.Store.LastCursor()
	if err != nil {
		return rpcInternal(err)
	}
	out := &outcome{caller: callerKey(c.caller.Caller)}
	resp, herr := c.h.pushJSON(c.caller.Caller, cs, lpa, codec.Report{}, out)
	if herr != nil {
		if herr.status == 409 {
			return opError(CodeConflict, "%s", herr.msg)
		}
		if herr.status < 500 {
			return opError(CodeBadRequest, "%s", herr.msg)
		}
		return rpcInternal(herr.cause)
	}
	if len(resp.Reasons) > 0 {
		rj := resp.Reasons[0]
		return opError(CodeValidation, "%s %s refused: %s", rj.Table, rj.ID, rj.Reason)
	}
	return nil
}

// del deletes the live row table/id through the push engine.
func (c *opCall) del(table, id string) *rpcError {
	t, rerr := c.table(table, true)
	if rerr != nil {
		return rerr
	}
	prev, rerr := c.stored(t.Name, id)
	if rerr != nil {
		return rerr
	}
	if prev == nil {
		return opError(CodeNotFound, "%s %s not found", t.Name, id)
	}
	if rerr := c.permit(t.Name, prev, true); rerr != nil {
		return rerr
	}
	cs := codec.NewChangeset()
	cs.Table(t.Name).Deleted = []string{id}
	return c.push(cs)
}

// registerPatient: {patient:{...}, additional_attributes:[{...}]}
// creates the patient (or changes the given columns of an existing
// one) and upserts its attributes: {patient_id, created}.
func registerPatient(c *opCall) (any, *rpcError) {
	raw, ok := c.params["patient"]
	if !ok {
		return nil, opError(CodeBadRequest, "register_patient needs {\"patient\":{...}}")
	}
	id, created, rerr := c.put("patients", raw, "", false)
	if rerr != nil {
		return nil, rerr
	}
	var attrs []json.RawMessage
	if a, ok := c.params["additional_attributes"]; ok && string(a) != "null" {
		if err := json.Unmarshal(a, &attrs); err != nil {
			return nil, opError(CodeBadRequest, "additional_attributes must be an array of objects: %v", err)
		}
	}
	for i, a := range attrs {
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(a, &fields); err != nil || fields == nil {
			return nil, opError(CodeBadRequest, "additional_attributes[%d] is not an object", i)
		}
		fields["patient_id"], _ = json.Marshal(id)
		b, _ := json.Marshal(fields)
		if _, _, rerr := c.put("patient_additional_attributes", b, "", false); rerr != nil {
			return nil, rerr
		}
	}
	return map[string]any{"patient_id": id, "created": created}, nil
}

// createRow: the parameters are the row's columns ({id?, ...}); a row
// of that id already there is refused. Answers {id}.
func createRow(table string) opFunc {
	return func(c *opCall) (any, *rpcError) {
		if s, _ := c.str("id"); s != "" {
			if prev, rerr := c.stored(table, s); rerr != nil || prev != nil {
				if rerr != nil {
					return nil, rerr
				}
				return nil, opError(CodeBadRequest, "%s %s already exists: update it instead", table, s)
			}
		}
		raw, _ := json.Marshal(c.params)
		id, _, rerr := c.put(table, raw, "", false)
		if rerr != nil {
			return nil, rerr
		}
		return map[string]any{"id": id}, nil
	}
}

// updateRow: {id, ...the columns to change}. Answers {id}.
func updateRow(table string) opFunc {
	return func(c *opCall) (any, *rpcError) {
		raw, _ := json.Marshal(c.params)
		id, _, rerr := c.put(table, raw, "", true)
		if rerr != nil {
			return nil, rerr
		}
		return map[string]any{"id": id}, nil
	}
}

// deleteRow: {<param>: id}. Answers {id, deleted: true}.
func deleteRow(table, param string) opFunc {
	return func(c *opCall) (any, *rpcError) {
		id, rerr := c.need(param, "id")
		if rerr != nil {
			return nil, rerr
		}
		if rerr := c.del(table, id); rerr != nil {
			return nil, rerr
		}
		return map[string]any{"id": id, "deleted": true}, nil
	}
}

// rowsPut: {table, id?, values:{...}} creates or changes a row of any
// table online writes may reach. Answers {id, created}.
func rowsPut(c *opCall) (any, *rpcError) {
	name, rerr := c.need("table")
	if rerr != nil {
		return nil, rerr
	}
	id, rerr := c.str("id")
	if rerr != nil {
		return nil, rerr
	}
	vals, ok := c.params["values"]
	if !ok {
		return nil, opError(CodeBadRequest, "rows.put needs values: {column: value, ...}")
	}
	id, created, rerr := c.put(name, vals, id, false)
	if rerr != nil {
		return nil, rerr
	}
	return map[string]any{"id": id, "created": created}, nil
}

// rowsDelete: {table, id}.
func rowsDelete(c *opCall) (any, *rpcError) {
	name, rerr := c.need("table")
	if rerr != nil {
		return nil, rerr
	}
	id, rerr := c.need("id")
	if rerr != nil {
		return nil, rerr
	}
	if rerr := c.del(name, id); rerr != nil {
		return nil, rerr
	}
	return map[string]any{"id": id, "deleted": true}, nil
}

// opsCaller is the caller of an operation authenticated as a user
// (Basic credentials, or a sign-in token): its clinic and permissions
// from its users row and user_clinic_permissions.
func (h *CloudHandler) opsCaller(c fsm.Caller) (hikmaCaller, error) {
	u, err := h.server.Store.Get("users", c.ID)
	if err != nil {
		return hikmaCaller{}, fmt.Errorf("the user %s: %w", c.ID, err)
	}
	clinic, role := u.Cols["clinic_id"].Str, u.Cols["role"].Str
	perms, err := loadPermissions(h.server.Store, c.ID, clinic)
	if err != nil {
		return hikmaCaller{}, err
	}
	return hikmaCaller{Caller: c, ClinicID: clinic, Role: role, Perms: perms}, nil
}

// Paths of the operations over HTTP: OpsPath + "query/<name>" and
// OpsPath + "command/<name>". A cloud also answers them under
// CloudOpsPath, where the Hikma app's cloud transport calls them.
const (
	OpsPath      = "/api/v2/rpc/"
	CloudOpsPath = "/rpc/"
)

// opsHTTP serves an operation over HTTP, as the Hikma app's cloud
// transport (tRPC) calls it: GET (or POST) …/query/<name>?input=
// {"json":params}, POST …/command/<name> with {"json":data}; the
// answer is {"result":{"data":{"json":result}}}, a refusal
// {"error":{"json":{"message","code","data":{"code","httpStatus"}}}}.
// The caller is a user: Basic email:password, or Bearer a token from
// /api/auth/sign-in.
func (h *CloudHandler) opsHTTP(w http.ResponseWriter, r *http.Request, rest string, out *outcome) *httpError {
	kind, name, _ := strings.Cut(rest, "/")
	command := kind == "command"
	if kind != "query" && !command || name == "" || strings.Contains(name, "/") {
		return refuse(http.StatusNotFound, "not found: %s (want …/query/<name> or …/command/<name>)", r.URL.Path)
	}
	if command && r.Method != http.MethodPost || r.Method != http.MethodGet && r.Method != http.MethodPost {
		allow := "GET, POST"
		if command {
			allow = "POST"
		}
		return notAllowed(w, r, allow)
	}
	c, herr := h.opsAuthenticate(w, r)
	if herr != nil {
		return herr
	}
	out.caller = callerKey(c)
	if herr := h.allow(w, callerKey(c)); herr != nil {
		return herr
	}
	var input []byte
	if r.Method == http.MethodGet {
		input = []byte(r.URL.Query().Get("input"))
	} else {
		body, held, herr := h.readBody(w, r, callerKey(c))
		if herr != nil {
			return herr
		}
		defer h.budget.give(callerKey(c), held)
		input = body
	}
	var wrapped struct {
		JSON json.RawMessage `json:"json"`
	}
	if len(bytes.TrimSpace(input)) > 0 {
		if err := json.Unmarshal(input, &wrapped); err != nil {
			return opsHTTPError(w, opError(CodeBadRequest, "the input is not {\"json\": parameters}: %v", err))
		}
	}
	hc, err := h.opsCaller(c)
	if err != nil {
		return internal(err)
	}
	out.extra = append(out.extra, "op", kind+"/"+name)
	res, rerr := h.operation(hc, command, name, wrapped.JSON)
	if rerr != nil {
		if rerr.code == CodeServerError {
			return internal(rerr.cause)
		}
		return opsHTTPError(w, rerr)
	}
	writeJSON(w, http.StatusOK, map[string]any{"result": map[string]any{"data": map[string]any{"json": res}}})
	return nil
}

// opsHTTPStatus is the HTTP status of a refused operation.
var opsHTTPStatus = map[string]int{CodeAuthFailed: http.StatusUnauthorized, CodePermissionDenied: http.StatusForbidden,
	CodeNotFound: http.StatusNotFound, CodeConflict: http.StatusConflict, CodeNotSupported: http.StatusNotFound,
	CodeRateLimited: http.StatusTooManyRequests}

// opsHTTPError writes a refused operation in tRPC's error shape; the
// request is logged as answered.
func opsHTTPError(w http.ResponseWriter, rerr *rpcError) *httpError {
	status, ok := opsHTTPStatus[rerr.code]
	if !ok {
		status = http.StatusBadRequest
	}
	writeJSON(w, status, map[string]any{"error": map[string]any{"json": map[string]any{
		"message": rerr.msg, "code": -32600, "data": map[string]any{"code": rerr.code, "httpStatus": status}}}})
	return nil
}

// opsAuthenticate finds the user of an operation: Bearer a sign-in
// token, else what /api/v2/sync accepts from a user (a hub's key is
// refused: operations are a user's).
func (h *CloudHandler) opsAuthenticate(w http.ResponseWriter, r *http.Request) (fsm.Caller, *httpError) {
	if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && r.URL.Query().Get("peerType") == "" {
		id, err := h.tokens.Verify(tok)
		if err != nil {
			return fsm.Caller{}, refuse(http.StatusUnauthorized, "%v: sign in again", err)
		}
		if live, err := h.auth.live(id); err != nil || !live {
			return fsm.Caller{}, refuse(http.StatusUnauthorized, "the user of this token no longer exists: sign in again")
		}
		return fsm.Caller{ID: id}, nil
	}
	c, err := h.auth.Authenticate(r, ClientAddress(r, h.trustFF))
	var throttled *ThrottledError
	switch {
	case errors.As(err, &throttled):
		return fsm.Caller{}, tooMany(w, throttled.Wait, "Too many failed sign-ins. Please try again later.")
	case errors.Is(err, ErrUnauthorized):
		w.Header().Set("WWW-Authenticate", `Basic realm="clinicsync", charset="UTF-8"`)
		return fsm.Caller{}, refuse(http.StatusUnauthorized, "%v", err)
	case err != nil:
		return fsm.Caller{}, internal(fmt.Errorf("authenticating: %w", err))
	case c.Hub:
		return fsm.Caller{}, refuse(http.StatusForbidden, "online operations are a user's: a hub's key cannot make them")
	}
	return c, nil
}
