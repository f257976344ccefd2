package actors_test

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/clinicsync/clinicsync/actors"
	"github.com/clinicsync/clinicsync/codec"
	"github.com/clinicsync/clinicsync/fsm"
	"github.com/clinicsync/clinicsync/kv"
	pb "github.com/clinicsync/clinicsync/proto"
	bolt "go.etcd.io/bbolt"
)

// benchPatients returns n patient rows of clinic c1 with random ids.
func benchPatients(n int) []kv.Change {
	rng := rand.New(rand.NewPCG(1, 2))
	out := make([]kv.Change, n)
	for i := range out {
		cols := map[string]codec.Value{}
		for k, v := range patientRaw("", "c1", map[string]any{"given_name": fmt.Sprintf("Given %d", i), "phone": fmt.Sprintf("+962-7%08d", i)}) {
			switch v := v.(type) {
			case string:
				cols[k] = codec.String(v)
			case bool:
				cols[k] = codec.Bool(v)
			case int:
				cols[k] = codec.Int(int64(v))
			}
		}
		for _, k := range []string{"id", "_status", "_changed"} {
			delete(cols, k)
		}
		cols["additional_data"], cols["metadata"] = codec.JSONText("{}"), codec.JSONText(`{"source":"app"}`)
		out[i] = kv.Change{Row: codec.Row{Table: "patients", ID: fmt.Sprintf("%016x%016x", rng.Uint64(), rng.Uint64()), Cols: cols}}
	}
	return out
}

// BenchmarkInitialSync: a fresh mobile node pulls every row of a cloud
// (bbolt stores on disk, protobuf pages over the in-memory network),
// next to the floor: the same rows as stored rows put into a raw bbolt
// file, 10k a transaction, in random order, with fsync.
func BenchmarkInitialSync(b *testing.B) {
	const n = 50_000
	rows := benchPatients(n)
	var floor, sync time.Duration
	for b.Loop() {
		dir := b.TempDir()
		start := time.Now()
		rawLoad(b, filepath.Join(dir, "raw.db"), rows)
		floor += time.Since(start)

		cloud := openNode(b, filepath.Join(dir, "cloud"), actors.InitConfig{Kind: actors.KindCloud, Name: "cloud"})
		for i := 0; i < n; i += 10_000 {
			if _, err := cloud.Store().Apply(kv.Batch{Changes: rows[i:min(i+10_000, n)]}, fsm.ApplyPulled); err != nil {
				b.Fatal(err)
			}
		}
		phone := openNode(b, filepath.Join(dir, "phone"), actors.InitConfig{Kind: actors.KindMobile, Name: "phone", Clinics: []string{"c1"}})
		net := actors.NewMemNet()
		net.Listen("cloud", cloud.Server(fsm.MergePolicy))
		if err := phone.Store().PutPeer(kv.Peer{ID: "cloud", Type: kv.PeerCloud}); err != nil {
			b.Fatal(err)
		}
		if err := phone.Start(actors.NodeConfig{Transports: net.Transports(phone.Info().Caller()), Logger: slog.New(slog.DiscardHandler)}); err != nil {
			b.Fatal(err)
		}
		start = time.Now()
		res, err := phone.Sync(context.Background(), actors.SyncRequest{Trigger: actors.Manual})
		sync += time.Since(start)
		if err != nil || res.Pulled != n {
			b.Fatalf("sync: %+v %v", res, err)
		}
		phone.Close()
		cloud.Close()
	}
	rate := func(d time.Duration) float64 { return float64(b.N*n) / d.Seconds() }
	b.ReportMetric(rate(sync), "rows/s")
	b.ReportMetric(rate(floor), "floor-rows/s")
	b.ReportMetric(sync.Seconds()/floor.Seconds(), "x-floor")
}

func openNode(b *testing.B, dir string, cfg actors.InitConfig) *actors.Node {
	if _, err := actors.Init(dir, cfg); err != nil {
		b.Fatal(err)
	}
	n, err := actors.Open(dir, actors.SystemClock{})
	if err != nil {
		b.Fatal(err)
	}
	return n
}

func rawLoad(b *testing.B, path string, rows []kv.Change) {
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	for i := 0; i < len(rows); i += 10_000 {
		err = db.Update(func(tx *bolt.Tx) error {
			bk, err := tx.CreateBucketIfNotExists([]byte("t/patients"))
			if err != nil {
				return err
			}
			for _, c := range rows[i:min(i+10_000, len(rows))] {
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
}

// BenchmarkPush: a mobile node pushes every row it created to a cloud
// in one sync (in chunks), next to the same floor as BenchmarkInitialSync.
func BenchmarkPush(b *testing.B) {
	const n = 50_000
	rows := benchPatients(n)
	created := func(cur *kv.Record, in kv.Change) (kv.Outcome, error) { // as Put writes them
		r := kv.Record{Row: in.Row, Status: kv.Created}
		r.Versions = map[string]codec.Version{}
		for col := range r.Cols {
			r.Versions[col] = codec.Version{Wall: 1772440019193, Node: "phone"}
		}
		return kv.Outcome{Op: kv.Write, Record: r}, nil
	}
	var floor, sync time.Duration
	for b.Loop() {
		dir := b.TempDir()
		start := time.Now()
		rawLoad(b, filepath.Join(dir, "raw.db"), rows)
		floor += time.Since(start)

		cloud := openNode(b, filepath.Join(dir, "cloud"), actors.InitConfig{Kind: actors.KindCloud, Name: "cloud"})
		phone := openNode(b, filepath.Join(dir, "phone"), actors.InitConfig{Kind: actors.KindMobile, Name: "phone", Clinics: []string{"c1"}})
		for i := 0; i < n; i += 10_000 {
			if _, err := phone.Store().Apply(kv.Batch{Changes: rows[i:min(i+10_000, n)]}, created); err != nil {
				b.Fatal(err)
			}
		}
		net := actors.NewMemNet()
		net.Listen("cloud", cloud.Server(fsm.MergePolicy))
		if err := phone.Store().PutPeer(kv.Peer{ID: "cloud", Type: kv.PeerCloud}); err != nil {
			b.Fatal(err)
		}
		if err := phone.Start(actors.NodeConfig{Transports: net.Transports(phone.Info().Caller()), Logger: slog.New(slog.DiscardHandler)}); err != nil {
			b.Fatal(err)
		}
		start = time.Now()
		res, err := phone.Sync(context.Background(), actors.SyncRequest{Trigger: actors.Manual})
		sync += time.Since(start)
		if err != nil || res.Pushed != n {
			b.Fatalf("sync: %+v %v", res, err)
		}
		phone.Close()
		cloud.Close()
	}
	rate := func(d time.Duration) float64 { return float64(b.N*n) / d.Seconds() }
	b.ReportMetric(rate(sync), "rows/s")
	b.ReportMetric(rate(floor), "floor-rows/s")
	b.ReportMetric(sync.Seconds()/floor.Seconds(), "x-floor")
}
