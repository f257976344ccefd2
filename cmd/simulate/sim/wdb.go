package sim

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
)

// WatermelonDB record statuses (_status).
const (
	wdbSynced  = "synced"
	wdbCreated = "created"
	wdbUpdated = "updated"
	wdbDeleted = "deleted"
)

// wdbRecord is one raw record of a WatermelonDB database: its columns
// as JSON values (id included), _status and _changed. rev counts the
// local edits, to tell a record changed while its push was in flight.
type wdbRecord struct {
	table   string
	raw     map[string]any
	status  string
	changed []string
	rev     int
}

// wdbClient is a WatermelonDB database as synchronize() sees it,
// written from the reference notes (watermelondb-sync.md), apart from
// the engine: raw records with _status and _changed, the last pulled
// timestamp, applyRemoteChanges' rules for a pull, and what a push
// sends and marks synced. The network is the caller's.
type wdbClient struct {
	tables       map[string]map[string]*wdbRecord
	lastPulledAt int64 // 0: never pulled (sent as null)
	syncing      bool
	applied      int // records a pull changed, ever (quiet detection)
	// resolved is the sync log's resolvedConflicts: pulled values a
	// local change kept out (taken and cleared by the caller).
	resolved []wdbConflict
}

// wdbConflict is a pulled column value a local change kept out.
type wdbConflict struct {
	table, id, col string
	remote         any
}

// wdbTable is one table of a changes object.
type wdbTable struct {
	Created []map[string]any `json:"created"`
	Updated []map[string]any `json:"updated"`
	Deleted []string         `json:"deleted"`
}

// wdbPushed names a record a push carried, at its local revision.
type wdbPushed struct {
	table, id string
	rev       int
}

// errWDBRecord is a pulled record the client refuses (the whole pull).
var errWDBRecord = errors.New("sim: watermelondb: invalid pulled record")

func newWDBClient() *wdbClient { return &wdbClient{tables: map[string]map[string]*wdbRecord{}} }

func (c *wdbClient) record(table, id string) *wdbRecord { return c.tables[table][id] }

func (c *wdbClient) put(table string, r *wdbRecord) {
	if c.tables[table] == nil {
		c.tables[table] = map[string]*wdbRecord{}
	}
	r.table = table
	c.tables[table][r.raw["id"].(string)] = r
}

// live returns a record that is not marked deleted (nil if none).
func (c *wdbClient) live(table, id string) *wdbRecord {
	if r := c.record(table, id); r != nil && r.status != wdbDeleted {
		return r
	}
	return nil
}

// create is a local create: status created, _changed empty.
func (c *wdbClient) create(table, id string, cols map[string]any) {
	raw := map[string]any{"id": id}
	for k, v := range cols {
		raw[k] = v
	}
	c.put(table, &wdbRecord{raw: raw, status: wdbCreated})
}

// update is a local update: each column joins _changed, and a synced
// record becomes updated (a created one stays created).
func (c *wdbClient) update(table, id string, cols map[string]any) error {
	r := c.live(table, id)
	if r == nil {
		return fmt.Errorf("sim: watermelondb: update of %s/%s, which is not here", table, id)
	}
	for k, v := range cols {
		r.raw[k] = v
		if !slices.Contains(r.changed, k) {
			r.changed = append(r.changed, k)
		}
	}
	slices.Sort(r.changed)
	if r.status != wdbCreated {
		r.status = wdbUpdated
	}
	r.rev++
	return nil
}

// markAsDeleted is a local delete: the record stays as a tombstone
// until its delete is pushed.
func (c *wdbClient) markAsDeleted(table, id string) error {
	r := c.live(table, id)
	if r == nil {
		return fmt.Errorf("sim: watermelondb: delete of %s/%s, which is not here", table, id)
	}
	r.status = wdbDeleted
	r.rev++
	return nil
}

// applyPull applies a pulled changes object as applyRemoteChanges does,
// all of it or nothing (a record with _status or _changed, or without
// an id, refuses the pull), and saves the timestamp. It returns, per
// table and id, the columns that took the pulled value.
func (c *wdbClient) applyPull(changes map[string]wdbTable, timestamp int64) (map[key][]string, error) {
	if timestamp <= 0 {
		return nil, fmt.Errorf("%w: timestamp %d", errWDBRecord, timestamp)
	}
	tables := sortedKeys(changes)
	for _, t := range tables {
		for _, raw := range slices.Concat(changes[t].Created, changes[t].Updated) {
			id, ok := raw["id"].(string)
			_, st := raw["_status"]
			_, ch := raw["_changed"]
			if !ok || id == "" || st || ch {
				return nil, fmt.Errorf("%w: %s %v", errWDBRecord, t, raw["id"])
			}
		}
	}
	took := map[key][]string{}
	for _, t := range tables {
		tc := changes[t]
		for _, raw := range tc.Created {
			id := raw["id"].(string)
			switch local := c.record(t, id); {
			case local == nil:
				took[key{t, id}] = c.insert(t, raw)
			case local.status == wdbDeleted:
				// "already exists locally and is marked as deleted ...
				// Will delete local record and recreate it instead".
				took[key{t, id}] = c.insert(t, raw)
			default:
				// A created record that exists is an update.
				took[key{t, id}] = c.resolve(local, raw)
			}
		}
		for _, raw := range tc.Updated {
			id := raw["id"].(string)
			switch local := c.record(t, id); {
			case local == nil:
				took[key{t, id}] = c.insert(t, raw)
			case local.status == wdbDeleted:
				// The local delete is pushed later.
			default:
				took[key{t, id}] = c.resolve(local, raw)
			}
		}
		for _, id := range tc.Deleted {
			if c.record(t, id) != nil {
				delete(c.tables[t], id) // destroyed, even with local changes
				c.applied++
			}
		}
	}
	c.lastPulledAt = timestamp
	return took, nil
}

// insert stores a pulled record as synced and returns its columns.
func (c *wdbClient) insert(table string, raw map[string]any) []string {
	r := &wdbRecord{raw: map[string]any{}, status: wdbSynced}
	var cols []string
	for k, v := range raw {
		r.raw[k] = v
		if k != "id" {
			cols = append(cols, k)
		}
	}
	if old := c.record(table, raw["id"].(string)); old != nil {
		r.rev = old.rev + 1
	}
	c.put(table, r)
	c.applied++
	slices.Sort(cols)
	return cols
}

// resolve is resolveConflict: {...local, ...remote}, then every column
// of local _changed back to its local value; _status and _changed stay.
// It returns the columns that took the pulled value.
func (c *wdbClient) resolve(local *wdbRecord, remote map[string]any) []string {
	var cols []string
	for _, k := range sortedKeys(remote) {
		v := remote[k]
		if k == "id" {
			continue
		}
		if slices.Contains(local.changed, k) {
			if !reflect.DeepEqual(local.raw[k], v) {
				c.resolved = append(c.resolved, wdbConflict{local.table, local.raw["id"].(string), k, v})
			}
			continue
		}
		local.raw[k] = v
		cols = append(cols, k)
	}
	local.rev++
	c.applied++
	slices.Sort(cols)
	return cols
}

// collect returns the local changes to push, as fetchLocalChanges does
// (full raw records, _status and _changed included), and what they
// are, to mark synced after.
func (c *wdbClient) collect() (map[string]wdbTable, []wdbPushed) {
	out := map[string]wdbTable{}
	var pushed []wdbPushed
	for _, t := range sortedKeys(c.tables) {
		tc := wdbTable{Created: []map[string]any{}, Updated: []map[string]any{}, Deleted: []string{}}
		for _, id := range sortedKeys(c.tables[t]) {
			r := c.tables[t][id]
			if r.status == wdbSynced {
				continue
			}
			pushed = append(pushed, wdbPushed{t, id, r.rev})
			if r.status == wdbDeleted {
				tc.Deleted = append(tc.Deleted, id)
				continue
			}
			raw := map[string]any{"_status": r.status, "_changed": strings.Join(r.changed, ",")}
			for k, v := range r.raw {
				raw[k] = v
			}
			if r.status == wdbCreated {
				tc.Created = append(tc.Created, raw)
			} else {
				tc.Updated = append(tc.Updated, raw)
			}
		}
		if len(tc.Created)+len(tc.Updated)+len(tc.Deleted) > 0 {
			out[t] = tc
		}
	}
	return out, pushed
}

// markSynced is markLocalChangesAsSynced after a push the server took:
// a pushed record not changed since and not rejected becomes synced
// (a deleted one is purged); rejected ones stay as they are.
func (c *wdbClient) markSynced(pushed []wdbPushed, rejected map[string][]string) {
	for _, p := range pushed {
		r := c.record(p.table, p.id)
		if r == nil || r.rev != p.rev || slices.Contains(rejected[p.table], p.id) {
			continue
		}
		if r.status == wdbDeleted {
			delete(c.tables[p.table], p.id)
			continue
		}
		r.status, r.changed = wdbSynced, nil
	}
}

// pending counts the records with local changes.
func (c *wdbClient) pending() int {
	n := 0
	for _, t := range c.tables {
		for _, r := range t {
			if r.status != wdbSynced {
				n++
			}
		}
	}
	return n
}
