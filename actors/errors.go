package actors

import "errors"

// Sentinel errors. Functions wrap them with detail (%w); match with
// errors.Is. Errors from kv (kv.ErrLocked, kv.ErrUnknownTable, ...) and
// codec (codec.ErrInvalidValue) pass through wrapped, not translated.
var (
	// ErrNotInitialized: the directory holds no node (run init first).
	ErrNotInitialized = errors.New("actors: no node")
	// ErrAlreadyInitialized: init on a directory that holds a node.
	ErrAlreadyInitialized = errors.New("actors: directory already holds a node")
	// ErrInvalidKind: a node kind other than cloud, hub or mobile.
	ErrInvalidKind = errors.New("actors: invalid node kind")
	// ErrInvalidConfig: an unusable init or user setting (directory,
	// clinic id, role).
	ErrInvalidConfig = errors.New("actors: invalid configuration")
	// ErrInvalidEmail: a user email that is not a plain address.
	ErrInvalidEmail = errors.New("actors: invalid email")
	// ErrInvalidPassword: a user password too short or too long.
	ErrInvalidPassword = errors.New("actors: invalid password")
	// ErrDuplicateEmail: a live user already has that email.
	ErrDuplicateEmail = errors.New("actors: email already in use")
	// ErrKeyFile: the node's private key file is missing, malformed or
	// does not match the public key in the store.
	ErrKeyFile = errors.New("actors: bad node key file")
	// ErrNotImportable: an import into a table that a push to this
	// node does not take.
	ErrNotImportable = errors.New("actors: table not importable")
	// ErrNoDir: a file of the node's directory (key, credentials, TLS,
	// control socket) asked of a node made by NewNode, which has none.
	ErrNoDir = errors.New("actors: node has no directory")
)

// Sentinel errors of the sync engine (Node.Start, the coordinator and
// peer actors).
var (
	// ErrNotStarted: a sync call on a node whose engine is not running
	// (call Node.Start first).
	ErrNotStarted = errors.New("actors: sync engine not started")
	// ErrAlreadyStarted: Node.Start called twice.
	ErrAlreadyStarted = errors.New("actors: sync engine already started")
	// ErrClosed: the node was closed.
	ErrClosed = errors.New("actors: node closed")
	// ErrInvalidRequest: a sync request with an unknown trigger or a
	// negative since.
	ErrInvalidRequest = errors.New("actors: invalid sync request")
	// ErrSyncAborted: a sync abandoned before it finished (a force
	// reset, the node closing, the coordinator restarting). What it
	// stored stays stored; the next sync carries on from there.
	ErrSyncAborted = errors.New("actors: sync aborted")
)
