package actors

// The online operations that write (ops.go): one-row pushes through the
// sync engine, within the caller's permissions.

import (
	"encoding/json"
	"errors"
	"maps"
	"slices"

	"github.com/clinicsync/clinicsync/codec"
	"github.com/clinicsync/clinicsync/kv"
)

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
	vis, rerr := c.visible(r)
	if rerr != nil {
		return nil, rerr
	}
	if !vis {
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
	return deleteRow(name, "id")(c)
}
