package actors

import (
	"context"
	"fmt"
	"sync"

	"github.com/clinicsync/clinicsync/codec"
	"github.com/clinicsync/clinicsync/fsm"
	pb "github.com/clinicsync/clinicsync/proto"
	"google.golang.org/protobuf/proto"
)

// Fault is what the network does to one call.
type Fault uint8

const (
	Deliver      Fault = iota
	DropRequest        // the server never sees the call
	DropResponse       // the server handles the call; the answer is lost
)

// Call describes one call on a MemNet, for fault hooks.
type Call struct {
	From, To string // caller id, server address
	Op       string // "pull" or "push"
	// Request is the pull or push request (not to be changed).
	Request proto.Message
}

// MemNet is an in-memory network of Servers: the transport of tests and
// of the simulator. Messages are marshalled to protobuf and back, as on
// a wire. Partitions and a fault hook inject trouble.
type MemNet struct {
	mu      sync.Mutex // guards servers, down and hook
	servers map[string]*Server
	down    map[string]bool
	hook    func(Call) Fault
}

// NewMemNet returns an empty network.
func NewMemNet() *MemNet {
	return &MemNet{servers: map[string]*Server{}, down: map[string]bool{}}
}

// Listen serves s at addr (replacing what was there).
func (n *MemNet) Listen(addr string, s *Server) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.servers[addr] = s
}

// Partition cuts (or, with down false, restores) every call from or to
// the node with this id or address.
func (n *MemNet) Partition(node string, down bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if down {
		n.down[node] = true
	} else {
		delete(n.down, node)
	}
}

// Heal removes every partition.
func (n *MemNet) Heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.down = map[string]bool{}
}

// SetHook installs fn to decide the fate of every call (nil: deliver
// all). The hook runs before the call reaches the server and may block,
// which is how tests hold a push in flight.
func (n *MemNet) SetHook(fn func(Call) Fault) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.hook = fn
}

// Dial returns a transport from caller to the server at addr.
func (n *MemNet) Dial(addr string, caller fsm.Caller) Transport {
	return &memTransport{net: n, addr: addr, caller: caller}
}

type memTransport struct {
	net    *MemNet
	addr   string
	caller fsm.Caller
}

func (t *memTransport) Pull(ctx context.Context, req *pb.PullRequest) (*pb.PullResponse, error) {
	resp := new(pb.PullResponse)
	err := t.call(ctx, "pull", req, resp, func(s *Server, r proto.Message) (proto.Message, error) {
		return s.Pull(t.caller, r.(*pb.PullRequest))
	})
	return resp, err
}

func (t *memTransport) Push(ctx context.Context, req *pb.PushRequest) (*pb.PushResponse, error) {
	resp := new(pb.PushResponse)
	err := t.call(ctx, "push", req, resp, func(s *Server, r proto.Message) (proto.Message, error) {
		return s.Push(t.caller, r.(*pb.PushRequest))
	})
	return resp, err
}

func (t *memTransport) call(ctx context.Context, op string, req, resp proto.Message, handle func(*Server, proto.Message) (proto.Message, error)) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: %v", ErrUnreachable, err)
	}
	c := Call{From: t.caller.ID, To: t.addr, Op: op, Request: req}
	t.net.mu.Lock()
	srv, hook := t.net.servers[t.addr], t.net.hook
	cut := t.net.down[c.From] || t.net.down[c.To]
	t.net.mu.Unlock()
	fault := Deliver
	if hook != nil {
		fault = hook(c)
	}
	if srv == nil || cut || fault == DropRequest {
		return fmt.Errorf("%w: %s %s: no answer", ErrUnreachable, op, t.addr)
	}
	in := req.ProtoReflect().New().Interface()
	if err := roundTrip(req, in); err != nil {
		return err
	}
	out, err := handle(srv, in)
	if err != nil {
		return err
	}
	if fault == DropResponse {
		return fmt.Errorf("%w: %s %s: answer lost", ErrUnreachable, op, t.addr)
	}
	return roundTrip(out, resp)
}

// roundTrip copies a message through its wire encoding.
func roundTrip(from, to proto.Message) error {
	b, err := codec.Marshal(from)
	if err != nil {
		return err
	}
	return codec.Unmarshal(b, to)
}
