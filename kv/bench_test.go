package kv_test

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/clinicsync/clinicsync/codec"
	"github.com/clinicsync/clinicsync/kv"
	pb "github.com/clinicsync/clinicsync/proto"
	bolt "go.etcd.io/bbolt"
)

const benchRows = 100_000

func benchPatients() []kv.Change {
	base := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC).UnixMilli()
	out := make([]kv.Change, benchRows)
	for i := range out {
		cols := patient(fmt.Sprintf("Given%d", i), fmt.Sprintf("+962-7%08d", i))
		cols["created_at"] = codec.Int(base + int64(i))
		cols["updated_at"] = codec.Int(base + int64(i))
		out[i] = kv.Change{Row: codec.Row{Table: "patients", ID: fmt.Sprintf("patient-%08d", i), Cols: cols}}
	}
	return out
}

// BenchmarkBulkLoad loads 100k patient rows into a bbolt store in one
// batch (rows, cursor index, metadata) and compares with the floor:
// the same rows encoded the same way and put into one raw bbolt bucket
// in one transaction, measured in the same run.
func BenchmarkBulkLoad(b *testing.B) {
	rows := benchPatients()
	var floor, store time.Duration
	for b.Loop() {
		dir := b.TempDir()
		floor += timeIt(b, func() { rawBoltLoad(b, filepath.Join(dir, "raw.db"), rows) })
		store += timeIt(b, func() { storeLoad(b, filepath.Join(dir, "store"), rows) })
	}
	n := float64(b.N * benchRows)
	b.ReportMetric(n/store.Seconds(), "rows/s")
	b.ReportMetric(n/floor.Seconds(), "floor-rows/s")
	b.ReportMetric(store.Seconds()/floor.Seconds(), "x-floor")
}

func timeIt(b *testing.B, fn func()) time.Duration {
	start := time.Now()
	fn()
	return time.Since(start)
}

func rawBoltLoad(b *testing.B, path string, rows []kv.Change) {
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		bk, err := tx.CreateBucket([]byte("t/patients"))
		if err != nil {
			return err
		}
		for _, c := range rows {
			enc, err := codec.Marshal(&pb.StoredRow{Cols: codec.ValuesToProto(c.Cols)})
			if err != nil {
				return err
			}
			if err := bk.Put([]byte(c.ID), enc); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
}

func storeLoad(b *testing.B, dir string, rows []kv.Change) {
	s, err := kv.Open(mkdir(b, dir), kv.Options{Clock: newClock()})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	res, err := s.Apply(kv.Batch{Changes: rows}, replace)
	if err != nil || res.Written != len(rows) {
		b.Fatalf("apply: %+v %v", res, err)
	}
}
