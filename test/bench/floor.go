package main

// The floor: what bbolt alone takes to store the rows a benchmark moves.
// Each row is decoded from its ndjson line by codec's JSON decoder (as
// a push's created record: the values the store would hold), then
// written as the store encodes a row, pb.StoredRow{Cols:
// codec.ValuesToProto(cols)} marshalled with codec.Marshal (as
// kv/bench_test.go's rawBoltLoad), into a fresh bbolt file with its
// defaults (fsync on commit): one bucket per table, floorBatch rows per
// transaction, in the files' order, which is a random id order.
//
// The timing covers opening the file, the transactions (putting the
// encoded rows, committing) and closing it; decoding the JSON and
// encoding the rows are outside it: the floor is bbolt's own work.

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"time"

	"github.com/clinicsync/clinicsync/codec"
	"github.com/clinicsync/clinicsync/codec/schema"
	pb "github.com/clinicsync/clinicsync/proto"
	bolt "go.etcd.io/bbolt"
)

// floorBatch is the rows a floor transaction writes.
const floorBatch = 10_000

// floorFiles loads the rows of files into a fresh bbolt file at path
// (removed afterwards) and returns the rows and the time it took.
func floorFiles(path string, files []tableFile) (int, time.Duration, error) {
	var took time.Duration
	start := time.Now()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		return 0, 0, fmt.Errorf("floor: %w", err)
	}
	took += time.Since(start)
	defer os.Remove(path)
	n := 0
	for _, f := range files {
		err := eachBatch(f, func(rows []codec.Row) error {
			d, err := floorLoad(db, f.table, rows)
			took += d
			n += len(rows)
			return err
		})
		if err != nil {
			db.Close()
			return 0, 0, err
		}
	}
	start = time.Now()
	if err := db.Close(); err != nil {
		return 0, 0, fmt.Errorf("floor: %w", err)
	}
	return n, took + time.Since(start), nil
}

// floorRows loads rows of a table into a fresh bbolt file at path
// (removed afterwards) in one transaction and returns the time it took.
func floorRows(path, table string, rows []codec.Row) (time.Duration, error) {
	start := time.Now()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		return 0, fmt.Errorf("floor: %w", err)
	}
	defer os.Remove(path)
	if _, err := floorLoad(db, table, rows); err != nil {
		db.Close()
		return 0, err
	}
	if err := db.Close(); err != nil {
		return 0, fmt.Errorf("floor: %w", err)
	}
	return time.Since(start), nil
}

// floorLoad writes rows in one transaction and returns its time: the
// puts and the commit, the rows encoded beforehand.
func floorLoad(db *bolt.DB, table string, rows []codec.Row) (time.Duration, error) {
	encoded := make([][]byte, len(rows))
	for i, r := range rows {
		enc, err := codec.Marshal(&pb.StoredRow{Cols: codec.ValuesToProto(r.Cols)})
		if err != nil {
			return 0, fmt.Errorf("floor: encoding %s/%s: %w", table, r.ID, err)
		}
		encoded[i] = enc
	}
	start := time.Now()
	err := db.Update(func(tx *bolt.Tx) error {
		bk, err := tx.CreateBucketIfNotExists([]byte("t/" + table))
		if err != nil {
			return err
		}
		for i, r := range rows {
			if err := bk.Put([]byte(r.ID), encoded[i]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("floor: writing %d rows of %s: %w", len(rows), table, err)
	}
	return time.Since(start), nil
}

// eachBatch decodes a file's rows floorBatch at a time.
func eachBatch(f tableFile, fn func([]codec.Row) error) error {
	in, err := os.Open(f.path)
	if err != nil {
		return err
	}
	defer in.Close()
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	var lines [][]byte
	flush := func() error {
		if len(lines) == 0 {
			return nil
		}
		rows, err := decodeRows(f.table, lines)
		if err != nil {
			return fmt.Errorf("%s: %w", f.path, err)
		}
		lines = lines[:0]
		return fn(rows)
	}
	for sc.Scan() {
		lines = append(lines, bytes.Clone(sc.Bytes()))
		if len(lines) == floorBatch {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading %s: %w", f.path, err)
	}
	return flush()
}

// decodeRows decodes ndjson lines of a table as the created records of
// a push, refusing any the decoder rejects.
func decodeRows(table string, lines [][]byte) ([]codec.Row, error) {
	body := []byte(`{"` + table + `":{"created":[`)
	for i, l := range lines {
		if i > 0 {
			body = append(body, ',')
		}
		body = append(body, l...)
	}
	body = append(body, "]}}"...)
	cs, rep, err := codec.DecodeChanges(body, codec.Options{Catalog: schema.Default()})
	if err != nil {
		return nil, fmt.Errorf("decoding %d rows of %s: %w", len(lines), table, err)
	}
	if len(rep.Rejected) > 0 {
		return nil, fmt.Errorf("decoding rows of %s: %d rejected, the first: %s: %v", table, len(rep.Rejected), rep.Rejected[0].ID, rep.Rejected[0].Err)
	}
	if len(rep.Unknown) > 0 {
		return nil, fmt.Errorf("decoding rows of %s: unknown columns %v", table, rep.Unknown)
	}
	rows := cs.Table(table).Created
	if len(rows) != len(lines) {
		return nil, fmt.Errorf("decoding rows of %s: %d lines gave %d rows", table, len(lines), len(rows))
	}
	return rows, nil
}
