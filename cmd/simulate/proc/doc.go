// Package proc is the simulator's process mode: a deployment of real
// bin/node processes on 127.0.0.1 (a cloud, a hub per clinic, devices),
// driven through the node CLI by a seeded workload, with faults, then
// healed, settled and checked.
//
// # Deployment
//
// The cloud and the hubs run `node serve` (the hubs relay upstream on
// their own, every second); commands on them run inside those
// processes, through their control sockets. Devices are data
// directories: each `put`, `rows`, `delete` and `sync` is a process of
// its own. Devices pair with their hub over TLS (`peer add --pairing`,
// the certificate pinned); the first device and, as the seed draws,
// about a third of the others also with the cloud. Every listener has
// a Proxy in front of it, and every peer is added with the proxy's
// address.
//
// # Faults
//
// The seed plans them (Plan) and the report lists every one injected
// (the schedule): partitions and one-way cuts as time intervals on the
// proxies; connections dropped, reset after some bytes or delayed;
// serve processes killed (-9) at planned times, whatever they are
// doing, and restarted on the same addresses; devices' sync processes
// killed (-9) mid-sync; each node's clock offset by up to two minutes
// (CLINICSYNC_TEST_CLOCK_OFFSET, a test-only hook of bin/node).
//
// # Checks
//
// After the heal every device syncs with its hub (and the cloud), every
// hub with the cloud, until a round moves nothing (bounded). The
// processes stop and each store is opened and read: every replica's
// live rows equal the cloud's within the tables and clinic scope it
// receives (sim.Received, sim.InScope); against the model of what the
// workload typed (each value unique, with the writes its writer's
// replica showed before): a deleted row is alive nowhere, a row created
// and never deleted is on the cloud, each tracked column holds a value
// written there, no write made after its writer had seen the final one
// lost to it, and every other write overwritten unseen is in some
// node's conflict log.
//
// # Caveat
//
// Real processes interleave as the machine schedules them: a seed
// replays the plan (workload, fault times, offsets), not the run. A
// failure prints the seed, the schedule and the replay command, and
// keeps the data directories.
//
// Options.BreakMerge (--break-merge) plants a bug in every node process
// (CLINICSYNC_TEST_BREAK=merge, test-only): a pulled value beats a
// device's unpushed edit with no conflict logged, which the checks
// report as lost writes.
package proc
