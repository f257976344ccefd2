package actors

// Bulk import: the rows of one table, one JSON object a line, loaded
// through the push path: each line is decoded and normalized by codec's
// JSON push decoder, as a record of the table's "created" list, and the
// rows go through fsm.Push's merge into kv.Store.ApplyWith, one transaction
// per batch.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/clinicsync/clinicsync/codec"
	"github.com/clinicsync/clinicsync/fsm"
	"github.com/clinicsync/clinicsync/kv"
)

const (
	// DefaultImportBatch is how many rows an import applies in one
	// transaction.
	DefaultImportBatch = 10_000
	// DefaultImportBatchBytes bounds the input bytes of one batch, so
	// that a file of large rows still holds only so much in memory.
	DefaultImportBatchBytes = 32 << 20
	// MaxImportLine bounds one line of an import, in bytes: a longer
	// line is refused (and skipped), not read into memory.
	MaxImportLine = 16 << 20
	// DefaultImportRejectedRows is how many refused rows an
	// ImportResult lists.
	DefaultImportRejectedRows = 20
)

// ImportOptions tune Import. The zero value is the default.
type ImportOptions struct {
	// BatchRows bounds the rows applied in one transaction (0:
	// DefaultImportBatch); BatchBytes bounds the input bytes of a batch
	// (0: DefaultImportBatchBytes).
	BatchRows  int
	BatchBytes int
	// MaxRejectedRows bounds ImportResult.RejectedRows (0:
	// DefaultImportRejectedRows; negative: none listed). The count of
	// refused rows is always whole.
	MaxRejectedRows int
	// Progress, when set, is called after each batch is committed, with
	// the rows done so far (imported or refused).
	Progress func(rows int)
}

// ImportRejection is one refused line.
type ImportRejection struct {
	Line   int    // its line number in the input, from 1
	ID     string // the row's id; "" when the line has none (not JSON, not an object, no id)
	Reason string
}

// ImportResult is what an import did.
type ImportResult struct {
	// Imported counts the rows accepted: written, or already stored
	// with the same values.
	Imported int
	// Rejected counts the lines refused; RejectedRows lists the first
	// of them (see ImportOptions.MaxRejectedRows), in line order.
	Rejected     int
	RejectedRows []ImportRejection
	// Unknown counts the columns kept that the catalog does not know,
	// by "table.column" (a push keeps them too, for newer clients).
	Unknown map[string]int
}

// Import loads rows of a table from r, one JSON object a line, as a
// WatermelonDB client pushes a row in "created": an id and the
// columns, values as the JSON sync protocol carries them. Blank lines
// are skipped.
//
// Each line is validated and normalized as a push is (codec's JSON
// decoder, then fsm.Push's merge rules, with this node as the caller);
// a line they refuse, or that is not one JSON object with an id, is
// counted and listed with its line number and reason, and the import
// goes on. Rows are applied in batches of ImportOptions.BatchRows, one
// transaction each, sorted by id within the batch; a row whose id is
// already stored is merged into it as a push of it would be, and an id
// that occurs twice in the input is applied in line order. Memory is
// bounded by a batch, whatever the input's size.
//
// On a cloud the rows are synced (served to devices as created); on a
// hub or a device they are pending (created) for the node's upstream,
// as the rows a device pushes to a hub. Only the tables a push takes
// are imported (fsm.Push: a hub's tables on a cloud or a hub, a device's
// on a device); a hub's imported rows must be in its clinics.
//
// An error (reading r, the store, ctx ending) stops the import: the
// batches committed before it stay, and the result counts them.
func (n *Node) Import(ctx context.Context, table string, r io.Reader, opts ImportOptions) (ImportResult, error) {
	cat := n.store.Catalog()
	if _, ok := cat.Table(table); !ok {
		return ImportResult{}, fmt.Errorf("%w %q", kv.ErrUnknownTable, table)
	}
	caller := fsm.Caller{ID: n.info.NodeID, Hub: n.info.Kind != KindMobile}
	if n.info.Kind == KindHub {
		caller.Clinics = slices.Clone(n.info.Clinics)
	}
	if tables := cat.PushTables(caller.Hub); !slices.Contains(tables, table) {
		return ImportResult{}, fmt.Errorf("%w: %s (a push to a %s takes %s)", ErrNotImportable, table, n.info.Kind, strings.Join(tables, ", "))
	}
	if opts.BatchRows <= 0 {
		opts.BatchRows = DefaultImportBatch
	}
	if opts.BatchBytes <= 0 {
		opts.BatchBytes = DefaultImportBatchBytes
	}
	if opts.MaxRejectedRows == 0 {
		opts.MaxRejectedRows = DefaultImportRejectedRows
	}
	im := &importer{n: n, table: table, caller: caller, opts: opts,
		lines:  newLineReader(r, MaxImportLine),
		decode: codec.Options{Catalog: cat, MaxValueBytes: kv.MaxValueBytes},
		prefix: []byte(`{"` + table + `":{"created":[`)}
	err := im.run(ctx)
	slices.SortFunc(im.res.RejectedRows, byLine)
	if len(im.res.RejectedRows) > max(opts.MaxRejectedRows, 0) {
		im.res.RejectedRows = im.res.RejectedRows[:max(opts.MaxRejectedRows, 0)]
	}
	if err != nil {
		return im.res, fmt.Errorf("actors: import %s: %w", table, err)
	}
	return im.res, nil
}

// importer is one run of Import. A batch goes through three stages:
// run reads its lines (into one buffer, reused), a decoder goroutine
// decodes them, and run applies the rows. Decoding a batch overlaps
// applying the one before, so about two batches of rows and one of
// lines are held.
type importer struct {
	n      *Node
	table  string
	caller fsm.Caller
	opts   ImportOptions
	lines  *lineReader
	decode codec.Options
	prefix []byte // a push body up to the record: {"<table>":{"created":[
	res    ImportResult

	body []byte // each line's body: the decoder goroutine's
}

// importRow is a decoded line waiting for its batch.
type importRow struct {
	line   int
	change codec.Change
}

// rawBatch is the lines of a batch, read, not yet decoded.
type rawBatch struct {
	buf   []byte
	lines []rawLine
}

type rawLine struct{ num, start, end int }

// decodedBatch is a batch decoded: its rows and its refused lines.
type decodedBatch struct {
	rows     []importRow
	rejected []ImportRejection
	unknown  map[string]int
}

func (im *importer) run(ctx context.Context) error {
	raws := make(chan *rawBatch)
	decoded := make(chan decodedBatch)
	go func() {
		defer close(decoded)
		for rb := range raws {
			decoded <- im.decodeBatch(rb)
		}
	}()
	defer func() {
		close(raws)
		for range decoded { // the decoder's batch under way, if any
		}
	}()
	rb := &rawBatch{}
	var carry []importRow // rows whose id an earlier row of their batch had
	var readErr error     // returned once the batches read before it are applied
	decoding, eof := false, false
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		var db decodedBatch
		if decoding {
			db, decoding = <-decoded, false
		}
		if !eof { // the decoder is idle (and done with rb): on to the next batch
			if eof, readErr = im.read(rb); readErr != nil {
				eof = true
			} else if len(rb.lines) > 0 {
				raws <- rb
				decoding = true
			}
		}
		for _, rj := range db.rejected {
			im.reject(rj)
		}
		for k, v := range db.unknown {
			if im.res.Unknown == nil {
				im.res.Unknown = map[string]int{}
			}
			im.res.Unknown[k] += v
		}
		// Rows held back from the batch before (their id occurred
		// earlier in it) go first, as their lines precede this batch's,
		// in transactions of their own until none is left; then this
		// batch, which may hold some back for the next round.
		for len(carry) > 0 {
			var err error
			if carry, err = im.apply(carry); err != nil {
				return err
			}
			im.progress()
		}
		if len(db.rows) > 0 {
			var err error
			if carry, err = im.apply(db.rows); err != nil {
				return err
			}
			im.progress()
		}
		if readErr != nil && !decoding {
			return readErr
		}
		if eof && !decoding && len(carry) == 0 {
			im.progress()
			return nil
		}
	}
}

// progress reports the rows done so far.
func (im *importer) progress() {
	if im.opts.Progress != nil {
		im.opts.Progress(im.res.Imported + im.res.Rejected)
	}
}

// read reads the lines of a batch into rb (up to BatchRows lines that
// are not blank, or BatchBytes), and reports the end of the input. A
// line too long is refused here.
func (im *importer) read(rb *rawBatch) (eof bool, err error) {
	rb.buf, rb.lines = rb.buf[:0], rb.lines[:0]
	for len(rb.lines) < im.opts.BatchRows && len(rb.buf) < im.opts.BatchBytes {
		line, num, err := im.lines.next()
		switch {
		case err == io.EOF:
			return true, nil
		case errors.Is(err, errLineTooLong):
			im.reject(ImportRejection{Line: num, Reason: err.Error()})
			continue
		case err != nil:
			return false, fmt.Errorf("reading line %d: %w", num, err)
		}
		if line = bytes.TrimSpace(line); len(line) > 0 {
			rb.lines = append(rb.lines, rawLine{num, len(rb.buf), len(rb.buf) + len(line)})
			rb.buf = append(rb.buf, line...)
		}
	}
	return false, nil
}

// decodeBatch decodes the lines of a batch.
func (im *importer) decodeBatch(rb *rawBatch) decodedBatch {
	db := decodedBatch{rows: make([]importRow, 0, len(rb.lines))}
	for _, l := range rb.lines {
		c, rj := im.decodeLine(rb.buf[l.start:l.end], l.num, &db.unknown)
		if rj != nil {
			db.rejected = append(db.rejected, *rj)
			continue
		}
		db.rows = append(db.rows, importRow{l.num, c})
	}
	return db
}

// decodeLine decodes one line as the only record of a push's created
// list of the table; the columns it keeps that the catalog does not
// know are counted in unknown.
func (im *importer) decodeLine(line []byte, num int, unknown *map[string]int) (codec.Change, *ImportRejection) {
	refuse := func(id, reason string) (codec.Change, *ImportRejection) {
		return codec.Change{}, &ImportRejection{Line: num, ID: id, Reason: reason}
	}
	// One JSON value, so that the line cannot close the list it is
	// spliced into and add rows or tables of its own.
	if !json.Valid(line) {
		err := json.Unmarshal(line, new(json.RawMessage))
		return refuse("", fmt.Sprintf("%v: %v", codec.ErrMalformed, err))
	}
	if line[0] != '{' {
		return refuse("", fmt.Sprintf("%v: a row must be a JSON object", codec.ErrWrongType))
	}
	im.body = append(append(append(im.body[:0], im.prefix...), line...), "]}}"...)
	cs, rep, err := codec.DecodeChanges(im.body, im.decode)
	where := im.table + ".created[0]: "
	switch {
	case errors.Is(err, codec.ErrMissingID):
		return refuse("", codec.ErrMissingID.Error())
	case err != nil:
		return refuse("", strings.Replace(err.Error(), where, "", 1))
	}
	for k, v := range rep.Unknown {
		if *unknown == nil {
			*unknown = map[string]int{}
		}
		(*unknown)[k] += v
	}
	if len(rep.Rejected) > 0 {
		rj := rep.Rejected[0]
		return refuse(rj.ID, strings.Replace(rj.Err.Error(), where, "", 1))
	}
	changes := fsm.Changes(cs)
	if len(changes) != 1 || changes[0].Table != im.table {
		panic(fmt.Sprintf("actors: import: one line of %s decoded as %d changes", im.table, len(changes)))
	}
	return changes[0], nil
}

// apply applies a batch in one transaction through the push merge,
// sorted by id. A row whose id an earlier row of the batch has is not
// applied: it is returned, for the next batch.
func (im *importer) apply(batch []importRow) (carry []importRow, err error) {
	slices.SortFunc(batch, func(a, b importRow) int {
		if c := strings.Compare(a.change.ID, b.change.ID); c != 0 {
			return c
		}
		return a.line - b.line
	})
	changes := make([]codec.Change, 0, len(batch))
	lines := make(map[string]int, len(batch))
	for i, r := range batch {
		if i > 0 && r.change.ID == batch[i-1].change.ID {
			carry = append(carry, r)
			continue
		}
		changes = append(changes, r.change)
		lines[r.change.ID] = r.line
	}
	now, err := im.n.store.Now()
	if err != nil {
		return nil, err
	}
	push := fsm.Push{Caller: im.caller, Policy: fsm.MergePolicy, Relay: im.n.info.Kind != KindCloud,
		Catalog: im.n.store.Catalog(), MaxValueBytes: kv.MaxValueBytes,
		Now: now, MaxAhead: kv.DefaultMaxDrift.Milliseconds(), NoReceipts: true}
	// The merge reads the parents (an event's patient) for the scope of
	// a node with clinics: imported before, or earlier in this batch.
	res, err := im.n.store.ApplyWith(kv.Batch{Changes: changes}, func(get kv.Lookup) kv.Merge { return push.MergeWith(get) })
	if err != nil {
		return nil, fmt.Errorf("applying a batch of %d rows (lines %d to %d): %w", len(changes), minLine(batch), maxLine(batch), err)
	}
	im.res.Imported += res.Written + res.Skipped + res.Purged
	for _, rj := range res.Rejected {
		im.reject(ImportRejection{Line: lines[rj.ID], ID: rj.ID, Reason: rj.Reason})
	}
	return carry, nil
}

// reject counts a refused line and keeps the first ones, by line.
func (im *importer) reject(rj ImportRejection) {
	im.res.Rejected++
	keep := max(im.opts.MaxRejectedRows, 0)
	if keep == 0 {
		return
	}
	im.res.RejectedRows = append(im.res.RejectedRows, rj)
	if len(im.res.RejectedRows) >= 2*keep { // trim now and then
		slices.SortFunc(im.res.RejectedRows, byLine)
		im.res.RejectedRows = slices.Clip(im.res.RejectedRows[:keep])
	}
}

func byLine(a, b ImportRejection) int { return a.Line - b.Line }

func minLine(rows []importRow) int {
	return slices.MinFunc(rows, func(a, b importRow) int { return a.line - b.line }).line
}

func maxLine(rows []importRow) int {
	return slices.MaxFunc(rows, func(a, b importRow) int { return a.line - b.line }).line
}

// errLineTooLong: an input line over MaxImportLine bytes.
var errLineTooLong = errors.New("line is over " + strconv.Itoa(MaxImportLine) + " bytes")

// lineReader reads lines of at most max bytes, reusing one buffer.
type lineReader struct {
	r   *bufio.Reader
	buf []byte
	max int
	num int // the last line's number
}

func newLineReader(r io.Reader, max int) *lineReader {
	return &lineReader{r: bufio.NewReaderSize(r, 64<<10), max: max}
}

// next returns the next line, without its newline, valid until the
// next call, and its number. A line over max bytes is read to its end
// and dropped: errLineTooLong. At the end of the input it returns
// io.EOF.
func (l *lineReader) next() ([]byte, int, error) {
	l.buf = l.buf[:0]
	read, long := false, false
	for {
		chunk, err := l.r.ReadSlice('\n')
		if len(chunk) > 0 && !read {
			read = true
			l.num++
		}
		if !long && len(l.buf)+len(chunk) > l.max+1 { // +1: the newline
			long, l.buf = true, l.buf[:0]
		}
		if !long {
			l.buf = append(l.buf, chunk...)
		}
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err == io.EOF && !read:
			return nil, l.num + 1, io.EOF
		case err != nil && err != io.EOF:
			if !read {
				return nil, l.num + 1, err
			}
			return nil, l.num, err
		case long:
			return nil, l.num, errLineTooLong
		}
		return bytes.TrimSuffix(l.buf, []byte("\n")), l.num, nil
	}
}
