package actors

// The cloud's HTTP surface: GET/POST /api/v2/sync as Hikma and
// WatermelonDB clients speak it (reference hikma-sync.md §1,
// watermelondb-sync.md), protobuf bodies for Go nodes, and /healthz.
// The rules are Server's (fsm.Serve, fsm.Push over kv): this file only
// moves bytes.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/clinicsync/clinicsync/codec"
	"github.com/clinicsync/clinicsync/codec/schema"
	"github.com/clinicsync/clinicsync/fsm"
	"github.com/clinicsync/clinicsync/kv"
	"github.com/clinicsync/clinicsync/pgstore"
	pb "github.com/clinicsync/clinicsync/proto"
	"google.golang.org/protobuf/proto"
)

// Media types of sync bodies.
const (
	ContentTypeJSON     = "application/json"
	ContentTypeProtobuf = "application/x-protobuf"
)

// SyncPath is where pulls (GET) and pushes (POST) are served.
const SyncPath = "/api/v2/sync"

// DefaultMaxBodyBytes bounds a push body when CloudConfig.MaxBodyBytes
// is 0.
const DefaultMaxBodyBytes = 32 << 20

// CloudConfig configures a CloudHandler.
type CloudConfig struct {
	// Policy is the push policy: fsm.MergePolicy (default) or
	// fsm.StrictPolicy (WatermelonDB's 409 rule).
	Policy fsm.Policy
	// Relay marks a hub: rows accepted from devices become pending for
	// its own upstream.
	Relay bool
	// RateLimit is the number of requests per minute an authenticated
	// caller (or, unauthenticated, an address) may make (0:
	// DefaultRateLimit; negative: no limit). Over it: 429 with
	// Retry-After.
	RateLimit int
	// LoginFailures is the number of failed sign-ins per minute an
	// address, and an account, may make before sign-ins from it are
	// refused without a check (0: DefaultLoginFailures; negative: no
	// limit).
	LoginFailures int
	// SignInLimit is the number of requests per SignInWindow a client
	// address may make to the sign-in paths (SignInPath, LoginPath),
	// whatever their outcome (0: DefaultSignInLimit; negative: no
	// limit). Over it: 429 with Retry-After.
	SignInLimit int
	// OnPush, when set, is called after each push this handler applied
	// (from the handler's goroutine: it must not block). A hub's
	// Upstream.Notify goes here.
	OnPush func(PushResult)
	// TrustForwardedFor rate limits by the first X-Forwarded-For address
	// instead of the connection's (set it only behind a proxy that
	// overwrites the header).
	TrustForwardedFor bool
	// MaxBodyBytes bounds a push body (0: DefaultMaxBodyBytes); a larger
	// one is refused with 413.
	MaxBodyBytes int64
	// PushBudgetBytes bounds the push body bytes in flight across
	// concurrent pushes (0: DefaultPushBudgetFactor × MaxBodyBytes; never
	// less than MaxBodyBytes). A push reserves its Content-Length (the
	// body limit when it announces none) before its body is read and
	// holds it until it is answered; one that would overrun the budget
	// is refused at once with 503 and Retry-After (PushRetryAfter).
	// While it is decoded and applied a push holds about 4 times its
	// body in the heap (BenchmarkPushHeap), so the budget bounds the
	// heap pushes take to about 4 times itself.
	PushBudgetBytes int64
	// PageSize is the most records a pull page holds (protobuf), and
	// the records read from the store at a time (JSON, at most
	// jsonReadRows), whatever the client asks (0: MaxPageSize).
	PageSize int
	// SpoolBytes bounds the encoded rows a JSON pull holds in memory
	// while it groups them by table (0: codec.DefaultSpoolMemory); past
	// it they go to a temporary file in SpoolDir ("": the system's
	// temporary directory), removed when the pull ends.
	SpoolBytes int
	SpoolDir   string
	// Clock is the rate limiters' and the credential memory's clock
	// (nil: the wall clock).
	Clock kv.Clock
	// Logger gets a line per request and the cause of every 500
	// (default slog.Default()).
	Logger *slog.Logger
}

// CloudHandler is the http.Handler of a serving node's sync API:
//
//	GET  /api/v2/sync  pull: ?last_pulled_at=MS (or lastPulledAt; null, 0 or absent is a first sync)
//	                   [&schema_version=N (or schemaVersion), recorded per client (kv.Client)]
//	                   [&device_id=ID, tells a user's devices apart]
//	POST /api/v2/sync  push: a changes object, or {"changes":...,"lastPulledAt":MS}
//	GET  /healthz      {"status":"ok"} while the store answers ("database":"ok" too over PostgreSQL)
//	POST /api/auth/sign-in, /api/login  Hikma sign-in (signin.go)
//
// JSON pulls answer {"changes":{...},"timestamp":N,"success":true},
// from one walk of the store's changes (see pullJSON); pushes answer
// {"success":true}, with experimentalRejectedIds when rows were refused.
// A request with Accept (pull) or Content-Type (push)
// application/x-protobuf gets protobuf bodies instead (pb.PullResponse
// pages with a continuation, pb.PushResponse). Errors are JSON
// {"error":"..."}: 400 bad parameter or body, 401, 404, 405, 409
// (strict policy conflict), 413, 429 (with Retry-After), 500 (cause
// logged). A push is applied whole or not at all.
type CloudHandler struct {
	server  *Server
	auth    *Authenticator
	limiter *RateLimiter // nil: no limit
	trustFF bool
	maxBody int64
	budget  *budget // push body bytes in flight
	spool   codec.SpoolOptions
	log     *slog.Logger

	// signInLimit counts sign-in requests per address (nil: no limit);
	// tokens issues the session tokens of signed-in users (signin.go).
	signInLimit *RateLimiter
	tokens      *SessionTokens
}

// NewCloudHandler returns the sync API over a store.
func NewCloudHandler(store *kv.Store, cfg CloudConfig) *CloudHandler {
	h := &CloudHandler{
		server:  &Server{Store: store, Policy: cfg.Policy, Relay: cfg.Relay, PageSize: cfg.PageSize, OnPush: cfg.OnPush},
		tokens:  &SessionTokens{Store: store, Clock: cfg.Clock},
		auth:    &Authenticator{Store: store, Clock: cfg.Clock},
		trustFF: cfg.TrustForwardedFor,
		maxBody: cfg.MaxBodyBytes,
		log:     cfg.Logger,
	}
	if h.maxBody <= 0 {
		h.maxBody = DefaultMaxBodyBytes
	}
	h.budget = newBudget(budgetLimit(cfg.PushBudgetBytes, h.maxBody))
	h.server.MaxPushBytes = h.maxBody
	h.spool = codec.SpoolOptions{MaxMemory: cfg.SpoolBytes, Dir: cfg.SpoolDir}
	if h.log == nil {
		h.log = slog.Default()
	}
	switch {
	case cfg.RateLimit == 0:
		h.limiter = NewRateLimiter(DefaultRateLimit, cfg.Clock)
	case cfg.RateLimit > 0:
		h.limiter = NewRateLimiter(cfg.RateLimit, cfg.Clock)
	}
	switch {
	case cfg.SignInLimit == 0:
		h.signInLimit = NewWindowLimiter(DefaultSignInLimit, SignInWindow, cfg.Clock)
	case cfg.SignInLimit > 0:
		h.signInLimit = NewWindowLimiter(cfg.SignInLimit, SignInWindow, cfg.Clock)
	}
	switch {
	case cfg.LoginFailures == 0:
		h.auth.Failures = NewRateLimiter(DefaultLoginFailures, cfg.Clock)
	case cfg.LoginFailures > 0:
		h.auth.Failures = NewRateLimiter(cfg.LoginFailures, cfg.Clock)
	}
	return h
}

// BcryptCalls counts the password checks made so far (a benchmark
// figure: one per sync, not one per page).
func (h *CloudHandler) BcryptCalls() int64 { return h.auth.Bcrypts.Load() }

// httpError is a refusal with its status and message.
type httpError struct {
	status int
	msg    string
	cause  error // logged for 500s
	retry  int   // seconds, sent as Retry-After when > 0
}

func (e *httpError) Error() string { return e.msg }

func refuse(status int, format string, a ...any) *httpError {
	return &httpError{status: status, msg: fmt.Sprintf(format, a...)}
}

// internal is a 500, or a 503 with Retry-After when the store's database
// did not answer (kv.ErrUnavailable: nothing was written).
func internal(cause error) *httpError {
	if errors.Is(cause, kv.ErrUnavailable) {
		return &httpError{status: http.StatusServiceUnavailable, msg: "the database is unavailable: try again later",
			cause: cause, retry: int(StoreRetryAfter / time.Second)}
	}
	return &httpError{status: http.StatusInternalServerError, msg: "internal server error", cause: cause}
}

// StoreRetryAfter is the Retry-After of a request refused because the
// store's database did not answer.
const StoreRetryAfter = 5 * time.Second

// outcome is what a request did, for its log line.
type outcome struct {
	caller  string
	records int
	extra   []any
}

// ServeHTTP routes a request.
func (h *CloudHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rw := &statusWriter{ResponseWriter: w}
	var out outcome
	var herr *httpError
	defer func() {
		if herr != nil {
			writeError(rw, herr)
		}
		attrs := []any{"method", r.Method, "path", r.URL.Path, "status", rw.status, "client", ClientAddress(r, h.trustFF),
			"ms", time.Since(start).Milliseconds()}
		if out.caller != "" {
			attrs = append(attrs, "caller", out.caller, "records", out.records)
		}
		attrs = append(attrs, out.extra...)
		switch {
		case herr != nil && herr.status >= 500:
			h.log.Error("sync request failed", append(attrs, "error", herr.msg, "cause", herr.cause)...)
		case herr != nil:
			h.log.Info("sync request refused", append(attrs, "error", herr.msg)...)
		case r.URL.Path == "/healthz":
			h.log.Debug("health check", attrs...)
		default:
			h.log.Info("sync request", attrs...)
		}
	}()
	switch r.URL.Path {
	case "/healthz":
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			herr = notAllowed(rw, r, "GET, HEAD")
			return
		}
		if herr = h.allow(rw, "address:"+ClientAddress(r, h.trustFF)); herr != nil {
			return
		}
		if _, err := h.server.Store.LastCursor(); err != nil {
			herr = &httpError{status: http.StatusServiceUnavailable, msg: "store unavailable", cause: err, retry: int(StoreRetryAfter / time.Second)}
			return
		}
		health := map[string]string{"status": "ok"}
		if _, shared := h.server.Store.Backend().(*pgstore.Backend); shared {
			health["database"] = "ok" // it answered the read above
		}
		writeJSON(rw, http.StatusOK, health)
	case SyncPath:
		if r.Method != http.MethodGet && r.Method != http.MethodPost {
			herr = notAllowed(rw, r, "GET, POST")
			return
		}
		herr = h.sync(rw, r, &out)
	case SignInPath, LoginPath:
		herr = h.signIn(rw, r, &out)
	default:
		if rest, ok := strings.CutPrefix(r.URL.Path, OpsPath); ok {
			herr = h.opsHTTP(rw, r, rest, &out)
			return
		}
		if rest, ok := strings.CutPrefix(r.URL.Path, CloudOpsPath); ok && !h.server.Relay { // a hub's /rpc/ is the Hikma RPC
			herr = h.opsHTTP(rw, r, rest, &out)
			return
		}
		herr = refuse(http.StatusNotFound, "not found: %s", r.URL.Path)
	}
}

// allow counts a request of a caller or address against the rate limit.
func (h *CloudHandler) allow(w http.ResponseWriter, key string) *httpError {
	if h.limiter == nil {
		return nil
	}
	if ok, wait := h.limiter.Allow(key); !ok {
		return tooMany(w, wait, "Too many requests. Please try again later.")
	}
	return nil
}

// tooMany is a 429 with the seconds to wait in Retry-After.
func tooMany(w http.ResponseWriter, wait time.Duration, msg string) *httpError {
	w.Header().Set("Retry-After", strconv.Itoa(max(int(math.Ceil(wait.Seconds())), 1)))
	return refuse(http.StatusTooManyRequests, "%s", msg)
}

// callerKey names an authenticated caller for the rate limiter.
func callerKey(c fsm.Caller) string {
	if c.Hub {
		return "hub:" + c.ID
	}
	return "user:" + c.ID
}

func notAllowed(w http.ResponseWriter, r *http.Request, allow string) *httpError {
	w.Header().Set("Allow", allow)
	return refuse(http.StatusMethodNotAllowed, "method %s not allowed on %s (allowed: %s)", r.Method, r.URL.Path, allow)
}

// sync authenticates, rate limits and dispatches a pull or a push.
func (h *CloudHandler) sync(w http.ResponseWriter, r *http.Request, out *outcome) *httpError {
	c, err := h.auth.Authenticate(r, ClientAddress(r, h.trustFF))
	var throttled *ThrottledError
	switch {
	case errors.As(err, &throttled):
		return tooMany(w, throttled.Wait, "Too many failed sign-ins. Please try again later.")
	case errors.Is(err, ErrUnauthorized):
		w.Header().Set("WWW-Authenticate", `Basic realm="clinicsync", charset="UTF-8"`)
		return refuse(http.StatusUnauthorized, "%v", err)
	case err != nil:
		return internal(fmt.Errorf("authenticating: %w", err))
	}
	if herr := h.allow(w, callerKey(c)); herr != nil {
		return herr
	}
	out.caller = callerKey(c)
	if r.Method == http.MethodGet {
		return h.pull(w, r, c, out)
	}
	return h.push(w, r, c, out)
}

// ---- pull ----

func (h *CloudHandler) pull(w http.ResponseWriter, r *http.Request, c fsm.Caller, out *outcome) *httpError {
	q := r.URL.Query()
	since, herr := lastPulledAt(q)
	if herr != nil {
		return herr
	}
	ver, herr := schemaVersion(q)
	if herr != nil {
		return herr
	}
	device := q.Get("device_id")
	if device != "" && !schema.ValidID(device) {
		return refuse(http.StatusBadRequest, "query parameter device_id=%q: want 1-128 characters from [A-Za-z0-9_.-]", device)
	}
	mig, err := codec.ParseMigration(q.Get("migration"), h.server.Store.Catalog())
	if err != nil {
		return refuse(http.StatusBadRequest, "query parameter migration: %v", err)
	}
	if accepts(r, ContentTypeProtobuf) {
		return h.pullProto(w, q, c, since, ver, mig, out)
	}
	if err := h.server.recordClient(c, ver, device); err != nil {
		return internal(err)
	}
	out.extra = append(out.extra, "schema_version", ver)
	if since == 0 || mig.Empty() {
		mig = nil // a first pull returns every row anyway
	} else {
		out.extra = append(out.extra, "migration_from", mig.From)
	}
	return h.pullJSON(w, c, since, mig, out)
}

// schemaVersion reads schema_version or schemaVersion, the app's schema
// version (WatermelonDB's schemaVersion): absent, empty, null or
// undefined is 0 (not given).
func schemaVersion(q url.Values) (int64, *httpError) {
	for _, k := range []string{"schema_version", "schemaVersion"} {
		text := strings.TrimSpace(q.Get(k))
		switch text {
		case "", "null", "undefined":
			continue
		}
		n, err := strconv.ParseInt(text, 10, 64)
		if err != nil || n < 0 {
			return 0, refuse(http.StatusBadRequest, "query parameter %s=%q is not a schema version (a whole number >= 0)", k, text)
		}
		return n, nil
	}
	return 0, nil
}

// lastPulledAt reads last_pulled_at or lastPulledAt: absent, empty,
// null, undefined or 0 is a first sync (0).
func lastPulledAt(q url.Values) (int64, *httpError) {
	name, text := "", ""
	for _, k := range []string{"last_pulled_at", "lastPulledAt"} {
		vs, ok := q[k]
		if !ok {
			continue
		}
		if len(vs) > 1 {
			return 0, refuse(http.StatusBadRequest, "query parameter %s is given %d times", k, len(vs))
		}
		if name != "" && strings.TrimSpace(vs[0]) != text {
			return 0, refuse(http.StatusBadRequest, "query parameters %s=%q and %s=%q differ", name, text, k, vs[0])
		}
		name, text = k, strings.TrimSpace(vs[0])
	}
	switch text {
	case "", "null", "undefined":
		return 0, nil
	}
	n, err := strconv.ParseInt(text, 10, 64)
	if err != nil {
		// JavaScript may print an integral number as 1.7e12.
		f, ferr := strconv.ParseFloat(text, 64)
		if ferr != nil || f != math.Trunc(f) || math.Abs(f) >= 1<<62 {
			return 0, refuse(http.StatusBadRequest, "query parameter %s=%q is not a timestamp in milliseconds", name, text)
		}
		n = int64(f)
	}
	if n < 0 {
		return 0, refuse(http.StatusBadRequest, "query parameter %s=%q is negative", name, text)
	}
	return n, nil
}

// accepts reports whether the request's Accept header names mediaType.
func accepts(r *http.Request, mediaType string) bool {
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		if t, _, err := mime.ParseMediaType(strings.TrimSpace(part)); err == nil && t == mediaType {
			return true
		}
	}
	return false
}

// pullJSON answers a JSON pull from one walk of the cursor index, the
// walk and serve function of a protobuf pull (Server.servePage). The
// timestamp T is read first; then the changes with cursors in
// (since, T] are read a page at a time, each page goes through
// fsm.ServeWith, and its rows go into a codec.PullSpool, which groups
// them by table and list as the document needs (each row encoded at
// once; in memory up to CloudConfig.SpoolBytes, in a temporary file
// past it) and writes the document once the walk is done. Every row
// changed at or before T is thus sent once, as it was at T or later (a
// row changed after T moves above T and comes with the next pull), and
// memory stays bounded by a page plus the spool's bound whatever the
// size of the pull.
//
// A migration sync (mig) first walks the rows at or below since for
// the migration's rows (fsm.ServeMigration): they come first in their
// list, and none repeats a row of the changes since.
//
// Nothing reaches the response before the walk is done, so a failure
// during it is a 500. A failure while the document is written cuts the
// connection: the client sees a truncated document, which it refuses
// whole.
func (h *CloudHandler) pullJSON(w http.ResponseWriter, c fsm.Caller, since int64, mig *codec.Migration, out *outcome) *httpError {
	tw := &trackingWriter{w: w}
	w.Header().Set("Content-Type", ContentTypeJSON)
	ts, spilled, err := h.writePull(tw, c, since, mig, func(n int) { out.records += n })
	switch {
	case err != nil && !tw.wrote:
		w.Header().Del("Content-Type")
		return internal(err)
	case err != nil:
		h.log.Error("sync pull failed mid-stream; aborting the response", "caller", out.caller, "cause", err)
		panic(http.ErrAbortHandler)
	}
	out.extra = append(out.extra, "since", since, "timestamp", ts, "bytes", tw.n, "spilled", spilled)
	return nil
}

// writePull writes c's JSON pull document to w as pullJSON describes:
// the timestamp first, then one walk (the migration's rows first when
// mig is set) into a codec.PullSpool, the document once the walk is
// done. added counts the records of each page (on the goroutine that
// encodes them; writePull returns after it). It returns the timestamp
// and the bytes the spool kept on disk.
func (h *CloudHandler) writePull(w io.Writer, c fsm.Caller, since int64, mig *codec.Migration, added func(int)) (ts, spilled int64, err error) {
	st := h.server.Store
	if ts, err = st.IssueCursor(); err != nil {
		return 0, 0, err
	}
	spool := codec.NewPullSpool(w, codec.Options{Catalog: st.Catalog(), IncludeSecret: c.Hub}, h.spool)
	defer func() {
		if err := spool.Abort(); err != nil {
			h.log.Error("sync pull: releasing its spool file", "caller", callerKey(c), "cause", err)
		}
	}()
	// Pages are read here and encoded by a second goroutine, so that
	// reading page n+1 and encoding page n overlap (no page waits in
	// between: two pages are in memory at most).
	pages, encoded := make(chan *codec.Changeset), make(chan error, 1)
	go func() {
		var err error
		for cs := range pages {
			if err == nil { // after a failure, drain
				var n int
				n, err = spoolPage(spool, cs)
				added(n)
			}
		}
		encoded <- err
	}()
	add := func(cs *codec.Changeset) error {
		pages <- cs
		return nil
	}
	if mig != nil {
		err = h.eachPage(c, since, mig, 0, since, add)
	}
	if err == nil {
		err = h.eachPage(c, since, nil, since, ts, add)
	}
	close(pages)
	if err := errors.Join(err, <-encoded); err != nil {
		return 0, 0, err
	}
	if err := spool.Close(ts); errors.Is(err, codec.ErrSpoolRelease) { // after the whole document
		h.log.Error("sync pull: releasing its spool file", "caller", callerKey(c), "cause", err)
	} else if err != nil {
		return 0, 0, err
	}
	return ts, spool.Spilled(), nil
}

// eachPage serves c the pages of changes with cursors in (from, to]
// (Server.servePage: the migration's rows when mig is set) and calls fn
// with each page's changeset.
func (h *CloudHandler) eachPage(c fsm.Caller, since int64, mig *codec.Migration, from, to int64, fn func(*codec.Changeset) error) error {
	size := min(h.server.pageSize(), jsonReadRows)
	for {
		page, cs, err := h.server.servePage(c, since, mig, from, to, size, h.server.Store.ValuesSince)
		if err != nil {
			return err
		}
		if err := fn(cs); err != nil || !page.More {
			return err
		}
		from = page.Next
	}
}

// spoolPage adds a page's changes to the spool and returns how many.
func spoolPage(spool *codec.PullSpool, cs *codec.Changeset) (int, error) {
	n := 0
	for _, table := range cs.TableNames() {
		tc := cs.Tables[table]
		for _, l := range []struct {
			name string
			rows []codec.Row
		}{{"created", tc.Created}, {"updated", tc.Updated}} {
			for _, row := range l.rows {
				if err := spool.Row(table, l.name, row); err != nil {
					return n, err
				}
				n++
			}
		}
		for _, id := range tc.Deleted {
			if err := spool.Deleted(table, id); err != nil {
				return n, err
			}
			n++
		}
	}
	return n, nil
}

// pullProto answers one protobuf page (Server.Pull): the continuation
// is passed through as the client sent it, and checked there.
func (h *CloudHandler) pullProto(w http.ResponseWriter, q url.Values, c fsm.Caller, since, schemaVersion int64, mig *codec.Migration, out *outcome) *httpError {
	req := &pb.PullRequest{ProtocolVersion: pb.ProtocolVersion_PROTOCOL_VERSION_1, LastPulledAt: since,
		RequestId: q.Get("request_id"), PeerType: q.Get("peerType"), SchemaVersion: schemaVersion,
		Migration: codec.MigrationToProto(mig), Continuation: q.Get("continuation")}
	if ps := q.Get("page_size"); ps != "" {
		n, err := strconv.ParseUint(ps, 10, 32)
		if err != nil {
			return refuse(http.StatusBadRequest, "query parameter page_size=%q is not a page size", ps)
		}
		req.PageSize = uint32(n)
	}
	resp, err := h.server.Pull(c, req)
	if errors.Is(err, ErrBadRequest) {
		return refuse(http.StatusBadRequest, "%v", err)
	}
	if err != nil {
		return internal(err)
	}
	out.records = codec.CountChanges(resp.GetChanges())
	out.extra = append(out.extra, "since", since, "timestamp", resp.GetTimestamp(), "more", resp.Continuation != "")
	return writeProto(w, resp)
}

// ---- push ----

// pushResponse is the JSON answer to a push. Rejected rows stay pending
// on the device: experimentalRejectedIds is what WatermelonDB reads;
// rejected says why, for people.
type pushResponse struct {
	Success  bool                `json:"success"`
	Rejected map[string][]string `json:"experimentalRejectedIds,omitempty"`
	Reasons  []rejection         `json:"rejected,omitempty"`
}

type rejection struct {
	Table  string `json:"table"`
	ID     string `json:"id"`
	Reason string `json:"reason"`
}

func (h *CloudHandler) push(w http.ResponseWriter, r *http.Request, c fsm.Caller, out *outcome) *httpError {
	key := callerKey(c)
	body, held, herr := h.readBody(w, r, key)
	if herr != nil {
		return herr
	}
	// The budget stays held until the push is answered: the decoded
	// changeset costs about what its body did. The body itself is not
	// used past its decoding, so the GC may take it back while the push
	// applies (decoders copy what they keep).
	defer h.budget.give(key, held)
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct == ContentTypeProtobuf {
		req := new(pb.PushRequest)
		if err := codec.Unmarshal(body, req); err != nil {
			return refuse(http.StatusBadRequest, "push body: %v", err)
		}
		out.records = codec.CountChanges(req.GetChanges())
		lpa := req.GetLastPulledAt()
		resp, herr := h.apply(c, req)
		if herr != nil {
			return herr
		}
		out.extra = append(out.extra, "last_pulled_at", lpa, "rejected", len(resp.GetRejected()), "ahead", resp.GetAhead())
		return writeProto(w, resp)
	}

	cs, lpa, rep, err := codec.DecodePush(body, h.pushOptions())
	if err != nil {
		return refuse(http.StatusBadRequest, "push body: %v", err)
	}
	if lpa == 0 {
		if lpa, herr = lastPulledAt(r.URL.Query()); herr != nil {
			return herr
		}
	}
	resp, herr := h.pushJSON(c, cs, lpa, rep, out)
	if herr != nil {
		return herr
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

// pushOptions are the options a JSON push is decoded with.
func (h *CloudHandler) pushOptions() codec.Options {
	return codec.Options{Catalog: h.server.Store.Catalog(), KeepUnknownTables: true, MaxValueBytes: kv.MaxValueBytes}
}

// pushJSON applies a decoded JSON push (of /api/v2/sync, or of the
// Hikma hub's sync_push) and returns its answer.
func (h *CloudHandler) pushJSON(c fsm.Caller, cs *codec.Changeset, lpa int64, rep codec.Report, out *outcome) (pushResponse, *httpError) {
	cat := h.server.Store.Catalog()
	if len(rep.Unknown) > 0 {
		h.log.Warn("push kept columns or tables this node does not know", "caller", out.caller, "unknown", rep.Unknown)
	}
	// Records whose values normalization refuses, and tables this node
	// does not know, are refused row by row: the rows stay pending on
	// the device, nothing of them is stored, and the rest of the push
	// goes on.
	resp := pushResponse{Success: true}
	for _, rj := range rep.Rejected {
		resp.reject(rj.Table, rj.ID, rj.Err.Error())
	}
	if len(rep.Rejected) > 0 {
		h.log.Warn("push records rejected", "caller", out.caller, "rejected", len(rep.Rejected), "first", rep.Rejected[0].Err)
	}
	for _, name := range cs.TableNames() {
		if _, ok := cat.Table(name); ok {
			continue
		}
		tc := cs.Tables[name]
		for _, rows := range [][]codec.Row{tc.Created, tc.Updated} {
			for _, row := range rows {
				resp.reject(name, row.ID, "unknown table "+name)
			}
		}
		for _, id := range tc.Deleted {
			resp.reject(name, id, "unknown table "+name)
		}
		delete(cs.Tables, name)
	}
	out.records = cs.Count() + len(resp.Reasons)
	// The decoded changeset goes to the Server as it is: no protobuf
	// round trip.
	res, herr := h.applyChanges(c, lpa, cs, len(resp.Reasons))
	if herr != nil {
		return pushResponse{}, herr
	}
	for _, rj := range res.Rejected {
		resp.reject(rj.Table, rj.ID, rj.Reason)
	}
	out.extra = append(out.extra, "last_pulled_at", lpa, "rejected", len(resp.Reasons))
	return resp, nil
}

func (p *pushResponse) reject(table, id, reason string) {
	if p.Rejected == nil {
		p.Rejected = map[string][]string{}
	}
	p.Rejected[table] = append(p.Rejected[table], id)
	p.Reasons = append(p.Reasons, rejection{table, id, reason})
}

// apply runs a protobuf push through the Server: all of it or nothing.
func (h *CloudHandler) apply(c fsm.Caller, req *pb.PushRequest) (*pb.PushResponse, *httpError) {
	resp, err := h.server.Push(c, req)
	if err != nil {
		return nil, pushRefusal(err)
	}
	h.warnAhead(c, int(resp.GetAhead()))
	return resp, nil
}

// applyChanges runs a decoded push through the Server: all of it or
// nothing.
func (h *CloudHandler) applyChanges(c fsm.Caller, lpa int64, cs *codec.Changeset, refused int) (PushResult, *httpError) {
	res, err := h.server.pushChanges(c, lpa, cs, refused)
	if err != nil {
		return PushResult{}, pushRefusal(err)
	}
	h.warnAhead(c, res.Ahead)
	return res, nil
}

func pushRefusal(err error) *httpError {
	switch {
	case errors.Is(err, fsm.ErrConflict):
		return refuse(http.StatusConflict, "%v: pull, merge and push again", err)
	case errors.Is(err, ErrBadRequest):
		return refuse(http.StatusBadRequest, "push body: %v", err)
	}
	return internal(err)
}

func (h *CloudHandler) warnAhead(c fsm.Caller, versions int) {
	if versions > 0 {
		h.log.Warn("push carries versions dated beyond this node's clock: the caller's clock (or its devices') runs ahead", "caller", c.ID, "versions", versions)
	}
}

// readBody reserves a push body's bytes in the push budget, then reads
// the body up to the size limit. It returns the bytes it holds in the
// budget, to give back once the push is answered: the body's
// Content-Length, or, when it announces none, the size limit until the
// body is read and its size after. A push the budget (or the caller's
// share of it) cannot take now is refused before its body is read: 503
// with Retry-After.
func (h *CloudHandler) readBody(w http.ResponseWriter, r *http.Request, caller string) ([]byte, int64, *httpError) {
	tooLarge := refuse(http.StatusRequestEntityTooLarge, "request body is over the %d-byte limit", h.maxBody)
	if r.ContentLength > h.maxBody {
		return nil, 0, tooLarge
	}
	held := r.ContentLength
	if held < 0 {
		held = h.maxBody
	}
	if !h.budget.take(caller, held) {
		w.Header().Set("Retry-After", strconv.Itoa(int(PushRetryAfter/time.Second)))
		return nil, 0, refuse(http.StatusServiceUnavailable, "The server is busy with other pushes. Please try again in a few seconds.")
	}
	body, err := readAll(http.MaxBytesReader(w, r.Body, h.maxBody), r.ContentLength)
	var mbe *http.MaxBytesError
	var herr *httpError
	switch {
	case errors.As(err, &mbe):
		herr = tooLarge
	case timedOut(err):
		herr = refuse(http.StatusRequestTimeout, "the request body did not arrive in time")
	case err != nil:
		herr = refuse(http.StatusBadRequest, "reading the request body: %v", err)
	}
	if herr != nil {
		h.budget.give(caller, held)
		return nil, 0, herr
	}
	if n := int64(len(body)); n < held {
		h.budget.shrink(caller, held-n)
		held = n
	}
	return body, held, nil
}

// ---- writing ----

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("actors: marshalling a %T: %v", v, err))
	}
	w.Header().Set("Content-Type", ContentTypeJSON)
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, e *httpError) {
	if e.retry > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(e.retry))
	}
	writeJSON(w, e.status, map[string]string{"error": e.msg})
}

func writeProto(w http.ResponseWriter, m proto.Message) *httpError {
	b, err := proto.Marshal(m) // only decoded: no sorting of map entries
	if err != nil {
		return internal(fmt.Errorf("marshalling a %T: %w", m, err))
	}
	w.Header().Set("Content-Type", ContentTypeProtobuf)
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	w.Write(b)
	return nil
}

// statusWriter records the status of a response.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(p []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(p)
}

// trackingWriter notes whether anything reached the response.
type trackingWriter struct {
	w     io.Writer
	wrote bool
	n     int64
}

func (t *trackingWriter) Write(p []byte) (int, error) {
	t.wrote = true
	n, err := t.w.Write(p)
	t.n += int64(n)
	return n, err
}

// jsonReadRows is the most records a JSON pull reads from the store at
// a time (less when --page-size is smaller): two such pages are in
// memory at once, one read, one encoded.
const jsonReadRows = 2000
