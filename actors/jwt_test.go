package actors

import (
	"errors"
	"testing"
	"time"
)

// jwt.io's HS256 example token, whose signature was checked with
// Python's hmac module.
const jwtIOToken = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"

func TestJWTKnownVector(t *testing.T) {
	var claims struct {
		Sub  string `json:"sub"`
		Name string `json:"name"`
		Iat  int64  `json:"iat"`
	}
	if err := parseJWT([]byte("your-256-bit-secret"), jwtIOToken, &claims); err != nil {
		t.Fatal(err)
	}
	if claims.Sub != "1234567890" || claims.Name != "John Doe" || claims.Iat != 1516239022 {
		t.Errorf("claims: %+v", claims)
	}
	if err := parseJWT([]byte("another secret"), jwtIOToken, &claims); !errors.Is(err, ErrJWT) {
		t.Errorf("wrong key: %v", err)
	}
	// signJWT writes the same header, so the same claims sign the same.
	tok, err := signJWT([]byte("your-256-bit-secret"), claims)
	if err != nil || tok != jwtIOToken {
		t.Errorf("signJWT = %s, %v; want %s", tok, err, jwtIOToken)
	}
}

func TestJWTExpiry(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	now := time.Unix(1_700_000_000, 0)
	tok, err := signJWT(key, jwtClaims{Sub: "u1", Iat: now.Unix(), Exp: now.Add(JWTTTL).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	if c, err := verifyJWT(key, tok, now.Add(JWTTTL-time.Second)); err != nil || c.Sub != "u1" {
		t.Errorf("before expiry: %+v %v", c, err)
	}
	if _, err := verifyJWT(key, tok, now.Add(JWTTTL)); !errors.Is(err, ErrJWTExpired) {
		t.Errorf("at expiry: %v", err)
	}
	for _, bad := range []string{"", "a.b", "a.b.c.d", tok + "x", "!" + tok} {
		if _, err := verifyJWT(key, bad, now); !errors.Is(err, ErrJWT) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}
