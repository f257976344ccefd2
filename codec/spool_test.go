package codec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	"github.com/clinicsync/clinicsync/codec/schema"
)

// memSpill is an in-memory spill file that can fail.
type memSpill struct {
	data      []byte
	closed    bool
	failWrite error
	failClose error
}

func (m *memSpill) Write(p []byte) (int, error) {
	if m.closed {
		return 0, errors.New("write to a closed spill file")
	}
	if m.failWrite != nil {
		return 0, m.failWrite
	}
	m.data = append(m.data, p...)
	return len(p), nil
}

func (m *memSpill) ReadAt(p []byte, off int64) (int, error) {
	if m.closed {
		return 0, errors.New("read of a closed spill file")
	}
	if off >= int64(len(m.data)) {
		return 0, io.EOF
	}
	n := copy(p, m.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (m *memSpill) Close() error {
	m.closed = true
	return m.failClose
}

// spoolEvent is one call to a PullSpool.
type spoolEvent struct {
	table, list string
	row         Row // list created or updated
	id          string
}

// randomPull builds a changeset of random tables of cat, each with at
// least one row, and the calls that give a spool its rows, interleaved
// at random across tables and lists, each list in order.
func randomPull(r *rand.Rand, cat *schema.Catalog) (*Changeset, []spoolEvent) {
	cs := NewChangeset()
	cs.Timestamp = 1 + r.Int64N(1<<50)
	var queues [][]spoolEvent
	for _, name := range cat.Names() {
		if r.IntN(3) == 0 {
			continue
		}
		tbl, _ := cat.Table(name)
		tc := cs.Table(name)
		var created, updated, deleted []spoolEvent
		for n, i := 1+r.IntN(12), 0; i < n; i++ {
			id := fmt.Sprintf("%s-%d", name[:3], i)
			switch r.IntN(3) {
			case 0:
				row := sampleRow(tbl, id, r.IntN(3))
				tc.Created = append(tc.Created, row)
				created = append(created, spoolEvent{table: name, list: "created", row: row})
			case 1:
				row := sampleRow(tbl, id, r.IntN(3))
				tc.Updated = append(tc.Updated, row)
				updated = append(updated, spoolEvent{table: name, list: "updated", row: row})
			default:
				tc.Deleted = append(tc.Deleted, id)
				deleted = append(deleted, spoolEvent{table: name, list: "deleted", id: id})
			}
		}
		queues = append(queues, created, updated, deleted)
	}
	var events []spoolEvent
	for {
		var open []int
		for i, q := range queues {
			if len(q) > 0 {
				open = append(open, i)
			}
		}
		if len(open) == 0 {
			return cs, events
		}
		i := open[r.IntN(len(open))]
		events = append(events, queues[i][0])
		queues[i] = queues[i][1:]
	}
}

// feed gives the events to s, checking after each that the spool's
// count of its memory is what its buffers hold, and within its bound.
func feed(t *testing.T, s *PullSpool, events []spoolEvent) {
	t.Helper()
	for _, ev := range events {
		var err error
		if ev.list == "deleted" {
			err = s.Deleted(ev.table, ev.id)
		} else {
			err = s.Row(ev.table, ev.list, ev.row)
		}
		if err != nil {
			t.Fatal(err)
		}
		held := 0
		for _, tb := range s.order {
			for _, l := range tb.lists {
				for _, c := range l.chunks {
					held += cap(c)
				}
			}
		}
		if held != s.mem || s.mem > s.so.MaxMemory {
			t.Fatalf("spool holds %d bytes, counts %d, bound %d", held, s.mem, s.so.MaxMemory)
		}
	}
}

// TestPullSpoolMatchesEncoder: rows given to a PullSpool in any order
// come out as EncodePullResponse writes their changeset, in memory or
// spilled (a tiny bound spills at almost every row), and the spill
// file is released. Replay one seed with -run
// 'TestPullSpoolMatchesEncoder/seed=N'.
func TestPullSpoolMatchesEncoder(t *testing.T) {
	cat := schema.Default()
	for seed := range uint64(300) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 0x5b001))
			o := Options{Catalog: cat, IncludeSecret: r.IntN(2) == 0, ServerNames: r.IntN(4) == 0}
			so := SpoolOptions{}
			switch r.IntN(3) {
			case 0: // the default bound: all in memory
			case 1:
				so.MaxMemory = 1 + r.IntN(64)
			default:
				so.MaxMemory = 1 + r.IntN(8<<10)
			}
			var files []*memSpill
			so.Create = func() (SpillFile, error) {
				f := &memSpill{}
				files = append(files, f)
				return f, nil
			}
			cs, events := randomPull(r, cat)
			var want bytes.Buffer
			if err := EncodePullResponse(&want, cs, o); err != nil {
				t.Fatal(err)
			}
			var got bytes.Buffer
			s := NewPullSpool(&got, o, so)
			feed(t, s, events)
			if err := s.Close(cs.Timestamp); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Bytes(), want.Bytes()) {
				t.Fatalf("options %+v, spool %+v: spool differs from EncodePullResponse:\n got %s\nwant %s", o, so, got.Bytes(), want.Bytes())
			}
			switch {
			case len(files) > 1:
				t.Errorf("%d spill files, want at most 1", len(files))
			case len(files) == 1 && !files[0].closed:
				t.Error("the spill file was not released")
			case so.MaxMemory > 0 && so.MaxMemory <= 64 && s.Spilled() == 0:
				t.Errorf("a bound of %d bytes spilled nothing", so.MaxMemory)
			case so.MaxMemory == 0 && s.Spilled() != 0:
				t.Errorf("the default bound spilled %d bytes of a small pull", s.Spilled())
			}
			if err := s.Row("patients", "created", Row{ID: "late"}); err == nil {
				t.Error("a closed spool took a row")
			}
		})
	}

	// Nothing at all: an empty changes object.
	var buf bytes.Buffer
	if err := NewPullSpool(&buf, Options{Catalog: cat}, SpoolOptions{}).Close(7); err != nil {
		t.Fatal(err)
	}
	if got := buf.String(); got != `{"changes":{},"timestamp":7,"success":true}` {
		t.Errorf("empty spool: %s", got)
	}
}

// TestPullSpoolTempFile: by default the spill file is a temporary file
// in SpoolOptions.Dir, there while the spool holds rows in it and
// removed by Close or Abort.
func TestPullSpoolTempFile(t *testing.T) {
	cat := schema.Default()
	pt, _ := cat.Table("patients")
	entries := func(dir string) int {
		t.Helper()
		es, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		return len(es)
	}
	for _, end := range []string{"close", "abort"} {
		dir := t.TempDir()
		var got bytes.Buffer
		s := NewPullSpool(&got, Options{Catalog: cat}, SpoolOptions{MaxMemory: 1 << 10, Dir: dir})
		cs := NewChangeset()
		cs.Timestamp = 9
		for i := range 50 {
			row := sampleRow(pt, fmt.Sprintf("p%02d", i), i%3)
			cs.Table("patients").Created = append(cs.Table("patients").Created, row)
			if err := s.Row("patients", "created", row); err != nil {
				t.Fatal(err)
			}
		}
		if n := entries(dir); n != 1 || s.Spilled() == 0 {
			t.Fatalf("%s: %d files in the spool directory, %d bytes spilled; want 1 file", end, n, s.Spilled())
		}
		if end == "abort" {
			if err := s.Abort(); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(9); !errors.Is(err, ErrMalformed) || got.Len() != 0 {
				t.Errorf("close after abort: %v, wrote %d bytes", err, got.Len())
			}
		} else {
			if err := s.Close(9); err != nil {
				t.Fatal(err)
			}
			var want bytes.Buffer
			EncodePullResponse(&want, cs, Options{Catalog: cat})
			if !bytes.Equal(got.Bytes(), want.Bytes()) {
				t.Errorf("spilled to disk, the spool differs from EncodePullResponse")
			}
			if err := s.Abort(); err != nil {
				t.Errorf("abort after close: %v", err)
			}
		}
		if n := entries(dir); n != 0 {
			t.Errorf("%s: %d files left in the spool directory", end, n)
		}
	}
}

func TestPullSpoolErrors(t *testing.T) {
	cat := schema.Default()
	o := Options{Catalog: cat}
	pt, _ := cat.Table("patients")
	row := sampleRow(pt, "p1", 0)
	rows := func(s *PullSpool, n int) error {
		for i := range n {
			if err := s.Row("patients", "created", sampleRow(pt, fmt.Sprintf("p%d", i), 0)); err != nil {
				return err
			}
		}
		return nil
	}
	for _, c := range []struct {
		name  string
		want  error
		msg   string // instead of want
		spill memSpill
		w     io.Writer
		fn    func(s *PullSpool) error
	}{
		{name: "unknown table", want: ErrUnknownTable, fn: func(s *PullSpool) error { return s.Row("nope", "created", row) }},
		{name: "bad table name", want: ErrUnknownTable, fn: func(s *PullSpool) error { return s.Deleted("No/pe", "x") }},
		{name: "bad list", want: ErrMalformed, fn: func(s *PullSpool) error { return s.Row("patients", "deleted", row) }},
		{name: "bad id", want: ErrInvalidID, fn: func(s *PullSpool) error { return s.Deleted("patients", "a/b") }},
		{name: "bad row id", want: ErrInvalidID, fn: func(s *PullSpool) error { return s.Row("patients", "updated", Row{ID: ""}) }},
		{name: "non-canonical value", want: ErrInvalidValue, fn: func(s *PullSpool) error {
			return s.Row("patients", "created", Row{ID: "p1", Cols: map[string]Value{"created_at": String("yesterday")}})
		}},
		{name: "zero timestamp", want: ErrInvalidTimestamp, fn: func(s *PullSpool) error { rows(s, 30); return s.Close(0) }},
		{name: "sticky", want: ErrUnknownTable, fn: func(s *PullSpool) error { s.Row("nope", "created", row); rows(s, 30); return s.Close(5) }},
		{name: "closed", want: ErrMalformed, fn: func(s *PullSpool) error { s.Close(5); return s.Close(5) }},
		{name: "spill write fails", want: os.ErrClosed, spill: memSpill{failWrite: os.ErrClosed}, fn: func(s *PullSpool) error {
			if err := rows(s, 30); err == nil {
				return errors.New("spilling did not fail")
			}
			return s.Close(5)
		}},
		{name: "response write fails", msg: "disk full", w: &failWriter{n: 3000}, fn: func(s *PullSpool) error { rows(s, 30); return s.Close(5) }},
		{name: "release fails", want: ErrSpoolRelease, spill: memSpill{failClose: os.ErrPermission}, fn: func(s *PullSpool) error {
			rows(s, 30)
			err := s.Close(5)
			if !errors.Is(err, os.ErrPermission) {
				return fmt.Errorf("release error lost: %w", err)
			}
			if doc := s.w.(*bytes.Buffer).String(); !strings.HasSuffix(doc, `,"success":true}`) {
				return fmt.Errorf("release failed before the document was whole: %s", doc)
			}
			return err
		}},
	} {
		spill, made := c.spill, false
		w := c.w
		if w == nil {
			w = &bytes.Buffer{}
		}
		s := NewPullSpool(w, o, SpoolOptions{MaxMemory: 2 << 10, Create: func() (SpillFile, error) { made = true; return &spill, nil }})
		err := c.fn(s)
		if c.msg != "" {
			if err == nil || !strings.Contains(err.Error(), c.msg) {
				t.Errorf("%s: %v, want %s", c.name, err, c.msg)
			}
		} else if !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
		if err := s.Abort(); err != nil { // what a caller does on every path
			t.Errorf("%s: abort: %v", c.name, err)
		}
		if made && !spill.closed {
			t.Errorf("%s: the spill file was not released", c.name)
		}
		if s.file != nil || s.tables != nil {
			t.Errorf("%s: the spool still holds its file or rows", c.name)
		}
	}

	// A spill file that cannot be made fails the spool.
	s := NewPullSpool(&bytes.Buffer{}, o, SpoolOptions{MaxMemory: 1, Create: func() (SpillFile, error) { return nil, os.ErrPermission }})
	if err := s.Row("patients", "created", row); !errors.Is(err, os.ErrPermission) {
		t.Errorf("no spill file: %v", err)
	}
	if err := s.Close(5); !errors.Is(err, os.ErrPermission) {
		t.Errorf("close after a failed spill: %v", err)
	}
}
