package fsm

import "errors"

var (
	// ErrBadEvent: an event not allowed in the machine's current state.
	ErrBadEvent = errors.New("fsm: event not allowed in this state")
	// ErrConflict: under the strict policy, a pushed row changed on the
	// server after the client's last pull; the client must pull, merge
	// and push again (HTTP 409).
	ErrConflict = errors.New("fsm: push conflicts with changes made after last pull")
)
