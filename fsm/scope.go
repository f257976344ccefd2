package fsm

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/clinicsync/clinicsync/codec"
	"github.com/clinicsync/clinicsync/codec/schema"
)

// Scope is a caller's clinic scope: the rows it may read (Serve) and
// write (Push.Merge). The rule, for a caller with clinics:
//   - a row with a clinic of its own (its table's ClinicColumn holds a
//     value; "id" for clinics) is in scope when that clinic is one of
//     the caller's; a JSON list (event_forms.clinic_ids) when it
//     shares one with them or is empty;
//   - a row without one (no clinic column, or a null one) of a table
//     with links (schema.Table.Follows) follows its parents: it is in
//     scope when at least one parent it names (a non-empty link column)
//     is stored here and in scope by its own clinic, and no stored
//     parent it names is out of scope. A deleted parent counts by the
//     clinic its tombstone keeps (kv keeps it); a missing one, or a
//     tombstone without a clinic, is passed over, so a row none of
//     whose parents is known here is out of scope;
//   - any other row (drug_catalogue, app_config; a patient or a form
//     with a null clinic) is in every scope.
//
// A caller without clinics is unscoped: every row is in scope.
//
// A row is judged on its parents as they are when it is read or
// written; a parent that later moves to another clinic does not
// re-serve its children.
type Scope struct {
	Catalog *schema.Catalog
	Clinics []string // empty: unscoped
	// Lookup reads parents; nil finds none.
	Lookup codec.Lookup
}

// Check returns why row r of table t is out of the scope, or "" when it
// is in. The reason tells a parent that is missing from one that is out
// of scope in the same words, so that it reveals nothing of rows out of
// scope. An error is a failed read.
func (s Scope) Check(t *schema.Table, r codec.Row) (string, error) { return s.check(t, r, true) }

// Names returns why what row r of table t names (its clinic, the
// parents it links to) is out of the scope, or "" when nothing is.
// Unlike Check, a clinic or a parent the row leaves out, and a parent
// not stored here, are no reason: it judges what a caller sent, which
// may be part of a row.
func (s Scope) Names(t *schema.Table, r codec.Row) (string, error) { return s.check(t, r, false) }

// check is Check (whole) or Names.
func (s Scope) check(t *schema.Table, r codec.Row, whole bool) (string, error) {
	if len(s.Clinics) == 0 {
		return "", nil
	}
	if v, ok := clinicOf(t, r); ok {
		if clinicIn(v, s.Clinics) {
			return "", nil
		}
		return fmt.Sprintf("%s %s is not one of the caller's clinics", t.ClinicColumn, v), nil
	}
	if len(t.Follows) == 0 {
		return "", nil
	}
	var named []schema.Link
	in := false
	for _, l := range t.Follows {
		v := r.Cols[l.Column]
		if v.Kind != codec.KindString || v.Str == "" {
			continue
		}
		named = append(named, l)
		if s.Lookup == nil {
			continue
		}
		p, err := s.Lookup(l.Table, v.Str)
		if err != nil {
			return "", fmt.Errorf("fsm: reading %s/%s, the parent %s/%s names: %w", l.Table, v.Str, t.Name, r.ID, err)
		}
		if p == nil {
			continue
		}
		pt, ok := s.Catalog.Table(l.Table)
		if !ok {
			panic(fmt.Sprintf("fsm: table %s follows %s, which is not in the scope's catalog", t.Name, l.Table))
		}
		c, own := clinicOf(pt, p.Row)
		switch {
		case p.Deleted && !own:
			continue // a tombstone that kept no clinic
		case own && !clinicIn(c, s.Clinics):
			return noParent(l, v.Str), nil
		}
		in = true
	}
	switch {
	case in || !whole:
		return "", nil
	case len(named) == 0:
		cols := make([]string, len(t.Follows))
		for i, l := range t.Follows {
			cols[i] = l.Column
		}
		return fmt.Sprintf("no parent is named (%s empty)", strings.Join(cols, ", ")), nil
	}
	return noParent(named[0], r.Cols[named[0].Column].Str), nil
}

func noParent(l schema.Link, id string) string {
	return fmt.Sprintf("%s %q names no %s row of the caller's clinics", l.Column, id, l.Table)
}

// clinicOf returns a row's own clinic, and whether it has one (its
// table has a clinic column and it holds a value).
func clinicOf(t *schema.Table, r codec.Row) (codec.Value, bool) {
	switch t.ClinicColumn {
	case "":
		return codec.Value{}, false
	case "id":
		return codec.String(r.ID), true
	}
	v := r.Cols[t.ClinicColumn]
	return v, !v.IsNull()
}

// clinicIn reports whether a clinic value names one of the clinics: a
// string equal to one, or a JSON array sharing one with them or empty
// (every clinic).
func clinicIn(v codec.Value, clinics []string) bool {
	switch v.Kind {
	case codec.KindString:
		return slices.Contains(clinics, v.Str)
	case codec.KindJSON:
		var ids []string
		if json.Unmarshal([]byte(v.Str), &ids) != nil {
			return false
		}
		if len(ids) == 0 {
			return true
		}
		for _, id := range ids {
			if slices.Contains(clinics, id) {
				return true
			}
		}
	}
	return false
}

// memo caches a Lookup's answers for the life of one call (a page of a
// pull), so that the parent of many rows is read once.
func memo(get codec.Lookup) codec.Lookup {
	if get == nil {
		return nil
	}
	seen := map[string]*codec.Record{}
	return func(table, id string) (*codec.Record, error) {
		k := table + "\x00" + id
		if r, ok := seen[k]; ok {
			return r, nil
		}
		r, err := get(table, id)
		if err == nil {
			seen[k] = r
		}
		return r, err
	}
}
