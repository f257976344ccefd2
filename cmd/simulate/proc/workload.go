package proc

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"slices"
	"strings"
	"time"
)

// The workload: one goroutine per device and one for the cloud's admin,
// each with its own seeded stream, working through the CLI. Devices
// register patients and visits, edit the latest ones (several devices
// on the same rows, same and different columns), delete now and then,
// and sync with their hub (and some with the cloud); now and then two
// devices collide on purpose (collide). The admin edits and now and
// then deletes patients on the cloud, through its serve process's
// control socket.

// device runs one device's share of the workload.
func (r *runner) device(ctx context.Context, dev *node, idx int) {
	rng := rand.New(rand.NewPCG(r.opts.Seed, uint64(idx)+1))
	for op := 0; op < r.opts.Ops && ctx.Err() == nil; op++ {
		x := rng.IntN(100)
		switch {
		case x < 6:
			r.collide(ctx, dev, rng)
		case x < 15:
			r.createPatient(ctx, dev, fmt.Sprintf("p-%s-%d", dev.name, op))
		case x < 22:
			r.createVisit(ctx, dev, rng, fmt.Sprintf("v-%s-%d", dev.name, op))
		case x < 52:
			r.edit(ctx, dev, rng)
		case x < 57:
			r.remove(ctx, dev, rng)
		case x < 62 && dev.cloudPeer != "":
			r.sync(ctx, dev, dev.cloudPeer, rng)
		default:
			r.sync(ctx, dev, dev.hubPeer, rng)
		}
		r.pause(ctx, rng)
	}
	// A last collision, once every device holds rows: whether the ops
	// above found a row to collide on depends on timing (a loaded
	// machine syncs less in the same ops), this one does not.
	if ctx.Err() == nil {
		r.collide(ctx, dev, rng)
	}
}

// admin is the cloud's admin: edits and now and then deletes patients
// of every clinic.
func (r *runner) admin(ctx context.Context) {
	rng := rand.New(rand.NewPCG(r.opts.Seed, 0xad))
	for op := 0; op < r.opts.Ops/2 && ctx.Err() == nil; op++ {
		if rng.IntN(12) == 0 {
			r.remove(ctx, r.c.cloud, rng)
		} else {
			r.edit(ctx, r.c.cloud, rng)
		}
		r.pause(ctx, rng)
		r.pause(ctx, rng)
	}
}

func (r *runner) pause(ctx context.Context, rng *rand.Rand) {
	t := time.NewTimer(time.Duration(30+rng.IntN(170)) * time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// do runs a workload command on n; on a served node it holds n.ops, so
// that no kill interrupts it.
func (r *runner) do(ctx context.Context, n *node, args ...string) (string, error) {
	defer hold(n)()
	return r.c.cli(ctx, n, args...)
}

// hold takes n.ops for one command and returns its release: shared on a
// served node (its serve process owns the store), exclusive on a device
// (each command opens the store, which one process holds at a time, as
// one app does on a phone; collide works on two devices).
func hold(n *node) func() {
	if n.kind != kindMobile {
		n.ops.RLock()
		return n.ops.RUnlock
	}
	n.ops.Lock()
	return n.ops.Unlock
}

func (r *runner) createPatient(ctx context.Context, dev *node, id string) {
	vals := map[string]idValue{}
	args := []string{"put", "--data", dev.dir, "--table", "patients", "--id", id,
		"surname=Haddad", "date_of_birth=1990-02-28", "citizenship=JO", "sex=female", "additional_data={}",
		"metadata={}", "is_deleted=false", "government_id=G-1", "external_patient_id=E-1",
		"created_at=2024-03-01", "primary_clinic_id=" + dev.clinic}
	for _, col := range tracked["patients"] {
		n, v := r.model.value(dev.name)
		vals[col] = idValue{n, v}
		args = append(args, col+"="+v)
	}
	at := r.now()
	if _, err := r.do(ctx, dev, args...); err != nil {
		r.engineError(dev, err)
		return
	}
	r.model.created(dev.name, at, "patients", id, dev.clinic, vals)
}

func (r *runner) createVisit(ctx context.Context, dev *node, rng *rand.Rand, id string) {
	patients := r.model.recent("patients", dev.clinic, 6)
	if len(patients) == 0 {
		return
	}
	n, v := r.model.value(dev.name)
	args := []string{"put", "--data", dev.dir, "--table", "visits", "--id", id,
		"patient_id=" + patients[rng.IntN(len(patients))], "clinic_id=" + dev.clinic, "provider_id=u1",
		"provider_name=" + v, "check_in_timestamp=2024-03-01", "metadata={}", "is_deleted=false", "created_at=2024-03-01"}
	at := r.now()
	if _, err := r.do(ctx, dev, args...); err != nil {
		r.engineError(dev, err)
		return
	}
	r.model.created(dev.name, at, "visits", id, dev.clinic, map[string]idValue{"provider_name": {n, v}})
}

// pick chooses a recent row of n's clinic (any clinic on the cloud),
// patients three times out of four.
func (r *runner) pick(n *node, rng *rand.Rand) (table, id string) {
	clinic := n.clinic
	if clinic == "" {
		clinic = clinicID(1 + rng.IntN(r.opts.Clinics))
	}
	table = "patients"
	if rng.IntN(4) == 0 && n.kind != kindCloud {
		table = "visits"
	}
	ids := r.model.recent(table, clinic, 4)
	if len(ids) == 0 {
		return "", ""
	}
	return table, ids[rng.IntN(len(ids))]
}

// read returns a row as n holds it (nil when n does not hold it live).
// The caller holds n (hold), so that what it read is still there when it
// writes: collide syncs a device from another device's goroutine.
func (r *runner) read(ctx context.Context, n *node, table, id string) (map[string]any, error) {
	out, err := r.c.cli(ctx, n, "rows", "--data", n.dir, "--table", table, "--id", id, "--json")
	if err != nil {
		if strings.Contains(err.Error(), "not found") {
			return nil, nil
		}
		return nil, err
	}
	var rows struct{ Rows []map[string]any }
	if err := json.Unmarshal([]byte(out), &rows); err != nil || len(rows.Rows) != 1 {
		return nil, fmt.Errorf("rows on %s: %q: %v", n.name, out, err)
	}
	if rows.Rows[0]["_status"] == "deleted" {
		return nil, nil
	}
	return rows.Rows[0], nil
}

// edit changes a tracked column of a row the node holds.
func (r *runner) edit(ctx context.Context, n *node, rng *rand.Rand) {
	if table, id := r.pick(n, rng); id != "" {
		r.write(ctx, n, table, id, column(n, table, rng))
	}
}

// column is the tracked column an edit of n writes. Devices collide on
// phone and hometown (and a visit's provider); the admin edits
// given_name only. An edit on the cloud overwrites what the cloud holds
// when the put lands, which may be a push newer than what the admin
// read: the model could not say what it saw.
func column(n *node, table string, rng *rand.Rand) string {
	switch {
	case n.kind == kindCloud:
		return "given_name"
	case table == "patients":
		return []string{"phone", "hometown"}[rng.IntN(2)]
	}
	return "provider_name"
}

// collide makes two devices of dev's clinic edit the same column
// concurrently, so that the later edit reaches the first device by a
// pull while its own edit is still unpushed: the first device (the
// slower clock) edits, the second syncs (its clock now past what the
// hub holds), edits, and syncs, then the first syncs. Its pull must
// keep the newer value and log its own edit as beaten.
func (r *runner) collide(ctx context.Context, dev *node, rng *rand.Rand) {
	var peers []*node
	for _, d := range r.c.devices {
		if d.clinic == dev.clinic {
			peers = append(peers, d)
		}
	}
	if len(peers) < 2 {
		return
	}
	slices.SortStableFunc(peers, func(a, b *node) int { return cmp.Compare(r.plan.Skew[a.name], r.plan.Skew[b.name]) })
	first, second := peers[0], peers[len(peers)-1]
	table, id := r.pick(first, rng)
	if id == "" {
		return
	}
	col := column(first, table, rng)
	if !r.write(ctx, first, table, id, col) {
		return
	}
	r.sync(ctx, second, second.hubPeer, rng)
	if r.write(ctx, second, table, id, col) {
		r.sync(ctx, second, second.hubPeer, rng)
		r.sync(ctx, first, first.hubPeer, rng)
	}
}

// write puts a new value in a column of a row n holds, and says whether
// it did: the value n shows there is what the new write has seen.
func (r *runner) write(ctx context.Context, n *node, table, id, col string) bool {
	defer hold(n)()
	row, err := r.read(ctx, n, table, id)
	if err != nil || row == nil {
		r.noteFailure(n, err)
		return false
	}
	shown, _ := row[col].(string)
	num, v := r.model.value(n.name)
	at := r.now()
	if _, err := r.c.cli(ctx, n, "put", "--data", n.dir, "--table", table, "--id", id, col+"="+v); err != nil {
		r.engineError(n, err)
		return false
	}
	r.model.updated(n.name, at, table, id, col, idValue{num, v}, shown)
	return true
}

// remove deletes a row the node holds: visits more often than patients.
func (r *runner) remove(ctx context.Context, n *node, rng *rand.Rand) {
	table, id := r.pick(n, rng)
	if id == "" || table == "patients" && rng.IntN(3) > 0 {
		return
	}
	defer hold(n)()
	row, err := r.read(ctx, n, table, id)
	if err != nil || row == nil {
		r.noteFailure(n, err)
		return
	}
	if _, err := r.c.cli(ctx, n, "delete", "--data", n.dir, "--table", table, "--id", id); err != nil {
		r.engineError(n, err)
		return
	}
	r.model.deletedRow(n.name, table, id)
}

// sync runs a device's sync with a peer as its own process; with the
// crash fault, the process may be killed (-9) after a seeded delay.
func (r *runner) sync(ctx context.Context, dev *node, peer string, rng *rand.Rand) {
	var killAfter time.Duration
	if rng.Float64() < r.plan.SyncKill {
		killAfter = time.Duration(rng.IntN(400)) * time.Millisecond
	}
	defer hold(dev)()
	cmd := exec.CommandContext(ctx, r.c.bin, "sync", "--data", dev.dir, "--peer", peer, "--json", "--timeout", "20s")
	cmd.Env = append(cmd.Environ(), dev.env...)
	if err := cmd.Start(); err != nil {
		r.engineError(dev, err)
		return
	}
	r.count("syncs")
	if killAfter > 0 {
		t := time.AfterFunc(killAfter, func() {
			if cmd.Process.Kill() == nil {
				r.event(dev.name, "kill-sync", fmt.Sprintf("sync with %s killed (-9) %s after it started", r.peerName(dev, peer), killAfter))
			}
		})
		defer t.Stop()
	}
	if err := cmd.Wait(); err != nil {
		r.count("syncs failed")
	}
}

func (r *runner) peerName(dev *node, peer string) string {
	if peer == dev.cloudPeer {
		return "cloud"
	}
	return "hub"
}

// noteFailure counts a read that failed: the edit or delete is left
// out.
func (r *runner) noteFailure(n *node, err error) {
	if err != nil {
		r.count("reads failed")
	}
}

// engineError records a workload command that failed: a device's local
// write must not fail; a served node's commands run between its
// restarts, so they must not either.
func (r *runner) engineError(n *node, err error) {
	if errors.Is(err, context.Canceled) {
		return
	}
	r.violate(kindEngineError, n.name, "", "%v", err)
}
