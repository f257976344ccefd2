package sim

// WatermelonDB devices: their syncs go through the cloud's real HTTP
// handler (actors.CloudHandler, Basic sign-in, the JSON codec) over an
// in-memory http.RoundTripper, with the faults of every other call.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"

	"github.com/clinicsync/clinicsync/actors"
	"github.com/clinicsync/clinicsync/codec"
	"github.com/clinicsync/clinicsync/codec/schema"
	"github.com/clinicsync/clinicsync/kv"
	pb "github.com/clinicsync/clinicsync/proto"
)

// The password of every WatermelonDB device's user, and its bcrypt
// hash (cost 4, fixed so that the users table replays exactly).
const (
	wdbPassword     = "wdb-sim-password"
	wdbPasswordHash = "$2a$04$lXQQ6L2in/NK0ZS68wZmG.wGMwyJ8dWAz4kdppsOPsIeZKyd1EdoO"
)

// errLost is a call the network or a crash cut short.
var errLost = errors.New("sim: request or response lost")

// cloudHTTP returns the cloud's HTTP handler over its current store
// (a new one after each restart of the cloud, as a restarted process
// has).
func (w *World) cloudHTTP() *actors.CloudHandler {
	if w.httpH == nil || w.httpEpoch != w.cloud.epoch {
		w.httpH = actors.NewCloudHandler(w.cloud.store, actors.CloudConfig{
			Policy: w.plan.Policy[cloudName], PageSize: w.plan.PageSize[cloudName], RateLimit: -1,
			Clock: w.cloud.clock, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
		w.httpEpoch = w.cloud.epoch
	}
	return w.httpH
}

// wdbTransport carries a WatermelonDB device's requests to the cloud's
// handler in the simulator's goroutine, through the fault hook.
type wdbTransport struct {
	w *World
	n *node
}

func (t wdbTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	w, n := t.w, t.n
	var body []byte
	if req.Body != nil {
		b, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		body = b
	}
	op := "pull"
	if req.Method == http.MethodPost {
		op = "push"
	}
	c := &call{from: n, to: w.cloud, op: op}
	w.calls = append(w.calls, c)
	fault := w.hook(actors.Call{From: n.name, To: cloudName, Op: op})
	w.calls = w.calls[:len(w.calls)-1]
	if c.cut || fault == actors.DropRequest {
		return nil, errLost
	}
	serve := func() *httptest.ResponseRecorder {
		sreq := httptest.NewRequest(req.Method, req.URL.RequestURI(), bytes.NewReader(body))
		sreq.Header = req.Header.Clone()
		sreq.RemoteAddr = "10.9.0.1:40000"
		rec := httptest.NewRecorder()
		w.cloudHTTP().ServeHTTP(rec, sreq)
		return rec
	}
	var pushed []key
	var now int64
	if op == "push" {
		pushed = w.wdbArriving(n, body)
		now, _ = w.cloud.store.Now()
	}
	rec := serve()
	if op == "push" && rec.Code == http.StatusOK {
		w.wdbLearn(n, body, now)
	}
	if op == "push" {
		w.checkCloudRows(n, pushed)
		if w.faulty() && w.chance(w.plan.Dup) {
			w.stats.fault(FaultDup, n.name, w.clock.now)
			w.tracef("fault dup: %s push to %s delivered twice", n.name, cloudName)
			w.wdbArriving(n, body)
			now, _ = w.cloud.store.Now()
			if again := serve(); again.Code == http.StatusOK {
				w.wdbLearn(n, body, now)
			} else if again.Code != http.StatusConflict {
				w.violate(VEngineError, cloudName, "", "duplicate push from %s: %d %s", n.name, again.Code, strings.TrimSpace(again.Body.String()))
			}
			w.checkCloudRows(n, pushed)
		}
	}
	w.checkCursors(w.cloud)
	if c.crashServer {
		w.crash(w.cloud, FaultCrash, "after handling a "+op+" from "+n.name)
	}
	if fault == actors.DropResponse {
		return nil, errLost
	}
	return rec.Result(), nil
}

// wdbPush is the body of a push.
type wdbPush struct {
	Changes      map[string]wdbTable `json:"changes"`
	LastPulledAt int64               `json:"lastPulledAt"`
}

// wdbArriving notes the rows a push creates on the cloud (rows served
// back to their creator are updated, never created) and returns every
// row it names.
func (w *World) wdbArriving(n *node, body []byte) []key {
	var p wdbPush
	if json.Unmarshal(body, &p) != nil {
		return nil
	}
	var out []key
	for _, t := range sortedKeys(p.Changes) {
		for _, raw := range p.Changes[t].Created {
			k := key{t, fmt.Sprint(raw["id"])}
			if _, err := w.cloud.store.Get(k.table, k.id); errors.Is(err, kv.ErrNotFound) {
				w.createdByAdd(cloudName, k, n.name)
			}
		}
		for _, raw := range slices.Concat(p.Changes[t].Created, p.Changes[t].Updated) {
			out = append(out, key{t, fmt.Sprint(raw["id"])})
		}
		for _, id := range p.Changes[t].Deleted {
			out = append(out, key{t, id})
		}
	}
	return out
}

// wdbLearn tells the model the versions the cloud gave a device's
// pushed edits: {min(updated_at, now), 0, user} for every column of a
// created record and the _changed columns of an updated one (now is
// the cloud's time when it took the push), or the version the cloud
// now holds for the edit's value (dated after what the device pulled).
// An edit pushed again with the same updated_at (the answer was lost,
// or the push was delivered twice) keeps the version it was given.
func (w *World) wdbLearn(n *node, body []byte, now int64) {
	var p wdbPush
	if json.Unmarshal(body, &p) != nil {
		return
	}
	cat := w.catalog()
	for _, t := range sortedKeys(p.Changes) {
		tab, ok := cat.Table(t)
		if !ok {
			continue
		}
		for _, list := range [][]map[string]any{p.Changes[t].Created, p.Changes[t].Updated} {
			for _, raw := range list {
				r := w.model.row(key{t, fmt.Sprint(raw["id"])})
				if r == nil {
					continue
				}
				cols := sortedKeys(raw)
				if raw["_status"] == wdbUpdated {
					cols = strings.Split(fmt.Sprint(raw["_changed"]), ",")
				}
				wall, sent := now, int64(0)
				if u, ok := raw["updated_at"].(float64); ok && u > 0 {
					sent = int64(u)
					wall = min(wall, sent)
				}
				ver := codec.Version{Wall: wall, Node: n.user}
				stored, err := w.cloud.store.Get(t, r.id)
				for _, col := range cols {
					if _, known := tab.Column(col); !known {
						continue
					}
					v := valueOf(tab, col, raw[col])
					r.learn(col, ver, v, sent)
					// Dated after the stored version the device had pulled.
					if sv := stored.Versions[col]; err == nil && sv.Node == n.user && stored.Cols[col].Equal(v) {
						r.learn(col, sv, v, 0)
					}
				}
			}
		}
	}
}

// syncWDB is one synchronize() of a WatermelonDB device: pull and
// apply, then push the local changes, retried once after a 409 (as the
// docs advise). A sync while one is in flight is refused (skipped).
func (w *World) syncWDB(n *node, trigger actors.Trigger, why string) actors.Result {
	cl := n.wdb
	if cl.syncing {
		w.tracef("%s sync %s %s via %s -> skipped (concurrent synchronization is not allowed)", n.name, trigger, why, cloudName)
		skipped := actors.Result{Outcome: actors.OutcomeSkipped, Peer: cloudName}
		w.stats.sync(n.name, trigger, skipped, w.clock.now, 0)
		return skipped
	}
	cl.syncing = true
	f := &flight{node: n, epoch: n.epoch}
	n.inflight = f
	started := w.clock.now
	res, msg := w.wdbSyncOnce(n)
	if errors.Is(res.Err, errWDBConflict) {
		res, msg = w.wdbSyncOnce(n)
	}
	cl.syncing = false
	if n.inflight == f {
		n.inflight = nil
	}
	w.stats.sync(n.name, trigger, res, started, w.clock.now-started)
	w.tracef("%s sync %s %s via %s (watermelondb) -> %s pulled=%d pushed=%d rejected=%d%s", n.name, trigger, why, cloudName, res.Outcome, res.Pulled, res.Pushed, len(res.Rejected), msg)
	return res
}

// errWDBConflict is a push refused with 409 (strict policy).
var errWDBConflict = errors.New("sim: watermelondb push conflict")

func (w *World) wdbSyncOnce(n *node) (actors.Result, string) {
	cl := n.wdb
	fail := func(err error, msg string) (actors.Result, string) {
		return actors.Result{Outcome: actors.OutcomeError, Err: err}, " (" + msg + ")"
	}
	hc := &http.Client{Transport: wdbTransport{w, n}}
	since := "null"
	if cl.lastPulledAt > 0 {
		since = fmt.Sprint(cl.lastPulledAt)
	}
	status, body, err := w.wdbDo(n, hc, http.MethodGet, "http://cloud"+actors.SyncPath+"?last_pulled_at="+since, nil)
	switch {
	case errors.Is(err, errLost):
		return fail(err, "unreachable")
	case err != nil:
		return fail(err, err.Error())
	case status != http.StatusOK:
		w.violate(VEngineError, n.name, "", "pull from %s answered %d: %s", cloudName, status, body)
		return fail(fmt.Errorf("pull: %d", status), "pull refused")
	}
	var pulled struct {
		Changes   map[string]wdbTable `json:"changes"`
		Timestamp int64               `json:"timestamp"`
	}
	if err := json.Unmarshal(body, &pulled); err != nil {
		w.violate(VEngineError, n.name, "", "pull from %s: undecodable answer: %v", cloudName, err)
		return fail(err, "bad pull")
	}
	w.wdbServed(n, cl.lastPulledAt, pulled.Changes)
	if pulled.Timestamp < cl.lastPulledAt {
		w.violate(VCursor, n.name, "", "pulled timestamp went back from %d to %d", cl.lastPulledAt, pulled.Timestamp)
	}
	if w.faulty() && w.chance(w.plan.Crash) {
		w.stats.fault(FaultCrash, n.name, w.clock.now)
		w.tracef("fault crash: %s app killed before applying its pull", n.name)
		return fail(errCrashed, "crashed")
	}
	took, err := cl.applyPull(pulled.Changes, pulled.Timestamp)
	if err != nil {
		w.violate(VEngineError, n.name, "", "the pulled changes are refused: %v", err)
		return fail(err, "bad pull")
	}
	w.wdbShown(n, took)
	w.wdbResolved(n)
	res := actors.Result{Outcome: actors.OutcomeOK, Pulled: len(took)}
	changes, pushed := cl.collect()
	if len(pushed) == 0 {
		return res, ""
	}
	req, err := json.Marshal(wdbPush{Changes: changes, LastPulledAt: pulled.Timestamp})
	if err != nil {
		panic(fmt.Sprintf("sim: encoding a push: %v", err))
	}
	status, body, err = w.wdbDo(n, hc, http.MethodPost, "http://cloud"+actors.SyncPath, req)
	switch {
	case errors.Is(err, errLost):
		return fail(err, "unreachable")
	case err != nil:
		return fail(err, err.Error())
	case status == http.StatusConflict:
		return fail(errWDBConflict, "conflict")
	case status != http.StatusOK:
		w.violate(VEngineError, n.name, "", "push to %s answered %d: %s", cloudName, status, body)
		return fail(fmt.Errorf("push: %d", status), "push refused")
	}
	var answer struct {
		Rejected map[string][]string                  `json:"experimentalRejectedIds"`
		Reasons  []struct{ Table, ID, Reason string } `json:"rejected"`
	}
	if err := json.Unmarshal(body, &answer); err != nil {
		w.violate(VEngineError, n.name, "", "push to %s: undecodable answer: %v", cloudName, err)
		return fail(err, "bad push answer")
	}
	for _, rj := range answer.Reasons {
		w.violate(VRejected, n.name, rj.Table+"/"+rj.ID, "%s rejected a pushed row: %s", cloudName, rj.Reason)
	}
	for _, t := range sortedKeys(answer.Rejected) {
		for _, id := range answer.Rejected[t] {
			res.Rejected = append(res.Rejected, &pb.Rejection{Table: t, Id: id})
		}
	}
	cl.markSynced(pushed, answer.Rejected)
	res.Pushed = len(pushed)
	return res, ""
}

// wdbDo sends one request as the device's user, with the crash faults
// of the app around it.
func (w *World) wdbDo(n *node, hc *http.Client, method, url string, body []byte) (int, []byte, error) {
	if w.faulty() && w.chance(w.plan.Crash) {
		w.stats.fault(FaultCrash, n.name, w.clock.now)
		w.tracef("fault crash: %s app killed before a request", n.name)
		return 0, nil, errLost
	}
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.SetBasicAuth(n.user+"@clinic.example", wdbPassword)
	req.Header.Set("Content-Type", actors.ContentTypeJSON)
	resp, err := hc.Do(req)
	if err != nil {
		if errors.Is(err, errLost) {
			return 0, nil, errLost
		}
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// wdbServed checks a pulled changes object (after --break-serve-created
// made every record created): a record this device's push created on
// the cloud never comes back to it as created after its first pull.
func (w *World) wdbServed(n *node, since int64, changes map[string]wdbTable) {
	for _, t := range sortedKeys(changes) {
		tc := changes[t]
		if w.opts.BreakServeCreated {
			tc.Created, tc.Updated = append(tc.Created, tc.Updated...), nil
			changes[t] = tc
		}
		if since == 0 {
			continue
		}
		for _, raw := range tc.Created {
			k := key{t, fmt.Sprint(raw["id"])}
			if w.createdBy[cloudName][k][n.name] {
				w.violate(VServedCreated, n.name, k.String(), "served as created by %s (since %d), although this device's push created it there", cloudName, since)
			}
		}
	}
}

// wdbShown notes, for the columns a pull wrote, which write the device
// now shows: the one the cloud's version names (the cloud's row does
// not move between serving the pull and its apply).
func (w *World) wdbShown(n *node, took map[key][]string) {
	for k, cols := range took {
		rec, err := w.cloud.store.Get(k.table, k.id)
		r := w.model.row(k)
		if err != nil || r == nil {
			continue
		}
		for _, c := range cols {
			if v, ok := rec.Cols[c]; ok {
				if wr := r.resolve(c, rec.Versions[c], v); wr != nil {
					n.shown[colKey{k, c}] = wr.id
					continue
				}
			}
			delete(n.shown, colKey{k, c})
		}
	}
}

// wdbResolved keeps the device's resolved conflicts as a conflict log:
// a pulled value its local change kept out, at the version the cloud
// holds it with (the device decided, so its log is where the checks
// look for the losing write).
func (w *World) wdbResolved(n *node) {
	cat := w.catalog()
	for _, rc := range n.wdb.resolved {
		rec, err := w.cloud.store.Get(rc.table, rc.id)
		tab, ok := cat.Table(rc.table)
		if err != nil || !ok {
			continue
		}
		v := valueOf(tab, rc.col, rc.remote)
		if cv, ok := rec.Cols[rc.col]; ok && cv.Equal(v) {
			n.conflicts = append(n.conflicts, kv.Conflict{Table: rc.table, ID: rc.id, Column: rc.col, Value: v,
				Version: rec.Versions[rc.col], At: n.clock.ms()})
		}
	}
	n.wdb.resolved = nil
}

// rawOf is a value as a WatermelonDB raw record holds it (JSON columns
// as JSON text).
func rawOf(v codec.Value) any {
	switch v.Kind {
	case codec.KindString, codec.KindJSON:
		return v.Str
	case codec.KindNumber:
		return v.Num
	case codec.KindBool:
		return v.Bool
	}
	return nil
}

// valueOf reads a raw value back by the column's type.
func valueOf(t *schema.Table, col string, v any) codec.Value {
	switch x := v.(type) {
	case string:
		if c, ok := t.Column(col); ok && c.Type == schema.JSON {
			return codec.JSONText(x)
		}
		return codec.String(x)
	case float64:
		return codec.Number(x)
	case bool:
		return codec.Bool(x)
	}
	return codec.Null()
}

// wdbRows returns a device's live rows (not marked deleted) as values,
// and hashes the whole database into h.
func (w *World) wdbRows(n *node, h io.Writer) map[key]map[string]codec.Value {
	fmt.Fprintf(h, "node %s (watermelondb) last_pulled_at=%d\n", n.name, n.wdb.lastPulledAt)
	cat := w.catalog()
	out := map[key]map[string]codec.Value{}
	for _, t := range sortedKeys(n.wdb.tables) {
		tab, _ := cat.Table(t)
		for _, id := range sortedKeys(n.wdb.tables[t]) {
			r := n.wdb.tables[t][id]
			cols := map[string]codec.Value{}
			var b strings.Builder
			fmt.Fprintf(&b, "%s/%s %s [%s] {", t, id, r.status, strings.Join(r.changed, ","))
			for _, c := range sortedKeys(r.raw) {
				if c == "id" {
					continue
				}
				cols[c] = valueOf(tab, c, r.raw[c])
				fmt.Fprintf(&b, "%s=%s ", c, cols[c])
			}
			fmt.Fprintln(h, b.String()+"}")
			if r.status != wdbDeleted {
				out[key{t, id}] = cols
			}
		}
	}
	return out
}

// wdbGet returns a live record of a device as the workload reads rows
// (kv.ErrNotFound if it holds none).
func (w *World) wdbGet(n *node, table, id string) (codec.Record, error) {
	r := n.wdb.live(table, id)
	if r == nil {
		return codec.Record{}, kv.ErrNotFound
	}
	tab, _ := w.catalog().Table(table)
	rec := codec.Record{Row: codec.Row{Table: table, ID: id, Cols: map[string]codec.Value{}, Changed: slices.Clone(r.changed)}}
	for c, v := range r.raw {
		if c != "id" {
			rec.Cols[c] = valueOf(tab, c, v)
		}
	}
	return rec, nil
}

func raws(cols map[string]codec.Value) map[string]any {
	out := make(map[string]any, len(cols))
	for c, v := range cols {
		out[c] = rawOf(v)
	}
	return out
}

// wdbVersions are the versions the model gives a device's edit until
// the cloud dates it (wdbLearn): its updated_at, else its clock.
func wdbVersions(n *node, cols map[string]codec.Value) map[string]codec.Version {
	wall := n.clock.ms()
	if u, ok := cols["updated_at"].Int64(); ok && u > 0 {
		wall = u
	}
	out := map[string]codec.Version{}
	for c := range maps.Keys(cols) {
		out[c] = codec.Version{Wall: wall, Node: n.user}
	}
	return out
}

// learn records a later dating of a write: the latest write of the
// column by the version's node with this value (nil if none). sent is
// the updated_at of the push that dated it (0 if none): a push sent
// again with the same one dates nothing anew.
func (r *mrow) learn(col string, ver codec.Version, v codec.Value, sent int64) {
	ws := r.cols[col]
	for i := len(ws) - 1; i >= 0; i-- {
		if wr := ws[i]; wr.writer == ver.Node && wr.value.Equal(v) {
			if sent != 0 {
				if wr.sent == sent {
					return
				}
				wr.sent = sent
			}
			if !slices.Contains(wr.versions, ver) {
				wr.versions = append(wr.versions, ver)
			}
			return
		}
	}
}
