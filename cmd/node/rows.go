package main

import (
	"bytes"
	"encoding/json"
	"fmt"
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
func cmdRows(e *env, name string, args []string) error {
	f := e.flags(name)
	table := f.String("table", "", "the table")
	id := f.String("id", "", "just this row `id`")
	err := f.parseAll(args, "table")
	if err != nil {
		return err
	}
	var rows []kv.Record
	err = f.withNode(func(n *actors.Node) (err error) {
		rows, err = n.Rows(*table, *id)
		return err
	})
	if err != nil {
		return err
	}
	if f.json {
		objs := make([]json.RawMessage, 0, len(rows))
		for _, r := range rows {
			obj, err := rowJSON(r)
			if err != nil {
				return err
			}
			objs = append(objs, obj)
		}
		return writeJSON(e.out, struct {
			Rows []json.RawMessage `json:"rows"`
		}{objs})
	}
	if len(rows) == 0 {
		_, err := fmt.Fprintln(e.out, "(no rows)")
		return err
	}
	for i, r := range rows {
		if i > 0 {
			if _, err := fmt.Fprintln(e.out); err != nil {
				return err
			}
		}
		pairs := [][2]string{{"id", r.ID}, {"_status", rowStatus(r)}, {"_changed", strings.Join(r.Changed, ",")}}
		for _, col := range r.Columns() {
			pairs = append(pairs, [2]string{col, r.Cols[col].String()})
		}
		if err := writePairs(e.out, pairs); err != nil {
			return err
		}
	}
	return nil
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
