package codec

// WatermelonDB / Hikma sync JSON ⇄ Changeset.
//
// The changes object, shared by pull responses and push bodies:
//
//	{"<table>": {"created": [record...], "updated": [record...], "deleted": ["id"...]}, ...}
//
// A record is {"id": "...", "<column>": value, ...}. Pushed records also
// carry "_status" (dropped) and "_changed" (a comma list: Row.Changed).
// Values are normalized per column type (normalize.go). Decoders read with
// a json.Decoder (numbers kept as literals until a column type decides),
// refuse duplicate keys and duplicate ids, and name the table, id and
// column in every error. Encoders are deterministic (tables sorted by the
// key written, rows in the order given, id first then columns sorted) and
// write row by row.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/clinicsync/clinicsync/codec/schema"
)

// DefaultMaxValueBytes bounds one string or JSON value when
// Options.MaxValueBytes is 0.
const DefaultMaxValueBytes = 1 << 20

// Options control the JSON decoders and encoders. The zero value decodes
// against an empty catalog (so every table is unknown): callers normally
// set Catalog to schema.Default().
type Options struct {
	// Catalog types the columns and names the known tables.
	Catalog *schema.Catalog
	// KeepUnknownTables decodes a table the catalog does not know
	// (schema-less: values keep their JSON kind) instead of failing.
	// The Hikma mobile pushes device-local tables (peers, event_logs)
	// too: callers filter by schema.Flow themselves.
	KeepUnknownTables bool
	// RejectUnknownColumns makes a column the catalog does not know an
	// error. By default it is kept with its JSON kind (objects and arrays
	// as JSON text) and counted in Report.Unknown. A column name that is
	// not schema.ValidName is always an error.
	RejectUnknownColumns bool
	// ServerNames says table keys are Hikma server names
	// (patient_registration_forms), for decoding and encoding. Changesets
	// are always keyed by mobile names.
	ServerNames bool
	// MaxValueBytes bounds one string or JSON value (0: DefaultMaxValueBytes;
	// negative: no limit). A longer value is an error naming table, id and
	// column.
	MaxValueBytes int
	// IncludeSecret makes the encoders write Secret columns
	// (users.hashed_password); by default they are omitted. Decoders
	// always keep them.
	IncludeSecret bool
}

func (o Options) maxValueBytes() int {
	switch {
	case o.MaxValueBytes == 0:
		return DefaultMaxValueBytes
	case o.MaxValueBytes < 0:
		return math.MaxInt
	}
	return o.MaxValueBytes
}

// lookup finds the table of a key. Hikma responses may use either name
// (devices and device_pin_codes have only a server name).
func (o Options) lookup(key string, eitherName bool) (*schema.Table, bool) {
	if o.Catalog == nil {
		return nil, false
	}
	if o.ServerNames {
		return o.Catalog.ServerTable(key)
	}
	t, ok := o.Catalog.Table(key)
	if !ok && eitherName {
		t, ok = o.Catalog.ServerTable(key)
	}
	return t, ok
}

// Report says what a decode did not take into the changeset as a
// known column.
type Report struct {
	// Rejected are the records refused because of their content (a value
	// that normalization rejects, a bad column name or _changed, a value
	// over the size limit), in body order. They are not in the changeset;
	// the rest of the body is. A push answers them as rejected ids (the
	// rows stay unsynced on the device); a pull must not count them as
	// applied.
	Rejected []Rejection
	// Unknown counts kept columns the catalog does not know, by
	// "table.column", and rows of kept unknown tables, by "table".
	Unknown map[string]int
}

// Rejection is one refused record: its table (mobile name) and id, and
// the error (wrapping ErrInvalidValue, ErrInvalidColumn, ErrTooLarge,
// ErrNonFinite or ErrUnknownColumn) that names table, id, column, value
// and reason.
type Rejection struct {
	Table, ID string
	Err       error
}

// Clean reports whether the decode took every record, with known columns only.
func (r Report) Clean() bool { return len(r.Rejected) == 0 && len(r.Unknown) == 0 }

func (r *Report) unknown(key string) {
	if r.Unknown == nil {
		r.Unknown = map[string]int{}
	}
	r.Unknown[key]++
}

// DecodeChanges decodes a changes object (a WatermelonDB pull's changes,
// or a Hikma push body).
func DecodeChanges(data []byte, o Options) (*Changeset, Report, error) {
	var rep Report
	d := newDecoder(data, o, &rep)
	cs := NewChangeset()
	if err := d.changes(cs); err != nil {
		return nil, rep, err
	}
	if err := d.end(); err != nil {
		return nil, rep, err
	}
	return cs, rep, nil
}

// DecodePush decodes a push body: either a bare changes object (what the
// Hikma mobile posts) or {"changes": {...}, "lastPulledAt": N} (the
// WatermelonDB pushChanges argument). lastPulledAt is 0 when absent or
// null. A body whose only key is "changes" is the wrapper unless its value
// looks like one table ({"created"|"updated"|"deleted": [...]}), in which
// case it is a table literally named "changes".
func DecodePush(data []byte, o Options) (*Changeset, int64, Report, error) {
	wrapped, changes, lpa, err := pushShape(data)
	if err != nil {
		return nil, 0, Report{}, err
	}
	if !wrapped {
		cs, rep, err := DecodeChanges(data, o)
		return cs, 0, rep, err
	}
	cs, rep, err := DecodeChanges(changes, o)
	if err != nil {
		return nil, 0, rep, err
	}
	var lastPulledAt int64
	if lpa != nil {
		if lastPulledAt, err = cursor(lpa, "lastPulledAt", false); err != nil {
			return nil, 0, rep, err
		}
	}
	return cs, lastPulledAt, rep, nil
}

// DecodePullResponse decodes {"changes": {...}, "timestamp": N, ...}.
// The timestamp must be a positive integer (WatermelonDB asserts it) and
// becomes Changeset.Timestamp; other keys (success, ...) are ignored.
func DecodePullResponse(data []byte, o Options) (*Changeset, Report, error) {
	var rep Report
	d := newDecoder(data, o, &rep)
	cs, err := d.pullResponse()
	return cs, rep, err
}

// EncodeChanges writes a changes object: every table present gets
// created, updated and deleted (Turbo login needs all three), values
// typed as the WatermelonDB schema expects (JSON columns as JSON-encoded
// strings, timestamps as integer ms, dates and decimals as strings),
// never _status or _changed. On error w may hold a partial document.
func EncodeChanges(w io.Writer, cs *Changeset, o Options) error {
	e := newEncoder(w, o)
	if err := e.changes(cs); err != nil {
		return err
	}
	return e.finish()
}

// EncodePullResponse writes {"changes":{...},"timestamp":N,"success":true}
// with N = cs.Timestamp, which must be positive.
func EncodePullResponse(w io.Writer, cs *Changeset, o Options) error {
	ts := int64(0)
	if cs != nil {
		ts = cs.Timestamp
	}
	if ts <= 0 {
		return fmt.Errorf("%w: pull response timestamp must be > 0, got %d", ErrInvalidTimestamp, ts)
	}
	e := newEncoder(w, o)
	e.buf = append(e.buf, `{"changes":`...)
	if err := e.changes(cs); err != nil {
		return err
	}
	e.buf = append(e.buf, `,"timestamp":`...)
	e.buf = strconv.AppendInt(e.buf, ts, 10)
	e.buf = append(e.buf, `,"success":true}`...)
	return e.finish()
}

// EncodePush writes {"changes":{...},"lastPulledAt":N} as WatermelonDB
// sends it: each record carries _status ("created" or "updated") and
// _changed (Row.Changed, comma-joined).
func EncodePush(w io.Writer, cs *Changeset, lastPulledAt int64, o Options) error {
	if lastPulledAt < 0 {
		return fmt.Errorf("%w: lastPulledAt must be >= 0, got %d", ErrInvalidTimestamp, lastPulledAt)
	}
	e := newEncoder(w, o)
	e.push = true
	e.buf = append(e.buf, `{"changes":`...)
	if err := e.changes(cs); err != nil {
		return err
	}
	e.buf = append(e.buf, `,"lastPulledAt":`...)
	e.buf = strconv.AppendInt(e.buf, lastPulledAt, 10)
	e.buf = append(e.buf, '}')
	return e.finish()
}

// ---- decoding ----

type decoder struct {
	dec   *json.Decoder
	data  []byte // the input, which raw values are slices of
	o     Options
	rep   *Report
	max   int
	hikma bool // table keys may be mobile or server names
}

func newDecoder(data []byte, o Options, rep *Report) *decoder {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	return &decoder{dec: dec, data: data, o: o, rep: rep, max: o.maxValueBytes()}
}

// malformed wraps a json.Decoder error in ErrMalformed.
func malformed(err error) error {
	if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: unexpected end of input (truncated JSON)", ErrMalformed)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("%w: %v at byte %d", ErrMalformed, se, se.Offset)
	}
	return fmt.Errorf("%w: %v", ErrMalformed, err)
}

func (d *decoder) token() (json.Token, error) {
	tok, err := d.dec.Token()
	if err != nil {
		return nil, malformed(err)
	}
	return tok, nil
}

// key reads an object key (the decoder guarantees it is a string).
func (d *decoder) key() (string, error) {
	tok, err := d.token()
	if err != nil {
		return "", err
	}
	k, ok := tok.(string)
	if !ok {
		return "", fmt.Errorf("%w: object key is %s", ErrMalformed, describe(tok))
	}
	return k, nil
}

// raw reads the next value as raw JSON, validated by the decoder: a
// slice of the input, not a copy, so that a large push body is held
// once.
func (d *decoder) raw() (json.RawMessage, error) {
	start := d.dec.InputOffset()
	if err := d.dec.Decode(&skipValue{}); err != nil {
		return nil, malformed(err)
	}
	// Before the value: the separator that precedes it, and spaces.
	return bytes.TrimLeft(d.data[start:d.dec.InputOffset()], " \t\r\n:,"), nil
}

// skipValue takes any JSON value and keeps nothing.
type skipValue struct{}

func (*skipValue) UnmarshalJSON([]byte) error { return nil }

// end checks that nothing follows the top-level value.
func (d *decoder) end() error {
	_, err := d.dec.Token()
	if err == io.EOF {
		return nil
	}
	if err != nil {
		return malformed(err)
	}
	return fmt.Errorf("%w: data after the JSON value", ErrMalformed)
}

func describe(tok json.Token) string {
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			return "an object"
		case '[':
			return "an array"
		}
		return "'" + t.String() + "'"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a bool"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", tok)
}

func (d *decoder) pullResponse() (*Changeset, error) {
	tok, err := d.token()
	if err != nil {
		return nil, err
	}
	if tok != json.Delim('{') {
		return nil, fmt.Errorf("%w: a pull response must be an object, got %s", ErrWrongType, describe(tok))
	}
	var cs *Changeset
	var ts int64
	haveTS := false
	for d.dec.More() {
		k, err := d.key()
		if err != nil {
			return nil, err
		}
		switch k {
		case "changes":
			if cs != nil {
				return nil, fmt.Errorf("%w: changes appears twice", ErrDuplicateKey)
			}
			cs = NewChangeset()
			if err := d.changes(cs); err != nil {
				return nil, err
			}
		case "timestamp":
			if haveTS {
				return nil, fmt.Errorf("%w: timestamp appears twice", ErrDuplicateKey)
			}
			raw, err := d.raw()
			if err != nil {
				return nil, err
			}
			if ts, err = cursor(raw, "timestamp", true); err != nil {
				return nil, err
			}
			haveTS = true
		default:
			if err := d.dec.Decode(&shape{}); err != nil {
				return nil, malformed(err)
			}
		}
	}
	if _, err := d.token(); err != nil {
		return nil, err
	}
	if err := d.end(); err != nil {
		return nil, err
	}
	if cs == nil {
		return nil, fmt.Errorf("%w: pull response has no changes", ErrMalformed)
	}
	if !haveTS {
		return nil, fmt.Errorf("%w: pull response has no timestamp", ErrInvalidTimestamp)
	}
	cs.Timestamp = ts
	return cs, nil
}

// cursor parses a sync timestamp: an integer number of ms, > 0 when
// positive is set (a pull's timestamp), else >= 0 with null meaning 0
// (a push's lastPulledAt).
func cursor(raw []byte, what string, positive bool) (int64, error) {
	in, err := inputFromJSON(raw)
	if err != nil {
		return 0, fmt.Errorf("%w: %s: %v", ErrInvalidTimestamp, what, err)
	}
	if in.kind == inNull && !positive {
		return 0, nil
	}
	if in.kind != inNumber {
		return 0, fmt.Errorf("%w: %s must be an integer, got %s", ErrInvalidTimestamp, what, in.render())
	}
	n, err := strconv.ParseInt(in.s, 10, 64)
	if err != nil {
		if in.f != math.Trunc(in.f) || in.f < math.MinInt64 || in.f >= math.MaxInt64 {
			return 0, fmt.Errorf("%w: %s must be an integer, got %s", ErrInvalidTimestamp, what, in.render())
		}
		n = int64(in.f)
	}
	if positive && n <= 0 {
		return 0, fmt.Errorf("%w: %s must be > 0, got %s", ErrInvalidTimestamp, what, in.render())
	}
	if n < 0 {
		return 0, fmt.Errorf("%w: %s must be >= 0, got %s", ErrInvalidTimestamp, what, in.render())
	}
	return n, nil
}

// shape skips a value, remembering its first byte.
type shape struct{ c byte }

func (s *shape) UnmarshalJSON(b []byte) error {
	if len(b) > 0 {
		s.c = b[0]
	}
	return nil
}

// pushShape tells a wrapped push body from a bare changes object.
func pushShape(data []byte) (wrapped bool, changes, lastPulledAt json.RawMessage, err error) {
	d := newDecoder(data, Options{}, &Report{})
	tok, err := d.token()
	if err != nil {
		return false, nil, nil, err
	}
	if tok != json.Delim('{') {
		return false, nil, nil, fmt.Errorf("%w: a push body must be an object, got %s", ErrWrongType, describe(tok))
	}
	keys := 0
	haveChanges := false
	for d.dec.More() {
		k, err := d.key()
		if err != nil {
			return false, nil, nil, err
		}
		keys++
		switch k {
		case "changes":
			if haveChanges {
				return false, nil, nil, fmt.Errorf("%w: changes appears twice", ErrDuplicateKey)
			}
			haveChanges = true
			if changes, err = d.raw(); err != nil {
				return false, nil, nil, err
			}
		case "lastPulledAt":
			if lastPulledAt != nil {
				return false, nil, nil, fmt.Errorf("%w: lastPulledAt appears twice", ErrDuplicateKey)
			}
			if lastPulledAt, err = d.raw(); err != nil {
				return false, nil, nil, err
			}
		default:
			if err := d.dec.Decode(&shape{}); err != nil {
				return false, nil, nil, malformed(err)
			}
		}
	}
	if _, err := d.token(); err != nil {
		return false, nil, nil, err
	}
	if err := d.end(); err != nil {
		return false, nil, nil, err
	}
	switch {
	case lastPulledAt != nil:
		// lastPulledAt is not a valid table name: this is the wrapper.
		if !haveChanges {
			return false, nil, nil, fmt.Errorf("%w: push body has lastPulledAt but no changes", ErrMalformed)
		}
		return true, changes, lastPulledAt, nil
	case haveChanges && keys == 1 && !tableShaped(changes):
		return true, changes, nil, nil
	}
	return false, nil, nil, nil
}

// tableShaped reports whether raw looks like one table's changes: a
// non-empty object whose keys are created/updated/deleted with array or
// null values.
func tableShaped(raw []byte) bool {
	d := newDecoder(raw, Options{}, &Report{})
	if tok, err := d.token(); err != nil || tok != json.Delim('{') {
		return false
	}
	n := 0
	for d.dec.More() {
		k, err := d.key()
		if err != nil {
			return false
		}
		if k != "created" && k != "updated" && k != "deleted" {
			return false
		}
		var s shape
		if err := d.dec.Decode(&s); err != nil || (s.c != '[' && s.c != 'n' && s.c != 0) {
			return false
		}
		n++
	}
	return n > 0
}

// changes decodes a changes object into cs.
func (d *decoder) changes(cs *Changeset) error {
	tok, err := d.token()
	if err != nil {
		return err
	}
	if tok != json.Delim('{') {
		return fmt.Errorf("%w: changes must be an object of tables, got %s", ErrWrongType, describe(tok))
	}
	for d.dec.More() {
		k, err := d.key()
		if err != nil {
			return err
		}
		if err := d.table(cs, k); err != nil {
			return err
		}
	}
	_, err = d.token()
	return err
}

func (d *decoder) table(cs *Changeset, key string) error {
	t, known := d.o.lookup(key, d.hikma)
	name := key
	switch {
	case known:
		name = t.Name
	case !schema.ValidName(key):
		return fmt.Errorf("%w: invalid table name %q", ErrUnknownTable, shorten(key))
	case d.o.ServerNames && d.o.Catalog != nil && catalogHas(d.o.Catalog, key):
		// A mobile name where server names are expected: keeping it as
		// an unknown table would collide with the known table's key.
		return fmt.Errorf("%w %q (a mobile table name; server names expected)", ErrUnknownTable, key)
	case !d.o.KeepUnknownTables:
		return fmt.Errorf("%w %q", ErrUnknownTable, key)
	default:
		t = nil
	}
	if _, dup := cs.Tables[name]; dup {
		return fmt.Errorf("%w: table %s appears twice", ErrDuplicateKey, name)
	}
	tc := cs.Table(name)
	tok, err := d.token()
	if err != nil {
		return err
	}
	if tok != json.Delim('{') {
		return fmt.Errorf("%w: table %s must be an object of created, updated and deleted, got %s", ErrWrongType, name, describe(tok))
	}
	seenList := map[string]bool{}
	ids := map[string]string{} // id → the list it is in
	for d.dec.More() {
		list, err := d.key()
		if err != nil {
			return err
		}
		switch list {
		case "created", "updated", "deleted":
		default:
			return fmt.Errorf("%w: table %s: unexpected key %q (want created, updated, deleted)", ErrMalformed, name, shorten(list))
		}
		if seenList[list] {
			return fmt.Errorf("%w: table %s: %s appears twice", ErrDuplicateKey, name, list)
		}
		seenList[list] = true
		tok, err := d.token()
		if err != nil {
			return err
		}
		if tok == nil {
			continue // a null list is empty
		}
		if tok != json.Delim('[') {
			return fmt.Errorf("%w: %s.%s must be an array, got %s", ErrWrongType, name, list, describe(tok))
		}
		for i := 0; d.dec.More(); i++ {
			var id string
			if list == "deleted" {
				if id, err = d.deletedID(name, i); err != nil {
					return err
				}
				tc.Deleted = append(tc.Deleted, id)
			} else {
				r, bad, err := d.row(t, name, list, i)
				if err != nil {
					return err
				}
				id = r.ID
				switch {
				case bad != nil:
					d.rep.Rejected = append(d.rep.Rejected, Rejection{Table: name, ID: id, Err: bad})
				case list == "created":
					tc.Created = append(tc.Created, r)
				default:
					tc.Updated = append(tc.Updated, r)
				}
			}
			if prev, dup := ids[id]; dup {
				if prev == list {
					return fmt.Errorf("%w: %s/%s appears twice in %s", ErrDuplicateID, name, id, list)
				}
				return fmt.Errorf("%w: %s/%s is in both %s and %s", ErrDuplicateID, name, id, prev, list)
			}
			ids[id] = list
		}
		if _, err := d.token(); err != nil {
			return err
		}
	}
	_, err = d.token()
	return err
}

func catalogHas(c *schema.Catalog, name string) bool {
	_, ok := c.Table(name)
	return ok
}

type field struct {
	name string
	raw  []byte
}

// element reads one array element as raw JSON (validated by the decoder).
func (d *decoder) element() ([]byte, error) {
	raw, err := d.raw()
	if err != nil {
		return nil, err
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil, fmt.Errorf("%w: empty value", ErrMalformed)
	}
	return raw, nil
}

// describeRaw names the JSON type of a raw value by its first byte.
func describeRaw(raw []byte) string {
	switch raw[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a bool"
	case 'n':
		return "null"
	}
	return "a number"
}

// members splits an object that json.Decoder has validated into its
// members, refusing duplicate keys. Reading one raw value per record and
// splitting it here is several times faster than a Token per member.
func members(raw []byte, where func() string) ([]field, error) {
	bad := func() error { return fmt.Errorf("%w: %s: cannot split object", ErrMalformed, where()) }
	if len(raw) < 2 || raw[0] != '{' {
		return nil, bad()
	}
	fields := make([]field, 0, 24)
	i := skipSpace(raw, 1)
	if i < len(raw) && raw[i] == '}' {
		return fields, nil
	}
	for i < len(raw) {
		kend := stringEnd(raw, i)
		if kend < 0 {
			return nil, bad()
		}
		key, ok := unquote(raw[i:kend])
		if !ok {
			return nil, bad()
		}
		for _, f := range fields {
			if f.name == key {
				return nil, fmt.Errorf("%w: %s: key %q appears twice", ErrDuplicateKey, where(), shorten(key))
			}
		}
		i = skipSpace(raw, kend)
		if i >= len(raw) || raw[i] != ':' {
			return nil, bad()
		}
		i = skipSpace(raw, i+1)
		vend := valueEnd(raw, i)
		if vend < 0 {
			return nil, bad()
		}
		fields = append(fields, field{key, raw[i:vend]})
		i = skipSpace(raw, vend)
		if i >= len(raw) {
			break
		}
		switch raw[i] {
		case ',':
			i = skipSpace(raw, i+1)
		case '}':
			return fields, nil
		default:
			return nil, bad()
		}
	}
	return nil, bad()
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// stringEnd returns the index after the string starting at b[i], or -1.
func stringEnd(b []byte, i int) int {
	if i >= len(b) || b[i] != '"' {
		return -1
	}
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return -1
}

// valueEnd returns the index after the value starting at b[i], or -1.
func valueEnd(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		return stringEnd(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				end := stringEnd(b, j)
				if end < 0 {
					return -1
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return -1
	}
	j := i
	for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ' ' && b[j] != '\t' && b[j] != '\n' && b[j] != '\r' {
		j++
	}
	if j == i {
		return -1
	}
	return j
}

// unquote decodes a JSON string literal; the common case (no escapes,
// valid UTF-8) is a plain copy.
func unquote(b []byte) (string, bool) {
	if len(b) < 2 || b[0] != '"' || b[len(b)-1] != '"' {
		return "", false
	}
	inner := b[1 : len(b)-1]
	if bytes.IndexByte(inner, '\\') < 0 && utf8.Valid(inner) {
		return string(inner), true
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return "", false
	}
	return s, true
}

// recordID finds and checks a record's id.
func recordID(fields []field, where func() string) (string, error) {
	for _, f := range fields {
		if f.name != "id" {
			continue
		}
		id, ok := unquote(f.raw)
		if !ok {
			return "", fmt.Errorf("%w: %s: id must be a string, got %s", ErrInvalidID, where(), shorten(string(f.raw)))
		}
		if !schema.ValidID(id) {
			return "", fmt.Errorf("%w: %s: %q (want 1-128 of [A-Za-z0-9_.-])", ErrInvalidID, where(), shorten(id))
		}
		return id, nil
	}
	return "", fmt.Errorf("%w: %s: record has no id", ErrMissingID, where())
}

func (d *decoder) deletedID(name string, i int) (string, error) {
	where := func() string { return fmt.Sprintf("%s.deleted[%d]", name, i) }
	raw, err := d.element()
	if err != nil {
		return "", err
	}
	switch raw[0] {
	case '"':
		id, ok := unquote(raw)
		if !ok {
			return "", fmt.Errorf("%w: %s: bad string", ErrMalformed, where())
		}
		if !schema.ValidID(id) {
			return "", fmt.Errorf("%w: %s: %q (want 1-128 of [A-Za-z0-9_.-])", ErrInvalidID, where(), shorten(id))
		}
		return id, nil
	case '{':
		// A whole record where an id belongs (the shape the Hikma app's
		// hub push would send): the delete is of its id.
		fields, err := members(raw, where)
		if err != nil {
			return "", err
		}
		return recordID(fields, where)
	}
	return "", fmt.Errorf("%w: %s: expected an id string, got %s", ErrWrongType, where(), describeRaw(raw))
}

// row decodes one record. A problem with the record's content (once its
// id is known) is bad: the record is rejected, the body goes on. err is a
// problem with the body itself (syntax, the id).
func (d *decoder) row(t *schema.Table, name, list string, i int) (r Row, bad, err error) {
	where := func() string { return fmt.Sprintf("%s.%s[%d]", name, list, i) }
	raw, err := d.element()
	if err != nil {
		return Row{}, nil, err
	}
	if raw[0] != '{' {
		return Row{}, nil, fmt.Errorf("%w: %s: a record must be an object, got %s", ErrWrongType, where(), describeRaw(raw))
	}
	fields, err := members(raw, where)
	if err != nil {
		return Row{}, nil, err
	}
	id, err := recordID(fields, where)
	if err != nil {
		return Row{}, nil, err
	}
	r = Row{Table: name, ID: id, Cols: make(map[string]Value, len(fields))}
	for _, f := range fields {
		switch f.name {
		case "id", "_status":
			continue
		case "_changed":
			if r.Changed, bad = d.changed(name, id, f.raw); bad != nil {
				return r, bad, nil
			}
			continue
		}
		v, bad := d.value(t, name, id, f)
		if bad != nil {
			return r, bad, nil
		}
		r.Cols[f.name] = v
	}
	if t == nil {
		d.rep.unknown(name)
	}
	return r, nil, nil
}

// value decodes and normalizes one column of record name/id; an error
// rejects the record.
func (d *decoder) value(t *schema.Table, name, id string, f field) (Value, error) {
	col, known := schema.Column{}, false
	if t != nil {
		col, known = t.Column(f.name) // catalog names are valid
	}
	if !known && !schema.ValidName(f.name) {
		return Value{}, fmt.Errorf("%w: %s/%s: %q (want lower-case snake_case)", ErrInvalidColumn, name, id, shorten(f.name))
	}
	in, err := inputFromJSON(f.raw)
	if err != nil {
		return Value{}, fmt.Errorf("%w (at %s/%s.%s)", err, name, id, f.name)
	}
	var v Value
	switch {
	case known:
		var reason string
		if v, reason = normalize(col, in); reason != "" {
			return Value{}, fmt.Errorf("%w: %s/%s.%s (%s): %s: %s", ErrInvalidValue, name, id, f.name, col.Type, in.render(), reason)
		}
	case t != nil && d.o.RejectUnknownColumns:
		return Value{}, fmt.Errorf("%w: %s/%s: %q is not a column of %s", ErrUnknownColumn, name, id, f.name, name)
	default:
		v = unknownValue(in)
		if t != nil {
			d.rep.unknown(name + "." + f.name)
		}
	}
	if (v.Kind == KindString || v.Kind == KindJSON) && len(v.Str) > d.max {
		return Value{}, fmt.Errorf("%w: %s/%s.%s: value is %d bytes, limit %d", ErrTooLarge, name, id, f.name, len(v.Str), d.max)
	}
	return v, nil
}

// changed parses _changed: a comma list of column names, trimmed, without
// duplicates, in order. Anything else rejects the record.
func (d *decoder) changed(name, id string, raw []byte) ([]string, error) {
	in, err := inputFromJSON(raw)
	if err != nil {
		return nil, fmt.Errorf("%w (at %s/%s._changed)", err, name, id)
	}
	switch in.kind {
	case inNull:
		return nil, nil
	case inString:
	default:
		return nil, fmt.Errorf("%w: %s/%s._changed: %s: not a comma list of columns", ErrInvalidValue, name, id, in.render())
	}
	if len(in.s) > d.max {
		return nil, fmt.Errorf("%w: %s/%s._changed: %d bytes, limit %d", ErrTooLarge, name, id, len(in.s), d.max)
	}
	var out []string
	for part := range strings.SplitSeq(in.s, ",") {
		c := strings.TrimSpace(part)
		if c == "" || c == "id" || c == "_status" || c == "_changed" {
			continue
		}
		if !schema.ValidName(c) {
			return nil, fmt.Errorf("%w: %s/%s._changed: %q", ErrInvalidColumn, name, id, shorten(c))
		}
		if !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out, nil
}

// ---- encoding ----

type encoder struct {
	w     *bufio.Writer
	buf   []byte
	o     Options
	push  bool // write _status and _changed
	hikma bool // Hikma server shapes: ISO timestamps, raw jsonb
}

func newEncoder(w io.Writer, o Options) *encoder {
	return &encoder{w: bufio.NewWriterSize(w, 32<<10), buf: make([]byte, 0, 4096), o: o}
}

// flush hands the buffered bytes (one row at most) to the writer.
func (e *encoder) flush() error {
	if _, err := e.w.Write(e.buf); err != nil {
		return fmt.Errorf("codec: writing JSON: %w", err)
	}
	e.buf = e.buf[:0]
	return nil
}

func (e *encoder) finish() error {
	if err := e.flush(); err != nil {
		return err
	}
	if err := e.w.Flush(); err != nil {
		return fmt.Errorf("codec: writing JSON: %w", err)
	}
	return nil
}

type outTable struct {
	key, name string
	t         *schema.Table
	tc        *TableChanges
}

func (e *encoder) changes(cs *Changeset) error {
	var tables []outTable
	if cs != nil {
		tables = make([]outTable, 0, len(cs.Tables))
		for name, tc := range cs.Tables {
			// Changesets are keyed by mobile names whatever the options.
			ot := outTable{key: name, name: name, tc: tc}
			if e.o.Catalog != nil {
				if t, ok := e.o.Catalog.Table(name); ok {
					ot.t = t
					if e.o.ServerNames {
						ot.key = t.ServerName
					}
				}
			}
			if ot.t == nil {
				if !schema.ValidName(name) {
					return fmt.Errorf("%w: invalid table name %q", ErrUnknownTable, shorten(name))
				}
				if !e.o.KeepUnknownTables {
					return fmt.Errorf("%w %q", ErrUnknownTable, name)
				}
			}
			if ot.tc == nil {
				ot.tc = &TableChanges{}
			}
			tables = append(tables, ot)
		}
	}
	sort.Slice(tables, func(i, j int) bool { return tables[i].key < tables[j].key })
	e.buf = append(e.buf, '{')
	for i, ot := range tables {
		if i > 0 {
			e.buf = append(e.buf, ',')
		}
		e.buf = appendString(e.buf, ot.key)
		seen := make(map[string]string, len(ot.tc.Created)+len(ot.tc.Updated)+len(ot.tc.Deleted))
		e.buf = append(e.buf, `:{"created":[`...)
		if err := e.rows(ot, ot.tc.Created, "created", seen); err != nil {
			return err
		}
		e.buf = append(e.buf, `],"updated":[`...)
		if err := e.rows(ot, ot.tc.Updated, "updated", seen); err != nil {
			return err
		}
		e.buf = append(e.buf, `],"deleted":[`...)
		for j, id := range ot.tc.Deleted {
			if err := checkID(ot.name, id, "deleted", seen); err != nil {
				return err
			}
			if j > 0 {
				e.buf = append(e.buf, ',')
			}
			e.buf = appendString(e.buf, id)
		}
		e.buf = append(e.buf, `]}`...)
	}
	e.buf = append(e.buf, '}')
	return nil
}

func checkID(table, id, list string, seen map[string]string) error {
	if !schema.ValidID(id) {
		return fmt.Errorf("%w: %s.%s: %q", ErrInvalidID, table, list, shorten(id))
	}
	if prev, dup := seen[id]; dup {
		return fmt.Errorf("%w: %s/%s is in both %s and %s", ErrDuplicateID, table, id, prev, list)
	}
	seen[id] = list
	return nil
}

func (e *encoder) rows(ot outTable, rows []Row, list string, seen map[string]string) error {
	for j, r := range rows {
		if err := checkID(ot.name, r.ID, list, seen); err != nil {
			return err
		}
		if j > 0 {
			e.buf = append(e.buf, ',')
		}
		if err := e.row(ot, r, list); err != nil {
			return err
		}
		if err := e.flush(); err != nil {
			return err
		}
	}
	return nil
}

func (e *encoder) row(ot outTable, r Row, list string) error {
	e.buf = append(e.buf, `{"id":`...)
	e.buf = appendString(e.buf, r.ID)
	for _, name := range r.Columns() {
		v := r.Cols[name]
		col, known := schema.Column{}, false
		if ot.t != nil {
			col, known = ot.t.Column(name) // catalog names are valid
		}
		if !known && (name == "id" || name == "_status" || name == "_changed" || !schema.ValidName(name)) {
			return fmt.Errorf("%w: %s/%s: %q", ErrInvalidColumn, ot.name, r.ID, shorten(name))
		}
		if known && col.Secret && !e.o.IncludeSecret {
			continue
		}
		if !known && ot.t != nil && e.o.RejectUnknownColumns {
			return fmt.Errorf("%w: %s/%s: %q is not a column of %s", ErrUnknownColumn, ot.name, r.ID, name, ot.name)
		}
		e.buf = append(e.buf, ',')
		e.buf = appendString(e.buf, name)
		e.buf = append(e.buf, ':')
		var err error
		if known {
			// Only canonical values are written: an encoder never
			// converts (a stored value is already what the client sent
			// or its documented conversion).
			if cerr := CheckValue(col, v, 0); cerr != nil {
				return fmt.Errorf("%w (at %s/%s.%s)", cerr, ot.name, r.ID, name)
			}
			err = e.value(col.Type, v)
		} else {
			err = e.value(0, v)
		}
		if err != nil {
			return fmt.Errorf("%w (at %s/%s.%s)", err, ot.name, r.ID, name)
		}
	}
	if e.push {
		e.buf = append(e.buf, `,"_status":`...)
		e.buf = appendString(e.buf, list)
		for _, c := range r.Changed {
			if !schema.ValidName(c) || strings.Contains(c, ",") {
				return fmt.Errorf("%w: %s/%s._changed: %q", ErrInvalidColumn, ot.name, r.ID, shorten(c))
			}
		}
		e.buf = append(e.buf, `,"_changed":`...)
		e.buf = appendString(e.buf, strings.Join(r.Changed, ","))
	}
	e.buf = append(e.buf, '}')
	return nil
}

// value writes a normalized value of a column type (0: an unknown
// column, written with its kind).
func (e *encoder) value(t schema.Type, v Value) error {
	switch v.Kind {
	case KindNull:
		e.buf = append(e.buf, "null"...)
	case KindString:
		e.buf = appendString(e.buf, v.Str)
	case KindBool:
		e.buf = strconv.AppendBool(e.buf, v.Bool)
	case KindNumber:
		if math.IsNaN(v.Num) || math.IsInf(v.Num, 0) {
			return fmt.Errorf("%w: %v", ErrNonFinite, v.Num)
		}
		switch {
		case t == schema.Timestamp && e.hikma:
			e.buf = append(e.buf, '"')
			e.buf = appendISO(e.buf, int64(v.Num))
			e.buf = append(e.buf, '"')
		case t == schema.Timestamp:
			e.buf = strconv.AppendInt(e.buf, int64(v.Num), 10)
		default:
			e.buf = appendNumber(e.buf, v.Num)
		}
	case KindJSON:
		if t == schema.JSON && !(e.hikma && isCompactComposite(v.Str)) {
			// A JSON column on a device is a string holding JSON text;
			// a Hikma server sends jsonb objects and arrays as is, and
			// scalars (and text that is not compact) as strings so that
			// they decode back as the same text.
			e.buf = appendString(e.buf, v.Str)
			break
		}
		text, err := compactJSON([]byte(v.Str))
		if err != nil || text == "" {
			return fmt.Errorf("%w: not JSON text: %s", ErrInvalidValue, shorten(v.Str))
		}
		e.buf = append(e.buf, text...)
	default:
		return fmt.Errorf("%w: unknown value kind %d", ErrInvalidValue, v.Kind)
	}
	return nil
}

// isCompactComposite reports whether text is a JSON object or array in
// its compact form (what decoding it raw gives back).
func isCompactComposite(text string) bool {
	if !strings.HasPrefix(text, "{") && !strings.HasPrefix(text, "[") {
		return false
	}
	c, err := compactJSON([]byte(text))
	return err == nil && c == text
}

// appendNumber writes a float as encoding/json does: shortest digits,
// exponent only for very large or small magnitudes.
func appendNumber(b []byte, f float64) []byte {
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	return strconv.AppendFloat(b, f, format, -1, 64)
}

const hexDigits = "0123456789abcdef"

// appendString writes s as a JSON string. HTML characters are not
// escaped; invalid UTF-8 bytes become \ufffd (as encoding/json does).
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c >= 0x20:
				b = append(b, c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}
