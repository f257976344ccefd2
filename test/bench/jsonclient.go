package main

// A WatermelonDB client of the cloud's JSON API, as test/watermelondb's
// backend adapter talks to it: GET /api/v2/sync?last_pulled_at=MS for a
// pull (one document, not paged: {"changes":...,"timestamp":N}), POST
// /api/v2/sync?last_pulled_at=MS with {"changes":...,"lastPulledAt":MS}
// for a push, Basic auth. And a reader of the cloud's heap metric.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// pull pulls everything since lastPulledAt and returns the records
// received (created, updated and deleted) and the timestamp.
func pull(ctx context.Context, cloudURL string, lastPulledAt int64) (records int, timestamp int64, err error) {
	u := fmt.Sprintf("%s/api/v2/sync?last_pulled_at=%d", cloudURL, lastPulledAt)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, 0, err
	}
	req.SetBasicAuth(email, password)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, 0, fmt.Errorf("pull: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1000))
		return 0, 0, fmt.Errorf("pull: %s: %s", resp.Status, b)
	}
	var doc struct {
		Changes map[string]struct {
			Created []json.RawMessage `json:"created"`
			Updated []json.RawMessage `json:"updated"`
			Deleted []string          `json:"deleted"`
		} `json:"changes"`
		Timestamp int64 `json:"timestamp"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		return 0, 0, fmt.Errorf("pull: reading the document: %w", err)
	}
	for _, t := range doc.Changes {
		records += len(t.Created) + len(t.Updated) + len(t.Deleted)
	}
	if doc.Timestamp <= 0 {
		return 0, 0, fmt.Errorf("pull: the document has no timestamp")
	}
	return records, doc.Timestamp, nil
}

// push posts one push of created rows of a table (ndjson lines) and
// fails unless the cloud took them all.
func push(ctx context.Context, cloudURL, table string, lastPulledAt int64, lines [][]byte) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, `{"changes":{"%s":{"created":[`, table)
	for i, l := range lines {
		if i > 0 {
			b.WriteByte(',')
		}
		// A WatermelonDB raw record carries its sync status.
		b.Write(l[:len(l)-1])
		b.WriteString(`,"_status":"created","_changed":""}`)
	}
	fmt.Fprintf(&b, `],"updated":[],"deleted":[]}},"lastPulledAt":%d}`, lastPulledAt)
	u := fmt.Sprintf("%s/api/v2/sync?last_pulled_at=%d", cloudURL, lastPulledAt)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, &b)
	if err != nil {
		return err
	}
	req.SetBasicAuth(email, password)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("push: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("push: reading the answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("push of %d rows: %s: %s", len(lines), resp.Status, clip(string(body)))
	}
	var ans struct {
		Success  bool                `json:"success"`
		Rejected map[string][]string `json:"experimentalRejectedIds"`
	}
	if err := json.Unmarshal(body, &ans); err != nil || !ans.Success || len(ans.Rejected) > 0 {
		return fmt.Errorf("push of %d rows: the cloud answered %s", len(lines), clip(string(body)))
	}
	return nil
}

// pushFile pushes a table's ndjson file in pushes of chunk rows, all
// with the same lastPulledAt, and returns the rows pushed.
func pushFile(ctx context.Context, cloudURL string, f tableFile, lastPulledAt int64, chunk int) (int, error) {
	in, err := os.Open(f.path)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	n := 0
	var lines [][]byte
	for sc.Scan() {
		lines = append(lines, bytes.Clone(sc.Bytes()))
		if len(lines) == chunk {
			if err := push(ctx, cloudURL, f.table, lastPulledAt, lines); err != nil {
				return n, err
			}
			n, lines = n+len(lines), lines[:0]
		}
	}
	if err := sc.Err(); err != nil {
		return n, fmt.Errorf("reading %s: %w", f.path, err)
	}
	if len(lines) > 0 {
		if err := push(ctx, cloudURL, f.table, lastPulledAt, lines); err != nil {
			return n, err
		}
		n += len(lines)
	}
	return n, nil
}

// heapPoller reads a serve process's go_memstats_heap_inuse_bytes every
// heapEvery and keeps the largest.
type heapPoller struct {
	peak  float64 // bytes; 0: never read
	err   error   // the last failure to read it
	stopc chan struct{}
	done  chan struct{}
}

const heapEvery = 100 * time.Millisecond

func pollHeap(metricsURL string) *heapPoller {
	p := &heapPoller{stopc: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		tick := time.NewTicker(heapEvery)
		defer tick.Stop()
		for {
			if v, err := heapInuse(metricsURL); err != nil {
				p.err = err
			} else {
				p.peak = max(p.peak, v)
			}
			select {
			case <-tick.C:
			case <-p.stopc:
				return
			}
		}
	}()
	return p
}

// stop ends the polling and returns the peak heap in MB (0 and the
// error when it was never read).
func (p *heapPoller) stop() (float64, error) {
	close(p.stopc)
	<-p.done
	if p.peak == 0 {
		return 0, p.err
	}
	return round(p.peak/(1<<20), 1), nil
}

// heapInuse reads go_memstats_heap_inuse_bytes from a metrics URL.
func heapInuse(metricsURL string) (float64, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(metricsURL)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "go_memstats_heap_inuse_bytes "); ok {
			return strconv.ParseFloat(strings.TrimSpace(rest), 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("%s has no go_memstats_heap_inuse_bytes", metricsURL)
}
