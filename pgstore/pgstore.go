// Package pgstore is the kv.Backend on PostgreSQL: the store of a
// cloud tier whose nodes share one database.
//
// Buckets are rows of one table keyed by (bucket, key), both compared
// as bytes, so ascending reads walk keys in bbolt's order. Read-only
// transactions run at REPEATABLE READ (one snapshot); read-write ones
// take one transaction-scoped advisory lock first, so that writers run
// one at a time across every node, as bbolt's single writer does. Cursors
// are issued inside those transactions, from the last one stored: a
// cursor is issued only after every transaction holding a lower one has
// committed, and a pull that read up to a cursor has seen every row
// below it.
//
// A read-write transaction keeps its writes in memory and sends them
// in one batch of statements before it commits, or before a statement
// that must see them (an ascending read, a count, a bucket listing);
// its reads of keys it wrote are answered from memory.
package pgstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/clinicsync/clinicsync/kv"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Options tune the connection pool.
type Options struct {
	// MaxConns caps the pool (0: pgxpool's default, 4 or the number of
	// CPUs, whichever is larger).
	MaxConns int32
	// StatementTimeout bounds each statement on the server (0: none).
	StatementTimeout time.Duration
	// ConnectTimeout bounds the first connection (0: 10 s).
	ConnectTimeout time.Duration
}

// ErrUnavailable wraps failures to reach the database: a request may be
// retried later, and nothing was written. It is kv's, which servers
// answer with 503.
var ErrUnavailable = kv.ErrUnavailable

// writerLock is the advisory lock every read-write transaction takes.
const writerLock = 0x636c696e6963 // "clinic"

// ascendBatch is how many keys an ascending read fetches at a time.
const ascendBatch = 512

// Backend is the PostgreSQL kv.Backend.
type Backend struct {
	pool *pgxpool.Pool
}

// Open connects to the database at url and brings its schema up to
// date (Migrate). It fails when the database cannot be reached.
func Open(ctx context.Context, url string, o Options) (*Backend, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	if o.MaxConns > 0 {
		cfg.MaxConns = o.MaxConns
	}
	if o.StatementTimeout > 0 {
		cfg.ConnConfig.RuntimeParams["statement_timeout"] = fmt.Sprint(o.StatementTimeout.Milliseconds())
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = 10 * time.Second
	}
	cfg.ConnConfig.ConnectTimeout = o.ConnectTimeout
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	b := &Backend{pool: pool}
	if err := b.migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return b, nil
}

// Close closes the pool.
func (b *Backend) Close() error {
	b.pool.Close()
	return nil
}

// View runs fn in a read-only REPEATABLE READ transaction.
func (b *Backend) View(fn func(kv.Tx) error) error {
	return b.run(pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, false, fn)
}

// Update runs fn in a read-write transaction, after every other
// writer's (the advisory lock).
func (b *Backend) Update(fn func(kv.Tx) error) error {
	return b.run(pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, true, fn)
}

func (b *Backend) run(opts pgx.TxOptions, writable bool, fn func(kv.Tx) error) (err error) {
	ctx := context.Background()
	ptx, err := b.pool.BeginTx(ctx, opts)
	if err != nil {
		return wrap(err)
	}
	t := &tx{ctx: ctx, tx: ptx, writable: writable}
	defer func() {
		if p := recover(); p != nil {
			ptx.Rollback(ctx)
			panic(p)
		}
		if err != nil {
			ptx.Rollback(ctx)
		}
	}()
	if writable {
		if _, err := ptx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(writerLock)); err != nil {
			return wrap(err)
		}
	}
	if err := fn(t); err != nil {
		return errors.Join(err, t.err)
	}
	if err := t.flush(); err != nil {
		return err
	}
	return wrap(ptx.Commit(ctx))
}

// wrap marks a failure to reach the database as ErrUnavailable: no
// answer (connection refused, lost, timed out), a connection exception
// (SQLSTATE class 08) or a server shutting down (57P01-57P03).
func wrap(err error) error {
	var pgErr *pgconn.PgError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &pgErr) && !strings.HasPrefix(pgErr.Code, "08") && !strings.HasPrefix(pgErr.Code, "57P0"):
		return fmt.Errorf("pgstore: %w", err)
	default:
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
}

// tx is a kv.Tx. Bucket methods that return no error keep the first
// failure here; the transaction then fails (and rolls back) with it.
type tx struct {
	ctx      context.Context
	tx       pgx.Tx
	writable bool
	created  map[string]bool
	err      error
	// written are the writes not yet sent, by bucket and key: a value,
	// or nil for a delete.
	written map[string]map[string][]byte
}

// flush sends the writes kept in memory, in one batch.
func (t *tx) flush() error {
	if t.err != nil {
		return t.err
	}
	if len(t.written) == 0 {
		return nil
	}
	var batch pgx.Batch
	for name, keys := range t.written {
		for k, v := range keys {
			if v == nil {
				batch.Queue("DELETE FROM kv WHERE bucket = $1 AND key = $2", []byte(name), []byte(k))
			} else {
				batch.Queue(`INSERT INTO kv (bucket, key, value) VALUES ($1, $2, $3)
					ON CONFLICT (bucket, key) DO UPDATE SET value = excluded.value`, []byte(name), []byte(k), v)
			}
		}
	}
	t.written = nil
	if err := t.tx.SendBatch(t.ctx, &batch).Close(); err != nil {
		return t.fail(err)
	}
	return nil
}

func (t *tx) fail(err error) error {
	err = wrap(err)
	if t.err == nil {
		t.err = err
	}
	return err
}

func (t *tx) Bucket(name string) (kv.Bucket, error) {
	if t.err != nil {
		return nil, t.err
	}
	if t.writable && !t.created[name] {
		if _, err := t.tx.Exec(t.ctx, "INSERT INTO kv_buckets (name) VALUES ($1) ON CONFLICT DO NOTHING", []byte(name)); err != nil {
			return nil, t.fail(err)
		}
		if t.created == nil {
			t.created = map[string]bool{}
		}
		t.created[name] = true
	}
	return &bucket{t: t, name: []byte(name)}, nil
}

func (t *tx) Buckets(prefix string) []string {
	if t.flush() != nil {
		return nil
	}
	rows, err := t.tx.Query(t.ctx, "SELECT name FROM kv_buckets WHERE substring(name FROM 1 FOR $2) = $1 ORDER BY name",
		[]byte(prefix), len(prefix))
	if err != nil {
		t.fail(err)
		return nil
	}
	names, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
		var b []byte
		err := r.Scan(&b)
		return string(b), err
	})
	if err != nil {
		t.fail(err)
		return nil
	}
	return names
}

func (t *tx) DeleteBucket(name string) error {
	if err := t.flush(); err != nil {
		return err
	}
	if _, err := t.tx.Exec(t.ctx, "DELETE FROM kv WHERE bucket = $1", []byte(name)); err != nil {
		return t.fail(err)
	}
	if _, err := t.tx.Exec(t.ctx, "DELETE FROM kv_buckets WHERE name = $1", []byte(name)); err != nil {
		return t.fail(err)
	}
	delete(t.created, name)
	return nil
}

type bucket struct {
	t    *tx
	name []byte
}

func (b *bucket) Get(key []byte) []byte {
	if b.t.err != nil {
		return nil
	}
	if v, ok := b.t.written[string(b.name)][string(key)]; ok {
		return v // nil: deleted
	}
	var v []byte
	err := b.t.tx.QueryRow(b.t.ctx, "SELECT value FROM kv WHERE bucket = $1 AND key = $2", b.name, key).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		b.t.fail(err)
		return nil
	}
	if v == nil {
		v = []byte{} // a stored empty value is not a missing one
	}
	return v
}

func (b *bucket) Put(key, value []byte) error {
	if b.t.err != nil {
		return b.t.err
	}
	if !b.t.writable {
		return fmt.Errorf("kv: write in a read-only transaction")
	}
	if value == nil {
		value = []byte{}
	}
	b.write(key, value)
	return nil
}

func (b *bucket) Delete(key []byte) error {
	if b.t.err != nil {
		return b.t.err
	}
	if b.t.writable {
		b.write(key, nil)
	}
	return nil
}

// write keeps a write until the next flush (callers do not change a
// key or value once written, as with bbolt).
func (b *bucket) write(key, value []byte) {
	if b.t.written == nil {
		b.t.written = map[string]map[string][]byte{}
	}
	keys := b.t.written[string(b.name)]
	if keys == nil {
		keys = map[string][]byte{}
		b.t.written[string(b.name)] = keys
	}
	keys[string(key)] = value
}

func (b *bucket) Len() int {
	if b.t.flush() != nil {
		return 0
	}
	var n int
	if err := b.t.tx.QueryRow(b.t.ctx, "SELECT count(*) FROM kv WHERE bucket = $1", b.name).Scan(&n); err != nil {
		b.t.fail(err)
		return 0
	}
	return n
}

// Ascend reads ascendBatch keys at a time, so fn may read and write in
// the same transaction between them.
func (b *bucket) Ascend(from []byte, fn func(k, v []byte) (bool, error)) error {
	if err := b.t.flush(); err != nil {
		return err
	}
	if from == nil {
		from = []byte{}
	}
	op := ">="
	for {
		if err := b.t.flush(); err != nil { // what fn wrote, for the next batch
			return err
		}
		rows, err := b.t.tx.Query(b.t.ctx, "SELECT key, value FROM kv WHERE bucket = $1 AND key "+op+" $2 ORDER BY key LIMIT $3",
			b.name, from, ascendBatch)
		if err != nil {
			return b.t.fail(err)
		}
		type kvPair struct{ k, v []byte }
		batch, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (kvPair, error) {
			var p kvPair
			err := r.Scan(&p.k, &p.v)
			return p, err
		})
		if err != nil {
			return b.t.fail(err)
		}
		for _, p := range batch {
			if p.v == nil {
				p.v = []byte{}
			}
			more, err := fn(p.k, p.v)
			if err != nil || !more {
				return err
			}
		}
		if len(batch) < ascendBatch {
			return nil
		}
		from, op = batch[len(batch)-1].k, ">"
	}
}
