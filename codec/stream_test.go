package codec

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/clinicsync/clinicsync/codec/schema"
)

// streamChangeset writes cs through a PullWriter, table by table in
// sorted key order, with the given extra empty tables.
func streamChangeset(t *testing.T, cs *Changeset, o Options, empty ...string) []byte {
	t.Helper()
	var buf bytes.Buffer
	p := NewPullWriter(&buf, o)
	for _, e := range empty {
		if err := p.Table(e); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range cs.TableNames() {
		tc := cs.Tables[name]
		if err := p.Table(name); err != nil {
			t.Fatal(err)
		}
		for _, r := range tc.Created {
			if err := p.Row("created", r); err != nil {
				t.Fatal(err)
			}
		}
		for _, r := range tc.Updated {
			if err := p.Row("updated", r); err != nil {
				t.Fatal(err)
			}
		}
		for _, id := range tc.Deleted {
			if err := p.Deleted(id); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := p.Close(cs.Timestamp); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestPullWriterMatchesEncoder: streaming a changeset writes the bytes
// EncodePullResponse writes, for every table of the catalog and for
// tables with only some of their lists, and tables without rows are
// left out.
func TestPullWriterMatchesEncoder(t *testing.T) {
	cat := schema.Default()
	for _, secret := range []bool{false, true} {
		o := Options{Catalog: cat, IncludeSecret: secret}
		cs := NewChangeset()
		cs.Timestamp = 1705314600999
		for _, name := range cat.Names() {
			tbl, _ := cat.Table(name)
			tc := sampleChangeset(tbl).Tables[name]
			switch len(name) % 4 { // vary which lists are present
			case 1:
				tc.Created = nil
			case 2:
				tc.Updated, tc.Deleted = nil, nil
			case 3:
				tc.Created, tc.Updated = nil, nil
			}
			*cs.Table(name) = *tc
		}
		var want bytes.Buffer
		if err := EncodePullResponse(&want, cs, o); err != nil {
			t.Fatal(err)
		}
		got := streamChangeset(t, cs, o, "app_config")
		if !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("secret=%v: stream differs from EncodePullResponse:\n got %s\nwant %s", secret, got, want.Bytes())
		}
		back, rep, err := DecodePullResponse(got, Options{Catalog: cat})
		if err != nil || len(rep.Rejected) != 0 {
			t.Fatalf("decoding the stream: %v %v", err, rep.Rejected)
		}
		if back.Count() != cs.Count() {
			t.Errorf("decoded %d records, wrote %d", back.Count(), cs.Count())
		}
	}

	// Nothing at all: an empty changes object.
	var buf bytes.Buffer
	p := NewPullWriter(&buf, Options{Catalog: cat})
	p.Table("patients")
	if err := p.Close(7); err != nil {
		t.Fatal(err)
	}
	if got := buf.String(); got != `{"changes":{},"timestamp":7,"success":true}` {
		t.Errorf("empty stream: %s", got)
	}
}

func TestPullWriterErrors(t *testing.T) {
	cat := schema.Default()
	o := Options{Catalog: cat}
	row := sampleRow(func() *schema.Table { t, _ := cat.Table("patients"); return t }(), "p1", 0)
	for _, c := range []struct {
		name string
		want error
		fn   func(p *PullWriter) error
	}{
		{"row before table", ErrMalformed, func(p *PullWriter) error { return p.Row("created", row) }},
		{"unknown table", ErrUnknownTable, func(p *PullWriter) error { return p.Table("nope") }},
		{"bad list", ErrMalformed, func(p *PullWriter) error { p.Table("patients"); return p.Row("deleted", row) }},
		{"lists out of order", ErrMalformed, func(p *PullWriter) error {
			p.Table("patients")
			p.Deleted("x")
			return p.Row("created", row)
		}},
		{"bad id", ErrInvalidID, func(p *PullWriter) error { p.Table("patients"); return p.Deleted("a/b") }},
		{"zero timestamp", ErrInvalidTimestamp, func(p *PullWriter) error { return p.Close(0) }},
		{"sticky", ErrUnknownTable, func(p *PullWriter) error { p.Table("nope"); return p.Close(5) }},
	} {
		p := NewPullWriter(&bytes.Buffer{}, o)
		if err := c.fn(p); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	p := NewPullWriter(&failWriter{}, o)
	p.Table("patients")
	p.Row("created", row)
	if err := p.Close(5); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("write error: %v", err)
	}
}
