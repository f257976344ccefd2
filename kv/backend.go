package kv

// Backend is an ordered key/value store with serializable transactions:
// the small interface under Store. Two implementations exist, bbolt
// (OpenBolt) and an in-memory twin (NewMemory); the conformance suite
// runs every Store test against both.
//
// Byte slices handed out by a Bucket are valid only inside the
// transaction; Put copies nothing the caller may not reuse afterwards
// (bbolt keeps the slices until commit, so callers never mutate them).
type Backend interface {
	// View runs fn in a read-only transaction.
	View(fn func(Tx) error) error
	// Update runs fn in a read-write transaction, committed if fn
	// returns nil and rolled back entirely otherwise.
	Update(fn func(Tx) error) error
	Close() error
}

// Tx is a transaction.
type Tx interface {
	// Bucket returns the named bucket. In a read-only transaction a
	// missing bucket reads as empty; in a read-write one it is created.
	Bucket(name string) (Bucket, error)
	// Buckets lists the names of existing buckets with the given prefix, sorted.
	Buckets(prefix string) []string
	// DeleteBucket removes a bucket and its contents (no error if absent).
	DeleteBucket(name string) error
}

// Bucket is an ordered map of byte keys to byte values.
type Bucket interface {
	Get(key []byte) []byte
	Put(key, value []byte) error
	Delete(key []byte) error
	// Ascend calls fn for each key >= from, in key order, until fn
	// returns false or an error.
	Ascend(from []byte, fn func(key, value []byte) (bool, error)) error
	// Len counts the keys.
	Len() int
}
