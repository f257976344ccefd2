package actors

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/clinicsync/clinicsync/fsm"
	"github.com/clinicsync/clinicsync/kv"
)

// TransportFactory builds the transport to a peer. It is called by the
// peer's actor, once, on its first call; it must not block (no
// dialing: a transport connects when it is first used).
type TransportFactory func(kv.Peer) (Transport, error)

// Transports is the TransportFactory of a node on this network: a peer
// is reached at its URL, or at its id when it has none, and the node
// calls as caller.
func (n *MemNet) Transports(caller fsm.Caller) TransportFactory {
	return func(p kv.Peer) (Transport, error) {
		addr := p.URL
		if addr == "" {
			addr = p.ID
		}
		return n.Dial(addr, caller), nil
	}
}

type peerConfig struct {
	peer       kv.Peer
	transports TransportFactory
	timeout    time.Duration
	log        *slog.Logger
}

func peerProps(cfg peerConfig) *actor.Props {
	return actor.PropsFromProducer(func() actor.Actor { return &peerActor{cfg: cfg} },
		actor.WithMailbox(actor.Bounded(peerMailbox)))
}

// peerActor owns one peer's transport. Each call runs in its own
// goroutine, bounded by the request timeout, and its reply goes back
// to the caller as a message: Receive never waits for the network.
// Stopping or restarting cancels the calls under way. It does not
// retry: a failed call fails the sync, and the next sync starts over
// from what the store holds (pushes are idempotent).
type peerActor struct {
	cfg    peerConfig
	tr     Transport
	base   context.Context // parent of every call's context
	cancel context.CancelFunc
}

func (p *peerActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		p.base, p.cancel = context.WithCancel(context.Background())
	case *peerCall:
		p.call(ctx, m)
	case *actor.Stopping, *actor.Restarting:
		p.shutdown()
	case *actor.Stopped:
	default:
		p.cfg.log.Warn("peer actor: unexpected message", "peer", p.cfg.peer.ID, "type", fmt.Sprintf("%T", m))
	}
}

func (p *peerActor) call(ctx actor.Context, m *peerCall) {
	tr, err := p.transport()
	if err != nil {
		ctx.Send(m.replyTo, &peerReply{seq: m.seq, err: err})
		return
	}
	root, base, timeout, peer := ctx.ActorSystem().Root, p.base, p.cfg.timeout, p.cfg.peer.ID
	go func() {
		root.Send(m.replyTo, roundTripCall(base, timeout, tr, peer, m))
	}()
}

// transport builds the transport on first use; a factory that fails is
// asked again on the next call.
func (p *peerActor) transport() (tr Transport, err error) {
	if p.tr != nil {
		return p.tr, nil
	}
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("actors: transport for peer %s: factory panicked: %v", p.cfg.peer.ID, v)
		}
	}()
	if p.cfg.transports == nil {
		return nil, fmt.Errorf("%w: no transport factory", ErrInvalidConfig)
	}
	tr, err = p.cfg.transports(p.cfg.peer)
	if err != nil {
		return nil, fmt.Errorf("actors: transport for peer %s: %w", p.cfg.peer.ID, err)
	}
	p.tr = tr
	return tr, nil
}

func (p *peerActor) shutdown() {
	if p.cancel != nil {
		p.cancel()
	}
	if c, ok := p.tr.(io.Closer); ok {
		if err := c.Close(); err != nil {
			p.cfg.log.Warn("peer actor: closing transport", "peer", p.cfg.peer.ID, "cause", err)
		}
	}
	p.tr = nil
}

// roundTripCall makes one call on tr. A call that does not end within
// the timeout is a peer that did not answer (ErrUnreachable), even if
// the transport ignores its context (the call is then left to finish
// on its own and its answer dropped); a transport that panics is an
// error, not a lost reply.
func roundTripCall(base context.Context, timeout time.Duration, tr Transport, peer string, m *peerCall) *peerReply {
	cctx, cancel := context.WithTimeout(base, timeout)
	defer cancel()
	op := "push"
	if m.pull != nil {
		op = "pull"
	}
	done := make(chan *peerReply, 1) // the call never waits for a reader
	go func() {
		r := &peerReply{seq: m.seq}
		defer func() {
			if v := recover(); v != nil {
				r.pull, r.push, r.err = nil, nil, fmt.Errorf("actors: transport to peer %s panicked: %v", peer, v)
			}
			done <- r
		}()
		if m.pull != nil {
			// The page is decoded here, while the coordinator applies the
			// page before it.
			if r.pull, r.err = tr.Pull(cctx, m.pull); r.err == nil {
				r.page = fsm.DecodePage(r.pull)
			}
		} else {
			r.push, r.err = tr.Push(cctx, m.push)
		}
	}()
	var r *peerReply
	select {
	case r = <-done:
	case <-cctx.Done():
		r = &peerReply{seq: m.seq, err: cctx.Err()}
	}
	if r.err != nil && errors.Is(r.err, context.DeadlineExceeded) && !errors.Is(r.err, ErrUnreachable) {
		r.err = fmt.Errorf("%w: %s %s: %v", ErrUnreachable, op, peer, r.err)
	}
	return r
}
