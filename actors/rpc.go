package actors

// Native RPC, the serving side: protobuf messages between node
// processes over protoactor-go remote, sealed after a handshake.
//
// A serving node (ServeOptions.RPC) runs one named listener actor,
// RPCActorName-<its node id>, in the process's one actor system with
// remote (rpcProcess: shared by every server and client of the process,
// started once, living as long as the process). A client sends the
// listener a pb.HandshakeRequest in clear (its node id and an
// ephemeral X25519 public key); the actor answers with the node's
// static public key and a session id, and spawns one session actor,
// which owns the session's codec.Sealer and codec.Opener. Every later
// request is a pb.RpcEnvelope naming the session; the listener forwards
// it to its session actor, which opens it (a tampered, replayed or
// wrong-direction envelope is refused, logged, and the session goes
// on), checks the caller's credentials, runs the node's Server (the
// engine behind /api/v2/sync) and answers sealed. A session idle for
// RPCIdle ends; so does one whose device is revoked.

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/clinicsync/clinicsync/codec"
	"github.com/clinicsync/clinicsync/fsm"
	"github.com/clinicsync/clinicsync/kv"
	pb "github.com/clinicsync/clinicsync/proto"
)

// RPCActorName names native RPC's actors: a serving node answers with
// its listener RPCActorName-<node id>; the actor RPCActorName forwards
// to a process's only listener (clients that do not know the hub's id).
const RPCActorName = "clinicsync-rpc"

// RPCIdle ends a native RPC session that has had no request for this
// long; the client handshakes again on its next request.
const RPCIdle = 5 * time.Minute

// maxRPCSessions bounds the sessions a node keeps at once; past it a
// handshake is refused (the client retries later).
const maxRPCSessions = 4096

// Refusal codes of native RPC (pb.HandshakeResponse.error_code,
// pb.RpcEnvelope.error_code, pb.RpcResponse.error_code).
const (
	rpcCodeSession      = "session_unknown"
	rpcCodeEnvelope     = "envelope_refused"
	rpcCodeUnauthorized = "unauthorized"
	rpcCodeRevoked      = "revoked"
	rpcCodeRateLimited  = "rate_limited"
	rpcCodeConflict     = "conflict"
	rpcCodeBadRequest   = "bad_request"
	rpcCodeBusy         = "busy"
	rpcCodeInternal     = "internal"
	rpcCodeNoListener   = "no_listener"
)

var (
	// ErrHubKeyMismatch: the node at a peer's RPC address presented
	// another public key than the one pinned at pairing.
	ErrHubKeyMismatch = errors.New("actors: the hub presented another public key than the one pinned when it was paired (re-pair only if you know why it changed)")
	// ErrEnvelopeRefused: a sealed native RPC message was refused
	// (tampered, replayed or of the wrong direction).
	ErrEnvelopeRefused = errors.New("actors: sealed message refused")
	// ErrPeerRevoked: the serving node revoked this device.
	ErrPeerRevoked = errors.New("actors: this device's access was revoked by the hub")
)

// rpcDeps is what the RPC actors serve with.
type rpcDeps struct {
	server *Server
	auth   *Authenticator
	ops    *CloudHandler // online operations (ops.go)
	store  *kv.Store
	priv   *ecdh.PrivateKey
	nodeID string
	log    *slog.Logger
	idle   time.Duration
	rand   io.Reader
	open   *atomic.Int64 // sessions open, as the listener last counted them
}

// rpcServer is a running native RPC listener.
type rpcServer struct {
	pid   *actor.PID // the listener actor
	hubID string
	addr  string // host:port it listens on
	deps  *rpcDeps
}

// sessions counts the sessions open.
func (s *rpcServer) sessions() int { return int(s.deps.open.Load()) }

// rpcProcess is the process's one protoactor remote, shared by every
// native RPC server and client in the process. protoactor's
// remote.Start sets gRPC's global logger unsynchronized, so a second
// remote in a process races with the first one's gRPC goroutines; the
// process therefore starts remote at most once. The first user starts
// it: a server on the address it asks for, a client on its local
// address toward the peer (a free port). Later servers reuse it when
// they ask for its address, or for port 0 on its host; clients always
// reuse it. It lives as long as the process: stopping a server stops
// its listener actor and sessions, not the remote.
//
// Several hubs may serve in one process (tests): each one's listener is
// named RPCActorName-<hub node id>, and the actor named RPCActorName
// forwards to the only listener (for clients that do not know the hub's
// node id, or whose hub was replaced on its address: the pinned key
// decides then).
var rpcProcess struct {
	mu   sync.Mutex // guards the fields
	sys  *actor.ActorSystem
	addr string                // host:port the remote listens on
	hubs map[string]*actor.PID // listeners by hub node id
}

// processRemote returns the process's actor system with remote and the
// address it listens on, starting it on addr on first use. A server
// (serving) asking for an address the running remote cannot serve
// gets an error.
func processRemote(addr string, serving bool) (*actor.ActorSystem, string, error) {
	host, portText, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, "", fmt.Errorf("%w: RPC address %q: %v", ErrInvalidConfig, addr, err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil || port < 0 || port > 65535 {
		return nil, "", fmt.Errorf("%w: RPC address %q: bad port", ErrInvalidConfig, addr)
	}
	rpcProcess.mu.Lock()
	defer rpcProcess.mu.Unlock()
	if rpcProcess.sys != nil {
		runningHost, _, _ := net.SplitHostPort(rpcProcess.addr)
		if serving && addr != rpcProcess.addr && (port != 0 || host != runningHost) {
			return nil, "", fmt.Errorf("%w: this process already serves native RPC on %s, and cannot also on %s (one protoactor remote per process)",
				ErrInvalidConfig, rpcProcess.addr, addr)
		}
		return rpcProcess.sys, rpcProcess.addr, nil
	}
	// protoactor logs through the system's logger; the system is the
	// process's, not one node's, so its own logs are dropped (each
	// listener logs through its node's logger).
	quiet := slog.New(slog.DiscardHandler)
	sys := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return quiet }))
	bound, err := startRemote(sys, host, port)
	if err != nil {
		sys.Shutdown()
		return nil, "", err
	}
	if _, err := sys.Root.SpawnNamed(actor.PropsFromFunc(rpcDirectory), RPCActorName); err != nil {
		panic("actors: spawning the native RPC directory in a new actor system: " + err.Error())
	}
	rpcProcess.sys, rpcProcess.addr, rpcProcess.hubs = sys, bound, map[string]*actor.PID{}
	return sys, bound, nil
}

// rpcDirectory, the actor named RPCActorName, forwards every message to
// the process's only listener, and refuses it when there are none or
// several (the client must name the hub: its pairing string's id).
func rpcDirectory(ctx actor.Context) {
	var msg string
	switch ctx.Message().(type) {
	case *pb.HandshakeRequest, *pb.RpcEnvelope:
	default:
		return
	}
	rpcProcess.mu.Lock()
	var only *actor.PID
	for _, pid := range rpcProcess.hubs {
		only = pid
	}
	n := len(rpcProcess.hubs)
	rpcProcess.mu.Unlock()
	switch n {
	case 1:
		ctx.Forward(only)
		return
	case 0:
		msg = "no hub serves native RPC here"
	default:
		msg = "several hubs serve native RPC here: pair with the hub's pairing string"
	}
	switch m := ctx.Message().(type) {
	case *pb.HandshakeRequest:
		ctx.Respond(&pb.HandshakeResponse{ProtocolVersion: pb.ProtocolVersion_PROTOCOL_VERSION_1, RequestId: m.GetRequestId(),
			Error: msg, ErrorCode: rpcCodeNoListener})
	case *pb.RpcEnvelope:
		ctx.Respond(&pb.RpcEnvelope{ProtocolVersion: pb.ProtocolVersion_PROTOCOL_VERSION_1, SessionId: m.GetSessionId(), RequestId: m.GetRequestId(),
			Error: msg, ErrorCode: rpcCodeNoListener})
	}
}

// rpcListenerName is the name of hubID's listener actor.
func rpcListenerName(hubID string) string { return RPCActorName + "-" + hubID }

// startRemote starts protoactor remote for sys on host:port (port 0
// picks a free one) and returns the address it listens on. Remote
// panics when it cannot listen; that becomes an error. Only
// processRemote calls it.
func startRemote(sys *actor.ActorSystem, host string, port int) (bound string, err error) {
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	if port == 0 { // remote advertises the address it was given: pick the port here
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return "", fmt.Errorf("actors: serving RPC: %w", err)
		}
		port = l.Addr().(*net.TCPAddr).Port
		l.Close()
	}
	rem := remote.NewRemote(sys, remote.Configure(host, port, rpcDialOptions(),
		remote.WithServerOptions(grpc.MaxRecvMsgSize(rpcMaxMessage))))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("actors: serving RPC on %s: %v", addr, r)
		}
	}()
	rem.Start()
	return net.JoinHostPort(host, strconv.Itoa(port)), nil
}

// rpcWireTap, when set (tests), wraps every connection that native RPC
// dials, in both directions (protoactor remote answers over a
// connection the answering side dials), to read the bytes on the wire.
var rpcWireTap atomic.Pointer[func(net.Conn) net.Conn]

// rpcMaxMessage bounds one native RPC message (gRPC's default is 4
// MiB): a pull page of MaxPageSize rows with their versions, sealed.
const rpcMaxMessage = 64 << 20

// rpcDialOptions: plain gRPC connections (the payloads are sealed), made
// through rpcWireTap when set.
func rpcDialOptions() remote.ConfigOption {
	return remote.WithDialOptions(grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(rpcMaxMessage), grpc.MaxCallSendMsgSize(rpcMaxMessage)),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
			if tap := rpcWireTap.Load(); err == nil && tap != nil {
				c = (*tap)(c)
			}
			return c, err
		}))
}

// startRPC serves native RPC on addr until stop, in the process's
// remote (processRemote).
func startRPC(addr string, deps rpcDeps) (*rpcServer, error) {
	if deps.idle <= 0 {
		deps.idle = RPCIdle
	}
	if deps.rand == nil {
		deps.rand = rand.Reader
	}
	sys, bound, err := processRemote(addr, true)
	if err != nil {
		return nil, err
	}
	deps.open = new(atomic.Int64)
	d := &deps
	props := actor.PropsFromProducer(func() actor.Actor { return &rpcListener{deps: d} },
		actor.WithSupervisor(actor.NewOneForOneStrategy(10, time.Minute, actor.DefaultDecider)))
	rpcProcess.mu.Lock()
	defer rpcProcess.mu.Unlock()
	if _, ok := rpcProcess.hubs[deps.nodeID]; ok {
		return nil, fmt.Errorf("%w: this process already serves node %s over native RPC", ErrInvalidConfig, deps.nodeID)
	}
	pid, err := sys.Root.SpawnNamed(props, rpcListenerName(deps.nodeID))
	if err != nil {
		return nil, fmt.Errorf("actors: starting the RPC actor: %w", err)
	}
	rpcProcess.hubs[deps.nodeID] = pid
	return &rpcServer{pid: pid, hubID: d.nodeID, addr: bound, deps: d}, nil
}

// stop stops the listener and its sessions (its children). The
// process's remote goes on (processRemote).
func (s *rpcServer) stop() {
	rpcProcess.mu.Lock()
	sys := rpcProcess.sys
	if rpcProcess.hubs[s.hubID] == s.pid {
		delete(rpcProcess.hubs, s.hubID)
	}
	rpcProcess.mu.Unlock()
	if err := sys.Root.StopFuture(s.pid).Wait(); err != nil {
		sys.Logger().Warn("native rpc: stopping a listener", "error", err)
	}
}

// rpcListener answers handshakes and forwards sealed requests to their
// session actors. Its state is touched only in Receive.
type rpcListener struct {
	deps     *rpcDeps
	sessions map[string]*actor.PID // by session id
	byPID    map[string]string     // session actor id → session id
	open     *atomic.Int64         // len(sessions), for Status
}

func (l *rpcListener) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		l.sessions, l.byPID = map[string]*actor.PID{}, map[string]string{}
		l.deps.open.Store(0)
	case *actor.Stopping, *actor.Restarting:
	case *actor.Terminated:
		if id, ok := l.byPID[m.Who.Id]; ok {
			delete(l.byPID, m.Who.Id)
			delete(l.sessions, id)
			l.deps.open.Store(int64(len(l.sessions)))
		}
	case *pb.HandshakeRequest:
		ctx.Respond(l.handshake(ctx, m))
	case *pb.RpcEnvelope:
		pid, ok := l.sessions[m.GetSessionId()]
		if !ok {
			l.deps.log.Warn("native rpc: request for an unknown session", "session", m.GetSessionId(), "request", m.GetRequestId())
			ctx.Respond(&pb.RpcEnvelope{ProtocolVersion: pb.ProtocolVersion_PROTOCOL_VERSION_1, SessionId: m.GetSessionId(), RequestId: m.GetRequestId(),
				Error: "unknown or ended session: handshake again", ErrorCode: rpcCodeSession})
			return
		}
		ctx.Forward(pid)
	}
}

func (l *rpcListener) handshake(ctx actor.Context, m *pb.HandshakeRequest) *pb.HandshakeResponse {
	d := l.deps
	resp := &pb.HandshakeResponse{ProtocolVersion: pb.ProtocolVersion_PROTOCOL_VERSION_1, RequestId: m.GetRequestId(), HubId: d.nodeID}
	refuse := func(code, format string, a ...any) *pb.HandshakeResponse {
		resp.Error, resp.ErrorCode = fmt.Sprintf(format, a...), code
		d.log.Warn("native rpc: handshake refused", "client", m.GetClientId(), "code", code, "error", resp.Error)
		return resp
	}
	if m.GetClientId() == "" {
		return refuse(rpcCodeBadRequest, "handshake without a client id")
	}
	if len(m.GetClientPublicKey()) != codec.PublicKeySize {
		return refuse(rpcCodeBadRequest, "client public key is %d bytes, want %d", len(m.GetClientPublicKey()), codec.PublicKeySize)
	}
	if msg, err := peerRevoked(d.store, m.GetClientId()); err != nil {
		return refuse(rpcCodeInternal, "internal server error")
	} else if msg != "" {
		return refuse(rpcCodeRevoked, "%s", msg)
	}
	if len(l.sessions) >= maxRPCSessions {
		return refuse(rpcCodeBusy, "too many sessions; try again later")
	}
	pub, err := ecdh.X25519().NewPublicKey(m.GetClientPublicKey())
	if err != nil {
		return refuse(rpcCodeBadRequest, "client public key: %v", err)
	}
	key, err := codec.DeriveSessionKey(codec.RoleHub, d.priv, pub)
	if err != nil {
		return refuse(rpcCodeBadRequest, "client public key: %v", err)
	}
	sealer, err := codec.NewSealer(key, codec.RoleHub)
	if err != nil {
		panic("actors: a derived session key was refused: " + err.Error())
	}
	opener, err := codec.NewOpener(key, codec.RoleHub)
	if err != nil {
		panic("actors: a derived session key was refused: " + err.Error())
	}
	id, err := newUUID()
	if err != nil {
		return refuse(rpcCodeInternal, "internal server error")
	}
	s := &rpcSession{deps: d, id: id, client: m.GetClientId(), clientPub: m.GetClientPublicKey(), sealer: sealer, opener: opener}
	pid, err := ctx.SpawnNamed(actor.PropsFromProducer(func() actor.Actor { return s }), "session-"+id)
	if err != nil {
		return refuse(rpcCodeInternal, "internal server error")
	}
	l.sessions[id], l.byPID[pid.Id] = pid, id
	d.open.Store(int64(len(l.sessions)))
	d.log.Info("native rpc: session opened", "session", id, "client", m.GetClientId())
	resp.Success, resp.SessionId, resp.HubPublicKey = true, id, d.priv.PublicKey().Bytes()
	return resp
}

// peerRevoked returns the revocation message when id names a peer of
// this node that is revoked ("" otherwise). Devices that sync with a
// node over native RPC are recorded as its peers after their first
// authenticated request (rpcSession.recordDevice); a hub's registered devices (kv.Device) are refused through their
// revoked key by the Authenticator.
func peerRevoked(store *kv.Store, id string) (string, error) {
	p, err := store.Peer(id)
	if errors.Is(err, kv.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	if p.Status == kv.StatusRevoked {
		return ErrPeerRevoked.Error(), nil
	}
	return "", nil
}

// rpcSession is one client's session: it owns the session's keys and
// serves its requests one at a time. Its state is touched only in
// Receive.
type rpcSession struct {
	deps      *rpcDeps
	id        string
	client    string
	clientPub []byte // the client's public key of this handshake
	sealer    *codec.Sealer
	opener    *codec.Opener
	recorded  bool // the device is noted in the peers (recordDevice)
}

func (s *rpcSession) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		ctx.SetReceiveTimeout(s.deps.idle)
	case *actor.ReceiveTimeout:
		s.deps.log.Info("native rpc: session idle, closed", "session", s.id, "client", s.client)
		ctx.Stop(ctx.Self())
	case *actor.Stopping, *actor.Stopped, *actor.Restarting:
	case *pb.RpcEnvelope:
		reply, end := s.serve(m)
		ctx.Respond(reply)
		if end {
			ctx.Stop(ctx.Self())
		}
	}
}

// responseDir is the direction of the answer to a request's.
func responseDir(d codec.Direction) codec.Direction {
	if d == codec.DirCommand {
		return codec.DirCommandResponse
	}
	return codec.DirQueryResponse
}

// serve answers one sealed request; end says the session is over.
func (s *rpcSession) serve(m *pb.RpcEnvelope) (reply *pb.RpcEnvelope, end bool) {
	log := s.deps.log.With("session", s.id, "client", s.client, "request", m.GetRequestId())
	dir := codec.Direction(m.GetDirection())
	clear := &pb.RpcEnvelope{ProtocolVersion: pb.ProtocolVersion_PROTOCOL_VERSION_1, SessionId: s.id, RequestId: m.GetRequestId()}
	if dir != codec.DirQuery && dir != codec.DirCommand {
		log.Warn("native rpc: envelope refused", "error", "direction "+string(dir))
		clear.Error, clear.ErrorCode = fmt.Sprintf("envelope refused: direction %q is not a request's", dir), rpcCodeEnvelope
		return clear, false
	}
	plain, err := s.opener.Open(dir, m.GetSealed())
	if err != nil {
		log.Warn("native rpc: envelope refused", "error", err)
		clear.Error, clear.ErrorCode = "envelope refused: "+err.Error(), rpcCodeEnvelope
		return clear, false
	}
	resp := &pb.RpcResponse{RequestId: m.GetRequestId()}
	req := new(pb.RpcRequest)
	if err := proto.Unmarshal(plain, req); err != nil {
		resp.Error, resp.ErrorCode = "malformed request: "+err.Error(), rpcCodeBadRequest
	} else {
		end = s.answer(log, dir, req, resp)
	}
	plain, err = proto.Marshal(resp)
	if err == nil {
		clear.Direction = string(responseDir(dir))
		clear.Sealed, err = s.sealer.Seal(responseDir(dir), plain)
	}
	if err != nil {
		log.Error("native rpc: sealing an answer", "error", err)
		clear.Direction, clear.Sealed = "", nil
		clear.Error, clear.ErrorCode = "internal server error", rpcCodeInternal
	}
	return clear, end
}

// answer fills resp for an opened request; it says whether the session
// ends (the device was revoked).
func (s *rpcSession) answer(log *slog.Logger, dir codec.Direction, req *pb.RpcRequest, resp *pb.RpcResponse) bool {
	fail := func(code, format string, a ...any) {
		resp.Error, resp.ErrorCode = fmt.Sprintf(format, a...), code
	}
	switch {
	case req.GetRequestId() != resp.GetRequestId():
		fail(rpcCodeBadRequest, "sealed request id %q differs from the envelope's", req.GetRequestId())
		return false
	case req.GetPull() != nil && dir != codec.DirQuery, req.GetPush() != nil && dir != codec.DirCommand,
		req.GetOperation() != nil && req.GetOperation().GetCommand() != (dir == codec.DirCommand):
		fail(rpcCodeBadRequest, "a pull or a query travels as %q, a push or a command as %q", codec.DirQuery, codec.DirCommand)
		return false
	case req.GetPull() == nil && req.GetPush() == nil && req.GetOperation() == nil:
		fail(rpcCodeBadRequest, "neither a pull, a push nor an operation")
		return false
	}
	if msg, err := peerRevoked(s.deps.store, s.client); err != nil {
		log.Error("native rpc: reading peers", "error", err)
		fail(rpcCodeInternal, "internal server error")
		return false
	} else if msg != "" {
		log.Warn("native rpc: revoked device refused; session closed")
		fail(rpcCodeRevoked, "%s", msg)
		return true
	}
	hr, err := http.NewRequest(http.MethodPost, "/", nil)
	if err != nil {
		panic("actors: building a request: " + err.Error())
	}
	hr.Header.Set("Authorization", req.GetAuthorization())
	if pt := req.GetPeerType(); pt != "" {
		hr.URL.RawQuery = url.Values{"peerType": {pt}}.Encode()
	}
	c, err := s.deps.auth.Authenticate(hr, "rpc:"+s.client)
	var throttled *ThrottledError
	switch {
	case errors.As(err, &throttled):
		fail(rpcCodeRateLimited, "too many failed sign-ins; retry in %s", throttled.Wait.Round(time.Second))
		return false
	case errors.Is(err, ErrUnauthorized):
		log.Warn("native rpc: unauthorized", "error", err)
		fail(rpcCodeUnauthorized, "%v", err)
		return false
	case err != nil:
		log.Error("native rpc: authenticating", "error", err)
		fail(rpcCodeInternal, "internal server error")
		return false
	}
	if req.GetPeerType() == "" { // a device, not a hub declaring itself to its cloud
		if err := s.recordDevice(); err != nil {
			log.Error("native rpc: recording the device", "error", err)
			fail(rpcCodeInternal, "internal server error")
			return false
		}
	}
	if op := req.GetOperation(); op != nil {
		s.operation(log, c, op, resp)
	} else if pull := req.GetPull(); pull != nil {
		out, err := s.deps.server.Pull(c, pull)
		if err == nil {
			resp.Op = &pb.RpcResponse_Pull{Pull: out}
		}
		s.refusal(log, err, resp)
	} else {
		out, err := s.deps.server.Push(c, req.GetPush())
		if err == nil {
			resp.Op = &pb.RpcResponse_Push{Push: out}
		}
		s.refusal(log, err, resp)
	}
	return false
}

// operation answers an online operation (ops.go) of a user: its result
// as JSON, or its refusal's Hikma code and message.
func (s *rpcSession) operation(log *slog.Logger, c fsm.Caller, op *pb.Operation, resp *pb.RpcResponse) {
	if s.deps.ops == nil || c.Hub {
		resp.ErrorCode, resp.Error = CodeNotSupported, "online operations are a user's, served by a hub or a cloud"
		return
	}
	hc, err := s.deps.ops.opsCaller(c)
	if err != nil {
		log.Error("native rpc: the operation's user", "error", err)
		resp.Error, resp.ErrorCode = "internal server error", rpcCodeInternal
		return
	}
	res, rerr := s.deps.ops.operation(hc, op.GetCommand(), op.GetName(), op.GetJson())
	if rerr == nil {
		var b []byte
		if b, err = json.Marshal(res); err == nil {
			resp.Op = &pb.RpcResponse_Operation{Operation: &pb.OperationResult{Json: b}}
			return
		}
		rerr = rpcInternal(err)
	}
	if rerr.code == CodeServerError {
		log.Error("native rpc: operation", "op", op.GetName(), "error", rerr.cause)
	}
	resp.ErrorCode, resp.Error = rerr.code, rerr.msg
}

// recordDevice notes the session's client as a paired device
// (upsertDevice) once per session: after its first authenticated
// request, so a handshake alone writes nothing, as the Hikma RPC does.
func (s *rpcSession) recordDevice() error {
	if s.recorded {
		return nil
	}
	err := upsertDevice(s.deps.store, s.client, s.clientPub, "", "Go device")
	if err == nil {
		s.recorded = true
		s.deps.log.Info("native rpc: device recorded", "session", s.id, "client", s.client)
	}
	return err
}

// refusal turns a Server error into the answer's error and code.
func (s *rpcSession) refusal(log *slog.Logger, err error, resp *pb.RpcResponse) {
	switch {
	case err == nil:
		return
	case errors.Is(err, fsm.ErrConflict):
		resp.ErrorCode = rpcCodeConflict
	case errors.Is(err, ErrBadRequest):
		resp.ErrorCode = rpcCodeBadRequest
	case errors.Is(err, ErrUnauthorized):
		resp.ErrorCode = rpcCodeUnauthorized
	default:
		log.Error("native rpc: serving", "error", err)
		resp.Error, resp.ErrorCode = "internal server error", rpcCodeInternal
		return
	}
	resp.Error = err.Error()
}
