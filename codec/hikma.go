package codec

// The Hikma Health cloud's JSON (reference hikma-sync.md §1.3): a pull
// response {"success":true,"changes":{...},"timestamp":N} whose rows are
// Postgres rows as node-pg serializes them: timestamptz and date columns
// as ISO-8601 strings, jsonb as objects and arrays, numeric as strings
// ("170.00"), plus server-only columns. DecodeHikmaPull reads one with the
// normalizer of normalize.go; EncodeHikma writes one, to play a legacy
// Hikma server in tests and simulations.

import (
	"fmt"
	"io"
	"strconv"
	"time"
)

// DecodeHikmaPull decodes a Hikma cloud pull response. Tables may be
// keyed by mobile or server name (a hub's pull also holds server-only
// tables such as devices); the changeset is keyed by mobile names, or
// only server names are accepted when o.ServerNames is set. Values are
// normalized by the same rules as a push: a server row with a value the
// rules reject (a numeric that is not a number, a date that is no date)
// is left out and listed in Report.Rejected with its reason, never
// rewritten. A caller applying the pull must surface those rows and must
// not treat them as applied. Server columns the catalog does not know are
// kept as unknown columns and counted in Report.Unknown.
func DecodeHikmaPull(data []byte, o Options) (*Changeset, Report, error) {
	var rep Report
	d := newDecoder(data, o, &rep)
	d.hikma = true
	cs, err := d.pullResponse()
	return cs, rep, err
}

// EncodeHikma writes cs as a Hikma server answers a pull:
// {"success":true,"changes":{...},"timestamp":N} with Timestamp columns as
// ISO-8601 UTC strings with milliseconds (2024-01-15T10:30:00.000Z), JSON
// columns as raw objects and arrays (other JSON text as a string),
// Decimal and Date columns as strings, tables keyed by mobile name (as
// Hikma does) unless o.ServerNames. cs.Timestamp must be positive.
func EncodeHikma(w io.Writer, cs *Changeset, o Options) error {
	ts := int64(0)
	if cs != nil {
		ts = cs.Timestamp
	}
	if ts <= 0 {
		return fmt.Errorf("%w: pull response timestamp must be > 0, got %d", ErrInvalidTimestamp, ts)
	}
	e := newEncoder(w, o)
	e.hikma = true
	e.buf = append(e.buf, `{"success":true,"changes":`...)
	if err := e.changes(cs); err != nil {
		return err
	}
	e.buf = append(e.buf, `,"timestamp":`...)
	e.buf = strconv.AppendInt(e.buf, ts, 10)
	e.buf = append(e.buf, '}')
	return e.finish()
}

// isoLayout is JavaScript's Date.prototype.toISOString for UTC times.
const isoLayout = "2006-01-02T15:04:05.000Z07:00"

func appendISO(b []byte, ms int64) []byte {
	return time.UnixMilli(ms).UTC().AppendFormat(b, isoLayout)
}
