package actors

// The Hikma mobile app's hub RPC (reference hikma-sync.md §2), served
// by a hub beside its /api/v2/sync API:
//
//	GET  /rpc/heartbeat  {"status":"ok"}
//	POST /rpc/handshake  {"client_id","client_public_key"[,"device_name"]}
//	                     → {"hub_public_key","hub_id","hub_name","success":true}
//	POST /rpc/command    {"client_id","payload"}: sealed {"command","data","token"}
//	POST /rpc/query      {"client_id","payload"}: sealed {"query","params","token"}
//
// The crypto is codec's (Seal, Open, DeriveSessionKey): a session key
// per client id, from the hub's static X25519 key and the client's
// fresh one, held in memory only. The operations are login (a JWT),
// ping, heartbeat, and sync_pull / sync_push, which go through the
// same Server and JSON encoding as /api/v2/sync (CloudHandler).

import (
	"bytes"
	"container/list"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/clinicsync/clinicsync/codec"
	"github.com/clinicsync/clinicsync/codec/schema"
	"github.com/clinicsync/clinicsync/fsm"
	"github.com/clinicsync/clinicsync/kv"
)

// Hikma RPC paths.
const (
	HikmaHeartbeatPath = "/rpc/heartbeat"
	HikmaHandshakePath = "/rpc/handshake"
	HikmaCommandPath   = "/rpc/command"
	HikmaQueryPath     = "/rpc/query"
)

// DefaultMaxSessions bounds the paired sessions a hub holds when
// HikmaConfig.MaxSessions is 0.
const DefaultMaxSessions = 4096

// replayWindow is how many envelope nonces a session remembers.
const replayWindow = 1024

// jwtKeyConfig is the store secret that signs login tokens.
const jwtKeyConfig = "hikma_jwt_key"

// Error codes of refusals (error_code). AUTH_FAILED is the one the
// app acts on (it logs in again, or re-handshakes); the others are
// shown with their message.
const (
	CodeAuthFailed      = "AUTH_FAILED"
	CodeSessionExpired  = "SESSION_EXPIRED"
	CodeHandshakeFailed = "HANDSHAKE_FAILED"
	CodeDecryption      = "DECRYPTION_FAILED"
	CodeBadRequest      = "BAD_REQUEST"
	CodeNotSupported    = "NOT_SUPPORTED"
	CodeConflict        = "CONFLICT"
	CodeRateLimited     = "RATE_LIMITED"
	CodeServerError     = "SERVER_ERROR"
)

// HikmaConfig configures a HikmaHandler.
type HikmaConfig struct {
	// MaxSessions bounds the sessions held (0: DefaultMaxSessions);
	// past it the least recently used is dropped, and its app
	// re-handshakes (it does before every use anyway).
	MaxSessions int
	// Clock dates login tokens (nil: the wall clock).
	Clock kv.Clock
	// Rand gives response nonces (nil: crypto/rand).
	Rand io.Reader
	// Logger gets a line per request (nil: slog.Default()).
	Logger *slog.Logger
}

// HikmaHandler serves the Hikma app's hub RPC on /rpc/ and hands every
// other path to the hub's CloudHandler.
//
// Refusals are JSON {"success":false,"error":"<message>","error_code":C}:
//   - of an operation (wrong password, missing or expired token, bad
//     parameters, unknown command): HTTP 200, in plain text, as the
//     reference hub sends them; the app reads error and error_code
//     (AUTH_FAILED for credentials and tokens) instead of trying to
//     decrypt an empty payload (reference §8.4);
//   - of an envelope: 401 SESSION_EXPIRED for a client id with no
//     session (handshake again), 400 DECRYPTION_FAILED for a payload
//     that does not open (altered, wrong key, wrong direction, or
//     replayed), 400 BAD_REQUEST for bad JSON; 400 HANDSHAKE_FAILED
//     for a refused handshake; 403 for a device revoked on the hub.
//
// # Replays
//
// Envelopes carry random nonces and no counter (the reference
// protocol), so a replay cannot be told from a fresh envelope without
// state. Each session remembers the nonces of its last replayWindow
// accepted envelopes and refuses one seen again: a replay within a
// session is refused. A replay after the session is gone (the app
// re-handshakes before every use, which replaces it; or it was
// evicted, or the hub restarted) no longer opens: the key it was
// sealed under is forgotten. Not detected: a replay of an envelope
// older than the last replayWindow of the same live session.
// Responses are not protected against replay toward the app.
type HikmaHandler struct {
	cloud          *CloudHandler
	store          *kv.Store
	priv           *ecdh.PrivateKey
	pub            string
	hubID, hubName string
	clock          kv.Clock
	rand           io.Reader
	log            *slog.Logger
	sessions       *sessions
}

// HikmaHandler returns a hub's HTTP handler: the Hikma app's RPC on
// /rpc/ and cloud (the node's CloudHandler) for the rest. Only a hub
// serves it (ErrNotServing otherwise).
func (n *Node) HikmaHandler(cloud *CloudHandler, cfg HikmaConfig) (*HikmaHandler, error) {
	if n.info.Kind != KindHub {
		return nil, fmt.Errorf("%w: the Hikma app's RPC is served by a hub, this is a %s", ErrNotServing, n.info.Kind)
	}
	priv, err := n.PrivateKey()
	if err != nil {
		return nil, err
	}
	h := &HikmaHandler{cloud: cloud, store: n.store, priv: priv, pub: codec.EncodePublicKey(priv.PublicKey()),
		hubID: n.info.NodeID, hubName: n.info.Name, clock: cfg.Clock, rand: cfg.Rand, log: cfg.Logger,
		sessions: newSessions(cfg.MaxSessions)}
	if h.clock == nil {
		h.clock = SystemClock{}
	}
	if h.rand == nil {
		h.rand = rand.Reader
	}
	if h.log == nil {
		h.log = slog.Default()
	}
	h.log = h.log.With("node", n.info.NodeID)
	if h.hubName == "" {
		h.hubName = n.info.NodeID
	}
	return h, nil
}

// Sessions reports how many paired sessions the hub holds.
func (h *HikmaHandler) Sessions() int { return h.sessions.len() }

// rpcError is a refusal: its HTTP status, code and message; cause is
// logged, never sent.
type rpcError struct {
	status int
	code   string
	msg    string
	cause  error
}

func (e *rpcError) Error() string { return e.msg }

func rpcRefuse(status int, code, format string, a ...any) *rpcError {
	return &rpcError{status: status, code: code, msg: fmt.Sprintf(format, a...)}
}

// opError is an operation's refusal: HTTP 200 (see HikmaHandler).
func opError(code, format string, a ...any) *rpcError {
	return rpcRefuse(http.StatusOK, code, format, a...)
}

func rpcInternal(cause error) *rpcError {
	msg := "internal server error"
	if errors.Is(cause, kv.ErrUnavailable) {
		msg = "the database is unavailable: try again later"
	}
	return &rpcError{status: http.StatusOK, code: CodeServerError, msg: msg, cause: cause}
}

// rpcLog is what a request did, for its log line.
type rpcLog struct {
	client, op, user string
}

// ServeHTTP routes /rpc/ requests, and hands the rest to the
// CloudHandler.
func (h *HikmaHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.HasPrefix(r.URL.Path, "/rpc/") {
		h.cloud.ServeHTTP(w, r)
		return
	}
	start := time.Now()
	rw := &statusWriter{ResponseWriter: w}
	addr := ClientAddress(r, h.cloud.trustFF)
	var l rpcLog
	var rerr *rpcError
	defer func() {
		if rerr != nil {
			writeJSON(rw, rerr.status, map[string]any{"success": false, "error": rerr.msg, "error_code": rerr.code})
		}
		attrs := []any{"method", r.Method, "path", r.URL.Path, "status", rw.status, "client", addr,
			"ms", time.Since(start).Milliseconds()}
		for _, kv := range [][2]string{{"client_id", l.client}, {"op", l.op}, {"user", l.user}} {
			if kv[1] != "" {
				attrs = append(attrs, kv[0], kv[1])
			}
		}
		switch {
		case rerr != nil && rerr.code == CodeServerError:
			h.log.Error("hikma request failed", append(attrs, "error", rerr.msg, "cause", rerr.cause)...)
		case rerr != nil:
			h.log.Info("hikma request refused", append(attrs, "error_code", rerr.code, "error", rerr.msg)...)
		case r.URL.Path == HikmaHeartbeatPath:
			h.log.Debug("hikma heartbeat", attrs...)
		default:
			h.log.Info("hikma request", attrs...)
		}
	}()
	if herr := h.cloud.allow(rw, "address:"+addr); herr != nil {
		rerr = rpcRefuse(herr.status, CodeRateLimited, "%s", herr.msg)
		return
	}
	switch r.URL.Path {
	case HikmaHeartbeatPath:
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			rw.Header().Set("Allow", "GET, HEAD")
			rerr = rpcRefuse(http.StatusMethodNotAllowed, CodeBadRequest, "method %s not allowed on %s", r.Method, r.URL.Path)
			return
		}
		writeJSON(rw, http.StatusOK, map[string]string{"status": "ok"})
	case HikmaHandshakePath, HikmaCommandPath, HikmaQueryPath:
		if r.Method != http.MethodPost {
			rw.Header().Set("Allow", "POST")
			rerr = rpcRefuse(http.StatusMethodNotAllowed, CodeBadRequest, "method %s not allowed on %s", r.Method, r.URL.Path)
			return
		}
		// The envelope is opened only once read: the body counts
		// against the push budget by address.
		body, held, herr := h.cloud.readBody(rw, r, "address:"+addr)
		if herr != nil {
			rerr = rpcRefuse(herr.status, CodeBadRequest, "%s", herr.msg)
			return
		}
		defer h.cloud.budget.give("address:"+addr, held)
		if r.URL.Path == HikmaHandshakePath {
			rerr = h.handshake(rw, body, &l)
		} else {
			rerr = h.envelope(rw, r.URL.Path == HikmaCommandPath, body, addr, &l)
		}
	default:
		rerr = rpcRefuse(http.StatusNotFound, CodeNotSupported, "not found: %s", r.URL.Path)
	}
}

// ---- handshake ----

type handshakeRequest struct {
	ClientID        string `json:"client_id"`
	ClientPublicKey string `json:"client_public_key"`
	DeviceName      string `json:"device_name"`
}

type handshakeResponse struct {
	HubPublicKey string `json:"hub_public_key"`
	HubID        string `json:"hub_id"`
	HubName      string `json:"hub_name"`
	Success      bool   `json:"success"`
}

// revokedMessage is what a device unpaired on the hub is told.
const revokedMessage = "this device was unpaired from the hub; ask its operator"

func (h *HikmaHandler) handshake(w http.ResponseWriter, body []byte, l *rpcLog) *rpcError {
	var req handshakeRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return rpcRefuse(http.StatusBadRequest, CodeHandshakeFailed, "handshake body is not {\"client_id\",\"client_public_key\"}: %v", err)
	}
	if !schema.ValidID(req.ClientID) {
		return rpcRefuse(http.StatusBadRequest, CodeHandshakeFailed, "client_id %q: want 1-128 characters from [A-Za-z0-9_.-]", req.ClientID)
	}
	l.client = req.ClientID
	pub, err := codec.DecodePublicKey(req.ClientPublicKey)
	if err != nil {
		return rpcRefuse(http.StatusBadRequest, CodeHandshakeFailed, "client_public_key: %v", err)
	}
	key, err := codec.DeriveSessionKey(codec.RoleHub, h.priv, pub)
	if err != nil {
		return rpcRefuse(http.StatusBadRequest, CodeHandshakeFailed, "client_public_key: %v", err)
	}
	switch p, err := h.store.Peer(req.ClientID); {
	case errors.Is(err, kv.ErrNotFound):
	case err != nil:
		return &rpcError{status: http.StatusInternalServerError, code: CodeServerError, msg: "internal server error", cause: err}
	case p.Type != kv.PeerMobile:
		return rpcRefuse(http.StatusBadRequest, CodeHandshakeFailed, "client_id %q names one of this hub's own peers: use another", req.ClientID)
	case p.Status == kv.StatusRevoked:
		return rpcRefuse(http.StatusForbidden, CodeHandshakeFailed, "%s", revokedMessage)
	}
	name := strings.TrimSpace(req.DeviceName)
	if len(name) > 128 {
		name = name[:128]
	}
	h.sessions.put(req.ClientID, &session{key: key, clientPub: pub.Bytes(), name: name})
	writeJSON(w, http.StatusOK, handshakeResponse{HubPublicKey: h.pub, HubID: h.hubID, HubName: h.hubName, Success: true})
	return nil
}

// ---- envelopes ----

type envelopeRequest struct {
	ClientID string `json:"client_id"`
	Payload  string `json:"payload"`
}

// rpcRequest is an opened command or query.
type rpcRequest struct {
	Command string          `json:"command"`
	Query   string          `json:"query"`
	Data    json.RawMessage `json:"data"`
	Params  json.RawMessage `json:"params"`
	Token   *string         `json:"token"`
}

func (h *HikmaHandler) envelope(w http.ResponseWriter, command bool, body []byte, addr string, l *rpcLog) *rpcError {
	in, out := codec.DirQuery, codec.DirQueryResponse
	if command {
		in, out = codec.DirCommand, codec.DirCommandResponse
	}
	var env envelopeRequest
	if err := json.Unmarshal(body, &env); err != nil {
		return rpcRefuse(http.StatusBadRequest, CodeBadRequest, "request body is not {\"client_id\",\"payload\"}: %v", err)
	}
	l.client = env.ClientID
	key, plain, err := h.sessions.open(env.ClientID, in, env.Payload)
	switch {
	case errors.Is(err, errNoSession):
		return rpcRefuse(http.StatusUnauthorized, CodeSessionExpired, "client %q is not paired with this hub (or its session ended): handshake again (POST %s)", env.ClientID, HikmaHandshakePath)
	case errors.Is(err, codec.ErrEnvelopeReplayed):
		return rpcRefuse(http.StatusBadRequest, CodeDecryption, "this %s was already received (a replay): refused", in)
	case err != nil:
		return rpcRefuse(http.StatusBadRequest, CodeDecryption, "the %s payload does not open with this session's key (%v): handshake again", in, err)
	}
	// A device unpaired on the hub is refused from its next message on,
	// whatever session it holds.
	switch p, err := h.store.Peer(env.ClientID); {
	case err == nil && p.Status == kv.StatusRevoked:
		h.sessions.drop(env.ClientID)
		return opError(CodeAuthFailed, "%s", revokedMessage)
	case err != nil && !errors.Is(err, kv.ErrNotFound):
		return rpcInternal(err)
	}
	var req rpcRequest
	if err := json.Unmarshal(plain, &req); err != nil {
		return rpcRefuse(http.StatusBadRequest, CodeBadRequest, "the decrypted %s is not JSON: %v", in, err)
	}
	var result any
	var rerr *rpcError
	if command {
		l.op = "command " + req.Command
		result, rerr = h.command(env.ClientID, req, addr, l)
	} else {
		l.op = "query " + req.Query
		result, rerr = h.query(env.ClientID, req, l)
	}
	if rerr != nil {
		return rerr
	}
	plainOut, ok := result.([]byte)
	if !ok {
		if plainOut, err = json.Marshal(result); err != nil {
			return rpcInternal(fmt.Errorf("encoding a %T: %w", result, err))
		}
	}
	sealed, err := codec.Seal(key, out, plainOut, h.rand)
	if errors.Is(err, codec.ErrEnvelopeTooLarge) {
		return opError(CodeServerError, "the response is too large for one envelope (%d bytes, limit %d)", len(plainOut), codec.MaxPlaintextSize)
	}
	if err != nil {
		return rpcInternal(err)
	}
	writeJSON(w, http.StatusOK, map[string]any{"payload": sealed, "success": true})
	return nil
}

func (h *HikmaHandler) command(client string, req rpcRequest, addr string, l *rpcLog) (any, *rpcError) {
	switch req.Command {
	case "ping":
		return map[string]string{"status": "ok"}, nil
	case "login":
		return h.login(client, req.Data, addr, l)
	case "sync_push":
		c, rerr := h.authorize(client, req.Token, l)
		if rerr != nil {
			return nil, rerr
		}
		return h.syncPush(c.Caller, req.Data, l)
	case "":
		return nil, opError(CodeBadRequest, "the command has no \"command\" name")
	}
	c, rerr := h.authorize(client, req.Token, l)
	if rerr != nil {
		return nil, rerr
	}
	return h.cloud.operation(c, true, req.Command, req.Data)
}

func (h *HikmaHandler) query(client string, req rpcRequest, l *rpcLog) (any, *rpcError) {
	switch req.Query {
	case "ping", "heartbeat":
		return map[string]string{"status": "ok"}, nil
	case "sync_pull":
		c, rerr := h.authorize(client, req.Token, l)
		if rerr != nil {
			return nil, rerr
		}
		return h.syncPull(c.Caller, client, req.Params, l)
	case "":
		return nil, opError(CodeBadRequest, "the query has no \"query\" name")
	}
	c, rerr := h.authorize(client, req.Token, l)
	if rerr != nil {
		return nil, rerr
	}
	return h.cloud.operation(c, false, req.Query, req.Params)
}

// ---- login and tokens ----

type loginData struct {
	Email    string `json:"email"`
	Password string `json:"password"`
}

type loginResponse struct {
	Token        string `json:"token"`
	UserID       string `json:"user_id"`
	ClinicID     string `json:"clinic_id"`
	Role         string `json:"role"`
	ProviderName string `json:"provider_name"`
	ClinicName   string `json:"clinic_name"`
}

const invalidLogin = "Invalid email or password"

// login checks email and password against the hub's users, through
// the CloudHandler's Authenticator (its index by email, its memory of
// passed credentials and its limit on failures), and returns a token.
func (h *HikmaHandler) login(client string, data json.RawMessage, addr string, l *rpcLog) (any, *rpcError) {
	var d loginData
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, opError(CodeBadRequest, "login data is not {\"email\",\"password\"}: %v", err)
	}
	email := strings.ToLower(strings.TrimSpace(d.Email))
	if email == "" || d.Password == "" || strings.Contains(email, ":") {
		return nil, opError(CodeAuthFailed, invalidLogin)
	}
	a := h.cloud.auth
	// The Authenticator checks Basic credentials: email:password in
	// base64. The first colon splits them, and an email has none.
	c, err := a.user(base64.StdEncoding.EncodeToString([]byte(email+":"+d.Password)), addr)
	var throttled *ThrottledError
	switch {
	case errors.As(err, &throttled):
		return nil, opError(CodeRateLimited, "Too many failed sign-ins. Please try again in %s.", throttled.Wait.Round(time.Second))
	case errors.Is(err, ErrUnauthorized):
		if a.Failures != nil {
			a.Failures.Allow("address:" + addr)
		}
		return nil, opError(CodeAuthFailed, invalidLogin)
	case err != nil:
		return nil, rpcInternal(err)
	}
	l.user = c.ID
	u, err := h.store.Get("users", c.ID)
	if err != nil {
		return nil, rpcInternal(err)
	}
	resp := loginResponse{UserID: c.ID, ClinicID: u.Cols["clinic_id"].Str, Role: u.Cols["role"].Str, ProviderName: u.Cols["name"].Str}
	if resp.ClinicID != "" {
		if cl, err := h.store.Get("clinics", resp.ClinicID); err == nil && !cl.Deleted {
			resp.ClinicName = cl.Cols["name"].Str
		} else if !errors.Is(err, kv.ErrNotFound) && err != nil {
			return nil, rpcInternal(err)
		}
	}
	key, err := h.store.Secret(jwtKeyConfig, 32)
	if err != nil {
		return nil, rpcInternal(err)
	}
	now := h.clock.Now()
	resp.Token, err = signJWT(key, jwtClaims{Sub: c.ID, ClinicID: resp.ClinicID, Role: resp.Role,
		Iat: now.Unix(), Exp: now.Add(JWTTTL).Unix()})
	if err != nil {
		return nil, rpcInternal(err)
	}
	if err := h.recordDevice(client); err != nil {
		return nil, rpcInternal(err)
	}
	return resp, nil
}

// hikmaCaller is who makes a Hikma operation: the token's user as a
// sync caller (unscoped, as Basic auth on /api/v2/sync), the token's
// clinic and role, and the user's permissions there, read for this
// operation.
type hikmaCaller struct {
	fsm.Caller
	ClinicID, Role string
	Perms          Permissions
}

// authorize checks an operation's token and returns its caller, if the
// token's user is still live with a password (a user deleted since the
// login is refused at once, through the Authenticator's index), with
// the user's permissions in the token's clinic, read again now
// (reference §2.4).
func (h *HikmaHandler) authorize(client string, token *string, l *rpcLog) (hikmaCaller, *rpcError) {
	if token == nil || *token == "" {
		return hikmaCaller{}, opError(CodeAuthFailed, "Authentication required: log in first")
	}
	key, err := h.store.Secret(jwtKeyConfig, 32)
	if err != nil {
		return hikmaCaller{}, rpcInternal(err)
	}
	claims, err := verifyJWT(key, *token, h.clock.Now())
	if err != nil {
		return hikmaCaller{}, opError(CodeAuthFailed, "%v: log in again", err)
	}
	live, err := h.cloud.auth.live(claims.Sub)
	if err != nil {
		return hikmaCaller{}, rpcInternal(err)
	}
	if !live {
		return hikmaCaller{}, opError(CodeAuthFailed, "the user of this token no longer exists: log in again")
	}
	l.user = claims.Sub
	perms, err := loadPermissions(h.store, claims.Sub, claims.ClinicID)
	if err != nil {
		return hikmaCaller{}, rpcInternal(err)
	}
	if err := h.recordDevice(client); err != nil {
		return hikmaCaller{}, rpcInternal(err)
	}
	return hikmaCaller{Caller: fsm.Caller{ID: claims.Sub}, ClinicID: claims.ClinicID, Role: claims.Role, Perms: perms}, nil
}

// live reports whether the user id is a live user with a password,
// bringing the index up to date first.
func (a *Authenticator) live(id string) (bool, error) {
	if _, err := a.lookup(""); err != nil {
		return false, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	_, ok := a.byID[id]
	return ok, nil
}

// recordDevice notes a paired client as a device (upsertDevice, the
// handshake having refused ids of other types) once per session: the
// first time a session logs in or presents a valid token, so an
// unauthenticated handshake writes nothing.
func (h *HikmaHandler) recordDevice(client string) error {
	s, ok := h.sessions.markRecorded(client)
	if !ok {
		return nil
	}
	err := upsertDevice(h.store, client, s.clientPub, s.name, "Hikma app")
	if err != nil {
		h.sessions.unmarkRecorded(client)
	}
	return err
}

// ---- sync ----

// lastPulledAtParam reads last_pulled_at or lastPulledAt from an
// operation's parameters: absent or null is 0; otherwise a whole
// number of milliseconds >= 0.
func lastPulledAtParam(params map[string]json.RawMessage) (int64, *rpcError) {
	var out int64
	seen := ""
	for _, k := range []string{"last_pulled_at", "lastPulledAt"} {
		raw, ok := params[k]
		if !ok || string(raw) == "null" {
			continue
		}
		var f float64
		if err := json.Unmarshal(raw, &f); err != nil || f != math.Trunc(f) || f < 0 || f >= 1<<53 {
			return 0, opError(CodeBadRequest, "%s=%s is not a timestamp in milliseconds", k, raw)
		}
		if seen != "" && int64(f) != out {
			return 0, opError(CodeBadRequest, "%s and %s differ", seen, k)
		}
		out, seen = int64(f), k
	}
	return out, nil
}

func decodeParams(raw json.RawMessage, what string) (map[string]json.RawMessage, *rpcError) {
	params := map[string]json.RawMessage{}
	if len(raw) == 0 || string(raw) == "null" {
		return params, nil
	}
	if err := json.Unmarshal(raw, &params); err != nil {
		return nil, opError(CodeBadRequest, "%s is not a JSON object: %v", what, err)
	}
	return params, nil
}

// syncPull answers sync_pull: the changes since last_pulled_at as
// /api/v2/sync serves them ({"changes","timestamp","success":true},
// from the same walk and encoding), in one sealed response.
func (h *HikmaHandler) syncPull(c fsm.Caller, client string, raw json.RawMessage, l *rpcLog) (any, *rpcError) {
	params, rerr := decodeParams(raw, "sync_pull params")
	if rerr != nil {
		return nil, rerr
	}
	since, rerr := lastPulledAtParam(params)
	if rerr != nil {
		return nil, rerr
	}
	if err := h.cloud.server.recordClient(c, 0, client); err != nil {
		return nil, rpcInternal(err)
	}
	doc, err := h.cloud.pullDocument(c, since, codec.MaxPlaintextSize)
	if errors.Is(err, errTooLarge) {
		return nil, opError(CodeServerError, "the changes since %d are more than one response can carry (%d bytes)", since, codec.MaxPlaintextSize)
	}
	if err != nil {
		return nil, rpcInternal(err)
	}
	return doc, nil
}

var errTooLarge = errors.New("actors: document over its size limit")

// limitedBuffer is a buffer that refuses to grow past max.
type limitedBuffer struct {
	bytes.Buffer
	max int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if b.Len()+len(p) > b.max {
		return 0, errTooLarge
	}
	return b.Buffer.Write(p)
}

// pullDocument returns a JSON pull's document for c, as pullJSON
// writes it (the same walk, serve function and spool), at most max
// bytes.
func (h *CloudHandler) pullDocument(c fsm.Caller, since int64, max int) ([]byte, error) {
	buf := &limitedBuffer{max: max}
	if _, _, err := h.writePull(buf, c, since, nil, func(int) {}); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// syncPush answers sync_push {last_pulled_at|lastPulledAt, changes}:
// the changes go through the JSON push of /api/v2/sync
// (CloudHandler.pushJSON). The answer is {"success":true} with
// experimentalRejectedIds and rejected (table, id, reason) when rows
// were refused; they stay pending on the device.
func (h *HikmaHandler) syncPush(c fsm.Caller, raw json.RawMessage, l *rpcLog) (any, *rpcError) {
	params, rerr := decodeParams(raw, "sync_push data")
	if rerr != nil {
		return nil, rerr
	}
	lpa, rerr := lastPulledAtParam(params)
	if rerr != nil {
		return nil, rerr
	}
	changes, ok := params["changes"]
	if !ok || string(changes) == "null" {
		return nil, opError(CodeBadRequest, "sync_push data has no changes")
	}
	cs, rep, err := codec.DecodeChanges(changes, h.cloud.pushOptions())
	if err != nil {
		return nil, opError(CodeBadRequest, "sync_push changes: %v", err)
	}
	out := &outcome{caller: callerKey(c)}
	resp, herr := h.cloud.pushJSON(c, cs, lpa, rep, out)
	if herr != nil {
		switch herr.status {
		case http.StatusConflict:
			return nil, opError(CodeConflict, "%s", herr.msg)
		case http.StatusBadRequest:
			return nil, opError(CodeBadRequest, "%s", herr.msg)
		}
		return nil, rpcInternal(herr.cause)
	}
	return resp, nil
}

// ---- sessions ----

var errNoSession = errors.New("actors: no session for this client id")

// session is a paired client's state.
type session struct {
	key       []byte // AES-256-GCM session key
	clientPub []byte // the client's public key of this handshake
	name      string // device_name, if sent
	recorded  bool   // the device is noted in the peers (recordDevice)
	nonces    map[[codec.NonceSize]byte]struct{}
	ring      [][codec.NonceSize]byte // the nonces in nonces, oldest at next
	next      int
	elem      *list.Element
}

// sessions holds the sessions by client id, least recently used
// dropped past max.
type sessions struct {
	mu   sync.Mutex // guards the fields below and every session's
	max  int
	byID map[string]*session
	lru  *list.List // client ids, most recently used first
}

func newSessions(max int) *sessions {
	if max <= 0 {
		max = DefaultMaxSessions
	}
	return &sessions{max: max, byID: map[string]*session{}, lru: list.New()}
}

func (s *sessions) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byID)
}

// put replaces the client's session (a new handshake).
// drop ends a client's session, if it has one.
func (s *sessions) drop(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.byID[id]; ok {
		s.lru.Remove(old.elem)
		delete(s.byID, id)
	}
}

func (s *sessions) put(id string, sess *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.byID[id]; ok {
		s.lru.Remove(old.elem)
	}
	sess.nonces = map[[codec.NonceSize]byte]struct{}{}
	sess.elem = s.lru.PushFront(id)
	s.byID[id] = sess
	for len(s.byID) > s.max {
		last := s.lru.Back()
		delete(s.byID, last.Value.(string))
		s.lru.Remove(last)
	}
}

// open opens an envelope of the client's session and returns the
// session key with the plaintext. An authentic envelope whose nonce
// the session has seen fails with codec.ErrEnvelopeReplayed.
func (s *sessions) open(id string, aad codec.Direction, blob string) ([]byte, []byte, error) {
	s.mu.Lock()
	sess, ok := s.byID[id]
	if ok {
		s.lru.MoveToFront(sess.elem)
	}
	s.mu.Unlock()
	if !ok {
		return nil, nil, errNoSession
	}
	plain, err := codec.Open(sess.key, aad, blob)
	if err != nil {
		return nil, nil, err
	}
	raw, err := base64.RawURLEncoding.DecodeString(blob)
	if err != nil { // Open decoded it
		panic("actors: an opened envelope does not decode: " + err.Error())
	}
	var nonce [codec.NonceSize]byte
	copy(nonce[:], raw)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, seen := sess.nonces[nonce]; seen {
		return nil, nil, codec.ErrEnvelopeReplayed
	}
	if len(sess.ring) < replayWindow {
		sess.ring = append(sess.ring, nonce)
	} else {
		delete(sess.nonces, sess.ring[sess.next])
		sess.ring[sess.next] = nonce
		sess.next = (sess.next + 1) % replayWindow
	}
	sess.nonces[nonce] = struct{}{}
	return sess.key, plain, nil
}

// markRecorded marks the client's session recorded and returns a copy
// of it, if it was not already.
func (s *sessions) markRecorded(id string) (session, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.byID[id]
	if !ok || sess.recorded {
		return session{}, false
	}
	sess.recorded = true
	return session{clientPub: sess.clientPub, name: sess.name}, true
}

func (s *sessions) unmarkRecorded(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sess, ok := s.byID[id]; ok {
		sess.recorded = false
	}
}
