package actors

import (
	"math"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/clinicsync/clinicsync/kv"
)

// Default limits, per minute. Sync requests count per authenticated
// caller (a user, a hub's key), pull pages and pushes alike: enough for
// a client to pull pages back to back at full speed (a 1M-row initial
// sync is 500 pages of 2000 rows, 200 of DefaultPageSize), while a
// runaway one is slowed.
// Requests that are not authenticated (/healthz, missing credentials)
// count per client address under the same limit. Failed sign-ins count
// per address and per account under DefaultLoginFailures. (The
// reference server counts 60 requests a minute per address, every page
// included, so an initial sync of 100k rows never finishes; see
// README "Rate limits".)
const (
	DefaultRateLimit     = 1200
	DefaultLoginFailures = 10
)

// RateLimiter allows each client up to a number of requests per minute
// (or per window: NewWindowLimiter): a token bucket per client that
// holds at most that many requests and refills at that rate, so a
// client that keeps to the rate is never refused and one that bursts is
// refused until a token is back. Its clock is an input (tests advance a
// fake one). Buckets idle for a window are full again and are dropped,
// so memory follows the number of clients seen in the last window. A
// RateLimiter is safe for concurrent use.
type RateLimiter struct {
	capacity  float64       // requests a client may make at once
	perSecond float64       // the rate at which its tokens come back
	idle      time.Duration // the window: a bucket idle this long is full again
	clock     kv.Clock

	mu      sync.Mutex // guards buckets and swept
	buckets map[string]*tokenBucket
	swept   time.Time
}

type tokenBucket struct {
	tokens float64
	at     time.Time
}

// NewRateLimiter returns a limiter of perMinute requests per minute and
// client (at least 1); a nil clock is the wall clock.
func NewRateLimiter(perMinute int, clock kv.Clock) *RateLimiter {
	return NewWindowLimiter(perMinute, time.Minute, clock)
}

// NewWindowLimiter returns a limiter of n requests per window and
// client (n at least 1; window at least a second): a client may make n
// at once, and gets them back over the window.
func NewWindowLimiter(n int, window time.Duration, clock kv.Clock) *RateLimiter {
	if clock == nil {
		clock = SystemClock{}
	}
	n, window = max(n, 1), max(window, time.Second)
	return &RateLimiter{capacity: float64(n), perSecond: float64(n) / window.Seconds(), clock: clock,
		buckets: map[string]*tokenBucket{}, idle: window}
}

// Allow counts one request of client. When the client is over its rate
// it returns false and how long until the next request would be
// allowed.
func (l *RateLimiter) Allow(client string) (bool, time.Duration) {
	now := l.clock.Now()
	capacity, perSecond := l.capacity, l.perSecond
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweep(now)
	b, ok := l.buckets[client]
	if !ok {
		b = &tokenBucket{tokens: capacity, at: now}
		l.buckets[client] = b
	}
	if elapsed := now.Sub(b.at).Seconds(); elapsed > 0 {
		b.tokens = math.Min(capacity, b.tokens+elapsed*perSecond)
		b.at = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	wait := time.Duration((1 - b.tokens) / perSecond * float64(time.Second))
	return false, max(wait, time.Millisecond)
}

// Peek reports whether client has a request left, without counting
// one, and if not how long until it has.
func (l *RateLimiter) Peek(client string) (bool, time.Duration) {
	now := l.clock.Now()
	perSecond := l.perSecond
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[client]
	if !ok {
		return true, 0
	}
	tokens := math.Min(l.capacity, b.tokens+max(now.Sub(b.at).Seconds(), 0)*perSecond)
	if tokens >= 1 {
		return true, 0
	}
	return false, max(time.Duration((1-tokens)/perSecond*float64(time.Second)), time.Millisecond)
}

// sweep drops, at most once a window, the buckets that have refilled.
func (l *RateLimiter) sweep(now time.Time) {
	if now.Sub(l.swept) < l.idle {
		return
	}
	l.swept = now
	for k, b := range l.buckets {
		if now.Sub(b.at) >= l.idle {
			delete(l.buckets, k)
		}
	}
}

// Len returns the number of clients tracked.
func (l *RateLimiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}

// ClientAddress is the address a request is rate limited by: the IP of
// the remote end of the connection, or, when trustForwardedFor is set
// (behind a reverse proxy that sets it), the first address of
// X-Forwarded-For when it is an IP.
func ClientAddress(r *http.Request, trustForwardedFor bool) string {
	if trustForwardedFor {
		first, _, _ := strings.Cut(r.Header.Get("X-Forwarded-For"), ",")
		if ip := net.ParseIP(strings.TrimSpace(first)); ip != nil {
			return ip.String()
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
