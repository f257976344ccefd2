package codec

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
)

// DefaultSpoolMemory bounds the encoded rows a PullSpool holds in
// memory when SpoolOptions.MaxMemory is 0.
const DefaultSpoolMemory = 8 << 20

// SpillFile is where a PullSpool moves encoded rows once its memory
// bound is passed: written at its end, read back by offset. Close
// releases it (a file on disk is removed).
type SpillFile interface {
	io.Writer
	io.ReaderAt
	io.Closer
}

// SpoolOptions configure a PullSpool.
type SpoolOptions struct {
	// MaxMemory bounds the bytes of encoded rows held in memory (the
	// size of the spool's buffers; 0: DefaultSpoolMemory). Past it,
	// every buffer moves to the spill file.
	MaxMemory int
	// Dir is the directory of the spill file ("": os.TempDir()).
	Dir string
	// Create, when set, makes the spill file instead of a temporary
	// file in Dir.
	Create func() (SpillFile, error)
}

// PullSpool writes a pull response, {"changes":{...},"timestamp":N,
// "success":true}, from rows given in any order (a walk of the cursor
// index yields tables and lists mixed), without holding the pull in
// memory. Each row is encoded at once, by the encoder of
// EncodePullResponse (same value typing, no _status or _changed), into
// the buffer of its table and list; once the buffers pass
// SpoolOptions.MaxMemory they move to one spill file (a temporary file
// by default). Close writes the document: tables sorted by the key
// written (for mobile names, the catalog's order), each with created,
// updated and deleted, rows of a list in the order given. It is what
// EncodePullResponse writes for the changeset of the same rows, except
// that no table without rows is written.
//
// The caller guarantees each row once: a repeated
// id is not looked for. The first error sticks: every later call
// returns it. Close and Abort release the spill file; call Abort (a
// no-op after Close) on every path that may not reach Close. Nothing
// reaches w before Close.
type PullSpool struct {
	w       io.Writer
	o       Options
	so      SpoolOptions
	e       encoder // encodes one element (it has no writer)
	tables  map[string]*spoolTable
	order   []*spoolTable // in order of first row: the spill order
	mem     int           // size of the lists' chunks
	file    SpillFile
	size    int64 // bytes written to file
	spilled int64 // bytes moved to a spill file, over the spool's life
	err     error
}

type spoolTable struct {
	ot    outTable
	lists [3]spoolList // created, updated, deleted
}

// spoolList is a list's encoded elements, comma separated: first the
// runs in the spill file, then the chunks in memory. A chunk is never
// grown (no copy, no garbage): once full, the next one is allocated,
// each twice the size of the one before up to maxChunk.
type spoolList struct {
	runs   []spillRun
	chunks [][]byte
	next   int // size of the next chunk
	n      int // elements
}

// Chunk sizes of a list.
const (
	minChunk = 512
	maxChunk = 64 << 10
)

type spillRun struct{ off, n int64 }

var errSpoolClosed = fmt.Errorf("%w: pull spool is closed", ErrMalformed)

// NewPullSpool starts a pull response for w.
func NewPullSpool(w io.Writer, o Options, so SpoolOptions) *PullSpool {
	if so.MaxMemory <= 0 {
		so.MaxMemory = DefaultSpoolMemory
	}
	return &PullSpool{w: w, o: o, so: so, e: encoder{o: o}, tables: map[string]*spoolTable{}}
}

// Row adds a record of table (a mobile name) to list "created" or
// "updated".
func (s *PullSpool) Row(table, list string, r Row) error {
	if s.err != nil {
		return s.err
	}
	if err := checkPullRow(table, list, r); err != nil {
		return s.fail(err)
	}
	t, err := s.table(table)
	if err != nil {
		return s.fail(err)
	}
	l := &t.lists[pullLists[list]]
	s.e.buf = l.separator(s.e.buf[:0])
	if err := s.e.row(t.ot, r, list); err != nil {
		return s.fail(err)
	}
	return s.add(l)
}

// Deleted adds the id of a deleted record of table.
func (s *PullSpool) Deleted(table, id string) error {
	if s.err != nil {
		return s.err
	}
	if err := checkPullID(table, "deleted", id); err != nil {
		return s.fail(err)
	}
	t, err := s.table(table)
	if err != nil {
		return s.fail(err)
	}
	l := &t.lists[pullLists["deleted"]]
	s.e.buf = appendString(l.separator(s.e.buf[:0]), id)
	return s.add(l)
}

// Spilled is the number of bytes moved to a spill file so far.
func (s *PullSpool) Spilled() int64 { return s.spilled }

// Close writes the document with the timestamp, which must be
// positive, to w and releases the spill file. An error wrapping
// ErrSpoolRelease comes after the whole document was written: only the
// release failed.
func (s *PullSpool) Close(timestamp int64) error {
	err := s.err
	switch {
	case err != nil:
	case timestamp <= 0:
		err = fmt.Errorf("%w: pull response timestamp must be > 0, got %d", ErrInvalidTimestamp, timestamp)
	default:
		err = s.write(timestamp)
	}
	s.err = err
	if err == nil {
		s.err = errSpoolClosed
	}
	rerr := s.release()
	switch {
	case rerr == nil:
		return err
	case err == nil:
		return rerr
	}
	return errors.Join(err, rerr)
}

// Abort releases the spill file without writing anything; the spool
// takes nothing more. It returns an error wrapping ErrSpoolRelease when
// the release fails.
func (s *PullSpool) Abort() error {
	if s.err == nil {
		s.err = errSpoolClosed
	}
	return s.release()
}

func (s *PullSpool) fail(err error) error {
	s.err = err
	return err
}

// table returns the spool of a table, starting it at its first row.
func (s *PullSpool) table(name string) (*spoolTable, error) {
	if t, ok := s.tables[name]; ok {
		return t, nil
	}
	ot, err := s.o.outTable(name)
	if err != nil {
		return nil, err
	}
	t := &spoolTable{ot: ot}
	s.tables[name] = t
	s.order = append(s.order, t)
	return t, nil
}

// separator appends what goes before one more element of the list.
func (l *spoolList) separator(b []byte) []byte {
	if l.n > 0 {
		return append(b, ',')
	}
	return b
}

// add appends the element encoded in s.e.buf to l, and spills every
// list once the spool is over its bound.
func (s *PullSpool) add(l *spoolList) error {
	elem := s.e.buf
	k := len(l.chunks) - 1
	if k < 0 || len(l.chunks[k])+len(elem) > cap(l.chunks[k]) {
		size := max(l.next, minChunk)
		l.next = min(2*size, maxChunk)
		l.chunks = append(l.chunks, make([]byte, 0, max(size, len(elem))))
		k++
		s.mem += cap(l.chunks[k])
	}
	l.chunks[k] = append(l.chunks[k], elem...)
	l.n++
	if s.mem <= s.so.MaxMemory {
		return nil
	}
	if err := s.spill(); err != nil {
		return s.fail(err)
	}
	return nil
}

// spill moves every list's chunks to the end of the spill file.
func (s *PullSpool) spill() error {
	if s.file == nil {
		f, err := s.create()
		if err != nil {
			return fmt.Errorf("codec: pull spool: creating the spill file: %w", err)
		}
		s.file = f
	}
	for _, t := range s.order {
		for i := range t.lists {
			l := &t.lists[i]
			for _, c := range l.chunks {
				n, err := s.file.Write(c)
				if err != nil {
					return fmt.Errorf("codec: pull spool: writing the spill file: %w", err)
				}
				if k := len(l.runs) - 1; k >= 0 && l.runs[k].off+l.runs[k].n == s.size {
					l.runs[k].n += int64(n)
				} else {
					l.runs = append(l.runs, spillRun{s.size, int64(n)})
				}
				s.size += int64(n)
				s.spilled += int64(n)
			}
			l.chunks = nil
		}
	}
	s.mem = 0
	return nil
}

func (s *PullSpool) create() (SpillFile, error) {
	if s.so.Create != nil {
		return s.so.Create()
	}
	f, err := os.CreateTemp(s.so.Dir, "clinicsync-pull-*.spool")
	if err != nil {
		return nil, err
	}
	return tempFile{f}, nil
}

// tempFile is a spill file on disk, removed when closed.
type tempFile struct{ *os.File }

func (f tempFile) Close() error {
	err := f.File.Close()
	if rerr := os.Remove(f.Name()); err == nil {
		err = rerr
	}
	return err
}

// release closes the spill file and drops the chunks.
func (s *PullSpool) release() error {
	s.tables, s.order, s.mem = nil, nil, 0
	if s.file == nil {
		return nil
	}
	f := s.file
	s.file = nil
	if err := f.Close(); err != nil {
		return fmt.Errorf("%w: %w", ErrSpoolRelease, err)
	}
	return nil
}

// write writes the document to w.
func (s *PullSpool) write(timestamp int64) error {
	tables := slices.Clone(s.order)
	slices.SortFunc(tables, func(a, b *spoolTable) int { return strings.Compare(a.ot.key, b.ot.key) })
	e := newEncoder(s.w, s.o)
	e.buf = append(e.buf, `{"changes":{`...)
	for i, t := range tables {
		if i > 0 {
			e.buf = append(e.buf, ',')
		}
		e.buf = appendString(e.buf, t.ot.key)
		for j, head := range []string{`:{"created":[`, `],"updated":[`, `],"deleted":[`} {
			e.buf = append(e.buf, head...)
			if err := s.copyList(e, &t.lists[j]); err != nil {
				return err
			}
		}
		e.buf = append(e.buf, `]}`...)
	}
	e.buf = append(e.buf, `},"timestamp":`...)
	e.buf = strconv.AppendInt(e.buf, timestamp, 10)
	e.buf = append(e.buf, `,"success":true}`...)
	return e.finish()
}

// copyList writes a list's elements: its runs in the spill file, then
// its chunks, which it frees.
func (s *PullSpool) copyList(e *encoder, l *spoolList) error {
	if err := e.flush(); err != nil {
		return err
	}
	for _, r := range l.runs {
		if _, err := io.Copy(e.w, io.NewSectionReader(s.file, r.off, r.n)); err != nil {
			return fmt.Errorf("codec: pull spool: copying the spill file to the response: %w", err)
		}
	}
	for i, c := range l.chunks {
		if _, err := e.w.Write(c); err != nil {
			return fmt.Errorf("codec: writing JSON: %w", err)
		}
		l.chunks[i] = nil
	}
	l.chunks = nil
	return nil
}
