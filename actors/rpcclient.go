package actors

// Native RPC, the client side: the Transport toward a peer whose URL is
// rpc://host:port (RPCScheme).

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"google.golang.org/protobuf/proto"

	"github.com/clinicsync/clinicsync/codec"
	"github.com/clinicsync/clinicsync/fsm"
	"github.com/clinicsync/clinicsync/kv"
	pb "github.com/clinicsync/clinicsync/proto"
)

// RPCScheme starts the URL of a peer reached over native RPC:
// rpc://host:port, the address its serving node gave ServeOptions.RPC.
const RPCScheme = "rpc://"

// RPCTransport is the Transport to a peer serving native RPC. It
// handshakes on first use (and again when the peer forgot the session),
// refuses a peer whose public key is not PinnedKey (ErrHubKeyMismatch),
// and seals every request. Calls are serialized: the session's envelope
// counters must reach the peer in order. A request without an answer
// within its deadline fails with ErrUnreachable; the sync engine then
// retries with a new envelope (pushes are idempotent on the server).
//
// protoactor remote answers over a connection of its own, so the client
// listens too, in the process's one remote (rpcProcess, shared with any
// native RPC server of the process): when the client starts it, on the
// local address it reaches the peer from, a free port.
type RPCTransport struct {
	// Addr is the peer's host:port.
	Addr string
	// NodeID is this node's id, sent in the handshake.
	NodeID string
	// HubID is the peer's node id, from its pairing string: its
	// listener is RPCActorName-HubID. "" (or no such listener at Addr,
	// say another hub now serves there) reaches the actor RPCActorName,
	// which forwards to the only hub the peer's process serves; the
	// PinnedKey check then decides.
	HubID string
	// PinnedKey is the peer's X25519 public key from its pairing string
	// (nil: trust on every handshake).
	PinnedKey []byte
	// Auth returns the credentials of a request: what an HTTP
	// Authorization header would hold, and the peer type a hub declares
	// toward a cloud ("" otherwise). It may return ErrNoCredentials.
	Auth func() (authorization, peerType string, err error)
	// Timeout bounds a request whose context has no deadline (0:
	// DefaultRequestTimeout).
	Timeout time.Duration
	// Rand makes the handshake keys (nil: crypto/rand).
	Rand io.Reader

	// send, when set (tests), replaces each envelope before it is sent;
	// received sees each answer, and drops it as lost if it says so.
	send     func(*pb.RpcEnvelope) *pb.RpcEnvelope
	received func(*pb.RpcEnvelope) (lost bool)

	mu   sync.Mutex // guards sess and serializes calls
	sess *rpcClientSession
}

// rpcClientSession is a handshaken session.
type rpcClientSession struct {
	id     string
	actor  string // the name of the peer's actor that answered the handshake
	sealer *codec.Sealer
	opener *codec.Opener
}

// Pull asks for one page.
func (t *RPCTransport) Pull(ctx context.Context, req *pb.PullRequest) (*pb.PullResponse, error) {
	resp, err := t.call(ctx, codec.DirQuery, &pb.RpcRequest{Op: &pb.RpcRequest_Pull{Pull: req}})
	if err != nil {
		return nil, err
	}
	if resp.GetPull() == nil {
		return nil, fmt.Errorf("%w: pull %s: the answer holds no pull", ErrBadRequest, t.Addr)
	}
	return resp.GetPull(), nil
}

// Push sends a push; it is applied whole or not at all.
func (t *RPCTransport) Push(ctx context.Context, req *pb.PushRequest) (*pb.PushResponse, error) {
	resp, err := t.call(ctx, codec.DirCommand, &pb.RpcRequest{Op: &pb.RpcRequest_Push{Push: req}})
	if err != nil {
		return nil, err
	}
	if resp.GetPush() == nil {
		return nil, fmt.Errorf("%w: push %s: the answer holds no push", ErrBadRequest, t.Addr)
	}
	return resp.GetPush(), nil
}

// SessionID is the current session's id ("" before the handshake).
func (t *RPCTransport) SessionID() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.sess == nil {
		return ""
	}
	return t.sess.id
}

func (t *RPCTransport) call(ctx context.Context, dir codec.Direction, req *pb.RpcRequest) (*pb.RpcResponse, error) {
	op := "pull"
	switch {
	case req.GetOperation() != nil:
		op = req.GetOperation().GetName()
	case dir == codec.DirCommand:
		op = "push"
	}
	if t.Auth != nil {
		var err error
		if req.Authorization, req.PeerType, err = t.Auth(); err != nil {
			return nil, err
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for attempt := 0; ; attempt++ {
		if t.sess == nil {
			if err := t.handshake(ctx); err != nil {
				return nil, err
			}
		}
		id, err := newUUID()
		if err != nil {
			return nil, err
		}
		req.RequestId = id
		plain, err := proto.Marshal(req)
		if err != nil {
			return nil, fmt.Errorf("actors: encoding a %s: %w", op, err)
		}
		sealed, err := t.sess.sealer.Seal(dir, plain)
		if err != nil {
			return nil, fmt.Errorf("actors: sealing a %s: %w", op, err)
		}
		env := &pb.RpcEnvelope{ProtocolVersion: pb.ProtocolVersion_PROTOCOL_VERSION_1, SessionId: t.sess.id, RequestId: id,
			Direction: string(dir), Sealed: sealed}
		if t.send != nil {
			env = t.send(env)
		}
		answer, err := t.request(ctx, t.sess.actor, env, op)
		if errors.Is(err, errNoRPCListener) && attempt == 0 { // the listener stopped: handshake again
			t.sess = nil
			continue
		}
		if err != nil {
			return nil, err
		}
		reply, ok := answer.(*pb.RpcEnvelope)
		if !ok {
			return nil, fmt.Errorf("%w: %s %s: unexpected answer %T", ErrUnreachable, op, t.Addr, answer)
		}
		if t.received != nil && t.received(reply) {
			return nil, fmt.Errorf("%w: %s %s%s: the answer was lost", ErrUnreachable, op, RPCScheme, t.Addr)
		}
		if reply.GetErrorCode() == rpcCodeSession && attempt == 0 { // the peer restarted or the session idled out
			t.sess = nil
			continue
		}
		if reply.GetError() != "" || reply.GetErrorCode() != "" {
			return nil, nativeRPCError(op, t.Addr, reply.GetErrorCode(), reply.GetError())
		}
		if reply.GetRequestId() != id || reply.GetDirection() != string(responseDir(dir)) {
			return nil, fmt.Errorf("%w: %s %s: answer to request %q as %q, want %q as %q", ErrEnvelopeRefused, op, t.Addr,
				reply.GetRequestId(), reply.GetDirection(), id, responseDir(dir))
		}
		plain, err = t.sess.opener.Open(responseDir(dir), reply.GetSealed())
		if err != nil {
			return nil, fmt.Errorf("%w: %s %s: the answer: %v", ErrEnvelopeRefused, op, t.Addr, err)
		}
		resp := new(pb.RpcResponse)
		if err := proto.Unmarshal(plain, resp); err != nil || resp.GetRequestId() != id {
			return nil, fmt.Errorf("%w: %s %s: a malformed answer", ErrBadRequest, op, t.Addr)
		}
		if code := resp.GetErrorCode(); code != "" && req.GetOperation() != nil && code == strings.ToUpper(code) {
			return nil, &rpcOpRefusal{code: code, msg: resp.GetError()} // an operation's refusal: a Hikma code
		}
		if resp.GetErrorCode() != "" {
			if resp.GetErrorCode() == rpcCodeRevoked {
				t.sess = nil
			}
			return nil, nativeRPCError(op, t.Addr, resp.GetErrorCode(), resp.GetError())
		}
		return resp, nil
	}
}

// rpcError turns a peer's refusal into the engine's error.
func nativeRPCError(op, addr, code, msg string) error {
	where := fmt.Sprintf("%s %s%s", op, RPCScheme, addr)
	var sentinel error
	switch code {
	case rpcCodeEnvelope:
		sentinel = ErrEnvelopeRefused
	case rpcCodeUnauthorized:
		sentinel = ErrUnauthorized
	case rpcCodeRevoked:
		return fmt.Errorf("%w (%s)", ErrPeerRevoked, where)
	case rpcCodeRateLimited:
		sentinel = ErrRateLimited
	case rpcCodeConflict:
		sentinel = fsm.ErrConflict
	case rpcCodeBadRequest:
		sentinel = ErrBadRequest
	case rpcCodeBusy, rpcCodeSession, rpcCodeNoListener:
		sentinel = ErrUnreachable
	default:
		sentinel = ErrPeerFailed
	}
	return fmt.Errorf("%w (%s: %s)", sentinel, where, msg)
}

// handshake opens a session with the peer.
func (t *RPCTransport) handshake(ctx context.Context) error {
	r := t.Rand
	if r == nil {
		r = rand.Reader
	}
	priv, err := codec.GenerateKey(r)
	if err != nil {
		return err
	}
	id, err := newUUID()
	if err != nil {
		return err
	}
	hello := &pb.HandshakeRequest{ProtocolVersion: pb.ProtocolVersion_PROTOCOL_VERSION_1, RequestId: id,
		ClientId: t.NodeID, ClientPublicKey: priv.PublicKey().Bytes()}
	name := RPCActorName
	if t.HubID != "" {
		name = rpcListenerName(t.HubID)
	}
	answer, err := t.request(ctx, name, hello, "handshake")
	if errors.Is(err, errNoRPCListener) && name != RPCActorName { // not that hub there (now): ask whoever serves
		name = RPCActorName
		answer, err = t.request(ctx, name, hello, "handshake")
	}
	if err != nil {
		return err
	}
	hs, ok := answer.(*pb.HandshakeResponse)
	if !ok {
		return fmt.Errorf("%w: handshake %s: unexpected answer %T", ErrUnreachable, t.Addr, answer)
	}
	if !hs.GetSuccess() {
		return nativeRPCError("handshake", t.Addr, hs.GetErrorCode(), hs.GetError())
	}
	if len(t.PinnedKey) != 0 && !bytes.Equal(t.PinnedKey, hs.GetHubPublicKey()) {
		return fmt.Errorf("%w: %s%s presented %s, paired with %s", ErrHubKeyMismatch, RPCScheme, t.Addr,
			b64url(hs.GetHubPublicKey()), b64url(t.PinnedKey))
	}
	pub, err := codec.DecodePublicKey(b64url(hs.GetHubPublicKey()))
	if err != nil || hs.GetSessionId() == "" {
		return fmt.Errorf("%w: handshake %s: no valid public key or session in the answer", ErrBadRequest, t.Addr)
	}
	key, err := codec.DeriveSessionKey(codec.RoleClient, priv, pub)
	if err != nil {
		return fmt.Errorf("%w: handshake %s: %v", ErrBadRequest, t.Addr, err)
	}
	sealer, err := codec.NewSealer(key, codec.RoleClient)
	if err != nil {
		panic("actors: a derived session key was refused: " + err.Error())
	}
	opener, err := codec.NewOpener(key, codec.RoleClient)
	if err != nil {
		panic("actors: a derived session key was refused: " + err.Error())
	}
	t.sess = &rpcClientSession{id: hs.GetSessionId(), actor: name, sealer: sealer, opener: opener}
	return nil
}

func b64url(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// errNoRPCListener: the peer has no actor of the name asked for.
var errNoRPCListener = errors.New("no native RPC listener there")

// request sends msg to the peer's RPC actor name and waits for the
// answer, until ctx's deadline or Timeout. No answer is ErrUnreachable;
// no such actor also errNoRPCListener.
func (t *RPCTransport) request(ctx context.Context, name string, msg proto.Message, op string) (any, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%w: %s %s: %v", ErrUnreachable, op, t.Addr, err)
	}
	sys, err := rpcClientSystem(t.Addr)
	if err != nil {
		return nil, fmt.Errorf("%w: %s %s: %v", ErrUnreachable, op, t.Addr, err)
	}
	timeout := t.Timeout
	if timeout <= 0 {
		timeout = DefaultRequestTimeout
	}
	if d, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(d))
	}
	if timeout <= 0 {
		return nil, fmt.Errorf("%w: %s %s: deadline passed", ErrUnreachable, op, t.Addr)
	}
	res, err := waitAnswer(ctx, sys.Root.RequestFuture(actor.NewPID(t.Addr, name), msg, timeout), t.Addr)
	if errors.Is(err, errNothingListens) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return nil, fmt.Errorf("%w: %s %s%s: %w", ErrUnreachable, op, RPCScheme, t.Addr, err)
	}
	if errors.Is(err, actor.ErrDeadLetter) { // the peer is this process (rpcProcess), without that actor
		res, err = &actor.DeadLetterResponse{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s %s%s: no answer within %s: %v", ErrUnreachable, op, RPCScheme, t.Addr, timeout, err)
	}
	if _, dead := res.(*actor.DeadLetterResponse); dead {
		return nil, fmt.Errorf("%w: %s %s%s: %w (%s)", ErrUnreachable, op, RPCScheme, t.Addr, errNoRPCListener, name)
	}
	return res, nil
}

// probeAfter is how long a request waits for its answer before it
// checks that something still listens at the peer's address (remote
// gives no error for a peer that is gone: the answer just never comes).
const probeAfter = 2 * time.Second

var errNothingListens = errors.New("nothing listens there")

// waitAnswer waits for a request's answer, or for ctx, or until nothing
// listens at addr any more (checked every probeAfter), so that a
// request to a stopped peer fails in seconds, not at its timeout.
func waitAnswer(ctx context.Context, fut *actor.Future, addr string) (any, error) {
	type answer struct {
		res any
		err error
	}
	done := make(chan answer, 1)
	go func() { // ends when the future does, at its timeout at the latest
		res, err := fut.Result()
		done <- answer{res, err}
	}()
	probe := time.NewTicker(probeAfter)
	defer probe.Stop()
	for {
		select {
		case a := <-done:
			return a.res, a.err
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-probe.C:
			c, err := (&net.Dialer{Timeout: probeAfter}).DialContext(ctx, "tcp", addr)
			if err != nil {
				return nil, fmt.Errorf("%w: %v", errNothingListens, err)
			}
			c.Close()
		}
	}
}

// rpcClientSystem returns the process's actor system with remote
// (processRemote), starting it on first use on the local address toward
// addr, a free port.
func rpcClientSystem(addr string) (*actor.ActorSystem, error) {
	rpcProcess.mu.Lock()
	sys := rpcProcess.sys
	rpcProcess.mu.Unlock()
	if sys != nil {
		return sys, nil
	}
	c, err := net.Dial("udp", addr) // sends nothing: finds the local address toward addr
	if err != nil {
		return nil, err
	}
	ip := c.LocalAddr().(*net.UDPAddr).IP.String()
	c.Close()
	sys, _, err = processRemote(net.JoinHostPort(ip, "0"), false)
	return sys, err
}

// rpcTransport is the Transport to a peer with an rpc:// URL.
func (n *Node) rpcTransport(p kv.Peer) (Transport, error) {
	addr := strings.TrimPrefix(p.URL, RPCScheme)
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, fmt.Errorf("%w: peer %s: URL %q is not %shost:port", ErrInvalidConfig, p.ID, p.URL, RPCScheme)
	}
	t := &RPCTransport{Addr: addr, NodeID: n.info.NodeID, HubID: p.NodeID, PinnedKey: p.PublicKey}
	switch {
	case n.info.Kind == KindHub && p.Type == kv.PeerCloud:
		if p.APIKey == "" {
			return nil, fmt.Errorf("%w: cloud peer %s has no API key", ErrInvalidConfig, p.ID)
		}
		t.Auth = func() (string, string, error) { return "Bearer " + p.APIKey, HubPeerType, nil }
	default:
		t.Auth = func() (string, string, error) {
			email, password, err := n.Credentials()
			if err != nil {
				return "", "", err
			}
			return "Basic " + base64.StdEncoding.EncodeToString([]byte(email+":"+password)), "", nil
		}
	}
	return t, nil
}
