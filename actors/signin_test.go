package actors_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/clinicsync/clinicsync/actors"
	"github.com/clinicsync/clinicsync/codec"
)

func signInBody(email, password string) string {
	return fmt.Sprintf(`{"email":%q,"password":%q}`, email, password)
}

// TestSignInShapes: /api/auth/sign-in answers {user, token} and
// /api/login the user flattened with the token, as the Hikma app reads
// them (reference hikma-sync.md §1.6); the password hash never leaves.
func TestSignInShapes(t *testing.T) {
	t.Parallel()
	c := newCloud(t, actors.CloudConfig{})
	if _, err := c.store.Put("clinics", "c1", map[string]codec.Value{"name": codec.String("North clinic"),
		"is_deleted": codec.Bool(false), "is_archived": codec.Bool(false)}); err != nil {
		t.Fatal(err)
	}
	tokens := &actors.SessionTokens{Store: c.store, Clock: c.clock}

	r := c.call("POST", actors.SignInPath, "", signInBody("Nurse@Example.org", nursePassword), "Content-Type", "application/json")
	if r.status != 200 {
		t.Fatalf("sign-in: %d %s", r.status, r.body)
	}
	m := r.json(t)
	user, _ := m["user"].(map[string]any)
	if user == nil || user["id"] != "u1" || user["email"] != nurseEmail || user["name"] != "Nurse" || user["role"] != "provider" ||
		user["clinic_id"] != "c1" || user["clinic_name"] != "North clinic" || user["hashed_password"] != "************" {
		t.Errorf("sign-in user: %s", r.body)
	}
	if strings.Contains(string(r.body), "$2") {
		t.Errorf("the password hash left the server: %s", r.body)
	}
	token, _ := m["token"].(string)
	if id, err := tokens.Verify(token); err != nil || id != "u1" {
		t.Errorf("sign-in token %q: %q, %v", token, id, err)
	}

	r = c.call("POST", actors.LoginPath, "", signInBody(nurseEmail, nursePassword))
	if r.status != 200 {
		t.Fatalf("login: %d %s", r.status, r.body)
	}
	m = r.json(t)
	if m["id"] != "u1" || m["email"] != nurseEmail || m["clinic_name"] != "North clinic" || m["hashed_password"] != "************" || m["user"] != nil {
		t.Errorf("login: %s", r.body)
	}
	login, _ := m["token"].(string)
	if id, err := tokens.Verify(login); err != nil || id != "u1" {
		t.Errorf("login token %q: %q, %v", login, id, err)
	}

	// The token is not a sync credential.
	if r := c.call("GET", "/api/v2/sync", "Bearer "+login, ""); r.status != 401 {
		t.Errorf("sync with a session token: %d %s", r.status, r.body)
	}
	// Changed or forged tokens are refused; a token expires after 2 h.
	for _, bad := range []string{"", "v1.x", login + "x", strings.Replace(login, ".", ".e", 1), "abc.def"} {
		if _, err := tokens.Verify(bad); !errors.Is(err, actors.ErrInvalidToken) {
			t.Errorf("Verify(%q): %v", bad, err)
		}
	}
	c.clock.Add(actors.SessionTokenTTL - time.Second)
	if _, err := tokens.Verify(login); err != nil {
		t.Errorf("a token just before it expires: %v", err)
	}
	c.clock.Add(time.Second)
	if _, err := tokens.Verify(login); !errors.Is(err, actors.ErrInvalidToken) || !strings.Contains(err.Error(), "expired") {
		t.Errorf("an expired token: %v", err)
	}
	// Another store's server cannot check (or make) this one's tokens.
	other := newCloud(t, actors.CloudConfig{})
	if _, err := (&actors.SessionTokens{Store: other.store, Clock: c.clock}).Verify(token); !errors.Is(err, actors.ErrInvalidToken) {
		t.Errorf("a token from another store: %v", err)
	}

	// A user whose clinic is gone gets clinic_name null.
	if err := c.store.Delete("clinics", "c1"); err != nil {
		t.Fatal(err)
	}
	r = c.call("POST", actors.LoginPath, "", signInBody(nurseEmail, nursePassword))
	if m := r.json(t); r.status != 200 || m["clinic_name"] != nil {
		t.Errorf("login without a clinic name: %d %s", r.status, r.body)
	}
}

// TestSignInRefusals: wrong credentials are 401 "Invalid credentials";
// bad bodies and methods are clear 4xx errors.
func TestSignInRefusals(t *testing.T) {
	t.Parallel()
	c := newCloud(t, actors.CloudConfig{})
	for _, path := range []string{actors.SignInPath, actors.LoginPath} {
		for _, tc := range []struct {
			name, method, body string
			status             int
			want               string
		}{
			{"wrong password", "POST", signInBody(nurseEmail, "wrong horse"), 401, "Invalid credentials"},
			{"unknown user", "POST", signInBody("who@example.org", nursePassword), 401, "Invalid credentials"},
			{"deleted user", "POST", signInBody("gone@example.org", nursePassword), 401, "Invalid credentials"},
			{"colon in email", "POST", signInBody("nurse@example.org:x", nursePassword), 401, "Invalid credentials"},
			{"not JSON", "POST", "email=nurse", 400, "want a JSON object"},
			{"empty body", "POST", "", 400, "want a JSON object"},
			{"no email", "POST", `{"password":"x"}`, 400, "email is missing"},
			{"no password", "POST", `{"email":"nurse@example.org"}`, 400, "password is missing"},
			{"email not a string", "POST", `{"email":1,"password":"x"}`, 400, "want a JSON object"},
			{"too large", "POST", `{"email":"` + strings.Repeat("a", 70<<10) + `"}`, 413, "limit"},
			{"GET", "GET", "", 405, "not allowed"},
		} {
			r := c.call(tc.method, path, "", tc.body)
			if r.status != tc.status || !strings.Contains(fmt.Sprint(r.json(t)["error"]), tc.want) {
				t.Errorf("%s %s: %d %s, want %d %q", path, tc.name, r.status, r.body, tc.status, tc.want)
			}
			if r.status == 405 && r.header.Get("Allow") != "POST" {
				t.Errorf("%s: 405 with Allow %q", path, r.header.Get("Allow"))
			}
		}
	}
}

// TestSignInRateLimits: every sign-in request counts per address (30
// per 15 minutes by default), and failed ones also count in the failed
// sign-in limits that Basic credentials share.
func TestSignInRateLimits(t *testing.T) {
	t.Parallel()
	c := newCloud(t, actors.CloudConfig{SignInLimit: 3, TrustForwardedFor: true})
	from := func(ip, password string) reply {
		return c.call("POST", actors.SignInPath, "", signInBody(nurseEmail, password), "X-Forwarded-For", ip)
	}
	for i := range 3 {
		if r := from("192.0.2.1", nursePassword); r.status != 200 {
			t.Fatalf("sign-in %d: %d %s", i, r.status, r.body)
		}
	}
	r := from("192.0.2.1", nursePassword)
	if r.status != 429 || r.header.Get("Retry-After") != "300" {
		t.Fatalf("over the limit: %d Retry-After %q %s", r.status, r.header.Get("Retry-After"), r.body)
	}
	if r := from("192.0.2.2", nursePassword); r.status != 200 {
		t.Errorf("another address: %d", r.status)
	}
	c.clock.Add(5 * time.Minute) // 3 per 15 minutes: one is back
	if r := from("192.0.2.1", nursePassword); r.status != 200 {
		t.Errorf("after 5 minutes: %d %s", r.status, r.body)
	}

	// Failed sign-ins: 2 a minute per address and account.
	c = newCloud(t, actors.CloudConfig{SignInLimit: -1, LoginFailures: 2, TrustForwardedFor: true})
	for range 2 {
		if r := from("192.0.2.3", "wrong horse"); r.status != 401 {
			t.Fatalf("wrong password: %d", r.status)
		}
	}
	r = from("192.0.2.3", "wrong horse")
	if r.status != 429 || r.header.Get("Retry-After") == "" || !strings.Contains(string(r.body), "failed sign-ins") {
		t.Errorf("failures over the limit: %d %v %s", r.status, r.header, r.body)
	}
	// The account is throttled from another address too, Basic included
	// (the limits are the Authenticator's); another account is not.
	if r := c.call("GET", "/api/v2/sync", basic(nurseEmail, "wrong horse"), "", "X-Forwarded-For", "192.0.2.4"); r.status != 429 {
		t.Errorf("Basic for a throttled account: %d %s", r.status, r.body)
	}
	if r := c.call("POST", actors.LoginPath, "", signInBody("who@example.org", "x"), "X-Forwarded-For", "192.0.2.4"); r.status != 401 {
		t.Errorf("another account: %d %s", r.status, r.body)
	}
	c.clock.Add(time.Minute)
	if r := from("192.0.2.3", nursePassword); r.status != 200 {
		t.Errorf("a minute later: %d %s", r.status, r.body)
	}
}
