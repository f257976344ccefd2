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
// go through actors.MemNet. The sync logic is the engine's own: each
// hub and Go device runs a started engine (actors.NewNode over its
// kv.Store, Node.Start), and every sync is a Node.Sync: the coordinator
// actor resolves the peer, skips a sync asked for while one runs, and
// drives an actors.Run whose calls its peer actor makes over MemNet, to
// an actors.Server. The simulator's goroutine waits in Node.Sync, so
// only the goroutine of the call in flight does simulator work (faults,
// other events run during a delay); no timer decides on wall time (no
// retries; the request timeout is 1000 hours). A crash starts a new
// engine; the old one stops once its sync has answered. The simulator
// decides only who syncs when, and what goes wrong. WatermelonDB
// devices' requests are http.Requests handed to the cloud's
// actors.CloudHandler.ServeHTTP in the same goroutine (an in-memory
// http.RoundTripper, no sockets). The digest hashes every replica and
// the event trace: two runs of the same options give the same digest.
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
// WatermelonDB devices (Options.WDB per clinic, one by default; never a
// switching one) do the same work in their own database, a model of
// WatermelonDB written from the reference notes, not from the engine
// (wdb.go): raw records with _status and _changed (a create leaves
// _changed empty; an update adds its columns and makes a synced record
// updated), synchronize() as pull (GET /api/v2/sync?last_pulled_at=N,
// null the first time) then push (POST {changes, lastPulledAt}),
// retried once after a 409. A pull applies applyRemoteChanges' rules:
// created for a record it holds is an update, and re-creates a record
// it marked deleted; updated for a missing record creates it and is
// ignored for a deleted one; the columns in _changed keep their local
// value (a resolved conflict, kept as the device's conflict log);
// deleted destroys. A push sends full raw records; only records
// pushed and not changed since are marked synced (deleted ones
// purged); experimentalRejectedIds stay pending; a lost answer leaves
// everything pending, pushed again next sync. Each device signs in as
// its own user (Basic, a real bcrypt hash on the cloud's users row)
// and, a user not a hub, is unscoped: it receives every clinic.
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
// server before or after handling: the engine and any sync in flight
// are dropped and the store reopened from its backend; a WatermelonDB
// app killed before a request or before applying a pull), a second sync
// triggered on the caller while its sync is in flight, and late pushes
// (a device's push held back and delivered after its next push: a late
// duplicate, or reordered with the original lost and a record it creates
// deleted meanwhile, so the delete reaches the server first). Users
// also edit, now and then, a row of a push in flight. WatermelonDB
// devices take the per-call faults (loss, duplication, delay, crashes
// of the cloud or of the app, second triggers, the cloud's restarts)
// and the offline fault, but no scheduled partitions, one-way cuts or
// clock jumps, and no late pushes.
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
// The model (a map (table, id) → column → writes) records what the
// workload typed, never what the store returned: each write's value and
// writer, the versions the engine gave it (learnt when it leaves the
// device, as kv.ClampPending may date it anew), and the writes of that
// column its replica had already received (the value shown, and what
// that value and the replica had seen). Then, for every replica: a row
// somebody deleted is alive nowhere (a delete beats every edit); a row
// created and never deleted is on the cloud; every replica holding a row
// holds the same value in each column, which is a value written there,
// at a version given to that write; the final write was not overwritten
// by a write made where it had been seen (that one must win); every
// other write has the final value, or was seen by a later write, or lost
// to a higher version and is in some node's conflict log. The
// WatermelonDB devices' databases are replicas too (their live records
// against the cloud's rows of the tables served to a device, without
// secret columns); their edits are the user's writes, dated as the
// cloud dates a JSON client's edits ({min(updated_at, now), 0, user},
// learnt when the cloud takes the push). During the
// run, a pull (not a full one, nor a force download) never serves a row
// as created to the node whose push created it on that server, JSON
// pulls of WatermelonDB devices included (a WatermelonDB device would
// resurrect a record it deleted meanwhile).
//
// Planted bugs (Options.Break*, hidden --break-* switches) break one
// rule each inside the simulator: the pull merge (local edits, versions,
// deletes), the pushes on the wire (a delete of an unknown row
// stripped), the pulled pages (every row created), the device's writes
// (a second unpushed edit dropped) and marking synced. The model does
// not check referential integrity (a visit created for a patient deleted
// meanwhile stays, as the protocol allows).
//
// # Report page
//
// HTML renders reports as one self-contained page. For one run it
// draws a timeline with a lane per node, recorded as the run goes
// (Stats.Timeline: syncs, cuts as intervals, point faults, when each
// violation was found); the rows violations name get their history
// after the final checks (the model's writes, each node's final
// values). TestPageDraws renders pages in headless Chromium.
package sim
