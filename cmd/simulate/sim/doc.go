// Package sim is the clinicsync simulator: a whole deployment (one
// cloud, clinics each with a hub and devices) in one goroutine, driven
// through clinic days with faults, and checked against an independent
// model of what was written. `bin/simulate` is a thin shell around Run
// and RunSeeds.
//
// # Determinism
//
// Everything that happens is an event in one queue ordered by virtual
// time and sequence number. Time is a virtual clock (each node sees it
// through its own offset: skew and jumps); randomness comes from
// math/rand/v2 PCG streams of the seed, one per concern (plan,
// workload, faults, network), so that a seed replays exactly; messages
// go through actors.MemNet. The sync logic is the engine's own: every
// sync is an actors.Run over the node's kv.Store, served by an
// actors.Server; the simulator decides only who syncs when, and what
// goes wrong. The digest hashes every replica and the event trace: two
// runs of the same options give the same digest.
//
// # Workload
//
// Devices have roles (desk, triage, doctor, pharmacy) and work through
// a clinic day: registering patients (with extra attributes), visits,
// vitals and form events, problems, prescriptions with items,
// dispensing (which updates items and prescriptions), appointments;
// they correct patients and records (several devices on the same
// patients, same and different columns), delete records entered in
// error, and now and then delete a duplicate patient with everything of
// theirs they hold (the deleting device deletes the children itself,
// as WatermelonDB requires). They sync every few minutes, at login and
// at closing, sometimes by force upload or download. Hubs sync with the
// cloud all day and night; the cloud's admin edits drugs, stock,
// patients and users, and deletes patients. Some devices sync straight
// to the cloud; with the switch fault one moves between hub and cloud.
//
// # Faults
//
// Scheduled: partitions (a node cut off both ways with
// MemNet.Partition, or a clinic's uplink down so its LAN still works),
// one-way cuts (messages toward a node lost: requests to it dropped,
// answers to it dropped), hub restarts, clock jumps, per-node clock
// skew, a device offline for weeks (the heal comes 2-5 weeks after the
// last day), peer switches. Per call, in the MemNet hook or around it:
// loss (request or answer), duplication (the harness sends the same
// PushRequest through Server.Push again), delay (the call is held while
// other due events run, which interleaves nodes' syncs and puts writes
// inside pushes), crashes (client before a request or after an answer,
// server before or after handling: the machine and any run in flight
// are dropped and the store reopened from its backend), and a second
// sync triggered on the caller while its sync is in flight.
//
// # Checks
//
// During the run: cursors never go back (each node's serving cursor and
// each peer's pull cursor, across syncs, restarts and clock jumps); a
// sync triggered while one is in flight is skipped and never runs; a
// row the cloud holds as deleted does not come back after a push; valid
// rows are not rejected. After the heal every node syncs, devices then
// hubs, until a round changes nothing (bounded): liveness is every node
// quiet, idle and with nothing pending within the bound; convergence is
// every replica's live rows equal to the cloud's, restricted to the
// tables and clinic scope it receives (devices without secret columns).
// The model (a map (table, id) → column → writes) then checks the
// cloud: every row created and never deleted exists; every deleted row
// is gone everywhere; every column holds a value somebody wrote to it;
// no written column is missing; and each column holds the last value of
// one of its writers — with a single writer, its last value.
//
// The model does not know the sync order, so it cannot tell which of
// several writers of a column should win; it accepts any writer's last
// value. It does not check referential integrity (a visit created for a
// patient deleted meanwhile stays, as the protocol allows), nor values
// on replicas beyond their equality with the cloud.
package sim
