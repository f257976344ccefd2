// Package kv is a node's database: rows with WatermelonDB-style sync
// metadata, the indexes that make sync cheap, and the node's peers,
// devices, config and event log.
//
// # Backends
//
// A Store runs over a Backend, a small ordered key/value interface with
// serializable transactions. OpenBolt is the real one (bbolt, one file
// per node); NewMemory is its twin for tests and the simulator, with an
// undo log so that a failed transaction leaves nothing behind, as in
// bbolt. The store logic exists once; the conformance suite
// (conformance_test.go) runs every test against both backends.
//
// # Rows and their metadata
//
// Each row carries, relative to the node's upstream, a Status (synced,
// created, updated, deleted) and Changed (the columns written locally
// since the last acknowledged push), and, for the node's downstream, a
// serving cursor. A local write (Put, Delete) validates against the
// schema catalog, sets the status and Changed, and appends to the event
// log. A delete leaves a tombstone: a row with Deleted set and no
// columns but its clinic column (schema.Table.ClinicColumn), which the
// clinic scope of the rows that follow it still needs (fsm.Scope).
//
// # Cursors
//
// Every row change is stamped with a cursor: max(now_ms, last+1),
// persisted in the same transaction. Cursors are unique and strictly
// increasing across the node, and never go back, whatever the clock
// does and across restarts. The cursor index maps each cursor to its
// row, so ChangesSince costs O(changes since), and its Timestamp is read
// in the same transaction as the rows.
//
// A pull's timestamp comes from IssueCursor, which records it in the
// same transaction; IssuedTimestamp tells a timestamp the store issued
// from one it never did. The record keeps the last 90 days of pull
// timestamps, at most 2^20 of them (Options.IssuedAge, IssuedMax),
// dropping the oldest as pulls come; below its floor it cannot tell.
//
// # Pushing upstream
//
// The pending index lists the rows whose status is not synced, so
// Collect costs O(pending). Each row also carries the write Version of
// its last change; MarkSynced marks only rows whose version is still the
// collected one, so a write made while a push was in flight stays
// pending. Pushed tombstones are purged, unless Options.KeepTombstones
// (serving nodes keep them to serve the delete downstream).
//
// # Applying batches
//
// Apply carries out a batch of incoming changes (a pulled page, an
// accepted push) in one transaction, with the merge rules passed in as a
// function: the store decides nothing about conflicts (package fsm
// does). A batch can carry a peer's new pull cursor, committed with the
// rows or not at all. ApplyWith hands the merge a Lookup bound to the
// batch's transaction, for rules that read other rows (a pushed event's
// patient, which may come earlier in the same batch).
//
// # Caveats
//
// Each Store method is one transaction; bbolt allows one writer at a
// time, so a node serialises its writes. Byte slices never escape a
// transaction. The peers table of the Hikma schema is not used for
// peers: they live in their own bucket (Peer).
package kv
