package main

// The benchmarks, and the line each prints. Setup (writing rows,
// imports, pairing, untimed syncs) stays outside the timing; the floor
// is measured on the same rows just before.

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/clinicsync/clinicsync/codec"
)

// bench is one benchmark: it returns a line per figure it measures.
type bench struct {
	name string
	run  func(context.Context, *harness) ([]result, error)
}

var benches = []bench{
	{"initial", runInitial},
	{"incremental", runIncremental},
	{"cloud-pull-json", runCloudPull},
	{"push", runPush},
	{"simulate", runSimulate},
	{"cloud-tier", runCloudTier},
}

// result is one line of output.
type result struct {
	name    string
	rows    int
	seconds float64
	floor   float64            // the floor's seconds for the same rows (0: none)
	peak    map[string]float64 // peak RssAnon, MB, by process
	extra   map[string]any
}

// line is r as its JSON line (keys sorted by encoding/json).
func (r result) line() map[string]any {
	m := map[string]any{}
	for k, v := range r.extra {
		m[k] = v
	}
	m["name"], m["rows"], m["seconds"] = r.name, r.rows, round(r.seconds, 3)
	m["rows_per_s"] = round(rate(r.rows, r.seconds), 1)
	m["floor_rows_per_s"], m["ratio_to_floor"] = nil, nil
	if r.floor > 0 {
		m["floor_seconds"] = round(r.floor, 4)
		m["floor_rows_per_s"] = round(rate(r.rows, r.floor), 1)
		m["ratio_to_floor"] = round(r.seconds/r.floor, 2)
	}
	if r.peak == nil {
		r.peak = map[string]float64{}
	}
	m["peak_rss_anon_mb"] = r.peak
	return m
}

func rate(rows int, secs float64) float64 {
	if secs <= 0 {
		return 0
	}
	return float64(rows) / secs
}

// floor measures the floor for files' rows and says so.
func (h *harness) floor(files []tableFile) (float64, error) {
	n, took, err := floorFiles(h.dir("floor")+".db", files)
	if err != nil {
		return 0, err
	}
	h.say("floor: %d rows into bbolt in %.2fs (%.0f rows/s)", n, took.Seconds(), rate(n, took.Seconds()))
	return took.Seconds(), nil
}

// runInitial: a fresh mobile's first sync with a hub holding BENCH_ROWS
// patients and 4×BENCH_ROWS related rows, over native RPC and over
// HTTPS, each against a hub serve process of its own.
func runInitial(ctx context.Context, h *harness) ([]result, error) {
	d, err := h.mainData()
	if err != nil {
		return nil, err
	}
	rows := d.rows()
	ctx, cancel := context.WithTimeout(ctx, 3*timeout(rows))
	defer cancel()
	hub, err := h.hubWith(ctx, "hub", d)
	if err != nil {
		return nil, err
	}
	var out []result
	for _, transport := range []string{"rpc", "https"} {
		r, err := h.initialOver(ctx, hub, d, transport)
		if err != nil {
			return out, fmt.Errorf("initial over %s: %w", transport, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// hubWith makes a hub holding d's rows (imported before it serves) and
// the benchmark's user.
func (h *harness) hubWith(ctx context.Context, name string, d *dataset) (string, error) {
	hub, err := h.initNode(ctx, name, "hub")
	if err != nil {
		return "", err
	}
	if err := h.addUser(ctx, hub); err != nil {
		return "", err
	}
	took, err := h.importFiles(ctx, hub, d.files)
	if err != nil {
		return "", err
	}
	h.say("%s: imported %d rows in %.1fs (%.0f rows/s)", name, d.rows(), took.Seconds(), rate(d.rows(), took.Seconds()))
	return hub, nil
}

func (h *harness) initialOver(ctx context.Context, hub string, d *dataset, transport string) (result, error) {
	rows := d.rows()
	floor, err := h.floor(d.files)
	if err != nil {
		return result{}, err
	}
	srv, err := h.startHub(ctx, hub, transport == "rpc")
	if err != nil {
		return result{}, err
	}
	defer srv.stop()
	mobile, err := h.initNode(ctx, "mobile-"+transport, "mobile")
	if err != nil {
		return result{}, err
	}
	peer, err := h.pair(ctx, mobile, hub, transport == "https")
	if err != nil {
		return result{}, err
	}
	if err := h.logIn(ctx, mobile, peer); err != nil {
		return result{}, err
	}
	s := startSampler()
	s.watch("hub", srv.pid())
	res, err := h.syncOnce(ctx, "initial sync over "+transport, mobile, peer, s, "mobile", rows)
	peak := s.stop()
	if err != nil {
		return result{}, err
	}
	if res.Pulled < rows {
		return result{}, fmt.Errorf("initial sync over %s pulled %d rows, want %d", transport, res.Pulled, rows)
	}
	h.say("initial over %s: %d rows in %.2fs (%.0f rows/s, %.1f× the floor)", transport, res.Pulled, res.seconds,
		rate(res.Pulled, res.seconds), res.seconds/floor)
	return result{name: "initial", rows: res.Pulled, seconds: res.seconds, floor: floor, peak: peak,
		extra: map[string]any{"transport": transport, "patients": h.rows}}, nil
}

// changedRows is how many rows incremental changes on the source, in
// each of incrementalRounds timed syncs (the median is reported).
const (
	changedRows       = 100
	incrementalRounds = 5
)

// runIncremental: two mobiles holding BENCH_ROWS/10 and 10×BENCH_ROWS
// rows (patients and related rows, a fifth of them patients), each
// synced once with its hub beforehand; then 100 patients changed on
// each hub (node put) and one timed sync of each mobile.
func runIncremental(ctx context.Context, h *harness) ([]result, error) {
	sizes := []struct {
		label string
		rows  int
	}{{"small", max(h.rows/10, 5*changedRows)}, {"big", 10 * h.rows}}
	var runs []incrementalRun
	for i, size := range sizes {
		r, err := h.incrementalOn(ctx, size.label, size.rows, uint64(10+i))
		if err != nil {
			return nil, fmt.Errorf("incremental on %d rows: %w", size.rows, err)
		}
		runs = append(runs, r)
	}
	small, big := runs[0], runs[1]
	peak := map[string]float64{}
	for i, r := range runs {
		for k, v := range r.peak {
			peak[k+"_"+sizes[i].label] = v
		}
	}
	ratio := big.res.seconds / small.res.seconds
	h.say("incremental: %d changed rows in %.3fs holding %d rows, %.3fs holding %d (×%.2f)",
		changedRows, small.res.seconds, small.held, big.res.seconds, big.held, ratio)
	return []result{{name: "incremental", rows: changedRows, seconds: big.res.seconds, floor: big.floor, peak: peak,
		extra: map[string]any{
			"transport":                "rpc",
			"held_small":               small.held,
			"held_big":                 big.held,
			"seconds_small":            round(small.res.seconds, 3),
			"seconds_big":              round(big.res.seconds, 3),
			"ratio_1m_to_10k":          round(ratio, 2),
			"first_sync_seconds_small": round(small.first, 3),
			"first_sync_seconds_big":   round(big.first, 3),
			"first_sync_mobile_mb_big": round(big.firstPeak, 1),
		}}}, nil
}

// incrementalRun is one mobile's incremental sync.
type incrementalRun struct {
	held  int // the rows the mobile held before
	res   syncResult
	peak  map[string]float64
	floor float64 // the floor's seconds for the changed rows
	first float64 // the untimed first sync's seconds
	// firstPeak is the mobile's peak RssAnon (MB) in its first sync.
	firstPeak float64
}

// incrementalOn sets up a hub and a mobile holding rows rows, changes
// changedRows patients on the hub and times the mobile's sync.
func (h *harness) incrementalOn(ctx context.Context, label string, rows int, seed uint64) (incrementalRun, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*timeout(rows))
	defer cancel()
	start := time.Now()
	d, err := writeDataset(h.dir("data-"+label), rows/5, true, seed)
	if err != nil {
		return incrementalRun{}, err
	}
	h.say("%s: wrote %d rows in %.1fs", label, d.rows(), time.Since(start).Seconds())
	hub, err := h.hubWith(ctx, "hub-"+label, d)
	if err != nil {
		return incrementalRun{}, err
	}
	srv, err := h.startHub(ctx, hub, true)
	if err != nil {
		return incrementalRun{}, err
	}
	defer srv.stop()
	mobile, err := h.initNode(ctx, "mobile-"+label, "mobile")
	if err != nil {
		return incrementalRun{}, err
	}
	peer, err := h.pair(ctx, mobile, hub, false)
	if err != nil {
		return incrementalRun{}, err
	}
	if err := h.logIn(ctx, mobile, peer); err != nil {
		return incrementalRun{}, err
	}
	s := startSampler()
	first, err := h.syncOnce(ctx, "the first sync of "+label, mobile, peer, s, "mobile", d.rows())
	firstPeak := s.stop()["mobile"]
	if err != nil {
		return incrementalRun{}, err
	}
	h.say("%s: the mobile's first sync pulled %d rows in %.1fs", label, first.Pulled, first.seconds)

	// A sync of 100 rows takes tens of milliseconds: the median of a
	// few rounds, each changing the same patients again.
	var rounds []syncResult
	var took time.Duration
	peak := map[string]float64{}
	for round := range incrementalRounds {
		changed, err := changeRows(d.sample, round)
		if err != nil {
			return incrementalRun{}, err
		}
		for _, r := range changed {
			_, err := h.procs.run(ctx, "put on the hub", "put", "--data", hub, "--table", "patients", "--id", r.ID,
				"given_name="+r.Cols["given_name"].Str)
			if err != nil {
				return incrementalRun{}, err
			}
		}
		if round == 0 {
			if took, err = floorRows(h.dir("floor")+".db", "patients", changed); err != nil {
				return incrementalRun{}, err
			}
			h.say("floor: %d rows into bbolt in %.4fs", len(changed), took.Seconds())
		}
		s = startSampler()
		s.watch("hub", srv.pid())
		res, err := h.syncOnce(ctx, "the incremental sync of "+label, mobile, peer, s, "mobile", changedRows)
		for k, v := range s.stop() {
			peak[k] = max(peak[k], v)
		}
		if err != nil {
			return incrementalRun{}, err
		}
		if res.Pulled != len(changed) {
			return incrementalRun{}, fmt.Errorf("the incremental sync of %s pulled %d rows, want %d", label, res.Pulled, len(changed))
		}
		rounds = append(rounds, res)
	}
	slices.SortFunc(rounds, func(a, b syncResult) int { return cmp.Compare(a.seconds, b.seconds) })
	res := rounds[len(rounds)/2]
	return incrementalRun{held: d.rows(), res: res, peak: peak, floor: took.Seconds(), first: first.seconds, firstPeak: firstPeak}, nil
}

// changeRows decodes the sample patient lines and gives each a new
// given_name (one per round): the rows as the mobile stores them after the change.
func changeRows(sample [][]byte, round int) ([]codec.Row, error) {
	if len(sample) < changedRows {
		return nil, fmt.Errorf("%d patients to change, want %d", len(sample), changedRows)
	}
	rows, err := decodeRows("patients", sample[:changedRows])
	if err != nil {
		return nil, err
	}
	for i := range rows {
		rows[i].Cols["given_name"] = codec.String(fmt.Sprintf("Changed %d-%d", round, i))
	}
	return rows, nil
}

// runSimulate: bin/simulate --json with its default options.
func runSimulate(ctx context.Context, h *harness) ([]result, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	var out, errb strings.Builder
	cmd := exec.Command(h.simulateBin, "--json")
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.WaitDelay = 10 * time.Second
	var waitErr error
	start := time.Now()
	done, err := h.procs.track(cmd, &waitErr)
	if err != nil {
		return nil, fmt.Errorf("starting simulate: %w", err)
	}
	s := startSampler()
	s.watch("simulate", cmd.Process.Pid)
	select {
	case <-done:
	case <-ctx.Done():
		cmd.Process.Kill()
		<-done
	}
	secs := time.Since(start).Seconds()
	peak := s.stop()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("simulate did not finish: %w", err)
	}
	if waitErr != nil {
		return nil, fmt.Errorf("simulate: %v: %s%s", waitErr, clip(errb.String()), clip(out.String()))
	}
	var rep struct {
		RowsWritten    int     `json:"rows_written"`
		ClinicDaysPerS float64 `json:"clinic_days_per_s"`
		WallSeconds    float64 `json:"wall_seconds"`
		Seed           uint64  `json:"seed"`
		Violations     []any   `json:"violations"`
	}
	if err := json.Unmarshal([]byte(out.String()), &rep); err != nil {
		return nil, fmt.Errorf("simulate --json printed %q: %w", clip(out.String()), err)
	}
	h.say("simulate: %d rows written, %.2f clinic days/s", rep.RowsWritten, rep.ClinicDaysPerS)
	return []result{{name: "simulate", rows: rep.RowsWritten, seconds: secs, peak: peak,
		extra: map[string]any{"clinic_days_per_s": round(rep.ClinicDaysPerS, 3), "simulate_wall_seconds": round(rep.WallSeconds, 3),
			"seed": rep.Seed, "violations": len(rep.Violations)}}}, nil
}
