package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/clinicsync/clinicsync/actors"
	"github.com/clinicsync/clinicsync/codec"
	"github.com/clinicsync/clinicsync/kv"
)

// cmdConflicts: node conflicts --data DIR [--table T] [--id ID]
func cmdConflicts(e *env, name string, args []string) error {
	f := e.flags(name)
	table := f.String("table", "", "only this table")
	id := f.String("id", "", "only this row `id`")
	if err := f.parseAll(args); err != nil {
		return err
	}
	var log []kv.Conflict
	err := f.withNode(func(n *actors.Node) (err error) {
		log, err = n.Conflicts(*table, *id)
		return err
	})
	if err != nil {
		return err
	}
	if f.json {
		type version struct {
			WallMs  int64  `json:"wall_ms"`
			Counter uint32 `json:"counter"`
			Node    string `json:"node"`
		}
		type entry struct {
			At      int64   `json:"at"` // ms
			Table   string  `json:"table"`
			ID      string  `json:"id"`
			Column  string  `json:"column"`
			Value   any     `json:"value"` // the losing value
			Version version `json:"version"`
			Winner  version `json:"winner"`
		}
		ver := func(v codec.Version) version { return version{v.Wall, v.Counter, v.Node} }
		out := make([]entry, len(log))
		for i, c := range log {
			out[i] = entry{c.At, c.Table, c.ID, c.Column, jsonValue(c.Value), ver(c.Version), ver(c.Winner)}
		}
		return writeJSON(e.out, struct {
			Conflicts []entry `json:"conflicts"`
		}{out})
	}
	if len(log) == 0 {
		_, err := fmt.Fprintln(e.out, "(no conflicts)")
		return err
	}
	var b strings.Builder
	for _, c := range log {
		fmt.Fprintf(&b, "%s  %s/%s %s=%s (%s) lost to %s\n", time.UnixMilli(c.At).UTC().Format(time.RFC3339),
			c.Table, c.ID, c.Column, c.Value, c.Version, c.Winner)
	}
	_, err = fmt.Fprint(e.out, b.String())
	return err
}
