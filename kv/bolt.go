package kv

import (
	"bytes"
	"fmt"
	"math"
	"time"

	bolt "go.etcd.io/bbolt"
)

// boltBackend is the bbolt Backend.
type boltBackend struct{ db *bolt.DB }

// OpenBolt opens (creating if needed) a bbolt file. It fails with
// ErrLocked if another process holds the file for more than timeout.
//
// The file is mapped 1 GiB large from the start on 64-bit machines
// (address space, not memory): bbolt remaps a growing file, copying
// every node the writing transaction holds each time. The free list is
// kept as a map, whose allocations do not scan it (the on-disk format
// is the same).
func OpenBolt(path string, timeout time.Duration) (Backend, error) {
	opts := &bolt.Options{Timeout: timeout, FreelistType: bolt.FreelistMapType}
	if math.MaxInt > math.MaxInt32 {
		opts.InitialMmapSize = 1 << 30
	}
	db, err := bolt.Open(path, 0o600, opts)
	if err != nil {
		if err == bolt.ErrTimeout {
			return nil, fmt.Errorf("%w: %s", ErrLocked, path)
		}
		return nil, fmt.Errorf("kv: open %s: %w", path, err)
	}
	return &boltBackend{db: db}, nil
}

func (b *boltBackend) View(fn func(Tx) error) error {
	return b.db.View(func(tx *bolt.Tx) error { return fn(boltTx{tx}) })
}

func (b *boltBackend) Update(fn func(Tx) error) error {
	return b.db.Update(func(tx *bolt.Tx) error { return fn(boltTx{tx}) })
}

func (b *boltBackend) Close() error { return b.db.Close() }

type boltTx struct{ tx *bolt.Tx }

func (t boltTx) Bucket(name string) (Bucket, error) {
	if b := t.tx.Bucket([]byte(name)); b != nil {
		return boltBucket{b}, nil
	}
	if !t.tx.Writable() {
		return emptyBucket{}, nil
	}
	b, err := t.tx.CreateBucket([]byte(name))
	if err != nil {
		return nil, fmt.Errorf("kv: create bucket %s: %w", name, err)
	}
	return boltBucket{b}, nil
}

func (t boltTx) Buckets(prefix string) []string {
	var names []string
	_ = t.tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
		if bytes.HasPrefix(name, []byte(prefix)) {
			names = append(names, string(name))
		}
		return nil
	})
	return names
}

func (t boltTx) DeleteBucket(name string) error {
	err := t.tx.DeleteBucket([]byte(name))
	if err == bolt.ErrBucketNotFound {
		return nil
	}
	return err
}

type boltBucket struct{ b *bolt.Bucket }

func (b boltBucket) Get(k []byte) []byte   { return b.b.Get(k) }
func (b boltBucket) Put(k, v []byte) error { return b.b.Put(k, v) }
func (b boltBucket) Delete(k []byte) error { return b.b.Delete(k) }

// Len counts the keys: from the page statistics, which see only what is
// committed, so a writable transaction counts with a cursor.
func (b boltBucket) Len() int {
	if !b.b.Tx().Writable() {
		return b.b.Stats().KeyN
	}
	n := 0
	c := b.b.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		n++
	}
	return n
}

func (b boltBucket) Ascend(from []byte, fn func(k, v []byte) (bool, error)) error {
	c := b.b.Cursor()
	var k, v []byte
	if from == nil {
		k, v = c.First()
	} else {
		k, v = c.Seek(from)
	}
	for ; k != nil; k, v = c.Next() {
		more, err := fn(k, v)
		if err != nil || !more {
			return err
		}
	}
	return nil
}

// emptyBucket stands for a bucket that does not exist yet, in a
// read-only transaction.
type emptyBucket struct{}

func (emptyBucket) Get([]byte) []byte { return nil }
func (emptyBucket) Put([]byte, []byte) error {
	return fmt.Errorf("kv: write in a read-only transaction")
}
func (emptyBucket) Delete([]byte) error { return nil }
func (emptyBucket) Len() int            { return 0 }
func (emptyBucket) Ascend([]byte, func(k, v []byte) (bool, error)) error {
	return nil
}
