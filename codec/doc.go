// Package codec holds the pure conversions of clinicsync: the in-memory
// changeset and record types, protobuf and JSON encodings of them, the
// normalization of column values, and sealed envelopes. It does no I/O
// beyond the readers and writers it is handed, except the temporary
// file of a PullSpool (which SpoolOptions.Create can replace), reads no
// clock and uses no global randomness.
//
// # Values, rows and changesets
//
// A Value is one of null, string, number, bool or JSON text. A Row is a
// table, an id and its column values, plus the columns a client changed
// (WatermelonDB's _changed) when it travels in a push. A Changeset is
// created rows, updated rows and deleted ids per table, with the serving
// node's timestamp. A Record is a stored row with its sync metadata; a
// Change and an Outcome are the vocabulary in which package fsm decides
// and package kv applies.
//
// # Encodings
//
//   - protobuf (changeset.go, wire.go, proto.go): EncodeChangeset and
//     DecodeChangeset write and read the changeset bytes that pulls and
//     pushes carry, field by field; the decoder validates table names,
//     ids and column names and bounds the size. ChangesetToProto and
//     ChangesetFromProto do the same through the generated messages:
//     the model the tests hold the field-by-field codec to. Marshal is
//     deterministic.
//   - WatermelonDB JSON (json.go): the changes object, pull responses and
//     push bodies, typed exactly as the WatermelonDB schema expects (JSON
//     columns as JSON text, dates as milliseconds, no _status/_changed in
//     pulled rows). Encoders stream row by row. PullSpool takes rows of
//     any table in any order (a walk of the cursor index), encodes each
//     at once, and holds them grouped by table and list, in memory up to
//     a bound and in a temporary file past it, until it writes the
//     document (spool.go).
//   - Hikma cloud JSON (hikma.go): what a Hikma server sends (ISO dates,
//     jsonb objects, numeric strings) and its inverse.
//   - command-line text (text.go): ParseText for `node put COL=VALUE`.
//
// # Normalization
//
// Every decoded value goes through one normalizer driven by the column's
// schema.Type (the rules are tabled in README.md "Normalization rules" and
// at the top of normalize.go). A value is kept, converted by a documented
// rule that keeps what it means, or its record is rejected: the decoders
// leave the record out of the changeset and list it in Report.Rejected
// with an error naming table, id, column, value and reason; a syntax
// error still fails the whole body. Never a silent 0, 1970, false or
// quoted string. CheckValue tells whether a value is already canonical;
// encoders write canonical values only and never convert.
//
// # Envelopes
//
// envelope.go implements the Hikma hub pairing byte for byte: X25519 key
// agreement, HKDF-SHA256 (salt "hikma-health-pairing-v1", info hub public
// key ‖ client public key), AES-256-GCM with the 12-byte nonce prepended
// and a per-direction AAD, base64url without padding. Sealer and Opener
// add per-direction keys and counter nonces for the native protocol, so a
// replayed or reordered envelope is refused.
//
// # Caveats
//
// Numbers are float64, as in JavaScript: integers beyond 2^53 lose
// precision (epoch milliseconds are far below). Unknown columns from a
// newer peer are kept with the kind they arrived with.
package codec
