package actors

// HS256 JSON Web Tokens (RFC 7519) for the Hikma hub's login
// (reference hikma-sync.md §2.4): only what that needs, with the
// standard library, rather than a dependency. The header must say
// {"alg":"HS256"}; every other algorithm, "none" included, is refused.

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrJWT: a token that is malformed, not HS256, wrongly signed or
// expired.
var ErrJWT = errors.New("JWT verification failed")

// ErrJWTExpired: a well-signed token past its exp.
var ErrJWTExpired = fmt.Errorf("%w: JWT token has expired", ErrJWT)

// JWTTTL is how long a hub login token is valid.
const JWTTTL = 24 * time.Hour

// jwtClaims are the claims of a hub login token, as the reference hub
// writes them.
type jwtClaims struct {
	Sub      string `json:"sub"`
	ClinicID string `json:"clinic_id"`
	Role     string `json:"role"`
	Iat      int64  `json:"iat"` // seconds
	Exp      int64  `json:"exp"` // seconds
}

var jwtB64 = base64.RawURLEncoding.Strict()

// jwtHeader is the header signJWT writes.
const jwtHeader = `{"alg":"HS256","typ":"JWT"}`

// signJWT returns header.claims.signature, signed with key.
func signJWT(key []byte, claims any) (string, error) {
	body, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("actors: encoding JWT claims: %w", err)
	}
	signing := jwtB64.EncodeToString([]byte(jwtHeader)) + "." + jwtB64.EncodeToString(body)
	return signing + "." + jwtB64.EncodeToString(jwtMAC(key, signing)), nil
}

func jwtMAC(key []byte, signing string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(signing))
	return m.Sum(nil)
}

// parseJWT checks token's HS256 signature under key and decodes its
// claims into v. It does not look at exp (verifyJWT does).
func parseJWT(key []byte, token string, v any) error {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return fmt.Errorf("%w: not header.claims.signature", ErrJWT)
	}
	var header struct {
		Alg string `json:"alg"`
	}
	raw, err := jwtB64.DecodeString(parts[0])
	if err != nil || json.Unmarshal(raw, &header) != nil {
		return fmt.Errorf("%w: malformed header", ErrJWT)
	}
	if header.Alg != "HS256" {
		return fmt.Errorf("%w: algorithm %q is not HS256", ErrJWT, header.Alg)
	}
	sig, err := jwtB64.DecodeString(parts[2])
	if err != nil || !hmac.Equal(sig, jwtMAC(key, parts[0]+"."+parts[1])) {
		return fmt.Errorf("%w: invalid signature", ErrJWT)
	}
	if raw, err = jwtB64.DecodeString(parts[1]); err != nil {
		return fmt.Errorf("%w: malformed claims", ErrJWT)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("%w: malformed claims: %v", ErrJWT, err)
	}
	return nil
}

// verifyJWT parses a hub login token and checks that it has a subject
// and has not expired at now.
func verifyJWT(key []byte, token string, now time.Time) (jwtClaims, error) {
	var c jwtClaims
	if err := parseJWT(key, token, &c); err != nil {
		return jwtClaims{}, err
	}
	switch {
	case c.Sub == "":
		return jwtClaims{}, fmt.Errorf("%w: no subject", ErrJWT)
	case now.Unix() >= c.Exp:
		return jwtClaims{}, ErrJWTExpired
	}
	return c, nil
}
