package actors

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
)

// pullToken is where a paged pull stands between pages. It travels as
// the continuation: self-describing (the pull's last_pulled_at and
// timestamp, the position in the cursor index, the running counts and
// the caller), so any page can be asked again after a restart of
// either side, and signed with a secret kept in the serving store, so
// that a changed or forged one is refused.
type pullToken struct {
	Caller    string
	Since     int64 // the pull's last_pulled_at
	Timestamp int64 // the pull's timestamp T: every page stops there
	From      int64 // the cursor index position to continue after
	// Migration: still in a migration sync's walk of the rows at or
	// below Since (then on to the changes since).
	Migration bool
	Total     uint64 // records in the whole pull (an upper bound until the last page)
	Sent      uint64 // records served so far
}

const (
	tokenVersion = 1
	tokenMACLen  = 16
	// tokenKeyConfig is the store config key of the signing secret.
	tokenKeyConfig = "pull_token_key"
)

var errToken = errors.New("not a continuation issued by this server")

// seal encodes t and signs it with key.
func (t pullToken) seal(key []byte) string {
	b := []byte{tokenVersion}
	flags := uint64(0)
	if t.Migration {
		flags = 1
	}
	for _, n := range []int64{t.Since, t.Timestamp, t.From} {
		b = binary.AppendVarint(b, n)
	}
	for _, n := range []uint64{flags, t.Total, t.Sent, uint64(len(t.Caller))} {
		b = binary.AppendUvarint(b, n)
	}
	b = append(b, t.Caller...)
	return base64.RawURLEncoding.EncodeToString(append(b, tokenMAC(key, b)...))
}

// openToken checks a continuation's signature and decodes it.
func openToken(key []byte, s string) (pullToken, error) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(raw) < 1+tokenMACLen {
		return pullToken{}, errToken
	}
	body, mac := raw[:len(raw)-tokenMACLen], raw[len(raw)-tokenMACLen:]
	if !hmac.Equal(mac, tokenMAC(key, body)) {
		return pullToken{}, fmt.Errorf("%w (its signature does not match: changed, or from another server)", errToken)
	}
	if body[0] != tokenVersion {
		return pullToken{}, fmt.Errorf("%w (version %d)", errToken, body[0])
	}
	var t pullToken
	rest := body[1:]
	ints := []*int64{&t.Since, &t.Timestamp, &t.From}
	for _, p := range ints {
		v, n := binary.Varint(rest)
		if n <= 0 {
			return pullToken{}, errToken
		}
		*p, rest = v, rest[n:]
	}
	var flags, callerLen uint64
	for _, p := range []*uint64{&flags, &t.Total, &t.Sent, &callerLen} {
		v, n := binary.Uvarint(rest)
		if n <= 0 {
			return pullToken{}, errToken
		}
		*p, rest = v, rest[n:]
	}
	if callerLen != uint64(len(rest)) || flags > 1 {
		return pullToken{}, errToken
	}
	t.Migration, t.Caller = flags == 1, string(rest)
	return t, nil
}

func tokenMAC(key, body []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(body)
	return m.Sum(nil)[:tokenMACLen]
}
