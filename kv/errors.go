package kv

import "errors"

var (
	// ErrNotFound: no such row, peer, device or key.
	ErrNotFound = errors.New("kv: not found")
	// ErrUnknownTable: the table is not in the catalog.
	ErrUnknownTable = errors.New("kv: unknown table")
	// ErrUnknownColumn: a local write names a column the table lacks.
	ErrUnknownColumn = errors.New("kv: unknown column")
	// ErrInvalidID: a row id outside [A-Za-z0-9_.-]{1,128}.
	ErrInvalidID = errors.New("kv: invalid row id")
	// ErrInvalidValue: a value of the wrong type for its column.
	ErrInvalidValue = errors.New("kv: invalid value")
	// ErrDeleted: a local write to a row that is deleted.
	ErrDeleted = errors.New("kv: row is deleted")
	// ErrClosed: the store is closed.
	ErrClosed = errors.New("kv: store closed")
	// ErrLocked: another process holds the bbolt file.
	ErrLocked = errors.New("kv: store is locked by another process")
	// ErrUnavailable: the backend's database did not answer (a shared
	// store's); nothing was written, and the request may be retried.
	ErrUnavailable = errors.New("kv: database unavailable")
	// ErrCorrupt: a stored record does not decode.
	ErrCorrupt = errors.New("kv: corrupt record")
)
