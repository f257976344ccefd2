package codec

import "errors"

// Sentinel errors. Functions wrap them with detail (%w); match with errors.Is.
var (
	// Keys and pairing (envelope.go).
	ErrPublicKey        = errors.New("codec: invalid public key")
	ErrZeroSharedSecret = errors.New("codec: X25519 shared secret is all zero (low-order peer key)")
	ErrUnknownRole      = errors.New("codec: unknown pairing role")
	ErrSessionKeySize   = errors.New("codec: session key must be 32 bytes")

	// Envelopes (envelope.go).
	ErrUnknownDirection  = errors.New("codec: unknown envelope direction")
	ErrEnvelopeTooLarge  = errors.New("codec: envelope too large")
	ErrEnvelopeBase64    = errors.New("codec: envelope is not base64url without padding")
	ErrEnvelopeTruncated = errors.New("codec: envelope shorter than nonce and tag")
	ErrEnvelopeAuth      = errors.New("codec: envelope authentication failed")
	ErrEnvelopeReplayed  = errors.New("codec: envelope replayed")
	ErrCounterExhausted  = errors.New("codec: envelope counter exhausted")
)

// Changesets and values (proto.go, json.go, normalize.go).
var (
	ErrMalformed      = errors.New("codec: malformed input")
	ErrTooLarge       = errors.New("codec: input too large")
	ErrUnknownTable   = errors.New("codec: unknown table")
	ErrUnknownColumn  = errors.New("codec: unknown column")
	ErrInvalidColumn  = errors.New("codec: invalid column name")
	ErrInvalidID      = errors.New("codec: invalid row id")
	ErrDuplicateID    = errors.New("codec: duplicate row id")
	ErrInvalidValue   = errors.New("codec: invalid value")
	ErrInvalidVersion = errors.New("codec: invalid column version")
	// ErrInvalidMigration: a migration sync request that is malformed or
	// names a table or column the catalog does not have.
	ErrInvalidMigration = errors.New("codec: invalid migration")

	// JSON changesets (json.go, hikma.go).
	ErrWrongType        = errors.New("codec: wrong JSON type")
	ErrMissingID        = errors.New("codec: record has no id")
	ErrDuplicateKey     = errors.New("codec: duplicate JSON key")
	ErrNonFinite        = errors.New("codec: number out of float64 range")
	ErrInvalidTimestamp = errors.New("codec: invalid sync timestamp")

	// ErrSpoolRelease: a PullSpool could not release its spill file
	// (spool.go).
	ErrSpoolRelease = errors.New("codec: releasing the pull spool's file")
)
