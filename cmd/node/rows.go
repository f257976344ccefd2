package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"strings"

	"github.com/clinicsync/clinicsync/actors"
	"github.com/clinicsync/clinicsync/codec"
	"github.com/clinicsync/clinicsync/kv"
)

// cmdPut: node put --data DIR --table T [--id ID] COL=VALUE ...
func cmdPut(e *env, name string, args []string) error {
	f := e.flags(name)
	table := f.String("table", "", "the table")
	id := f.String("id", "", "the row `id` (default: a new UUID)")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if err := f.require("table", *table); err != nil {
		return err
	}
	if len(pos) == 0 {
		return usageErr(name, "nothing to write: give COL=VALUE arguments")
	}
	text := make(map[string]string, len(pos))
	for _, a := range pos {
		col, val, ok := strings.Cut(a, "=")
		if !ok || col == "" {
			return usageErr(name, "argument %q is not COL=VALUE", a)
		}
		if _, dup := text[col]; dup {
			return usageErr(name, "column %q given twice", col)
		}
		text[col] = val
	}
	var rec kv.Record
	err = f.withNode(func(n *actors.Node) (err error) {
		rec, err = n.Put(*table, *id, text)
		return err
	})
	if err != nil {
		return err
	}
	if f.json {
		return writeJSON(e.out, struct {
			ID     string `json:"id"`
			Status string `json:"_status"`
		}{rec.ID, rec.Status.String()})
	}
	return writePairs(e.out, [][2]string{{"id", rec.ID}, {"_status", rec.Status.String()}})
}

// cmdDelete: node delete --data DIR --table T --id ID
func cmdDelete(e *env, name string, args []string) error {
	f := e.flags(name)
	table := f.String("table", "", "the table")
	id := f.String("id", "", "the row `id`")
	err := f.parseAll(args, "table", "id")
	if err != nil {
		return err
	}
	err = f.withNode(func(n *actors.Node) error { return n.Delete(*table, *id) })
	if err != nil {
		return err
	}
	if f.json {
		return writeJSON(e.out, struct {
			ID string `json:"id"`
		}{*id})
	}
	return writePairs(e.out, [][2]string{{"id", *id}, {"_status", kv.Deleted.String()}})
}

// cmdRows: node rows --data DIR --table T [--id ID]
//
// A table is read and printed a page at a time (rowsPage rows, each
// page its own read transaction), so a node serving the command holds
// one page, whatever the table's size, and the client prints as the
// pages come.
func cmdRows(e *env, name string, args []string) error {
	f := e.flags(name)
	table := f.String("table", "", "the table")
	id := f.String("id", "", "just this row `id`")
	err := f.parseAll(args, "table")
	if err != nil {
		return err
	}
	return f.withNode(func(n *actors.Node) error {
		if *id != "" {
			rows, err := n.Rows(*table, *id)
			if err != nil {
				return err
			}
			return printRows(e.out, f.json, func(yield func([]kv.Record) error) error { return yield(rows) })
		}
		return printRows(e.out, f.json, func(yield func([]kv.Record) error) error {
			after := ""
			for {
				page, more, err := n.Store().RowsPage(*table, after, rowsPage)
				if err != nil {
					return err
				}
				if rowsPageRead != nil {
					rowsPageRead(page)
				}
				if err := yield(page); err != nil {
					return err
				}
				if !more || len(page) == 0 {
					return nil
				}
				if err := e.ctx.Err(); err != nil {
					return err
				}
				after = page[len(page)-1].ID
			}
		})
	})
}

// rowsPage is how many rows `rows` reads at a time.
var rowsPage = 1000

// rowsPageRead, when set (by tests), is called with each page `rows`
// reads, before it is printed.
var rowsPageRead func(page []kv.Record)

// printRows prints the pages that each yields, each as it comes: rows
// as blocks of aligned pairs separated by blank lines ("(no rows)" for
// none), or with asJSON one JSON document, {"rows":[...]}, on one line.
// Nothing is printed before the first page, so that a failure to read
// it prints nothing.
func printRows(out io.Writer, asJSON bool, each func(yield func([]kv.Record) error) error) error {
	w := bufio.NewWriterSize(out, 64<<10)
	n := 0
	err := each(func(page []kv.Record) error {
		for _, r := range page {
			if asJSON {
				obj, err := rowJSON(r)
				if err != nil {
					return err
				}
				if n == 0 {
					w.WriteString(`{"rows":[`)
				} else {
					w.WriteByte(',')
				}
				w.Write(obj)
			} else {
				if n > 0 {
					w.WriteByte('\n')
				}
				pairs := [][2]string{{"id", r.ID}, {"_status", rowStatus(r)}, {"_changed", strings.Join(r.Changed, ",")}}
				for _, col := range r.Columns() {
					pairs = append(pairs, [2]string{col, r.Cols[col].String()})
				}
				if err := writePairs(w, pairs); err != nil {
					return err
				}
			}
			n++
		}
		return w.Flush() // the page goes out before the next is read
	})
	if err != nil {
		return err
	}
	switch {
	case asJSON && n == 0:
		w.WriteString(`{"rows":[]}` + "\n")
	case asJSON:
		w.WriteString("]}\n")
	case n == 0:
		w.WriteString("(no rows)\n")
	}
	return w.Flush()
}

// rowStatus is a row's _status as shown: a tombstone is "deleted" even
// after its delete was pushed (serving nodes keep synced tombstones).
func rowStatus(r kv.Record) string {
	if r.Deleted {
		return kv.Deleted.String()
	}
	return r.Status.String()
}

// rowJSON renders a row as a JSON object: id, its columns in name
// order, _status and _changed (WatermelonDB's comma-separated list).
// Numbers and bools are JSON numbers and bools, strings and JSON
// columns are strings (a JSON column's text), null is null.
func rowJSON(r kv.Record) (json.RawMessage, error) {
	var b bytes.Buffer
	field := func(key string, v any) error {
		if b.Len() > 0 {
			b.WriteByte(',')
		} else {
			b.WriteByte('{')
		}
		k, err := marshal(key)
		if err != nil {
			return err
		}
		val, err := marshal(v)
		if err != nil {
			return err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(val)
		return nil
	}
	if err := field("id", r.ID); err != nil {
		return nil, err
	}
	for _, col := range r.Columns() {
		if err := field(col, jsonValue(r.Cols[col])); err != nil {
			return nil, err
		}
	}
	if err := field("_status", rowStatus(r)); err != nil {
		return nil, err
	}
	if err := field("_changed", strings.Join(r.Changed, ",")); err != nil {
		return nil, err
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// jsonValue is the Go value a column value is encoded from.
func jsonValue(v codec.Value) any {
	switch v.Kind {
	case codec.KindString, codec.KindJSON:
		return v.Str
	case codec.KindNumber:
		return v.Num
	case codec.KindBool:
		return v.Bool
	}
	return nil
}

// marshal encodes v as JSON without HTML escaping.
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}
