package main

// The cloud tier: 1, 2 and 3 cloud nodes over one PostgreSQL database
// (a throwaway cluster), pushed to and pulled from by JSON clients at
// once, each client on one node.

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/clinicsync/clinicsync/internal/pgtest"
)

// tierClients is how many JSON clients push, then pull, at once.
const tierClients = 3

func runCloudTier(ctx context.Context, h *harness) ([]result, error) {
	d, err := h.mainData()
	if err != nil {
		return nil, err
	}
	patients := d.only("patients")
	ctx, cancel := context.WithTimeout(ctx, 10*timeout(patients.rows))
	defer cancel()
	db, err := pgtest.Start()
	if err != nil {
		return nil, fmt.Errorf("cloud-tier needs PostgreSQL: %w", err)
	}
	defer db.Stop()
	parts, err := h.split(patients, tierClients)
	if err != nil {
		return nil, err
	}
	floor, err := h.floor([]tableFile{patients})
	if err != nil {
		return nil, err
	}
	var out []result
	for nodes := 1; nodes <= 3; nodes++ {
		rs, err := h.tierOf(ctx, db, nodes, patients.rows, parts, floor)
		if err != nil {
			return out, fmt.Errorf("%d cloud nodes: %w", nodes, err)
		}
		out = append(out, rs...)
	}
	return out, nil
}

// tierOf serves nodes cloud nodes over a new database; tierClients
// clients push the parts (client i to node i mod nodes), then each pulls
// everything from its node.
func (h *harness) tierOf(ctx context.Context, db *pgtest.Cluster, nodes, rows int, parts []tableFile, floor float64) ([]result, error) {
	url, err := db.NewDB(ctx)
	if err != nil {
		return nil, err
	}
	var urls []string
	s := startSampler()
	for i := range nodes {
		dir := h.dir(fmt.Sprintf("tier%d-cloud%d", nodes, i+1))
		if _, err := h.procs.run(ctx, "init a cloud node", "init", "--data", dir, "--kind", "cloud", "--clinic", clinic, "--store", url); err != nil {
			return nil, err
		}
		if i == 0 {
			if err := h.addUser(ctx, dir); err != nil {
				return nil, err
			}
		}
		srv, err := h.startCloud(ctx, dir, false)
		if err != nil {
			return nil, err
		}
		defer srv.stop()
		s.watch(fmt.Sprintf("cloud%d", i+1), srv.pid())
		urls = append(urls, srv.addrs["http"])
	}
	each := func(fn func(i int, url string) (int, error)) (int, float64, error) {
		start := time.Now()
		var wg sync.WaitGroup
		counts, errs := make([]int, tierClients), make([]error, tierClients)
		for i := range tierClients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				counts[i], errs[i] = fn(i, urls[i%nodes])
			}()
		}
		wg.Wait()
		secs := time.Since(start).Seconds()
		n := 0
		for i, err := range errs {
			if err != nil {
				return 0, 0, err
			}
			n += counts[i]
		}
		return n, secs, nil
	}
	pushed, pushSecs, err := each(func(i int, url string) (int, error) {
		_, ts, err := pull(ctx, url, 0)
		if err != nil {
			return 0, err
		}
		return pushFile(ctx, url, parts[i], ts, pushChunk)
	})
	if err != nil {
		return nil, fmt.Errorf("push: %w", err)
	}
	pulled, pullSecs, err := each(func(_ int, url string) (int, error) {
		n, _, err := pull(ctx, url, 0)
		if err == nil && n != rows {
			err = fmt.Errorf("a client pulled %d rows, want %d", n, rows)
		}
		return n, err
	})
	peak := s.stop()
	if err != nil {
		return nil, fmt.Errorf("pull: %w", err)
	}
	h.say("cloud-tier, %d node(s): %d clients pushed %d rows in %.2fs (%.0f rows/s), pulled %d in %.2fs (%.0f rows/s)",
		nodes, tierClients, pushed, pushSecs, rate(pushed, pushSecs), pulled, pullSecs, rate(pulled, pullSecs))
	extra := func(op string) map[string]any {
		return map[string]any{"op": op, "nodes": nodes, "clients": tierClients, "transport": "http-json", "store": "postgres"}
	}
	return []result{
		{name: "cloud-tier", rows: pushed, seconds: pushSecs, floor: floor, peak: peak, extra: extra("push")},
		{name: "cloud-tier", rows: pulled, seconds: pullSecs, floor: floor * tierClients, peak: peak, extra: extra("pull")},
	}, nil
}

// split writes f's lines into n files, line i to file i mod n.
func (h *harness) split(f tableFile, n int) ([]tableFile, error) {
	in, err := os.Open(f.path)
	if err != nil {
		return nil, err
	}
	defer in.Close()
	parts := make([]tableFile, n)
	outs := make([]*bufio.Writer, n)
	for i := range parts {
		parts[i] = tableFile{table: f.table, path: h.dir(fmt.Sprintf("%s-part%d", f.table, i+1)) + ".ndjson"}
		o, err := os.Create(parts[i].path)
		if err != nil {
			return nil, err
		}
		defer o.Close()
		outs[i] = bufio.NewWriter(o)
	}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for i := 0; sc.Scan(); i++ {
		outs[i%n].Write(sc.Bytes())
		outs[i%n].WriteByte('\n')
		parts[i%n].rows++
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	for _, o := range outs {
		if err := o.Flush(); err != nil {
			return nil, err
		}
	}
	return parts, nil
}
