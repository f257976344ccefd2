package pgstore

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// migrations are the schema's versions, in order: migrations[i] brings
// a database from version i to i+1. Applied ones never change; a new
// version is a new entry.
var migrations = []string{
	// 1: buckets of keys and values, compared as bytes.
	`CREATE TABLE kv_buckets (name bytea PRIMARY KEY);
	 CREATE TABLE kv (
		bucket bytea NOT NULL,
		key    bytea NOT NULL,
		value  bytea NOT NULL,
		PRIMARY KEY (bucket, key)
	 );`,
}

// SchemaVersion is the schema version this build creates and reads.
func SchemaVersion() int { return len(migrations) }

// migrate applies the migrations a database lacks, each in a
// transaction of its own, holding a session lock so that nodes
// starting together migrate once. A database newer than this build is
// refused.
func (b *Backend) migrate(ctx context.Context) error {
	conn, err := b.pool.Acquire(ctx)
	if err != nil {
		return wrap(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", int64(migrateLock)); err != nil {
		return wrap(err)
	}
	defer conn.Exec(context.Background(), "SELECT pg_advisory_unlock($1)", int64(migrateLock))
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS clinicsync_schema (
		version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return wrap(err)
	}
	var v int
	if err := conn.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM clinicsync_schema").Scan(&v); err != nil {
		return wrap(err)
	}
	if v > len(migrations) {
		return fmt.Errorf("pgstore: the database has schema version %d, newer than this build's %d: run a newer bin/node", v, len(migrations))
	}
	for ; v < len(migrations); v++ {
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, migrations[v]); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO clinicsync_schema (version) VALUES ($1)", v+1)
			return err
		})
		if err != nil {
			return fmt.Errorf("pgstore: migration %d: %w", v+1, wrap(err))
		}
	}
	return nil
}

// migrateLock is the session lock of migrate.
const migrateLock = writerLock + 1

// Version returns the database's schema version.
func (b *Backend) Version(ctx context.Context) (int, error) {
	var v int
	err := b.pool.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM clinicsync_schema").Scan(&v)
	return v, wrap(err)
}
