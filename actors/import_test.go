package actors

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/clinicsync/clinicsync/fsm"
	"github.com/clinicsync/clinicsync/kv"
)

// patientID is the id of generated patient i: unique, and not in the
// order of i (a multiplicative bijection of uint32), so that sorting a
// batch by id shows.
func patientID(i int) string { return fmt.Sprintf("p%08x", uint32(i)*2654435761) }

// writePatients writes n valid patients rows, one JSON object a line,
// as a WatermelonDB client pushes created rows (values as the JSON sync
// protocol carries them: JSON columns as text, timestamps in ms), for
// patients from, from+1, ... of a clinic. Values vary with rng; the
// rows were edited in 2023.
func writePatients(w io.Writer, rng *rand.Rand, from, n int, clinic string) error {
	bw := bufio.NewWriter(w)
	base := time.Date(2023, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	for i := from; i < from+n; i++ {
		bw.WriteString(patientLine(rng, patientID(i), i, clinic, base+rng.Int64N(365*24*3600*1000)))
	}
	return bw.Flush()
}

// patientLine is one generated patients row, with its newline.
func patientLine(rng *rand.Rand, id string, i int, clinic string, updatedAt int64) string {
	sexes := []string{"female", "male"}
	towns := []string{"Amman", "Irbid", "Zarqa", "Mafraq", "Aqaba"}
	dob := time.Date(1940+rng.IntN(80), time.Month(1+rng.IntN(12)), 1+rng.IntN(28), 0, 0, 0, 0, time.UTC)
	return fmt.Sprintf(`{"id":%q,"given_name":"Given%d","surname":"Surname%d","date_of_birth":%q,`+
		`"citizenship":"JO","hometown":%q,"phone":"+962-7%08d","sex":%q,"camp":null,`+
		`"additional_data":"{\"blood\":\"A+\"}","metadata":"{}","photo_url":null,"is_deleted":false,"deleted_at":null,`+
		`"created_at":%d,"updated_at":%d,"government_id":"G%d","external_patient_id":"E%d",`+
		`"primary_clinic_id":%q,"last_modified_by":null,"_status":"created","_changed":""}`+"\n",
		id, i, rng.IntN(1000), dob.Format(time.DateOnly), towns[rng.IntN(len(towns))],
		rng.IntN(1e8), sexes[rng.IntN(2)], updatedAt, updatedAt, i, i, clinic)
}

// patientsFile is n generated patients rows.
func patientsFile(t testing.TB, seed uint64, n int, clinic string) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := writePatients(&b, rand.New(rand.NewPCG(seed, 0)), 0, n, clinic); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// TestImportCloud: a cloud imports a file of ~20k rows with bad lines
// among them: the good rows are stored synced and served to devices as
// created, each bad line is counted and listed with its line and
// reason, batches are sorted by id, and the input is read no further
// ahead than a batch.
func TestImportCloud(t *testing.T) {
	dir, _ := initNode(t, KindCloud, "c1")
	n := openNode(t, dir)
	const rows, batch = 20_000, 3000
	good := patientsFile(t, 1, rows, "c1")
	lines := bytes.SplitAfter(good, []byte("\n"))
	// Bad lines, replacing good ones (by line number, from 1).
	line := func(i int) string { return strings.TrimSuffix(string(lines[i-1]), "\n") }
	bad := map[int]string{
		5: `{"id":"x5","given_name":`,          // not JSON
		6: `["not","an","object"]`,             // not an object
		7: `{"given_name":"no id"}`,            // no id
		8: `{"id":"bad id!","given_name":"A"}`, // invalid id
		// A value normalization refuses; null on a required column.
		9:  strings.Replace(line(9), `"date_of_birth":"`, `"date_of_birth":"not a date`, 1),
		10: strings.Replace(line(10), `"sex":`, `"sex":null,"x":`, 1),
		// A line that would splice rows into the body; a blank line
		// (skipped, not counted); two values.
		11:   `{"id":"a"}]},"visits":{"created":[{"id":"v1"}`,
		12:   "   ",
		4001: `{"id":"a","b":1} {"id":"c"}`,
	}
	var in bytes.Buffer
	for i, l := range lines {
		if s, ok := bad[i+1]; ok {
			in.WriteString(s + "\n")
			continue
		}
		in.Write(l)
	}
	// The same id twice, across batches (patient 0) and in one batch
	// (pz): applied in line order, so the later lines' values win
	// (their updated_at is later).
	rng := rand.New(rand.NewPCG(9, 0))
	later := time.Date(2024, 2, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	in.WriteString(patientLine(rng, patientID(0), 0, "c1", later))
	in.WriteString(patientLine(rng, "pz", 1, "c1", later-1000))
	in.WriteString(patientLine(rng, "pz", 2, "c1", later))
	in.WriteString(`{"id":"last","given_name":"no newline"`) // malformed

	before, err := n.Store().LastCursor()
	if err != nil {
		t.Fatal(err)
	}
	cr := &countingReader{r: &in}
	var progress []int
	lineBytes := len(lines[0]) + 64 // generous: lines are about the same size
	res, err := n.Import(context.Background(), "patients", cr, ImportOptions{BatchRows: batch, MaxRejectedRows: 100, Progress: func(done int) {
		progress = append(progress, done)
		// Read ahead at most a batch and the reader's buffer.
		if limit := (done+batch)*lineBytes + 64<<10; cr.n > limit {
			t.Errorf("after %d rows, %d bytes read: over a batch ahead (%d)", done, cr.n, limit)
		}
	}})
	if err != nil {
		t.Fatalf("Import: %v", err)
	}
	wantRejected := []struct {
		line   int
		id     string
		reason string
	}{
		{5, "", "codec: malformed input: unexpected end of JSON input"},
		{6, "", "codec: wrong JSON type: a row must be a JSON object"},
		{7, "", "codec: record has no id"},
		{8, "", `codec: invalid row id: "bad id!"`},
		{9, patientID(8), "date_of_birth"},
		{10, patientID(9), "sex"},
		{11, "", "codec: malformed input"},
		{4001, "", "codec: malformed input"},
		{rows + 4, "", "codec: malformed input"},
	}
	if res.Rejected != len(wantRejected) || len(res.RejectedRows) != len(wantRejected) {
		t.Fatalf("rejected %d: %+v", res.Rejected, res.RejectedRows)
	}
	for i, w := range wantRejected {
		got := res.RejectedRows[i]
		if got.Line != w.line || got.ID != w.id || !strings.Contains(got.Reason, w.reason) || strings.Contains(got.Reason, "created[0]") {
			t.Errorf("rejected[%d] = %+v, want line %d, id %q, reason with %q", i, got, w.line, w.id, w.reason)
		}
	}
	const stored = rows - 9 + 1 // 9 lines replaced (12 is blank), pz
	wantImported := stored + 2  // the later lines of an id count too
	if res.Imported != wantImported {
		t.Errorf("imported %d, want %d", res.Imported, wantImported)
	}
	if len(res.Unknown) != 0 {
		t.Errorf("unknown columns: %v", res.Unknown)
	}
	if !slices.IsSorted(progress) || progress[len(progress)-1] != res.Imported+res.Rejected {
		t.Errorf("progress %v, want increasing to %d", progress, res.Imported+res.Rejected)
	}

	live, tombs, err := n.Store().Count("patients")
	if err != nil || live != stored || tombs != 0 {
		t.Fatalf("patients: %d live, %d tombstones, %v; want %d", live, tombs, err, stored)
	}
	if v, _, _ := n.Store().Count("visits"); v != 0 {
		t.Errorf("a line spliced %d visits in", v)
	}
	if p, err := n.Store().PendingCount(); err != nil || p != 0 {
		t.Errorf("a cloud's imported rows pending: %d, %v", p, err)
	}
	for _, id := range []string{patientID(0), "pz"} {
		r, err := n.Store().Get("patients", id)
		if u, _ := r.Cols["updated_at"].Int64(); err != nil || r.Status != kv.Synced || u != later {
			t.Errorf("row %s given twice: updated_at %d, %v, %v: want the later line's values, synced", id, u, r.Status, err)
		}
	}

	// Served to a device that pulled before the import as created, in
	// batches sorted by id (cursor order within a batch is id order).
	page, err := n.Store().ChangesSince(before, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	cs := fsm.Serve(page.Records, before, fsm.Caller{ID: "device-1"}, n.Store().Catalog())
	if tc := cs.Tables["patients"]; tc == nil || len(tc.Created) != stored || len(tc.Updated) != 0 {
		t.Fatalf("served after the import: %v", cs.Count())
	}
	var ids []string
	for _, r := range page.Records {
		ids = append(ids, r.ID)
	}
	// The first batch: the first 3000 lines but for 7 refused, and
	// patient 0, which moved on.
	if !slices.IsSorted(ids[:batch-8]) || slices.IsSorted(ids[:batch-7]) || slices.IsSorted(ids) {
		t.Errorf("the first batch is not sorted by id, or the whole is (the file is not): %v", ids[:10])
	}
}

// TestImportRelays: on a hub or a device, imported rows are pending
// (created) for the upstream; a hub refuses rows outside its clinics;
// tables a push does not take are refused whole.
func TestImportRelays(t *testing.T) {
	for _, kind := range []Kind{KindHub, KindMobile} {
		t.Run(string(kind), func(t *testing.T) {
			dir, _ := initNode(t, kind, "c1")
			n := openNode(t, dir)
			in := patientsFile(t, 2, 5, "c1")
			in = append(in, patientsFile(t, 3, 1, "c2")...) // patient 0 again, of another clinic
			res, err := n.Import(context.Background(), "patients", bytes.NewReader(in), ImportOptions{})
			if err != nil {
				t.Fatal(err)
			}
			pending, err := n.Store().PendingCount()
			if err != nil {
				t.Fatal(err)
			}
			r, err := n.Store().Get("patients", patientID(1))
			if err != nil || r.Status != kv.Created {
				t.Errorf("imported row: %v, %v; want created", r.Status, err)
			}
			if kind == KindHub { // the c2 row is outside the hub's clinics
				if res.Imported != 5 || res.Rejected != 1 || res.RejectedRows[0].Line != 6 || !strings.Contains(res.RejectedRows[0].Reason, "clinic") || pending != 5 {
					t.Errorf("hub: %+v, %d pending", res, pending)
				}
			} else if res.Imported != 6 || res.Rejected != 0 || pending != 5 {
				t.Errorf("device: %+v, %d pending", res, pending)
			}

			// Rows that follow a patient: a hub's scope reads the patient
			// (imported before); a row whose patient it lacks is refused.
			event := `{"id":%q,"patient_id":%q,"form_id":"f1","visit_id":"v1","event_type":"note","form_data":"[]",` +
				`"metadata":"{}","is_deleted":false,"deleted_at":null,"created_at":1672531200000,"updated_at":1672531200000,"recorded_by_user_id":"u1"}` + "\n"
			events := fmt.Sprintf(event, "e1", patientID(1)) + fmt.Sprintf(event, "e2", "nobody")
			res, err = n.Import(context.Background(), "events", strings.NewReader(events), ImportOptions{})
			if err != nil || kind == KindHub && (res.Imported != 1 || res.Rejected != 1) {
				t.Errorf("events: %+v, %v", res, err)
			}
			if _, err := n.Store().Get("events", "e1"); err != nil {
				t.Errorf("the event of an imported patient: %v", err)
			}

			for table, want := range map[string]error{"users": ErrNotImportable, "nope": kv.ErrUnknownTable} {
				if _, err := n.Import(context.Background(), table, strings.NewReader("{}\n"), ImportOptions{}); !errors.Is(err, want) {
					t.Errorf("import into %s: %v, want %v", table, err, want)
				}
			}
		})
	}
}

// TestImportStops: an input that fails, or a context that ends, stops
// the import; the batches committed before stay.
func TestImportStops(t *testing.T) {
	dir, _ := initNode(t, KindCloud)
	n := openNode(t, dir)
	broken := io.MultiReader(bytes.NewReader(patientsFile(t, 4, 10, "c1")), iotestErrReader{})
	res, err := n.Import(context.Background(), "patients", broken, ImportOptions{BatchRows: 4})
	if err == nil || !strings.Contains(err.Error(), "disk on fire") || res.Imported != 8 {
		t.Errorf("broken input: %+v, %v; want 8 imported and the error", res, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	res, err = n.Import(ctx, "patients", bytes.NewReader(patientsFile(t, 5, 10, "c1")), ImportOptions{BatchRows: 3,
		Progress: func(int) { cancel() }})
	if !errors.Is(err, context.Canceled) || res.Imported != 3 {
		t.Errorf("cancelled: %+v, %v; want 3 imported and context.Canceled", res, err)
	}
}

// TestImportRepeatedID: the lines of one id apply in line order, each
// in a transaction after the one before, within a batch or across.
func TestImportRepeatedID(t *testing.T) {
	dir, _ := initNode(t, KindCloud)
	n := openNode(t, dir)
	rng := rand.New(rand.NewPCG(8, 0))
	day := time.Date(2023, 5, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	var in strings.Builder
	for i, id := range []string{"a", "b", "a", "c", "a", "b"} {
		in.WriteString(patientLine(rng, id, i, "c1", day+int64(i)*1000))
	}
	var progress []int
	res, err := n.Import(context.Background(), "patients", strings.NewReader(in.String()), ImportOptions{BatchRows: 5,
		Progress: func(done int) { progress = append(progress, done) }})
	if err != nil || res.Imported != 6 || res.Rejected != 0 {
		t.Fatalf("Import: %+v, %v", res, err)
	}
	// Batch 1 (lines 1-5): a b c, then a (line 3), then a (line 5);
	// batch 2 (line 6): b.
	if want := []int{3, 4, 5, 6, 6}; !slices.Equal(progress, want) {
		t.Errorf("progress %v, want %v", progress, want)
	}
	for id, line := range map[string]int{"a": 4, "b": 5, "c": 3} {
		r, err := n.Store().Get("patients", id)
		if u, _ := r.Cols["updated_at"].Int64(); err != nil || u != day+int64(line)*1000 {
			t.Errorf("%s: updated_at %d, %v; want line %d's", id, u, err, line+1)
		}
	}
}

type iotestErrReader struct{}

func (iotestErrReader) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }

// TestImportLongLine: a line over MaxImportLine is refused without
// being held, and the next line is read.
func TestImportLongLine(t *testing.T) {
	dir, _ := initNode(t, KindCloud)
	n := openNode(t, dir)
	in := io.MultiReader(strings.NewReader(`{"id":"long","x":"`), io.LimitReader(zeros{}, MaxImportLine), strings.NewReader("\"}\n"),
		bytes.NewReader(patientsFile(t, 6, 1, "c1")))
	res, err := n.Import(context.Background(), "patients", in, ImportOptions{})
	if err != nil || res.Imported != 1 || res.Rejected != 1 || res.RejectedRows[0].Line != 1 || !strings.Contains(res.RejectedRows[0].Reason, "line is over") {
		t.Errorf("long line: %+v, %v", res, err)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = '0'
	}
	return len(p), nil
}

// TestImportMillion imports CLINICSYNC_IMPORT_ROWS generated rows (say
// 1000000) from a file into a bbolt cloud, and reports rows/s, the peak
// heap and the process's peak RSS. Run by hand:
//
//	CLINICSYNC_IMPORT_ROWS=1000000 go test ./actors/ -run ImportMillion -v -timeout 30m
func TestImportMillion(t *testing.T) {
	total, _ := strconv.Atoi(os.Getenv("CLINICSYNC_IMPORT_ROWS"))
	if total <= 0 {
		t.Skip("set CLINICSYNC_IMPORT_ROWS to run")
	}
	dir, _ := initNode(t, KindCloud, "c1")
	n, err := Open(dir, SystemClock{})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	// The rows go to a file first: the import reads a file, as the
	// command does, and generating them is not timed.
	path := filepath.Join(t.TempDir(), "patients.ndjson")
	f, err := os.Create(path)
	if err == nil {
		err = writePatients(f, rand.New(rand.NewPCG(7, 0)), 0, total, "c1")
	}
	if err == nil {
		err = f.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	// The peak heap in use, and the live heap (after a collection)
	// every 100k rows: bounded by a batch, it does not grow with the
	// rows read.
	var peakHeap, peakLive uint64
	start := time.Now()
	var paused time.Duration // collecting for the live heap
	res, err := n.Import(context.Background(), "patients", in, ImportOptions{Progress: func(done int) {
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		peakHeap = max(peakHeap, m.HeapInuse)
		if done%100_000 < DefaultImportBatch {
			t0 := time.Now()
			runtime.GC()
			runtime.ReadMemStats(&m)
			peakLive = max(peakLive, m.HeapAlloc)
			paused += time.Since(t0)
			t.Logf("%d rows, %.0f rows/s, heap in use %d MiB, live %d MiB", done,
				float64(done)/(time.Since(start)-paused).Seconds(), peakHeap>>20, m.HeapAlloc>>20)
		}
	}})
	secs := (time.Since(start) - paused).Seconds()
	if err != nil || res.Imported != total || res.Rejected != 0 {
		t.Fatalf("Import: %+v, %v", res, err)
	}
	live, _, err := n.Store().Count("patients")
	if err != nil || live != total {
		t.Fatalf("%d patients stored, %v", live, err)
	}
	fi, _ := os.Stat(filepath.Join(dir, kv.FileName))
	t.Logf("%d rows in %.1f s: %.0f rows/s; peak heap in use %d MiB, live %d MiB; peak RSS %s (the store's file is mapped); store %d MiB",
		total, secs, float64(total)/secs, peakHeap>>20, peakLive>>20, peakRSS(), fi.Size()>>20)
}

// peakRSS is the process's peak resident set (Linux), as text.
func peakRSS() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "unknown"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}
