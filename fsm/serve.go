package fsm

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	"github.com/clinicsync/clinicsync/codec"
	"github.com/clinicsync/clinicsync/codec/schema"
)

// Caller is who a serving node is talking to.
type Caller struct {
	ID  string // peer or device id; rows it creates carry it as Origin
	Hub bool   // a sync hub (gets the hub tables and secret columns)
	// Clinics scopes a hub: rows whose clinic column names another
	// clinic are neither served to it nor accepted from it. Empty means
	// unscoped.
	Clinics []string
}

// Serve builds the changeset answering a pull with last_pulled_at
// since, from the records changed after it (in cursor order):
//   - only the tables served to the caller; secret columns only to hubs;
//     rows outside a hub's clinics left out;
//   - a tombstone is a deleted id, except on a first pull (since 0),
//     which returns no tombstones;
//   - a row created after since is created, otherwise updated, except
//     that a row goes back to the device whose push created it as
//     updated (its pull's last_pulled_at is the push's, PushBase), so
//     WatermelonDB does not resurrect a row the device deleted meanwhile;
//     a first pull (since 0) gets every row as created.
//
// The caller sets the timestamp.
func Serve(recs []codec.Record, since int64, c Caller, cat *schema.Catalog) *codec.Changeset {
	served := map[string]bool{}
	for _, name := range cat.ServedTables(c.Hub) {
		served[name] = true
	}
	cs := codec.NewChangeset()
	for _, r := range recs {
		t, ok := cat.Table(r.Table)
		if !ok || !served[r.Table] {
			continue
		}
		if r.Deleted {
			if since > 0 {
				cs.Table(r.Table).Deleted = append(cs.Table(r.Table).Deleted, r.ID)
			}
			continue
		}
		if !InScope(t, r.Row, c.Clinics) {
			continue
		}
		row := codec.Row{Table: r.Table, ID: r.ID, Cols: r.Cols}
		if !c.Hub {
			row.Cols = withoutSecrets(t, r.Cols)
		}
		tc := cs.Table(r.Table)
		if since == 0 || r.CreatedCursor > since && since != r.PushBase {
			tc.Created = append(tc.Created, row)
		} else {
			tc.Updated = append(tc.Updated, row)
		}
	}
	return cs
}

func withoutSecrets(t *schema.Table, cols map[string]codec.Value) map[string]codec.Value {
	out, cloned := cols, false
	for _, col := range t.Columns {
		if _, ok := cols[col.Name]; ok && col.Secret {
			if !cloned {
				out, cloned = maps.Clone(cols), true
			}
			delete(out, col.Name)
		}
	}
	return out
}

// InScope reports whether a row belongs to one of the clinics (always,
// when clinics is empty or the table is not scoped). A null clinic
// column is in every scope; event_forms.clinic_ids is a JSON array
// where null or [] means every clinic.
func InScope(t *schema.Table, r codec.Row, clinics []string) bool {
	if len(clinics) == 0 || t.ClinicColumn == "" {
		return true
	}
	if t.ClinicColumn == "id" {
		return slices.Contains(clinics, r.ID)
	}
	v := r.Cols[t.ClinicColumn]
	switch v.Kind {
	case codec.KindNull:
		return true
	case codec.KindString:
		return slices.Contains(clinics, v.Str)
	case codec.KindJSON:
		var ids []string
		if json.Unmarshal([]byte(v.Str), &ids) != nil {
			return false
		}
		if len(ids) == 0 {
			return true
		}
		for _, id := range ids {
			if slices.Contains(clinics, id) {
				return true
			}
		}
	}
	return false
}

// Policy is how a serving node treats a pushed row that changed on the
// server after the client's last pull.
type Policy uint8

const (
	// MergePolicy (the default) takes the columns the device changed
	// (its _changed) and keeps the server's other columns.
	MergePolicy Policy = iota
	// StrictPolicy fails the whole push with ErrConflict when a pushed
	// row changed on the server after the client's last pull
	// (WatermelonDB's documented rule: the client pulls, merges and
	// pushes again).
	StrictPolicy
)

func (p Policy) String() string {
	if p == StrictPolicy {
		return "strict"
	}
	return "merge"
}

// ParsePolicy reads "merge" or "strict".
func ParsePolicy(s string) (Policy, error) {
	switch s {
	case "merge", "":
		return MergePolicy, nil
	case "strict":
		return StrictPolicy, nil
	}
	return 0, fmt.Errorf("fsm: push policy %q is not merge or strict", s)
}

// Push describes an accepted push: who pushed, the last_pulled_at it
// carried, the policy, and whether this node relays to an upstream (a
// hub), in which case accepted rows become pending upstream.
type Push struct {
	Caller       Caller
	LastPulledAt int64
	Policy       Policy
	Relay        bool
	Catalog      *schema.Catalog
	// MaxValueBytes bounds text values (0: no bound).
	MaxValueBytes int
}

// Merge returns the merge that applies this push, for the store's
// Apply. It is transactional by construction (the store applies the
// batch or nothing) and idempotent: a created row that exists is an
// update, a row identical to the stored one changes nothing. An
// existing row takes only the pushed columns in the row's _changed (and
// columns it lacks), so a device's stale copy of a column it did not
// edit never overwrites a newer value. A deleted row is never
// resurrected: a delete of an unknown id leaves a tombstone, so the row
// cannot be created later by a push that was delayed elsewhere, and a
// push of a deleted row re-serves its delete.
// Invalid rows, rows outside the caller's scope and rows of tables not
// accepted from the caller are rejected (and stay pending on the
// device); device-local tables (peers, event_logs) are ignored.
func (p Push) Merge() func(cur *codec.Record, in codec.Change) (codec.Outcome, error) {
	accepted := map[string]bool{}
	for _, name := range p.Catalog.PushTables(p.Caller.Hub) {
		accepted[name] = true
	}
	return func(cur *codec.Record, in codec.Change) (codec.Outcome, error) {
		t, ok := p.Catalog.Table(in.Table)
		switch {
		case !ok:
			return reject("unknown table %s", in.Table)
		case t.Flow == schema.Local:
			return codec.Outcome{Op: codec.Skip}, nil
		case !accepted[in.Table]:
			return reject("table %s is not accepted in a push", in.Table)
		}
		conflict := cur != nil && cur.Cursor > p.LastPulledAt
		if conflict && p.Policy == StrictPolicy {
			return codec.Outcome{}, fmt.Errorf("%w: %s/%s", ErrConflict, in.Table, in.ID)
		}
		if in.Delete {
			switch {
			case cur == nil:
				return codec.Outcome{Op: codec.Write, Record: codec.Record{
					Deleted: true, Status: p.status(codec.Deleted, nil), Origin: p.Caller.ID}}, nil
			case cur.Deleted:
				return codec.Outcome{Op: codec.Skip}, nil
			case !InScope(t, cur.Row, p.Caller.Clinics):
				return reject("out of the caller's clinic scope")
			}
			return codec.Outcome{Op: codec.Write, Record: codec.Record{
				Deleted: true, Status: p.status(codec.Deleted, cur), Origin: cur.Origin}}, nil
		}
		if reason := p.invalid(t, in.Row, cur == nil); reason != "" {
			return reject("%s", reason)
		}
		switch {
		case cur == nil:
			r := codec.Record{Row: codec.Row{Cols: in.Cols}, Status: p.status(codec.Created, nil),
				Origin: p.Caller.ID, PushBase: p.LastPulledAt}
			if p.Relay {
				r.Changed = slices.Clone(in.Changed)
			}
			return codec.Outcome{Op: codec.Write, Record: r}, nil
		case cur.Deleted:
			// Not resurrected; the tombstone gets a new cursor so that the
			// pusher's next pull tells it the row is gone (it may have
			// pulled past the delete, through another peer).
			return codec.Outcome{Op: codec.Write, Record: codec.Record{
				Deleted: true, Status: cur.Status, Origin: cur.Origin, PushBase: cur.PushBase}}, nil
		}
		merged := maps.Clone(cur.Cols)
		for name, v := range in.Cols {
			if _, known := cur.Cols[name]; !known || slices.Contains(in.Changed, name) {
				merged[name] = v
			}
		}
		if sameCols(merged, cur.Cols) {
			return codec.Outcome{Op: codec.Skip}, nil
		}
		r := *cur
		r.Cols, r.Changed, r.CreatedCursor = merged, nil, 0
		r.Status = p.status(codec.Updated, cur)
		if p.Relay {
			r.Changed = slices.Clone(cur.Changed)
			for name, v := range merged {
				if old, ok := cur.Cols[name]; (!ok || !old.Equal(v)) && !slices.Contains(r.Changed, name) {
					r.Changed = append(r.Changed, name)
				}
			}
			slices.Sort(r.Changed)
		}
		return codec.Outcome{Op: codec.Write, Record: r}, nil
	}
}

// status is the upstream status of a row a push wrote: synced on a node
// without upstream; on a relay, pending (a row still created upstream
// stays created).
func (p Push) status(want codec.Status, cur *codec.Record) codec.Status {
	if !p.Relay {
		return codec.Synced
	}
	if want == codec.Updated && cur != nil && cur.Status == codec.Created {
		return codec.Created
	}
	return want
}

// invalid checks a pushed row against the catalog and the caller's
// scope, and returns why it is refused ("" if it is valid). Unknown
// columns from a newer client are kept.
func (p Push) invalid(t *schema.Table, r codec.Row, creating bool) string {
	for name, v := range r.Cols {
		col, ok := t.Column(name)
		if !ok {
			continue
		}
		if err := codec.CheckValue(col, v, p.MaxValueBytes); err != nil {
			return err.Error()
		}
	}
	if creating {
		for _, col := range t.Columns {
			if _, ok := r.Cols[col.Name]; !ok && !col.Optional && col.Name != "last_modified" && col.Name != "server_created_at" {
				return fmt.Sprintf("missing required column %s", col.Name)
			}
		}
	}
	if !InScope(t, r, p.Caller.Clinics) {
		return "out of the caller's clinic scope"
	}
	return ""
}

func reject(format string, a ...any) (codec.Outcome, error) {
	return codec.Outcome{Op: codec.Reject, Reason: fmt.Sprintf(format, a...)}, nil
}
