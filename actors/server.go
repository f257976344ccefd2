package actors

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/clinicsync/clinicsync/codec"
	"github.com/clinicsync/clinicsync/fsm"
	"github.com/clinicsync/clinicsync/kv"
	pb "github.com/clinicsync/clinicsync/proto"
)

// DefaultPageSize bounds the records of one pull page.
const DefaultPageSize = 1000

// Server answers pulls and pushes from downstream peers over a store:
// the serving side of a cloud or hub, whatever the transport.
type Server struct {
	Store  *kv.Store
	Policy fsm.Policy
	// Relay marks a hub: rows accepted from devices become pending for
	// the hub's own upstream.
	Relay    bool
	PageSize int
}

// Pull answers one page of a pull.
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
	// The first page issues the pull's timestamp T; later pages carry it
	// in the continuation ("cursor/T") and every page stops at T. A
	// migration sync first walks the rows at or below last_pulled_at for
	// the migration's rows ("mcursor/T"), then the changes since.
	from, ts, migrating := since, int64(0), mig != nil
	if cont := req.GetContinuation(); cont != "" {
		c, t, ok := strings.Cut(cont, "/")
		c, migrating = strings.CutPrefix(c, "m")
		var err1, err2 error
		from, err1 = strconv.ParseInt(c, 10, 64)
		ts, err2 = strconv.ParseInt(t, 10, 64)
		switch {
		case !ok || err1 != nil || err2 != nil || ts < since || migrating && (from < 0 || from > since) || !migrating && (from < since || ts < from):
			return nil, fmt.Errorf("%w: continuation %q is not cursor/timestamp after last_pulled_at", ErrBadRequest, cont)
		case migrating && mig == nil:
			return nil, fmt.Errorf("%w: continuation %q of a migration sync without the migration", ErrBadRequest, cont)
		}
	} else {
		if migrating {
			from = 0
		}
		if err := s.recordClient(c, req.GetSchemaVersion(), ""); err != nil {
			return nil, err
		}
		var err error
		if ts, err = s.Store.IssueCursor(); err != nil {
			return nil, err
		}
	}
	size := int(req.GetPageSize())
	if size <= 0 || size > s.pageSize() {
		size = s.pageSize()
	}
	var page kv.Page
	var cs *codec.Changeset
	if migrating {
		if page, err = s.Store.ChangesSince(from, since, size); err != nil {
			return nil, err
		}
		cs = fsm.ServeMigration(page.Records, mig, c, s.Store.Catalog())
		if !page.More { // on to the changes since last_pulled_at
			page.More, page.Next = true, since
		}
	} else {
		if page, err = s.Store.ChangesSince(from, ts, size); err != nil {
			return nil, err
		}
		cs = fsm.Serve(page.Records, since, c, s.Store.Catalog())
	}
	cs.Timestamp = ts
	resp := &pb.PullResponse{
		ProtocolVersion: pb.ProtocolVersion_PROTOCOL_VERSION_1,
		RequestId:       req.GetRequestId(),
		Changes:         codec.ChangesetToProto(cs),
		Timestamp:       ts,
		Sent:            uint64(cs.Count()),
	}
	switch {
	case migrating && page.Next < since:
		resp.Continuation = fmt.Sprintf("m%d/%d", page.Next, ts)
	case page.More:
		resp.Continuation = fmt.Sprintf("%d/%d", page.Next, ts)
	}
	return resp, nil
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
	return DefaultPageSize
}

// Push applies a push in one transaction, or nothing: under the strict
// policy a conflict returns fsm.ErrConflict. Rows the decoder or the
// merge refuse are answered as rejected; versions dated beyond this
// node's time plus kv.DefaultMaxDrift are counted in Ahead.
func (s *Server) Push(c fsm.Caller, req *pb.PushRequest) (*pb.PushResponse, error) {
	cs, bad, err := codec.ChangesetFromProto(req.GetChanges(), s.Store.Catalog())
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	// A last_pulled_at this node never issued would blind the conflict
	// rules (strict: everything looks pulled).
	last, err := s.Store.LastCursor()
	if err != nil {
		return nil, err
	}
	if lpa := req.GetLastPulledAt(); lpa < 0 || lpa > last {
		return nil, fmt.Errorf("%w: last_pulled_at %d was never issued by this server: pull, then push", ErrBadRequest, lpa)
	}
	now, err := s.Store.Now()
	if err != nil {
		return nil, err
	}
	ahead := 0
	merge := fsm.Push{Caller: c, LastPulledAt: req.GetLastPulledAt(), Policy: s.Policy, Relay: s.Relay,
		Catalog: s.Store.Catalog(), MaxValueBytes: kv.MaxValueBytes,
		Now: now, MaxAhead: kv.DefaultMaxDrift.Milliseconds(), Ahead: &ahead}.Merge()
	res, err := s.Store.Apply(kv.Batch{Changes: fsm.Changes(cs)}, merge)
	if err != nil {
		if errors.Is(err, fsm.ErrConflict) {
			return nil, err
		}
		return nil, fmt.Errorf("actors: apply push: %w", err)
	}
	resp := &pb.PushResponse{
		ProtocolVersion: pb.ProtocolVersion_PROTOCOL_VERSION_1,
		RequestId:       req.GetRequestId(),
		Accepted:        uint64(res.Written + res.Purged + res.Skipped),
		Ahead:           uint64(ahead),
	}
	for _, r := range bad {
		resp.Rejected = append(resp.Rejected, &pb.Rejection{Table: r.Table, Id: r.ID, Reason: r.Err.Error()})
	}
	for _, r := range res.Rejected {
		resp.Rejected = append(resp.Rejected, &pb.Rejection{Table: r.Table, Id: r.ID, Reason: r.Reason})
	}
	return resp, nil
}
