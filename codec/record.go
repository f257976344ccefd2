package codec

import (
	"fmt"
	"strconv"
	"strings"
)

// Status is a row's state relative to a node's upstream, as
// WatermelonDB's _status.
type Status uint8

const (
	Synced Status = iota
	Created
	Updated
	Deleted
)

var statusNames = [...]string{"synced", "created", "updated", "deleted"}

func (s Status) String() string {
	if int(s) < len(statusNames) {
		return statusNames[s]
	}
	return fmt.Sprintf("status(%d)", uint8(s))
}

// Pending reports whether the row has changes to push upstream.
func (s Status) Pending() bool { return s != Synced }

// Record is a stored row with its sync metadata: the vocabulary shared
// by the store (which keeps it) and the sync rules (which decide it).
type Record struct {
	Row           // table, id, columns, _changed
	Status Status // relative to the upstream
	// Deleted marks a tombstone: a deleted row kept so that the delete
	// can be pushed upstream or served downstream. Its Cols hold at most
	// the row's clinic column (schema.Table.ClinicColumn), which the
	// clinic scope of the rows that follow it needs.
	Deleted bool
	// Cursor is the serving cursor of the row's last change;
	// CreatedCursor the one it was created at (what a server compares
	// with last_pulled_at to serve it as created or updated).
	Cursor        int64
	CreatedCursor int64
	// Version is the node-wide write sequence number of the last change:
	// mark-synced compares it to tell whether a row changed since it was
	// collected.
	Version uint64
	// Origin is the peer whose push created the row ("" for local rows);
	// PushBase is the last_pulled_at that push carried: the pusher's next
	// pull has exactly that last_pulled_at (pull timestamps are unique),
	// so the row goes back to it as updated.
	Origin   string
	PushBase int64
	// Receipts are, per pusher without versions (a WatermelonDB or
	// Hikma client) and column, the value it last pushed there (a hash)
	// and the version the server gave it: a re-sent value keeps that
	// version (ReceiptKey, HashValues).
	Receipts map[string]Receipt
}

// Receipt is the version a server gave a value a client pushed.
type Receipt struct {
	Hash    uint64 // HashValues of the value and the row's updated_at as pushed
	Version Version
}

// ReceiptKey keys Record.Receipts: the pusher and the column.
func ReceiptKey(caller, column string) string { return caller + "\x00" + column }

// SplitReceiptKey is ReceiptKey's inverse (columns hold no NUL).
func SplitReceiptKey(key string) (caller, column string) {
	i := strings.LastIndexByte(key, 0)
	if i < 0 {
		return "", key
	}
	return key[:i], key[i+1:]
}

// HashValues is a 64-bit hash of values: FNV-1a of, for each, the
// text fmt prints for "%d\x00%s\x00%v\x00%v\x00" of its kind, text,
// number and bool (written without fmt: it runs for every column a
// client pushes).
func HashValues(vs ...Value) uint64 {
	h := uint64(14695981039346656037) // FNV-1a 64 offset basis
	var buf [48]byte
	for _, v := range vs {
		h = fnv1a(h, strconv.AppendUint(buf[:0], uint64(v.Kind), 10))
		h = fnv1a(fnv1a(fnv1a(h, "\x00"), v.Str), "\x00")
		b := strconv.AppendFloat(buf[:0], v.Num, 'g', -1, 64)
		h = fnv1a(h, append(strconv.AppendBool(append(b, 0), v.Bool), 0))
	}
	return h
}

func fnv1a[T string | []byte](h uint64, b T) uint64 {
	for i := 0; i < len(b); i++ {
		h = (h ^ uint64(b[i])) * 1099511628211 // FNV-1a 64 prime
	}
	return h
}

// Lookup reads one stored row by table and id, tombstones included (nil
// when there is none): how a sync rule reads rows other than the one it
// decides, such as the parents a row follows for its clinic scope.
type Lookup func(table, id string) (*Record, error)

// Change is one incoming row or delete to apply: a row of a pulled page
// or of an accepted push.
type Change struct {
	Row         // table, id, columns, the sender's _changed and versions
	Delete bool // a delete of the row (Cols unused)
	// Created marks a row sent as created: every column is the
	// sender's edit (WatermelonDB leaves _changed empty on created rows).
	Created bool
}

// Op is what a merge decides to do with one change.
type Op uint8

const (
	// Skip leaves the row as it is.
	Skip Op = iota
	// Write stores Outcome.Record as the row's new state, with a new
	// serving cursor.
	Write
	// Purge removes the row and its tombstone entirely; a store that
	// keeps tombstones (a serving node) leaves a synced tombstone
	// instead, so the delete is still served downstream.
	Purge
	// Reject leaves the row as it is and reports it with Reason.
	Reject
)

var opNames = [...]string{"skip", "write", "purge", "reject"}

func (o Op) String() string {
	if int(o) < len(opNames) {
		return opNames[o]
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// Outcome is a merge's decision for one change.
type Outcome struct {
	Op     Op
	Record Record // for Write: columns, versions, Status, Changed, Deleted, Origin, CreatedCursor (0: keep or stamp)
	Reason string // for Reject
	// Conflicts are values that lost to a newer edit, for the deciding
	// node's conflict log (with any Op but Reject).
	Conflicts []Conflict
}

// Pending is a row waiting to be pushed, as a push plans its chunks
// before reading them: a tombstone or not, and its stored size.
type Pending struct {
	Table, ID string
	Deleted   bool
	Size      int
}
