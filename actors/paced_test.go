package actors_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/clinicsync/clinicsync/actors"
	"github.com/clinicsync/clinicsync/codec"
	pb "github.com/clinicsync/clinicsync/proto"
)

// pullAll pulls every page with tr from last_pulled_at 0 and returns
// the patients' ids and the number of pages.
func pullAll(t *testing.T, tr *actors.HTTPTransport, c *cloud, pageSize uint32) (ids []string, pages int) {
	t.Helper()
	req := &pb.PullRequest{PageSize: pageSize}
	for {
		resp, err := tr.Pull(context.Background(), req)
		if err != nil {
			t.Fatalf("page %d: %v", pages+1, err)
		}
		pages++
		cs, _, err := codec.DecodeChangeset(resp.GetChanges(), c.store.Catalog())
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range tableOf(cs, "patients").Created {
			ids = append(ids, r.ID)
		}
		if resp.GetContinuation() == "" {
			return ids, pages
		}
		req.Continuation = resp.GetContinuation()
	}
}

// Continuations are signed and self-describing: a changed or borrowed
// one is refused, and one issued before a restart of the server goes on
// after it.
func TestContinuationTokens(t *testing.T) {
	t.Parallel()
	c := newCloud(t, actors.CloudConfig{PageSize: 4})
	c.putPatients(10, "p")
	tr := &actors.HTTPTransport{BaseURL: c.srv.URL, Client: c.srv.Client(), Auth: actors.BasicAuth(nurseEmail, nursePassword)}
	ctx := context.Background()
	first, err := tr.Pull(ctx, &pb.PullRequest{})
	if err != nil || first.GetContinuation() == "" {
		t.Fatalf("first page: %v %v", first, err)
	}
	cont := first.GetContinuation()

	raw, _ := base64.RawURLEncoding.DecodeString(cont)
	raw[3] ^= 1 // the position moved by a bit
	tampered := base64.RawURLEncoding.EncodeToString(raw)
	hub := &actors.HTTPTransport{BaseURL: c.srv.URL, Client: c.srv.Client(), Auth: actors.HubAuth(hubKey)}
	for name, tc := range map[string]struct {
		tr   *actors.HTTPTransport
		req  *pb.PullRequest
		want string
	}{
		"tampered":     {tr, &pb.PullRequest{Continuation: tampered}, "signature does not match"},
		"garbage":      {tr, &pb.PullRequest{Continuation: "%%%"}, "not a continuation issued by this server"},
		"another pull": {tr, &pb.PullRequest{Continuation: cont, LastPulledAt: 5}, "belongs to another pull"},
		"another user": {hub, &pb.PullRequest{Continuation: cont}, "belongs to another pull"},
	} {
		if _, err := tc.tr.Pull(ctx, tc.req); !errors.Is(err, actors.ErrBadRequest) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want a 400 saying %q", name, err, tc.want)
		}
	}

	// A new handler over the same store (a restarted server) takes the
	// continuation: the signing secret is kept in the store.
	again := httptest.NewServer(actors.NewCloudHandler(c.store, actors.CloudConfig{PageSize: 4, RateLimit: -1}))
	defer again.Close()
	tr2 := &actors.HTTPTransport{BaseURL: again.URL, Client: again.Client(), Auth: actors.BasicAuth(nurseEmail, nursePassword)}
	req := &pb.PullRequest{Continuation: cont}
	for req.Continuation != "" {
		resp, err := tr2.Pull(ctx, req)
		if err != nil {
			t.Fatalf("after the restart: %v", err)
		}
		req.Continuation = resp.GetContinuation()
		if req.Continuation == "" && resp.GetSent() != 10 {
			t.Errorf("last page counts %d records sent, want 10", resp.GetSent())
		}
	}
}

// A client that follows Retry-After completes a pull however low the
// rate limit, waiting inside the same pull; the limit counts per
// caller, so another caller is not slowed.
func TestRetryAfterCompletes(t *testing.T) {
	t.Parallel()
	c := newCloud(t, actors.CloudConfig{PageSize: 2, RateLimit: 2})
	c.putPatients(10, "p")
	var waits []time.Duration
	tr := &actors.HTTPTransport{BaseURL: c.srv.URL, Client: c.srv.Client(), Auth: actors.BasicAuth(nurseEmail, nursePassword),
		Sleep: func(_ context.Context, d time.Duration) error {
			waits = append(waits, d)
			c.clock.Add(d)
			return nil
		}}
	ids, pages := pullAll(t, tr, c, 2)
	if len(ids) != 10 || pages != 6 {
		t.Fatalf("%d rows in %d pages", len(ids), pages)
	}
	if len(waits) < 4 {
		t.Fatalf("waited %d times, want one per page beyond the first 2", len(waits))
	}
	// 2 requests a minute: each wait is what Retry-After said (at most
	// 30 s) plus up to a quarter of jitter, and together they cover the
	// 4 requests over the allowance.
	var sum time.Duration
	for _, d := range waits {
		sum += d
		if d < time.Second || d > 30*time.Second*5/4 {
			t.Errorf("waited %v for a Retry-After of at most 30 s", d)
		}
	}
	if sum < 90*time.Second {
		t.Errorf("waited %v in all, want at least 90 s", sum)
	}
	// The nurse is out of requests; the hub, another caller, is not.
	if r := c.call("GET", "/api/v2/sync?peerType=sync_hub", "Bearer "+hubKey, "", "Accept", actors.ContentTypeProtobuf); r.status != 200 {
		t.Errorf("another caller: %d %s", r.status, r.body)
	}
	// A transport with no patience left fails with the 429.
	c.clock.Add(time.Minute) // the nurse's allowance is back: spend it
	impatient := &actors.HTTPTransport{BaseURL: c.srv.URL, Client: c.srv.Client(), Auth: actors.BasicAuth(nurseEmail, nursePassword),
		RetryWithin: time.Second}
	for range 2 {
		if _, err := impatient.Pull(context.Background(), &pb.PullRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := impatient.Pull(context.Background(), &pb.PullRequest{}); !errors.Is(err, actors.ErrRateLimited) {
		t.Errorf("over the limit with no patience: %v", err)
	}
}

// A user's credentials are checked with bcrypt once, not once per page;
// a changed password takes effect at once.
func TestCredentialsOncePerSync(t *testing.T) {
	t.Parallel()
	c := newCloud(t, actors.CloudConfig{PageSize: 2})
	c.putPatients(10, "p")
	tr := &actors.HTTPTransport{BaseURL: c.srv.URL, Client: c.srv.Client(), Auth: actors.BasicAuth(nurseEmail, nursePassword)}
	if _, pages := pullAll(t, tr, c, 2); pages != 6 {
		t.Fatalf("%d pages", pages)
	}
	if n := c.h.BcryptCalls(); n != 1 {
		t.Errorf("%d bcrypt checks for a 6-page pull, want 1", n)
	}
	// After CredentialTTL, the next request checks again.
	c.clock.Add(actors.CredentialTTL)
	pullAll(t, tr, c, 100)
	if n := c.h.BcryptCalls(); n != 2 {
		t.Errorf("%d bcrypt checks after the TTL, want 2", n)
	}
	// A new password (the user's row changes) ends the old one at once.
	hash, err := bcrypt.GenerateFromPassword([]byte("new horse"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.store.Put("users", "u1", map[string]codec.Value{"hashed_password": codec.String(string(hash))}); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Pull(context.Background(), &pb.PullRequest{}); !errors.Is(err, actors.ErrUnauthorized) {
		t.Errorf("old password after a change: %v", err)
	}
	renewed := &actors.HTTPTransport{BaseURL: c.srv.URL, Client: c.srv.Client(), Auth: actors.BasicAuth(nurseEmail, "new horse")}
	if _, err := renewed.Pull(context.Background(), &pb.PullRequest{}); err != nil {
		t.Errorf("new password: %v", err)
	}
}

// Failed sign-ins slow down their address and their account, before any
// bcrypt, while a signed-in user from elsewhere goes on.
func TestFailedLoginsThrottled(t *testing.T) {
	t.Parallel()
	c := newCloud(t, actors.CloudConfig{TrustForwardedFor: true, LoginFailures: actors.DefaultLoginFailures})
	from := func(ip, auth string) reply {
		return c.call("GET", "/api/v2/sync", auth, "", "X-Forwarded-For", ip)
	}
	if r := from("192.0.2.9", nurse); r.status != 200 { // the nurse signs in first
		t.Fatalf("nurse: %d", r.status)
	}
	for i := range actors.DefaultLoginFailures {
		if r := from("192.0.2.1", basic(fmt.Sprintf("guess%d@example.org", i), "x")); r.status != 401 {
			t.Fatalf("guess %d: %d", i, r.status)
		}
	}
	before := c.h.BcryptCalls()
	r := from("192.0.2.1", basic("another@example.org", "x"))
	if r.status != 429 || r.header.Get("Retry-After") == "" || !strings.Contains(string(r.body), "failed sign-ins") {
		t.Errorf("guessing past the limit: %d %v %s", r.status, r.header, r.body)
	}
	if c.h.BcryptCalls() != before {
		t.Error("a throttled sign-in still ran bcrypt")
	}
	if r := from("192.0.2.9", nurse); r.status != 200 {
		t.Errorf("the signed-in nurse from another address: %d %s", r.status, r.body)
	}
	// Guessing one account from many addresses slows that account.
	for i := range actors.DefaultLoginFailures {
		from(fmt.Sprintf("198.51.100.%d", i), basic("gone@example.org", "x"))
	}
	if r := from("198.51.100.200", basic("gone@example.org", "x")); r.status != 429 {
		t.Errorf("an account guessed from many addresses: %d", r.status)
	}
	// A minute later the address may try again.
	c.clock.Add(time.Minute)
	if r := from("192.0.2.1", nurse); r.status != 200 {
		t.Errorf("after a minute: %d", r.status)
	}
}

// timedHandler adds up the time requests spend in a handler.
type timedHandler struct {
	h     http.Handler
	mu    sync.Mutex
	spent time.Duration
	n     int
}

func (t *timedHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	t.h.ServeHTTP(w, r)
	t.mu.Lock()
	t.spent += time.Since(start)
	t.n++
	t.mu.Unlock()
}

// BenchmarkInitialSyncAuth: the bcrypt checks of an initial sync of 20k
// rows in 2000-row pages (1 per sync: the credentials are remembered),
// and the server's time per page, next to the time of one bcrypt check
// at the users' cost, which every page paid before.
func BenchmarkInitialSyncAuth(b *testing.B) {
	c := newCloud(b, actors.CloudConfig{})
	c.srv.Close()
	c.putPatients(20_000, "p")
	hash, _ := bcrypt.GenerateFromPassword([]byte(nursePassword), actors.BcryptCost)
	if _, err := c.store.Put("users", "u1", map[string]codec.Value{"hashed_password": codec.String(string(hash))}); err != nil {
		b.Fatal(err)
	}
	th := &timedHandler{h: c.h}
	srv := httptest.NewServer(th)
	defer srv.Close()
	start := time.Now()
	bcrypt.CompareHashAndPassword(hash, []byte(nursePassword))
	perBcrypt := time.Since(start)
	b.ResetTimer()
	before := c.h.BcryptCalls()
	pages := 0
	for range b.N {
		c.clock.Add(actors.CredentialTTL) // every sync signs in afresh
		tr := &actors.HTTPTransport{BaseURL: srv.URL, Client: srv.Client(), Auth: actors.BasicAuth(nurseEmail, nursePassword)}
		req := &pb.PullRequest{PageSize: 2000}
		for {
			resp, err := tr.Pull(context.Background(), req)
			if err != nil {
				b.Fatal(err)
			}
			pages++
			if req.Continuation = resp.GetContinuation(); req.Continuation == "" {
				break
			}
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(c.h.BcryptCalls()-before)/float64(b.N), "bcrypt/sync")
	b.ReportMetric(float64(pages)/float64(b.N), "pages/sync")
	b.ReportMetric(float64(th.spent.Microseconds())/1000/float64(th.n), "server-ms/page")
	b.ReportMetric(float64(perBcrypt.Microseconds())/1000, "ms/bcrypt")
}
