package fsm

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/clinicsync/clinicsync/codec"
	"github.com/clinicsync/clinicsync/codec/schema"
)

// Caller is who a serving node is talking to.
type Caller struct {
	ID  string // peer or device id; rows it creates carry it as Origin
	Hub bool   // a sync hub (gets the hub tables and secret columns)
	// Clinics scopes a hub: rows out of them (see Scope) are neither
	// served to it nor accepted from it. Empty means unscoped.
	Clinics []string
}

// Serve is ServeWith finding no parents: rows that follow them are
// left out for a scoped caller. Servers use ServeWith.
func Serve(recs []codec.Record, since int64, c Caller, cat *schema.Catalog) *codec.Changeset {
	cs, err := ServeWith(recs, since, c, cat, nil)
	if err != nil {
		panic("fsm: Serve failed without reading anything: " + err.Error())
	}
	return cs
}

// ServeWith builds the changeset answering a pull with last_pulled_at
// since, from the records changed after it (in cursor order):
//   - only the tables served to the caller; secret columns only to hubs;
//     rows out of a hub's clinics (Scope, reading parents with get)
//     left out;
//   - a tombstone is a deleted id, except on a first pull (since 0),
//     which returns no tombstones;
//   - a row created after since is created, otherwise updated, except
//     that a row goes back to the device whose push created it as
//     updated (see pushedBy), so WatermelonDB does not resurrect a row
//     the device deleted meanwhile; a first pull (since 0) gets every
//     row as created.
//
// The caller sets the timestamp. An error is a failed read of a parent.
func ServeWith(recs []codec.Record, since int64, c Caller, cat *schema.Catalog, get codec.Lookup) (*codec.Changeset, error) {
	served := servedTables(cat, c)
	scope := Scope{Catalog: cat, Clinics: c.Clinics, Lookup: memo(get)}
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
		why, err := scope.Check(t, r.Row)
		if err != nil {
			return nil, err
		}
		if why != "" {
			continue
		}
		row := codec.Row{Table: r.Table, ID: r.ID, Cols: r.Cols, Versions: r.Versions}
		if !c.Hub {
			row.Cols = withoutSecrets(t, r.Cols)
		}
		tc := cs.Table(r.Table)
		if since == 0 || r.CreatedCursor > since && !pushedBy(r, c, since) {
			tc.Created = append(tc.Created, row)
		} else {
			tc.Updated = append(tc.Updated, row)
		}
	}
	return cs, nil
}

// pushedBy reports whether a pull by c since a time comes from the
// device whose push created r: c pushed it (Origin), and pulls from at
// least the last_pulled_at that push carried (PushBase) on, so the push
// came from this device's store, even when it arrived late.
func pushedBy(r codec.Record, c Caller, since int64) bool {
	return r.Origin == c.ID && r.PushBase > 0 && since >= r.PushBase
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

// servedTables are the tables served to caller c.
func servedTables(cat *schema.Catalog, c Caller) map[string]bool {
	served := map[string]bool{}
	for _, name := range cat.ServedTables(c.Hub) {
		served[name] = true
	}
	return served
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
	// Now is this node's clock (ms, kv.Store.Now): the latest version
	// it gives the edits of a client that sends none (0: no bound).
	Now int64
	// MaxAhead is how far (ms) beyond Now a pushed version may be dated
	// before it counts in Ahead (when set): a sign that a peer's clock
	// runs ahead, for the log. Such versions are kept as sent: dating
	// one back here would give one edit two versions on two nodes, and
	// the pusher's copy would beat later edits made from this one. A
	// clinicsync sender bounds its own edits before it pushes (see
	// kv.Store.ClampPending).
	MaxAhead int64
	Ahead    *int
	// NoReceipts keeps no receipts (see Merge): for a local bulk load
	// (node import), whose answer cannot be lost, so nothing is sent
	// again.
	NoReceipts bool
}

// Merge returns the merge that applies this push, for the store's
// Apply. It is transactional by construction (the store applies the
// batch or nothing) and idempotent: a row with the same values and
// versions as the stored one changes nothing, whether it came as
// created or updated.
//
// Each pushed column takes the stored place only if its version is
// higher. A client that sends no versions (WatermelonDB, Hikma) has its
// edits (every column of a created row, the _changed columns of an
// updated one) dated {min(updated_at, Now), 0, caller}, or just after
// the stored version when it had pulled the row as stored (see after);
// a created row it pushes again gives no version of its own to values
// it sends as stored (see kept), and an edit it sends again (after a
// lost answer) keeps the version it was given (see resent); its other
// columns are a copy of what it pulled and never overwrite (they count
// as the zero version). A pushed edit that loses goes to the conflict
// log and the row is stamped again, so the pusher pulls the winner; a
// stored value overwritten by a pusher that had not pulled the row's
// latest state goes to the conflict log too.
//
// A deleted row is never resurrected: a delete of an unknown id leaves
// a tombstone (of the caller's clinic, for a caller of one clinic: see
// ownClinic), so the row cannot be created later by a push that was
// delayed elsewhere, and a push of a deleted row re-serves its delete.
// A created row lacking catalog columns (an app on an older schema)
// gets their defaults (WithDefaults); an update leaves them as stored.
// Invalid rows and rows of tables not accepted from the caller are
// rejected (and stay pending on the device); device-local tables
// (peers, event_logs) are ignored.
//
// A scoped caller (Caller.Clinics) may write a row only when the stored
// row and the resulting one are both in its Scope, and what it sends
// names no clinic or parent out of it (Scope.Names): a change to a
// stored row out of scope (delete included), a new row out of scope,
// and an edit that would take a row out of scope (an event to another
// clinic's patient), even one that loses to a newer version, are
// rejected with the reason, and so is any change of a row's clinic
// column. This is checked before the strict policy's conflict rule, so
// that a 409 never tells a caller about a row out of its scope. A
// tombstone holds no row to check: a change to it that names nothing
// out of scope only re-serves the delete.
//
// Merge finds no parents: rows that follow them (schema.Table.Follows)
// are out of every scoped caller's scope. MergeWith reads them.
func (p Push) Merge() func(cur *codec.Record, in codec.Change) (codec.Outcome, error) {
	return p.MergeWith(nil)
}

// MergeWith is Merge reading parents with get, which must see the
// batch's own writes (kv.Store.ApplyWith), in the order of Changes.
func (p Push) MergeWith(get codec.Lookup) func(cur *codec.Record, in codec.Change) (codec.Outcome, error) {
	accepted := map[string]bool{}
	for _, name := range p.Catalog.PushTables(p.Caller.Hub) {
		accepted[name] = true
	}
	scope := Scope{Catalog: p.Catalog, Clinics: p.Caller.Clinics, Lookup: get}
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
		if cur != nil && !cur.Deleted {
			// Before the conflict rule, or a 409 would tell the caller the
			// row exists and changed; the reason leaves out why, which
			// would describe the row.
			if why, err := scope.Check(t, cur.Row); err != nil || why != "" {
				return outOfScope(err, "the stored row is out of the caller's clinic scope")
			}
		}
		if !in.Delete {
			if why, err := scope.Names(t, in.Row); err != nil || why != "" {
				return outOfScope(err, "out of the caller's clinic scope: "+why)
			}
		}
		conflict := cur != nil && cur.Cursor > p.LastPulledAt
		if conflict && p.Policy == StrictPolicy {
			return codec.Outcome{}, fmt.Errorf("%w: %s/%s", ErrConflict, in.Table, in.ID)
		}
		if in.Delete {
			switch {
			case cur == nil:
				return codec.Outcome{Op: codec.Write, Record: codec.Record{Row: codec.Row{Cols: p.ownClinic(t)},
					Deleted: true, Status: p.status(codec.Deleted, nil), Origin: p.Caller.ID}}, nil
			case cur.Deleted:
				return codec.Outcome{Op: codec.Skip}, nil
			}
			return codec.Outcome{Op: codec.Write, Record: codec.Record{
				Deleted: true, Status: p.status(codec.Deleted, cur), Origin: cur.Origin}}, nil
		}
		if reason := p.invalid(t, in.Row); reason != "" {
			return reject("%s", reason)
		}
		switch {
		case cur == nil:
			edits := p.versions(in, true)
			cols, versions, _ := WithDefaults(t, in.Cols, edits) // an older app schema's missing columns
			if why, err := scope.Check(t, codec.Row{Table: in.Table, ID: in.ID, Cols: cols}); err != nil || why != "" {
				return outOfScope(err, "out of the caller's clinic scope: "+why)
			}
			r := codec.Record{Row: codec.Row{Cols: cols, Versions: versions}, Status: p.status(codec.Created, nil),
				Origin: p.Caller.ID, PushBase: p.LastPulledAt, Receipts: p.receipts(in, nil, edits)}
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
		versions := p.versions(in, in.Created)
		resent := p.resent(in, cur, versions)
		if in.Created {
			p.kept(in, cur, versions)
		}
		if !conflict {
			p.after(in, cur, versions, resent)
		}
		r := *cur
		r.Cols, r.Versions = maps.Clone(cur.Cols), maps.Clone(cur.Versions)
		r.Receipts = p.receipts(in, cur.Receipts, versions)
		if r.Versions == nil {
			r.Versions = map[string]codec.Version{}
		}
		var conflicts []codec.Conflict
		lost := false
		for _, col := range in.Columns() {
			iv, iver := in.Cols[col], versions[col]
			sv, had := cur.Cols[col]
			sver := cur.Versions[col]
			switch {
			case !had:
				r.Cols[col], r.Versions[col] = iv, iver
			case iver == sver && iv.Equal(sv), iver.IsZero(): // the same edit, or a copy that is no edit
			case codec.Newer(iv, iver, sv, sver):
				r.Cols[col], r.Versions[col] = iv, iver
				if !iv.Equal(sv) && conflict && sver.Node != iver.Node && !sver.IsZero() {
					conflicts = append(conflicts, codec.Conflict{Table: in.Table, ID: in.ID, Column: col, Value: sv, Version: sver, Winner: iver})
				}
			case !iver.IsZero() && !iv.Equal(sv):
				lost = true
				conflicts = append(conflicts, codec.Conflict{Table: in.Table, ID: in.ID, Column: col, Value: iv, Version: iver, Winner: sver})
			}
		}
		if c := t.ClinicColumn; len(p.Caller.Clinics) > 0 && c != "" && c != "id" && !r.Cols[c].Equal(cur.Cols[c]) {
			return reject("moving a row to another clinic is refused (%s %s to %s)", c, cur.Cols[c], r.Cols[c])
		}
		if why, err := scope.Check(t, r.Row); err != nil || why != "" {
			return outOfScope(err, "the row would be out of the caller's clinic scope: "+why)
		}
		if !lost && sameCols(r.Cols, cur.Cols) && maps.Equal(r.Versions, cur.Versions) {
			return codec.Outcome{Op: codec.Skip, Conflicts: conflicts}, nil
		}
		r.Changed, r.CreatedCursor = nil, 0
		r.Status = p.status(codec.Updated, cur)
		if p.Relay {
			r.Changed = slices.Clone(cur.Changed)
			for name, v := range r.Cols {
				if old, ok := cur.Cols[name]; (!ok || !old.Equal(v) || r.Versions[name] != cur.Versions[name]) && !slices.Contains(r.Changed, name) {
					r.Changed = append(r.Changed, name)
				}
			}
			slices.Sort(r.Changed)
			if len(r.Changed) == 0 && r.Status == codec.Updated {
				r.Status = cur.Status
			}
		}
		return codec.Outcome{Op: codec.Write, Record: r, Conflicts: conflicts}, nil
	}
}

// versions dates the pushed columns: a column with a version keeps it
// (counted in Ahead when beyond MaxAhead);
// an edit without one (every column when all, else the _changed ones)
// is dated {min(updated_at, Now), 0, caller}; other columns are the
// zero version.
func (p Push) versions(in codec.Change, all bool) map[string]codec.Version {
	out := make(map[string]codec.Version, len(in.Cols))
	wall := p.Now
	if u, ok := in.Cols["updated_at"].Int64(); ok && u > 0 && (wall <= 0 || u < wall) {
		wall = u
	}
	edit := codec.Version{Wall: max(wall, 0), Node: p.Caller.ID}
	for col := range in.Cols {
		if v, ok := in.Versions[col]; ok {
			if p.Ahead != nil && p.Now > 0 && v.Wall > p.Now+p.MaxAhead {
				*p.Ahead++
			}
			out[col] = v
		} else if all || slices.Contains(in.Changed, col) {
			out[col] = edit
		}
	}
	return out
}

// resent gives a column a client without versions pushes as it pushed
// it last (the same value and updated_at: editHash) the version it was
// given then (its receipt), and returns those columns: the same changes sent again
// after a lost answer are the same edits, not new ones (dated anew,
// by a later clock of the server's, they could beat an edit made since
// by a device that had seen them).
func (p Push) resent(in codec.Change, cur *codec.Record, versions map[string]codec.Version) map[string]bool {
	var out map[string]bool
	for col, v := range versions {
		if _, sent := in.Versions[col]; sent || v.IsZero() {
			continue
		}
		if rc, ok := cur.Receipts[codec.ReceiptKey(p.Caller.ID, col)]; ok && rc.Hash == editHash(in, col) {
			versions[col] = rc.Version
			if out == nil {
				out = map[string]bool{}
			}
			out[col] = true
		}
	}
	return out
}

// editHash tells one edit of a column by a client without versions
// from another: the value with the row's updated_at as pushed (the
// same changes sent again carry both unchanged; writing the same value
// again later carries a new updated_at).
func editHash(in codec.Change, col string) uint64 {
	return codec.HashValues(in.Cols[col], in.Cols["updated_at"])
}

// receipts are the stored receipts (old) with the versions this push
// gave the caller's edits (columns it sent without versions, dated as
// the caller's).
func (p Push) receipts(in codec.Change, old map[string]codec.Receipt, versions map[string]codec.Version) map[string]codec.Receipt {
	out, cloned := old, false
	if p.NoReceipts {
		return out
	}
	for col, v := range versions {
		if _, sent := in.Versions[col]; sent || v.IsZero() || v.Node != p.Caller.ID {
			continue
		}
		key, rc := codec.ReceiptKey(p.Caller.ID, col), codec.Receipt{Hash: editHash(in, col), Version: v}
		if old[key] == rc {
			continue
		}
		if !cloned {
			out, cloned = make(map[string]codec.Receipt, len(old)+len(versions)), true
			maps.Copy(out, old)
		}
		out[key] = rc
	}
	return out
}

// kept gives the stored version to each column of a created row that a
// client without versions (WatermelonDB, Hikma) pushes again (the first
// push's answer was lost) with the stored value: such a row carries
// every column, values it only pulled among them, and WatermelonDB
// keeps no _changed on created rows to tell them from edits; sending
// what is there is no edit. (An updated row's _changed columns are
// edits, the same value included.)
func (p Push) kept(in codec.Change, cur *codec.Record, versions map[string]codec.Version) {
	for col, v := range versions {
		if _, sent := in.Versions[col]; sent || v.IsZero() {
			continue
		}
		if sv, ok := cur.Cols[col]; ok && sv.Equal(in.Cols[col]) {
			versions[col] = cur.Versions[col]
		}
	}
}

// after dates the edits of a client without versions (WatermelonDB,
// Hikma) that had pulled the row as it is stored: an edit it made
// there beats the stored value, whatever its clock says (its
// updated_at may be behind the stored version's), so each such edit
// dated at or below the stored version is dated just after it, even one
// back to the stored value (edited away and back before syncing: the
// latest write is the client's). A created row's values sent as stored
// keep their version (see kept).
func (p Push) after(in codec.Change, cur *codec.Record, versions map[string]codec.Version, resent map[string]bool) {
	for col, v := range versions {
		if _, sent := in.Versions[col]; sent || v.IsZero() || resent[col] {
			continue
		}
		s := cur.Versions[col]
		switch {
		case v.Compare(s) > 0:
		case in.Created && cur.Cols[col].Equal(in.Cols[col]): // see kept
			versions[col] = s
		default:
			versions[col] = codec.Version{Wall: s.Wall, Counter: s.Counter + 1, Node: p.Caller.ID}
		}
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

// invalid checks a pushed row against the catalog and returns why it is
// refused ("" if it is valid). Unknown columns from a newer client are
// kept; missing ones are no reason (an older app schema: see
// WithDefaults). Scope is checked apart (Scope.Names, Scope.Check).
func (p Push) invalid(t *schema.Table, r codec.Row) string {
	for name, v := range r.Cols {
		col, ok := t.Column(name)
		if !ok {
			continue
		}
		if err := codec.CheckValue(col, v, p.MaxValueBytes); err != nil {
			return err.Error()
		}
	}
	return ""
}

// Changes lists a push's changes in the order its merge needs: the
// deletes first, children before parents (a tombstone keeps its clinic,
// so a row may follow a parent deleted earlier in the push, as a
// patient created and deleted downstream while a device wrote its
// events); then created and updated rows table by table in
// Catalog.PushTables order, parents before the rows that follow them (a
// new patient, then its events); other tables last. Within a table
// the rows come in id order (the store then walks its tree once), a
// row both created and updated in that order.
func (p Push) Changes(cs *codec.Changeset) []codec.Change {
	var out []codec.Change
	for _, name := range cs.TableNames() {
		tc := cs.Tables[name]
		for _, id := range tc.Deleted {
			out = append(out, codec.Change{Row: codec.Row{Table: name, ID: id}, Delete: true})
		}
		for i, rows := range [][]codec.Row{tc.Created, tc.Updated} {
			for _, r := range rows {
				r.Table = name
				out = append(out, codec.Change{Row: r, Created: i == 0})
			}
		}
	}
	order := newPushOrder(p.Catalog, p.Caller.Hub)
	slices.SortStableFunc(out, func(a, b codec.Change) int { return order.compare(a.Table, a.ID, a.Delete, b.Table, b.ID, b.Delete) })
	return out
}

// pushOrder is the order of Push.Changes, by each table's place in
// Catalog.PushTables (other tables after them, by name).
type pushOrder map[string]int

func newPushOrder(cat *schema.Catalog, hub bool) pushOrder {
	o := pushOrder{}
	for i, name := range cat.PushTables(hub) {
		o[name] = i
	}
	return o
}

func (o pushOrder) rank(table string) int {
	if r, ok := o[table]; ok {
		return r
	}
	return len(o)
}

// compare orders two changes: deletes first, children before parents;
// then rows, parents first; by table, then id.
func (o pushOrder) compare(at, aid string, adel bool, bt, bid string, bdel bool) int {
	if adel != bdel {
		if adel {
			return -1
		}
		return 1
	}
	ra, rb := o.rank(at), o.rank(bt)
	if adel {
		ra, rb = rb, ra
	}
	return cmp.Or(cmp.Compare(ra, rb), strings.Compare(at, bt), strings.Compare(aid, bid))
}

// ownClinic is the clinic a tombstone of an id never stored here keeps
// (see kv.Store): the caller's, when it has exactly one, since it could
// hold the row only in its scope; none otherwise.
func (p Push) ownClinic(t *schema.Table) map[string]codec.Value {
	if len(p.Caller.Clinics) != 1 {
		return nil
	}
	if col, ok := t.Column(t.ClinicColumn); ok && col.Type == schema.String {
		return map[string]codec.Value{col.Name: codec.String(p.Caller.Clinics[0])}
	}
	return nil
}

// outOfScope fails the push on a failed read (err), else rejects the
// row with reason.
func outOfScope(err error, reason string) (codec.Outcome, error) {
	if err != nil {
		return codec.Outcome{}, err
	}
	return codec.Outcome{Op: codec.Reject, Reason: reason}, nil
}

func reject(format string, a ...any) (codec.Outcome, error) {
	return codec.Outcome{Op: codec.Reject, Reason: fmt.Sprintf(format, a...)}, nil
}
