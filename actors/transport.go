package actors

import (
	"context"
	"errors"

	pb "github.com/clinicsync/clinicsync/proto"
)

// Transport carries one peer's pulls and pushes. Implementations: the
// in-memory network (MemNet) for tests and the simulator, HTTPTransport
// (http(s):// peers) and RPCTransport (rpc:// peers, native RPC sealed
// end to end); HTTPTransports picks one by the peer's URL.
type Transport interface {
	Pull(ctx context.Context, req *pb.PullRequest) (*pb.PullResponse, error)
	Push(ctx context.Context, req *pb.PushRequest) (*pb.PushResponse, error)
}

var (
	// ErrUnreachable: the peer could not be reached or did not answer
	// (a push may or may not have been applied: retrying is safe).
	ErrUnreachable = errors.New("actors: peer unreachable")
	// ErrBadRequest: a request the server refuses as malformed.
	ErrBadRequest = errors.New("actors: bad request")
	// ErrNoPeer: no peer to sync with.
	ErrNoPeer = errors.New("No sync peer configured. Please pair with a hub or register a cloud server.")
	// ErrSyncInProgress: a sync was requested while one runs.
	ErrSyncInProgress = errors.New("Sync already in progress, skipping")
)
