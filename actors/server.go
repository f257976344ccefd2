package actors

import (
	"errors"
	"fmt"

	"github.com/clinicsync/clinicsync/codec"
	"github.com/clinicsync/clinicsync/fsm"
	"github.com/clinicsync/clinicsync/kv"
	pb "github.com/clinicsync/clinicsync/proto"
)

// Page sizes: a client asks for DefaultPageSize records a page unless
// told otherwise (`node sync --page-size`); a server serves at most
// MaxPageSize (Server.PageSize overrides it). With pipelined pulls a
// client holds two pages: 5000-row pages keep a phone's initial sync
// under 200 MB of anonymous memory (10000 were 12% faster at 350 MB;
// BENCHMARKS.md).
const (
	DefaultPageSize = 5000
	MaxPageSize     = 10000
)

// Server answers pulls and pushes from downstream peers over a store:
// the serving side of a cloud or hub, whatever the transport.
type Server struct {
	Store  *kv.Store
	Policy fsm.Policy
	// Relay marks a hub: rows accepted from devices become pending for
	// the hub's own upstream.
	Relay bool
	// PageSize is the most records a pull page holds, whatever the
	// client asks (0: MaxPageSize).
	PageSize int
	// MaxPushBytes is the largest push this server takes, told to
	// clients with every pull (0: not told).
	MaxPushBytes int64
	// OnPush, when set, is called after each push applied (not after
	// one refused whole), from the pusher's goroutine: it must not block.
	OnPush func(PushResult)
}

// Pull answers one page of a pull. The first page issues the pull's
// timestamp T; every page stops at T and ends with a continuation (a
// signed pullToken) while more remain, so a client can ask for the next
// page at any time, across restarts of either side. A migration sync
// first walks the rows at or below last_pulled_at for the migration's
// rows, then the changes since.
func (s *Server) Pull(c fsm.Caller, req *pb.PullRequest) (*pb.PullResponse, error) {
	since := req.GetLastPulledAt()
	if since < 0 {
		return nil, fmt.Errorf("%w: last_pulled_at %d is negative", ErrBadRequest, since)
	}
	mig, err := codec.MigrationFromProto(req.GetMigration(), s.Store.Catalog())
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	if since == 0 || mig.Empty() {
		mig = nil // a first pull returns every row anyway
	}
	key, err := s.Store.Secret(tokenKeyConfig, 32)
	if err != nil {
		return nil, err
	}
	var tok pullToken
	if cont := req.GetContinuation(); cont != "" {
		if tok, err = openToken(key, cont); err != nil {
			return nil, fmt.Errorf("%w: continuation: %v", ErrBadRequest, err)
		}
		switch {
		case tok.Caller != c.ID || tok.Since != since:
			return nil, fmt.Errorf("%w: continuation: it belongs to another pull (caller %q, last_pulled_at %d)", ErrBadRequest, tok.Caller, tok.Since)
		case tok.Migration && mig == nil:
			return nil, fmt.Errorf("%w: continuation of a migration sync without the migration", ErrBadRequest)
		}
	} else {
		if err := s.recordClient(c, req.GetSchemaVersion(), ""); err != nil {
			return nil, err
		}
		tok = pullToken{Caller: c.ID, Since: since, From: since, Migration: mig != nil}
		if tok.Migration {
			tok.From = 0
		}
		if tok.Timestamp, err = s.Store.IssueCursor(); err != nil {
			return nil, err
		}
		n, err := s.Store.CountSince(since)
		if err != nil {
			return nil, err
		}
		tok.Total = uint64(n)
	}
	size := int(req.GetPageSize())
	if size <= 0 || size > s.pageSize() {
		size = s.pageSize()
	}
	var page kv.Page
	var cs *codec.Changeset
	if tok.Migration {
		if page, cs, err = s.servePage(c, since, mig, tok.From, since, size, s.Store.ChangesSince); err != nil {
			return nil, err
		}
		if !page.More { // on to the changes since last_pulled_at
			tok.Migration, page.More, page.Next = false, true, since
		}
	} else if page, cs, err = s.servePage(c, since, nil, tok.From, tok.Timestamp, size, s.Store.ChangesSince); err != nil {
		return nil, err
	}
	cs.Timestamp = tok.Timestamp
	tok.Sent += uint64(cs.Count())
	resp := &pb.PullResponse{
		ProtocolVersion: pb.ProtocolVersion_PROTOCOL_VERSION_1,
		RequestId:       req.GetRequestId(),
		Changes:         codec.EncodeChangeset(cs),
		Timestamp:       tok.Timestamp,
		MaxPushBytes:    uint64(max(s.MaxPushBytes, 0)),
	}
	if page.More {
		tok.From, tok.Total = page.Next, max(tok.Total, tok.Sent)
		resp.Continuation = tok.seal(key)
	} else {
		tok.Total = tok.Sent
	}
	resp.Total, resp.Sent = tok.Total, tok.Sent
	return resp, nil
}

// servePage reads a page of the cursor index, at most size records
// with cursors in (from, upto], and serves it to c for a pull with
// last_pulled_at since, parents read from the store: the migration's
// rows (fsm.ServeMigration) when mig is set, which is the walk of the
// rows at or below since, else the changes since (fsm.ServeWith).
// Protobuf pages (Pull) and JSON pulls (CloudHandler) are served by it;
// read is the store's ChangesSince, or ValuesSince for JSON, which
// carries no column versions.
func (s *Server) servePage(c fsm.Caller, since int64, mig *codec.Migration, from, upto int64, size int,
	read func(since, upto int64, limit int) (kv.Page, error)) (kv.Page, *codec.Changeset, error) {
	page, err := read(from, upto, size)
	if err != nil {
		return kv.Page{}, nil, err
	}
	var cs *codec.Changeset
	if mig != nil {
		cs, err = fsm.ServeMigration(page.Records, mig, c, s.Store.Catalog(), s.Store.Lookup)
	} else {
		cs, err = fsm.ServeWith(page.Records, since, c, s.Store.Catalog(), s.Store.Lookup)
	}
	if err != nil {
		return kv.Page{}, nil, err
	}
	return page, cs, nil
}

// recordClient notes the caller's app schema version (0: not given) at
// the start of a pull: a hub by its device id, a user's app by its user
// id and the device id it names.
func (s *Server) recordClient(c fsm.Caller, schemaVersion int64, device string) error {
	if schemaVersion < 0 {
		return fmt.Errorf("%w: schema_version %d is negative", ErrBadRequest, schemaVersion)
	}
	return s.Store.RecordClient(kv.Client{ID: c.ID, Device: device, Hub: c.Hub, SchemaVersion: schemaVersion})
}

func (s *Server) pageSize() int {
	if s.PageSize > 0 {
		return s.PageSize
	}
	return MaxPageSize
}

// Push applies a protobuf push: it decodes the changeset and hands it
// to PushChanges. Rows the decoder refuses are answered as rejected,
// before those the merge refuses.
func (s *Server) Push(c fsm.Caller, req *pb.PushRequest) (*pb.PushResponse, error) {
	id, lpa := req.GetRequestId(), req.GetLastPulledAt()
	cs, bad, err := codec.DecodeChangeset(req.GetChanges(), s.Store.Catalog())
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	res, err := s.pushChanges(c, lpa, cs, len(bad))
	if err != nil {
		return nil, err
	}
	resp := &pb.PushResponse{
		ProtocolVersion: pb.ProtocolVersion_PROTOCOL_VERSION_1,
		RequestId:       id,
		Accepted:        uint64(res.Accepted),
		Ahead:           uint64(res.Ahead),
	}
	for _, r := range bad {
		resp.Rejected = append(resp.Rejected, &pb.Rejection{Table: r.Table, Id: r.ID, Reason: r.Err.Error()})
	}
	for _, r := range res.Rejected {
		resp.Rejected = append(resp.Rejected, &pb.Rejection{Table: r.Table, Id: r.ID, Reason: r.Reason})
	}
	return resp, nil
}

// PushResult is what PushChanges did.
type PushResult struct {
	// Accepted counts the changes stored, or skipped as already there.
	Accepted int
	// Rejected are the rows the merge refused, with the reason.
	Rejected []kv.Rejection
	// Refused counts the rows refused before the merge (values the
	// decoder could not take, unknown tables): answered as rejected too.
	Refused int
	// Ahead counts the versions dated beyond this node's time plus
	// kv.DefaultMaxDrift.
	Ahead int
	// Conflicts counts the stored values the push beat (each one in
	// the conflict log).
	Conflicts int
}

// PushChanges applies a decoded push in one transaction, or nothing:
// under the strict policy a conflict returns fsm.ErrConflict. A
// last_pulled_at above the newest cursor is refused (ErrBadRequest),
// and under the strict policy so is one the store knows it never
// issued to a pull (kv.Store.IssuedTimestamp). A JSON push comes here
// straight from its decoder; Push is the protobuf entry.
func (s *Server) PushChanges(c fsm.Caller, lastPulledAt int64, cs *codec.Changeset) (PushResult, error) {
	return s.pushChanges(c, lastPulledAt, cs, 0)
}

// pushChanges is PushChanges of a push whose decoding refused rows.
func (s *Server) pushChanges(c fsm.Caller, lastPulledAt int64, cs *codec.Changeset, refused int) (PushResult, error) {
	// A last_pulled_at this node never issued would blind the conflict
	// rules (strict: everything looks pulled). One older than the
	// record of issued timestamps (at or below its floor) is taken: an
	// older last_pulled_at only makes more rows count as changed since
	// the pull, so more pushes conflict, never fewer; hiding a recent
	// edit takes a recent timestamp, which the record knows.
	iss, err := s.Store.IssuedTimestamp(lastPulledAt)
	if err != nil {
		return PushResult{}, err
	}
	switch {
	case lastPulledAt < 0 || lastPulledAt > iss.Last:
		return PushResult{}, fmt.Errorf("%w: last_pulled_at %d was never issued by this server: pull, then push", ErrBadRequest, lastPulledAt)
	case s.Policy == fsm.StrictPolicy && iss.Unknown(lastPulledAt):
		return PushResult{}, fmt.Errorf("%w: last_pulled_at %d was never issued by a pull from this server: pull first, then push", ErrBadRequest, lastPulledAt)
	}
	now, err := s.Store.Now()
	if err != nil {
		return PushResult{}, err
	}
	ahead := 0
	push := fsm.Push{Caller: c, LastPulledAt: lastPulledAt, Policy: s.Policy, Relay: s.Relay,
		Catalog: s.Store.Catalog(), MaxValueBytes: kv.MaxValueBytes,
		Now: now, MaxAhead: kv.DefaultMaxDrift.Milliseconds(), Ahead: &ahead}
	// The merge reads the parents of scoped rows in the batch's own
	// transaction, parents applied first (push.Changes).
	res, err := s.Store.ApplyWith(kv.Batch{Changes: push.Changes(cs)}, func(get kv.Lookup) kv.Merge { return push.MergeWith(get) })
	if err != nil {
		if errors.Is(err, fsm.ErrConflict) {
			return PushResult{}, err
		}
		return PushResult{}, fmt.Errorf("actors: apply push: %w", err)
	}
	pr := PushResult{Accepted: res.Written + res.Purged + res.Skipped, Rejected: res.Rejected, Refused: refused, Ahead: ahead,
		Conflicts: res.Conflicts}
	if s.OnPush != nil {
		s.OnPush(pr)
	}
	return pr, nil
}
