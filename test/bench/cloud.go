package main

// The cloud benchmarks: a WatermelonDB-style JSON pull, and pushes of
// new patients from a Go node and from a JSON client.

import (
	"context"
	"fmt"
	"os"
	"runtime/debug"
	"time"
)

// pushChunk is the rows of one JSON push: about 7 MB, under the
// cloud's default --max-body (32 MiB).
const pushChunk = 10_000

// cloudWith makes a cloud with the benchmark's user, holding files'
// rows (imported before it serves).
func (h *harness) cloudWith(ctx context.Context, name string, files []tableFile) (string, error) {
	cloud, err := h.initNode(ctx, name, "cloud")
	if err != nil {
		return "", err
	}
	if err := h.addUser(ctx, cloud); err != nil {
		return "", err
	}
	if len(files) > 0 {
		took, err := h.importFiles(ctx, cloud, files)
		if err != nil {
			return "", err
		}
		h.say("%s: imported %d rows in %.1fs", name, files[0].rows, took.Seconds())
	}
	return cloud, nil
}

// runCloudPull: the harness pulls BENCH_ROWS patients from a cloud as a
// WatermelonDB client's first sync does: one GET with last_pulled_at=0
// and Basic auth (a JSON pull is one document, not paged), then, outside
// the timing, a GET from the timestamp it got, which must bring nothing.
func runCloudPull(ctx context.Context, h *harness) ([]result, error) {
	d, err := h.mainData()
	if err != nil {
		return nil, err
	}
	patients := d.only("patients")
	ctx, cancel := context.WithTimeout(ctx, 3*timeout(patients.rows))
	defer cancel()
	cloud, err := h.cloudWith(ctx, "cloud-pull", []tableFile{patients})
	if err != nil {
		return nil, err
	}
	floor, err := h.floor([]tableFile{patients})
	if err != nil {
		return nil, err
	}
	srv, err := h.startCloud(ctx, cloud, true)
	if err != nil {
		return nil, err
	}
	defer srv.stop()

	s := startSampler()
	s.watch("cloud", srv.pid())
	heap := pollHeap(srv.addrs["metrics"])
	start := time.Now()
	got, ts, err := pull(ctx, srv.addrs["http"], 0)
	secs := time.Since(start).Seconds()
	peak := s.stop()
	heapMB, heapErr := heap.stop()
	if err != nil {
		return nil, err
	}
	if got != patients.rows {
		return nil, fmt.Errorf("the pull brought %d rows, want %d", got, patients.rows)
	}
	if more, _, err := pull(ctx, srv.addrs["http"], ts); err != nil || more != 0 {
		return nil, fmt.Errorf("a pull after the first brought %d rows (want none): %v", more, err)
	}
	extra := map[string]any{"transport": "http-json", "pages": 1}
	if heapErr != nil {
		h.say("the cloud's heap metric: %v", heapErr)
	} else {
		extra["cloud_peak_heap_inuse_mb"] = heapMB
	}
	h.say("cloud-pull-json: %d rows in %.2fs (%.0f rows/s, %.1f× the floor)", got, secs, rate(got, secs), secs/floor)
	return []result{{name: "cloud-pull-json", rows: got, seconds: secs, floor: floor, peak: peak, extra: extra}}, nil
}

// runPush: BENCH_ROWS new patients pushed to a cloud, by a Go mobile
// node (imported there, pending, then one `node sync`) and by the
// harness as a JSON client (a GET for last_pulled_at, then POSTs of
// pushChunk rows).
func runPush(ctx context.Context, h *harness) ([]result, error) {
	d, err := h.mainData()
	if err != nil {
		return nil, err
	}
	patients := d.only("patients")
	ctx, cancel := context.WithTimeout(ctx, 3*timeout(patients.rows))
	defer cancel()
	goRes, err := h.pushGo(ctx, patients)
	if err != nil {
		return nil, fmt.Errorf("push from a Go node: %w", err)
	}
	jsonRes, err := h.pushJSON(ctx, patients)
	if err != nil {
		return []result{goRes}, fmt.Errorf("push from a JSON client: %w", err)
	}
	return []result{goRes, jsonRes}, nil
}

func (h *harness) pushGo(ctx context.Context, patients tableFile) (result, error) {
	mobile, err := h.initNode(ctx, "mobile-push", "mobile")
	if err != nil {
		return result{}, err
	}
	took, err := h.importFiles(ctx, mobile, []tableFile{patients})
	if err != nil {
		return result{}, err
	}
	h.say("mobile: imported %d rows in %.1fs", patients.rows, took.Seconds())
	if n, err := h.pending(ctx, mobile); err != nil || n != patients.rows {
		return result{}, fmt.Errorf("the mobile has %d rows to push after its import, want %d (%v)", n, patients.rows, err)
	}
	cloud, err := h.cloudWith(ctx, "cloud-push-go", nil)
	if err != nil {
		return result{}, err
	}
	floor, err := h.floor([]tableFile{patients})
	if err != nil {
		return result{}, err
	}
	srv, err := h.startCloud(ctx, cloud, false)
	if err != nil {
		return result{}, err
	}
	defer srv.stop()
	peer, err := h.addCloudPeer(ctx, mobile, srv.addrs["http"])
	if err != nil {
		return result{}, err
	}
	if err := h.logIn(ctx, mobile, peer); err != nil {
		return result{}, err
	}
	s := startSampler()
	s.watch("cloud", srv.pid())
	res, err := h.syncOnce(ctx, "push from the mobile", mobile, peer, s, "mobile", patients.rows)
	peak := s.stop()
	if err != nil {
		return result{}, err
	}
	if res.Pushed != patients.rows {
		return result{}, fmt.Errorf("the mobile pushed %d rows, want %d", res.Pushed, patients.rows)
	}
	h.say("push from a Go node: %d rows in %.2fs (%.0f rows/s, %.1f× the floor)", res.Pushed, res.seconds,
		rate(res.Pushed, res.seconds), res.seconds/floor)
	return result{name: "push", rows: res.Pushed, seconds: res.seconds, floor: floor, peak: peak,
		extra: map[string]any{"client": "go", "transport": "http-protobuf"}}, nil
}

func (h *harness) pushJSON(ctx context.Context, patients tableFile) (result, error) {
	cloud, err := h.cloudWith(ctx, "cloud-push-json", nil)
	if err != nil {
		return result{}, err
	}
	floor, err := h.floor([]tableFile{patients})
	if err != nil {
		return result{}, err
	}
	srv, err := h.startCloud(ctx, cloud, false)
	if err != nil {
		return result{}, err
	}
	defer srv.stop()
	url := srv.addrs["http"]

	debug.FreeOSMemory() // the harness's earlier work does not count as the client's
	s := startSampler()
	s.watch("cloud", srv.pid())
	s.watch("client", os.Getpid())
	start := time.Now()
	_, ts, err := pull(ctx, url, 0)
	n := 0
	if err == nil {
		n, err = pushFile(ctx, url, patients, ts, pushChunk)
	}
	secs := time.Since(start).Seconds()
	peak := s.stop()
	if err != nil {
		return result{}, err
	}
	if got, _, err := pull(ctx, url, 0); err != nil || got != n {
		return result{}, fmt.Errorf("after the push the cloud serves %d rows, want %d (%v)", got, n, err)
	}
	h.say("push from a JSON client: %d rows in %.2fs (%.0f rows/s, %.1f× the floor)", n, secs, rate(n, secs), secs/floor)
	return result{name: "push", rows: n, seconds: secs, floor: floor, peak: peak,
		extra: map[string]any{"client": "json", "transport": "http-json", "chunk_rows": pushChunk}}, nil
}
