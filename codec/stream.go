package codec

import (
	"fmt"
	"io"
	"strconv"

	"github.com/clinicsync/clinicsync/codec/schema"
)

// PullWriter streams a pull response, {"changes":{...},"timestamp":N,
// "success":true}, table by table and row by row, so that a server never
// holds a whole pull in memory. It writes what EncodePullResponse writes
// for the same changeset (same value typing, no _status or _changed,
// created, updated and deleted in every table written), except that a
// table given no row at all is left out. Within a table the rows must
// come list by list: created, then updated, then deleted.
//
// It does not look for an id repeated within a table (that would need
// every id in memory): the caller guarantees each row once, which a
// walk of the cursor index does. The first error sticks: every later
// call returns it, and w may hold a partial document.
type PullWriter struct {
	e     *encoder
	cur   outTable
	have  bool   // a table was started with Table
	open  bool   // its header is written
	list  string // the list being written ("" before the first row)
	n     int    // rows written in that list
	comma bool   // a table was written before
	err   error
}

// list order within a table.
var pullLists = map[string]int{"created": 0, "updated": 1, "deleted": 2}

// NewPullWriter starts a pull response on w.
func NewPullWriter(w io.Writer, o Options) *PullWriter {
	p := &PullWriter{e: newEncoder(w, o)}
	p.e.buf = append(p.e.buf, `{"changes":{`...)
	return p
}

// Table ends the current table and starts the named one (a mobile
// name). Tables come out in the order given; nothing is written for a
// table until its first row.
func (p *PullWriter) Table(name string) error {
	if p.err != nil {
		return p.err
	}
	if err := p.endTable(); err != nil {
		return p.fail(err)
	}
	ot := outTable{key: name, name: name}
	if p.e.o.Catalog != nil {
		if t, ok := p.e.o.Catalog.Table(name); ok {
			ot.t = t
			if p.e.o.ServerNames {
				ot.key = t.ServerName
			}
		}
	}
	if ot.t == nil {
		if !schema.ValidName(name) {
			return p.fail(fmt.Errorf("%w: invalid table name %q", ErrUnknownTable, shorten(name)))
		}
		if !p.e.o.KeepUnknownTables {
			return p.fail(fmt.Errorf("%w %q", ErrUnknownTable, name))
		}
	}
	p.cur, p.have, p.open, p.list, p.n = ot, true, false, "", 0
	return nil
}

// Row writes a record of the current table in list "created" or
// "updated".
func (p *PullWriter) Row(list string, r Row) error {
	if p.err != nil {
		return p.err
	}
	if list != "created" && list != "updated" {
		return p.fail(fmt.Errorf("%w: %s/%s: rows go in created or updated, not %q", ErrMalformed, p.cur.name, r.ID, list))
	}
	if !schema.ValidID(r.ID) {
		return p.fail(fmt.Errorf("%w: %s.%s: %q", ErrInvalidID, p.cur.name, list, shorten(r.ID)))
	}
	if err := p.enter(list); err != nil {
		return p.fail(err)
	}
	if err := p.e.row(p.cur, r, list); err != nil {
		return p.fail(err)
	}
	return p.flush()
}

// Deleted writes the id of a deleted record of the current table.
func (p *PullWriter) Deleted(id string) error {
	if p.err != nil {
		return p.err
	}
	if !schema.ValidID(id) {
		return p.fail(fmt.Errorf("%w: %s.deleted: %q", ErrInvalidID, p.cur.name, shorten(id)))
	}
	if err := p.enter("deleted"); err != nil {
		return p.fail(err)
	}
	p.e.buf = appendString(p.e.buf, id)
	return p.flush()
}

// Close ends the document with the timestamp, which must be positive,
// and flushes everything to w.
func (p *PullWriter) Close(timestamp int64) error {
	if p.err != nil {
		return p.err
	}
	if timestamp <= 0 {
		return p.fail(fmt.Errorf("%w: pull response timestamp must be > 0, got %d", ErrInvalidTimestamp, timestamp))
	}
	if err := p.endTable(); err != nil {
		return p.fail(err)
	}
	p.e.buf = append(p.e.buf, `},"timestamp":`...)
	p.e.buf = strconv.AppendInt(p.e.buf, timestamp, 10)
	p.e.buf = append(p.e.buf, `,"success":true}`...)
	if err := p.e.finish(); err != nil {
		return p.fail(err)
	}
	p.err = fmt.Errorf("%w: pull writer is closed", ErrMalformed)
	return nil
}

func (p *PullWriter) fail(err error) error {
	p.err = err
	return err
}

func (p *PullWriter) flush() error {
	if err := p.e.flush(); err != nil {
		return p.fail(err)
	}
	return nil
}

// enter positions the output inside list of the current table, writing
// the table's header and the empty lists before list as needed, and a
// separator when list already holds an element.
func (p *PullWriter) enter(list string) error {
	if !p.have {
		return fmt.Errorf("%w: a row before any table", ErrMalformed)
	}
	want := pullLists[list]
	if !p.open {
		if p.comma {
			p.e.buf = append(p.e.buf, ',')
		}
		p.comma, p.open = true, true
		p.e.buf = appendString(p.e.buf, p.cur.key)
		p.e.buf = append(p.e.buf, `:{"created":[`...)
		p.list, p.n = "created", 0
	}
	if have := pullLists[p.list]; want < have {
		return fmt.Errorf("%w: table %s: %s after %s (want created, updated, deleted in that order)", ErrMalformed, p.cur.name, list, p.list)
	}
	for p.list != list {
		p.next()
	}
	if p.n > 0 {
		p.e.buf = append(p.e.buf, ',')
	}
	p.n++
	return nil
}

// next closes the current list and opens the following one.
func (p *PullWriter) next() {
	switch p.list {
	case "created":
		p.e.buf = append(p.e.buf, `],"updated":[`...)
		p.list = "updated"
	case "updated":
		p.e.buf = append(p.e.buf, `],"deleted":[`...)
		p.list = "deleted"
	}
	p.n = 0
}

func (p *PullWriter) endTable() error {
	if !p.open {
		p.have = false
		return nil
	}
	for p.list != "deleted" {
		p.next()
	}
	p.e.buf = append(p.e.buf, `]}`...)
	p.have, p.open = false, false
	return p.e.flush()
}
