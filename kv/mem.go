package kv

import (
	"bytes"
	"slices"
	"sort"
	"strings"
	"sync"
)

// memBackend is the in-memory Backend: the twin of bbolt for tests and
// the simulator. Read-write transactions keep an undo log and roll back
// on error, so atomicity matches bbolt's.
type memBackend struct {
	mu      sync.RWMutex // guards buckets and closed
	buckets map[string]*memBucket
	closed  bool
}

// NewMemory returns an empty in-memory Backend.
func NewMemory() Backend { return &memBackend{buckets: map[string]*memBucket{}} }

func (m *memBackend) View(fn func(Tx) error) error {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return ErrClosed
	}
	return fn(&memTx{m: m})
}

func (m *memBackend) Update(fn func(Tx) error) (err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	tx := &memTx{m: m, writable: true}
	defer func() {
		if p := recover(); p != nil {
			tx.rollback()
			panic(p)
		}
		if err != nil {
			tx.rollback()
		}
	}()
	return fn(tx)
}

func (m *memBackend) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	return nil
}

// undo restores one key (or one whole bucket) of a rolled-back transaction.
type undo struct {
	bucket  string
	key     string
	value   []byte
	existed bool
	whole   *memBucket // a deleted or created bucket: restore or remove
	created bool
}

type memTx struct {
	m        *memBackend
	writable bool
	log      []undo
}

func (t *memTx) Bucket(name string) (Bucket, error) {
	b, ok := t.m.buckets[name]
	if !ok {
		if !t.writable {
			return emptyBucket{}, nil
		}
		b = &memBucket{m: map[string][]byte{}}
		t.m.buckets[name] = b
		t.log = append(t.log, undo{bucket: name, created: true})
	}
	return &memTxBucket{tx: t, name: name, b: b}, nil
}

func (t *memTx) Buckets(prefix string) []string {
	var names []string
	for n := range t.m.buckets {
		if strings.HasPrefix(n, prefix) {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names
}

func (t *memTx) DeleteBucket(name string) error {
	b, ok := t.m.buckets[name]
	if !ok {
		return nil
	}
	delete(t.m.buckets, name)
	t.log = append(t.log, undo{bucket: name, whole: b})
	return nil
}

func (t *memTx) rollback() {
	for i := len(t.log) - 1; i >= 0; i-- {
		u := t.log[i]
		switch {
		case u.created:
			delete(t.m.buckets, u.bucket)
		case u.whole != nil:
			t.m.buckets[u.bucket] = u.whole
		default:
			b := t.m.buckets[u.bucket]
			if u.existed {
				b.set(u.key, u.value)
			} else {
				b.del(u.key)
			}
		}
	}
	t.log = nil
}

// memBucket is a map plus its keys kept sorted. Inserting in the middle
// costs a slice move, which is cheap at simulation sizes; the cursor
// index, the busiest bucket, only ever appends.
type memBucket struct {
	m    map[string][]byte
	keys []string
}

func (b *memBucket) set(k string, v []byte) {
	if _, ok := b.m[k]; !ok {
		i, _ := slices.BinarySearch(b.keys, k)
		b.keys = slices.Insert(b.keys, i, k)
	}
	b.m[k] = v
}

func (b *memBucket) del(k string) {
	if _, ok := b.m[k]; !ok {
		return
	}
	delete(b.m, k)
	i, _ := slices.BinarySearch(b.keys, k)
	b.keys = slices.Delete(b.keys, i, i+1)
}

type memTxBucket struct {
	tx   *memTx
	name string
	b    *memBucket
}

func (b *memTxBucket) Get(k []byte) []byte { return b.b.m[string(k)] }
func (b *memTxBucket) Len() int            { return len(b.b.keys) }

func (b *memTxBucket) Put(k, v []byte) error {
	if !b.tx.writable {
		return emptyBucket{}.Put(k, v)
	}
	key := string(k)
	old, existed := b.b.m[key]
	b.tx.log = append(b.tx.log, undo{bucket: b.name, key: key, value: old, existed: existed})
	b.b.set(key, bytes.Clone(v))
	return nil
}

func (b *memTxBucket) Delete(k []byte) error {
	if !b.tx.writable {
		return emptyBucket{}.Put(k, nil)
	}
	key := string(k)
	old, existed := b.b.m[key]
	if !existed {
		return nil
	}
	b.tx.log = append(b.tx.log, undo{bucket: b.name, key: key, value: old, existed: true})
	b.b.del(key)
	return nil
}

// Ascend walks a snapshot of the key list. As with bbolt cursors, fn
// must not write to the bucket it walks.
func (b *memTxBucket) Ascend(from []byte, fn func(k, v []byte) (bool, error)) error {
	i, _ := slices.BinarySearch(b.b.keys, string(from))
	keys := slices.Clone(b.b.keys[i:])
	for _, k := range keys {
		v, ok := b.b.m[k]
		if !ok {
			continue
		}
		more, err := fn([]byte(k), v)
		if err != nil || !more {
			return err
		}
	}
	return nil
}
