package actors

// Hikma sign-in on a serving node (reference hikma-sync.md §1.2, §1.6):
// the stock app calls POST /api/login and then POST /api/auth/sign-in
// before every cloud sync, and aborts the sync when either fails.

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/clinicsync/clinicsync/codec"
	"github.com/clinicsync/clinicsync/fsm"
	"github.com/clinicsync/clinicsync/kv"
)

// Sign-in paths.
const (
	SignInPath = "/api/auth/sign-in"
	LoginPath  = "/api/login"
)

// Sign-in defaults.
const (
	// SessionTokenTTL is how long a session token is valid.
	SessionTokenTTL = 2 * time.Hour
	// DefaultSignInLimit requests per SignInWindow and client address
	// reach the sign-in paths (the reference's 30 per 15 minutes).
	DefaultSignInLimit = 30
	SignInWindow       = 15 * time.Minute
	// maxSignInBody bounds a sign-in request body.
	maxSignInBody = 64 << 10
	// sessionKeyConfig is the store config key of the token secret.
	sessionKeyConfig = "session_token_key"
	// maskedPassword stands for the password hash in a signed-in user.
	maskedPassword = "************"
)

// ErrInvalidToken: a session token that is malformed, forged (signed
// with another secret), or expired.
var ErrInvalidToken = errors.New("actors: invalid session token")

// SessionTokens issues and checks the bearer tokens of signed-in
// users: HS256 JWTs (jwt.go) with the claims {"sub":user id,"iat":s,
// "exp":s}, signed with a 32-byte secret kept in the store
// (kv.Store.Secret), so tokens survive a restart and only this store's
// server can make them.
//
// A session token is not a sync credential: /api/v2/sync accepts only
// Basic user credentials and hub device keys (reference §1.2: the
// reference server too accepts session tokens only on its tRPC routes).
// It is what the Hikma app stores after signing in.
type SessionTokens struct {
	Store *kv.Store
	Clock kv.Clock      // nil: the wall clock
	TTL   time.Duration // 0: SessionTokenTTL
}

type sessionClaims struct {
	Sub string `json:"sub"`
	Iat int64  `json:"iat"`
	Exp int64  `json:"exp"`
}

// Issue returns a token for userID and when it expires.
func (s *SessionTokens) Issue(userID string) (string, time.Time, error) {
	key, err := s.Store.Secret(sessionKeyConfig, 32)
	if err != nil {
		return "", time.Time{}, err
	}
	ttl := s.TTL
	if ttl <= 0 {
		ttl = SessionTokenTTL
	}
	now := nowOf(s.Clock)
	exp := now.Add(ttl)
	token, err := signJWT(key, sessionClaims{Sub: userID, Iat: now.Unix(), Exp: exp.Unix()})
	return token, exp, err
}

// Verify returns the user id a token carries, or an error wrapping
// ErrInvalidToken.
func (s *SessionTokens) Verify(token string) (string, error) {
	key, err := s.Store.Secret(sessionKeyConfig, 32)
	if err != nil {
		return "", err
	}
	var c sessionClaims
	switch err := parseJWT(key, token, &c); {
	case err != nil:
		return "", fmt.Errorf("%w: %v", ErrInvalidToken, err)
	case c.Sub == "":
		return "", fmt.Errorf("%w: no subject", ErrInvalidToken)
	case !nowOf(s.Clock).Before(time.Unix(c.Exp, 0)):
		return "", fmt.Errorf("%w: expired", ErrInvalidToken)
	}
	return c.Sub, nil
}

// SignIn checks a user's email and password as Authenticate checks
// Basic credentials (the same users, remembered credentials and failed
// sign-in limits), from client address addr. Failures wrap
// ErrUnauthorized, or are a *ThrottledError.
func (a *Authenticator) SignIn(email, password, addr string) (fsm.Caller, error) {
	var c fsm.Caller
	var err error
	if strings.Contains(email, ":") { // not an address; and Basic could not carry it
		err = fmt.Errorf("%w: invalid credentials", ErrUnauthorized)
	} else {
		c, err = a.user(base64.StdEncoding.EncodeToString([]byte(email+":"+password)), addr)
	}
	if errors.Is(err, ErrUnauthorized) && a.Failures != nil {
		a.Failures.Allow("address:" + addr)
	}
	return c, err
}

// signInRequest is the body of both sign-in paths.
type signInRequest struct {
	Email    *string `json:"email"`
	Password *string `json:"password"`
}

// signIn answers POST /api/auth/sign-in and POST /api/login:
//
//	/api/auth/sign-in  {"user":{...the user row..., "hashed_password":"************", "clinic_name":...}, "token":T}
//	/api/login         {...the user row..., "hashed_password":"************", "clinic_name":..., "token":T}
//
// Wrong credentials are 401 {"error":"Invalid credentials"}; a body
// that is not {"email":string,"password":string} is 400; every request
// counts against the per-address sign-in limit (429 with Retry-After),
// and failures also against the failed sign-in limits.
func (h *CloudHandler) signIn(w http.ResponseWriter, r *http.Request, out *outcome) *httpError {
	if r.Method != http.MethodPost {
		return notAllowed(w, r, "POST")
	}
	addr := ClientAddress(r, h.trustFF)
	if h.signInLimit != nil {
		if ok, wait := h.signInLimit.Allow("address:" + addr); !ok {
			return tooMany(w, wait, "Too many sign-in attempts. Please try again later.")
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxSignInBody))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return refuse(http.StatusRequestEntityTooLarge, "request body is over the %d-byte limit", maxSignInBody)
	case err != nil:
		return refuse(http.StatusBadRequest, "reading the request body: %v", err)
	}
	var req signInRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return refuse(http.StatusBadRequest, "request body: want a JSON object {\"email\":...,\"password\":...}: %v", err)
	}
	switch {
	case req.Email == nil || strings.TrimSpace(*req.Email) == "":
		return refuse(http.StatusBadRequest, "request body: email is missing")
	case req.Password == nil || *req.Password == "":
		return refuse(http.StatusBadRequest, "request body: password is missing")
	}
	c, err := h.auth.SignIn(*req.Email, *req.Password, addr)
	var throttled *ThrottledError
	switch {
	case errors.As(err, &throttled):
		return tooMany(w, throttled.Wait, "Too many failed sign-ins. Please try again later.")
	case errors.Is(err, ErrUnauthorized):
		return refuse(http.StatusUnauthorized, "Invalid credentials")
	case err != nil:
		return internal(fmt.Errorf("signing in: %w", err))
	}
	out.caller = callerKey(c)
	user, err := h.signedInUser(c.ID)
	if err != nil {
		return internal(err)
	}
	token, _, err := h.tokens.Issue(c.ID)
	if err != nil {
		return internal(fmt.Errorf("issuing a session token: %w", err))
	}
	if r.URL.Path == LoginPath {
		user["token"] = token
		writeJSON(w, http.StatusOK, user)
		return nil
	}
	writeJSON(w, http.StatusOK, map[string]any{"user": user, "token": token})
	return nil
}

// signedInUser returns the user row as the app gets it: every stored
// column (timestamps in ms, as pulls send them), the password hash
// masked, and clinic_name, the name of the user's clinic (null when
// this node has no such clinic).
func (h *CloudHandler) signedInUser(id string) (map[string]any, error) {
	st := h.server.Store
	rec, err := st.Get("users", id)
	if err != nil {
		return nil, fmt.Errorf("reading user %s: %w", id, err)
	}
	user := map[string]any{"id": id}
	for col, v := range rec.Cols {
		user[col] = jsonValue(v)
	}
	user["hashed_password"] = maskedPassword
	user["clinic_name"] = nil
	if cid := rec.Cols["clinic_id"]; cid.Kind == codec.KindString && cid.Str != "" {
		clinic, err := st.Get("clinics", cid.Str)
		switch {
		case err == nil && !clinic.Deleted && clinic.Cols["name"].Kind == codec.KindString:
			user["clinic_name"] = clinic.Cols["name"].Str
		case err != nil && !errors.Is(err, kv.ErrNotFound):
			return nil, fmt.Errorf("reading clinic %s: %w", cid.Str, err)
		}
	}
	return user, nil
}

// jsonValue is a stored value as plain JSON; JSON text is embedded as
// it is.
func jsonValue(v codec.Value) any {
	switch v.Kind {
	case codec.KindString:
		return v.Str
	case codec.KindNumber:
		return v.Num // encoding/json writes whole numbers below 1e21 without an exponent
	case codec.KindBool:
		return v.Bool
	case codec.KindJSON:
		if json.Valid([]byte(v.Str)) {
			return json.RawMessage(v.Str)
		}
		return v.Str
	}
	return nil
}
