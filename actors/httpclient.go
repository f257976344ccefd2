package actors

// The client side of the HTTP sync API: the Transport a Go node uses
// toward a peer with an http(s) URL, the credentials it authenticates
// with, and the peers it syncs with.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/clinicsync/clinicsync/codec"
	"github.com/clinicsync/clinicsync/fsm"
	"github.com/clinicsync/clinicsync/kv"
	pb "github.com/clinicsync/clinicsync/proto"
	"google.golang.org/protobuf/proto"
)

var (
	// ErrNoCredentials: a sync toward a peer that wants a user's
	// credentials before `node login`.
	ErrNoCredentials = errors.New("No credentials found. Please sign in.")
	// ErrRateLimited: the peer answered 429.
	ErrRateLimited = errors.New("actors: rate limited by the peer")
	// ErrPeerFailed: the peer answered with a server error.
	ErrPeerFailed = errors.New("actors: the peer failed")
)

// maxResponseBytes bounds a response body read by HTTPTransport.
const maxResponseBytes = codec.MaxMessageBytes

// HTTPTransport is the Transport to a peer that serves /api/v2/sync
// (CloudHandler): protobuf bodies, paged pulls. Failures map to the
// engine's errors: no connection or no answer (and 502-504) is
// ErrUnreachable, 401 ErrUnauthorized, 409 fsm.ErrConflict, 400
// ErrBadRequest, 429 ErrRateLimited, other 5xx ErrPeerFailed, each with
// the peer's {"error"} message.
type HTTPTransport struct {
	// BaseURL is the peer's address, http(s)://host[:port][/prefix].
	BaseURL string
	// Client makes the requests (nil: http.DefaultClient); the caller's
	// context bounds each one.
	Client *http.Client
	// Auth sets the credentials of a request; it is called for each one
	// (so a new login applies at once). It may return
	// ErrNoCredentials.
	Auth func(*http.Request) error
	// RetryWithin bounds how long one request keeps waiting out 429 and
	// 503 answers before it fails with them (0: DefaultRetryWithin); the
	// caller's context bounds it too.
	RetryWithin time.Duration
	// Sleep waits d or until ctx ends (nil: a timer). Tests pass one that
	// advances a manual clock.
	Sleep func(ctx context.Context, d time.Duration) error
}

// Waiting out a busy peer: a request answered 429 or 503 is sent again
// after the Retry-After the peer asked for, or else after a backoff that
// doubles from retryBase up to retryCap, with up to a quarter more of
// random jitter so that clients told to wait alike do not come back
// together.
const (
	DefaultRetryWithin = 5 * time.Minute
	retryBase          = 500 * time.Millisecond
	retryCap           = 30 * time.Second
)

// BasicAuth authenticates as a user (the peer checks the bcrypt hash).
func BasicAuth(email, password string) func(*http.Request) error {
	return func(r *http.Request) error {
		r.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(email+":"+password)))
		return nil
	}
}

// HubAuth authenticates as a hub registered with the peer: its device
// key as a Bearer token, with peerType=sync_hub.
func HubAuth(apiKey string) func(*http.Request) error {
	return func(r *http.Request) error {
		r.Header.Set("Authorization", "Bearer "+apiKey)
		q := r.URL.Query()
		q.Set("peerType", HubPeerType)
		r.URL.RawQuery = q.Encode()
		return nil
	}
}

func (t *HTTPTransport) endpoint(q url.Values) (string, error) {
	u, err := url.Parse(strings.TrimRight(t.BaseURL, "/") + SyncPath)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("%w: peer URL %q is not http(s)://host[:port]", ErrInvalidConfig, t.BaseURL)
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// Pull asks for one page.
func (t *HTTPTransport) Pull(ctx context.Context, req *pb.PullRequest) (*pb.PullResponse, error) {
	q := url.Values{"last_pulled_at": {strconv.FormatInt(req.GetLastPulledAt(), 10)}}
	if c := req.GetContinuation(); c != "" {
		q.Set("continuation", c)
	}
	if n := req.GetPageSize(); n > 0 {
		q.Set("page_size", strconv.FormatUint(uint64(n), 10))
	}
	if id := req.GetRequestId(); id != "" {
		q.Set("request_id", id)
	}
	if v := req.GetSchemaVersion(); v > 0 {
		q.Set("schema_version", strconv.FormatInt(v, 10))
	}
	if m := req.GetMigration(); m != nil {
		q.Set("migration", codec.MigrationJSON(m))
	}
	u, err := t.endpoint(q)
	if err != nil {
		return nil, err
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidConfig, err)
	}
	resp := new(pb.PullResponse)
	if err := t.do(hr, "pull", resp); err != nil {
		return nil, err
	}
	if resp.GetRequestId() == "" {
		resp.RequestId = req.GetRequestId()
	}
	return resp, nil
}

// Push sends a push; it is applied whole or not at all.
func (t *HTTPTransport) Push(ctx context.Context, req *pb.PushRequest) (*pb.PushResponse, error) {
	body, err := proto.Marshal(req)
	if err != nil {
		return nil, err
	}
	u, err := t.endpoint(url.Values{"last_pulled_at": {strconv.FormatInt(req.GetLastPulledAt(), 10)}})
	if err != nil {
		return nil, err
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidConfig, err)
	}
	hr.Header.Set("Content-Type", ContentTypeProtobuf)
	resp := new(pb.PushResponse)
	if err := t.do(hr, "push", resp); err != nil {
		return nil, err
	}
	return resp, nil
}

// do sends a request, waiting out 429 and 503 answers (see RetryWithin),
// and decodes the answer into into.
func (t *HTTPTransport) do(hr *http.Request, op string, into proto.Message) error {
	within := t.RetryWithin
	if within <= 0 {
		within = DefaultRetryWithin
	}
	sleep := t.Sleep
	if sleep == nil {
		sleep = sleepCtx
	}
	waited := time.Duration(0)
	for attempt := 0; ; attempt++ {
		resp, body, err := t.send(hr, op)
		if err != nil {
			return err
		}
		if resp.StatusCode == http.StatusOK {
			return t.decode(resp, body, op, into)
		}
		serr := statusError(op, t.BaseURL, resp, body)
		busy := resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable
		wait := retryDelay(resp.Header.Get("Retry-After"), attempt)
		if !busy || waited+wait > within {
			return serr
		}
		if err := sleep(hr.Context(), wait); err != nil {
			return fmt.Errorf("%w (gave up waiting: %v)", serr, err)
		}
		waited += wait
		if hr, err = again(hr); err != nil {
			return err
		}
	}
}

// send makes one request and reads its answer.
func (t *HTTPTransport) send(hr *http.Request, op string) (*http.Response, []byte, error) {
	hr.Header.Set("Accept", ContentTypeProtobuf)
	if t.Auth != nil {
		if err := t.Auth(hr); err != nil {
			return nil, nil, err
		}
	}
	client := t.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(hr)
	if errors.Is(err, ErrCertMismatch) { // not a network failure: it is not retried
		return nil, nil, fmt.Errorf("%w (%s %s)", ErrCertMismatch, op, t.BaseURL)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %s %s: %v", ErrUnreachable, op, t.BaseURL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %s %s: reading the answer: %v", ErrUnreachable, op, t.BaseURL, err)
	}
	return resp, body, nil
}

// again returns a copy of a sent request to send once more.
func again(hr *http.Request) (*http.Request, error) {
	next := hr.Clone(hr.Context())
	if hr.GetBody != nil {
		body, err := hr.GetBody()
		if err != nil {
			return nil, fmt.Errorf("actors: re-reading a request body: %w", err)
		}
		next.Body = body
	}
	return next, nil
}

// retryDelay is the wait before sending a refused request again: the
// peer's Retry-After (seconds or an HTTP date) when given, else the
// backoff of the attempt, plus jitter.
func retryDelay(retryAfter string, attempt int) time.Duration {
	d := retryBase << min(attempt, 16)
	if n, err := strconv.Atoi(strings.TrimSpace(retryAfter)); err == nil && n >= 0 {
		d = time.Duration(n) * time.Second
	} else if at, err := http.ParseTime(retryAfter); err == nil {
		d = time.Until(at)
	}
	d = min(max(d, retryBase), retryCap)
	return d + time.Duration(mrand.Int64N(int64(d)/4+1))
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// decode reads a 200 answer.
func (t *HTTPTransport) decode(resp *http.Response, body []byte, op string, into proto.Message) error {
	if ct, _, _ := strings.Cut(resp.Header.Get("Content-Type"), ";"); strings.TrimSpace(ct) != ContentTypeProtobuf {
		return fmt.Errorf("%w: %s %s: answer is %q, not protobuf", ErrBadRequest, op, t.BaseURL, ct)
	}
	if err := codec.Unmarshal(body, into); err != nil {
		return fmt.Errorf("%w: %s %s: %v", ErrBadRequest, op, t.BaseURL, err)
	}
	return nil
}

// statusError turns a refusal into the engine's error.
func statusError(op, base string, resp *http.Response, body []byte) error {
	var e struct {
		Error string `json:"error"`
	}
	msg := strings.TrimSpace(string(body))
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		msg = e.Error
	}
	if len(msg) > 300 {
		msg = msg[:300] + "..."
	}
	where := fmt.Sprintf("%s %s: HTTP %d", op, base, resp.StatusCode)
	// A refusal the peer words with the sentinel's own text reads
	// "sentinel: reason (where)".
	wrap := func(sentinel error) error {
		reason := strings.TrimPrefix(strings.TrimPrefix(msg, sentinel.Error()), ":")
		if reason == msg {
			return fmt.Errorf("%w (%s: %s)", sentinel, where, msg)
		}
		if reason = strings.TrimSpace(reason); reason == "" {
			return fmt.Errorf("%w (%s)", sentinel, where)
		}
		return fmt.Errorf("%w: %s (%s)", sentinel, reason, where)
	}
	detail := where + ": " + msg
	switch c := resp.StatusCode; {
	case c == http.StatusUnauthorized:
		return wrap(ErrUnauthorized)
	case c == http.StatusConflict:
		return wrap(fsm.ErrConflict)
	case c == http.StatusTooManyRequests:
		if ra := resp.Header.Get("Retry-After"); ra != "" {
			detail += "; retry after " + ra + "s"
		}
		return fmt.Errorf("%w: %s", ErrRateLimited, detail)
	case c == http.StatusBadGateway || c == http.StatusServiceUnavailable || c == http.StatusGatewayTimeout:
		return fmt.Errorf("%w: %s", ErrUnreachable, detail)
	case c >= 500:
		return fmt.Errorf("%w: %s", ErrPeerFailed, detail)
	}
	return fmt.Errorf("%w: %s", ErrBadRequest, detail)
}

// ---- the node's side ----

// CredentialsFile holds the user credentials a node signs in to its
// peers with (`node login`), inside its data directory, mode 0600 like
// the key file. The password is stored in plain text, as the Hikma app
// keeps it in its secure store: protect the directory.
const CredentialsFile = "credentials.json"

type credentials struct {
	Email    string `json:"email"`
	Password string `json:"password"`
}

// SetCredentials stores the user credentials the node syncs with.
func (n *Node) SetCredentials(email, password string) error {
	email = strings.TrimSpace(email)
	if email == "" || password == "" {
		return fmt.Errorf("%w: an email and a password are needed", ErrInvalidConfig)
	}
	b, err := json.Marshal(credentials{email, password})
	if err != nil {
		return err
	}
	path, err := n.file(CredentialsFile)
	if err != nil {
		return err
	}
	return writePrivateFile(path, append(b, '\n'))
}

// Credentials returns the stored user credentials, or ErrNoCredentials.
func (n *Node) Credentials() (email, password string, err error) {
	path, err := n.file(CredentialsFile)
	if err != nil {
		return "", "", err
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", "", ErrNoCredentials
	}
	if err != nil {
		return "", "", fmt.Errorf("actors: reading credentials: %w", err)
	}
	var c credentials
	if err := json.Unmarshal(b, &c); err != nil || c.Email == "" {
		return "", "", fmt.Errorf("%w (%s is unreadable: sign in again)", ErrNoCredentials, CredentialsFile)
	}
	return c.Email, c.Password, nil
}

// writePrivateFile writes a 0600 file through a temporary file renamed
// into place.
func writePrivateFile(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+"-*")
	if err != nil {
		return fmt.Errorf("actors: writing %s: %w", filepath.Base(path), err)
	}
	tmp := f.Name()
	_, werr := f.Write(data)
	if werr == nil {
		werr = f.Chmod(0o600)
	}
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp, path)
	}
	if werr != nil {
		os.Remove(tmp)
		return fmt.Errorf("actors: writing %s: %w", filepath.Base(path), werr)
	}
	return nil
}

// HTTPTransports is the TransportFactory of a node whose peers are
// reached over HTTP: a peer with an http(s) URL gets an HTTPTransport
// (a hub authenticates to the cloud with the peer's API key, anything
// else with the user credentials of `node login`); other peers go to
// other, or are refused when it is nil. An https peer with a pinned
// TLS fingerprint (paired with a hub's pairing string) is trusted by
// that pin alone: another certificate fails with ErrCertMismatch. A
// peer with an rpc://host:port URL gets an RPCTransport (native RPC),
// which pins the peer's public key when the peer record has one. A hub
// paired with a pairing string that names its discovery address is
// looked for there and by broadcast when it is not at its URL
// (discovery.go), and its URL follows it.
func (n *Node) HTTPTransports(other TransportFactory) TransportFactory {
	build := n.transportTo(other)
	return func(p kv.Peer) (Transport, error) {
		tr, err := build(p)
		if err != nil || !findable(p) {
			return tr, err
		}
		return &findingTransport{n: n, build: build, log: n.logger(), peer: p, tr: tr}, nil
	}
}

// transportTo is HTTPTransports without discovery: the transport to a
// peer at its URL.
func (n *Node) transportTo(other TransportFactory) TransportFactory {
	return func(p kv.Peer) (Transport, error) {
		if strings.HasPrefix(p.URL, RPCScheme) {
			return n.rpcTransport(p)
		}
		if !strings.HasPrefix(p.URL, "http://") && !strings.HasPrefix(p.URL, "https://") {
			if other != nil {
				return other(p)
			}
			return nil, fmt.Errorf("%w: peer %s has no http(s) URL", ErrInvalidConfig, p.ID)
		}
		t := &HTTPTransport{BaseURL: p.URL}
		if p.TLSFingerprint != "" {
			if !strings.HasPrefix(p.URL, "https://") {
				return nil, fmt.Errorf("%w: peer %s pins a TLS certificate but its URL %s is not https", ErrInvalidConfig, p.ID, p.URL)
			}
			t.Client = pinnedClient(p.TLSFingerprint)
		}
		switch {
		case n.info.Kind == KindHub && p.Type == kv.PeerCloud:
			if p.APIKey == "" {
				return nil, fmt.Errorf("%w: cloud peer %s has no API key (register this hub with `node device add` on the cloud and pass the key to `node peer add --api-key`)", ErrInvalidConfig, p.ID)
			}
			t.Auth = HubAuth(p.APIKey)
		default:
			t.Auth = func(r *http.Request) error {
				email, password, err := n.Credentials()
				if err != nil {
					return err
				}
				return BasicAuth(email, password)(r)
			}
		}
		return t, nil
	}
}

// Login stores the user's credentials and runs a sync (trigger
// AfterLogin) through the started engine. When the peer refuses the
// credentials (ErrUnauthorized), the previous ones are put back. The
// error return is Sync's; a refused login is a Result with Outcome
// error.
func (n *Node) Login(ctx context.Context, email, password string, peerID string) (Result, error) {
	return n.login(ctx, email, password, peerID, true)
}

// LoginNoSync is Login checking the credentials with the peer by one
// read (the get_patients operation, one row) instead of a sync: they
// are kept if the peer takes them, and the first sync runs when asked.
func (n *Node) LoginNoSync(ctx context.Context, email, password string, peerID string) (Result, error) {
	return n.login(ctx, email, password, peerID, false)
}

func (n *Node) login(ctx context.Context, email, password string, peerID string, sync bool) (Result, error) {
	oldEmail, oldPassword, oldErr := n.Credentials()
	if err := n.SetCredentials(email, password); err != nil {
		return Result{}, err
	}
	var res Result
	on, err := n.online()
	if on || !sync && err == nil { // no sync: an operation checks the credentials
		res = Result{Outcome: OutcomeOK}
		if _, oerr := n.operationOn(ctx, peerID, false, "get_patients", map[string]any{"limit": 1}); oerr != nil {
			res = Result{Outcome: OutcomeError, Message: oerr.Error(), Err: oerr}
		}
	} else if err == nil {
		res, err = n.Sync(ctx, SyncRequest{PeerID: peerID, Trigger: AfterLogin})
	}
	if err == nil && res.Outcome == OutcomeError && errors.Is(res.Err, ErrUnauthorized) {
		if oldErr == nil {
			err = n.SetCredentials(oldEmail, oldPassword)
		} else {
			err = os.Remove(filepath.Join(n.dir, CredentialsFile)) // SetCredentials worked: n.dir is set
		}
		if err != nil {
			err = fmt.Errorf("actors: restoring the previous credentials: %w", err)
		}
	}
	return res, err
}

// PeerConfig describes a peer to add.
type PeerConfig struct {
	Type string // kv.PeerCloud or kv.PeerHub
	URL  string // http(s)://host[:port], or rpc://host:port (native RPC)
	Name string
	// APIKey is a hub's key toward the cloud (`node device add` on the
	// cloud prints it).
	APIKey string
	// PublicKey is the hub's X25519 public key and TLSFingerprint its
	// certificate's pin (Fingerprint), both from its pairing string
	// (PairingPeer); a certificate pin needs an https URL, or an rpc
	// one (it then checks the hub's TLS address discovery finds).
	PublicKey      []byte
	TLSFingerprint string
	// NodeID is the hub's node id from its pairing string ("" when
	// unknown): native RPC addresses the hub's listener by it.
	NodeID string
	// Discovery is where the hub answers discovery queries (UDP
	// host:port; "": the hub is not looked for when it moves).
	Discovery string
}

// AddPeer adds a peer to sync with and returns it with its new id. A
// cloud has no peers; a hub syncs with a cloud only.
func (n *Node) AddPeer(cfg PeerConfig) (kv.Peer, error) {
	switch {
	case n.info.Kind == KindCloud:
		return kv.Peer{}, fmt.Errorf("%w: a cloud node is the root and syncs with no peer", ErrInvalidConfig)
	case cfg.Type != kv.PeerCloud && cfg.Type != kv.PeerHub:
		return kv.Peer{}, fmt.Errorf("%w: peer type %q: want cloud_server or sync_hub", ErrInvalidConfig, cfg.Type)
	case n.info.Kind == KindHub && cfg.Type != kv.PeerCloud:
		return kv.Peer{}, fmt.Errorf("%w: a hub syncs with the cloud only (peer type cloud_server)", ErrInvalidConfig)
	}
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "rpc") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" ||
		u.Scheme == "rpc" && (u.Port() == "" || strings.Trim(u.Path, "/") != "") {
		return kv.Peer{}, fmt.Errorf("%w: peer URL %q: want http(s)://host[:port][/path] or rpc://host:port", ErrInvalidConfig, cfg.URL)
	}
	if cfg.TLSFingerprint != "" && (u.Scheme == "http" || !validFingerprint(cfg.TLSFingerprint)) {
		return kv.Peer{}, fmt.Errorf("%w: a TLS fingerprint (base64url sha256) pins an https URL (or the hub of an rpc one), not %q", ErrInvalidConfig, cfg.URL)
	}
	if cfg.Discovery != "" && !validHostPort(cfg.Discovery) {
		return kv.Peer{}, fmt.Errorf("%w: discovery address %q is not host:port", ErrInvalidConfig, cfg.Discovery)
	}
	if len(cfg.PublicKey) != 0 && len(cfg.PublicKey) != 32 {
		return kv.Peer{}, fmt.Errorf("%w: a peer's public key is 32 bytes (X25519), not %d", ErrInvalidConfig, len(cfg.PublicKey))
	}
	id, err := newUUID()
	if err != nil {
		return kv.Peer{}, err
	}
	p := kv.Peer{ID: id, Type: cfg.Type, Status: kv.StatusActive, URL: strings.TrimRight(cfg.URL, "/"),
		Name: cfg.Name, APIKey: cfg.APIKey, PublicKey: cfg.PublicKey, TLSFingerprint: cfg.TLSFingerprint, NodeID: cfg.NodeID,
		Discovery: cfg.Discovery}
	if err := n.store.PutPeer(p); err != nil {
		return kv.Peer{}, err
	}
	return n.store.Peer(id)
}

// UsePeer selects the peer to sync with (ConfigActivePeer).
func (n *Node) UsePeer(id string) error {
	if _, err := n.store.Peer(id); err != nil {
		return err
	}
	return n.store.SetConfig(ConfigActivePeer, id)
}

// RevokePeer stops syncing with a peer.
func (n *Node) RevokePeer(id string) error {
	if _, err := n.store.Peer(id); err != nil {
		return err
	}
	return n.store.UpdatePeer(id, func(p *kv.Peer) { p.Status = kv.StatusRevoked })
}

// Peers lists the node's peers, in the order they were added.
func (n *Node) Peers() ([]kv.Peer, error) { return n.store.Peers() }

// ActivePeer returns the selected peer's id ("" when none is).
func (n *Node) ActivePeer() (string, error) {
	id, err := n.store.Config(ConfigActivePeer)
	if errors.Is(err, kv.ErrNotFound) {
		return "", nil
	}
	return id, err
}
