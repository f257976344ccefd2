package actors

// Online mode on a device (reference §3.6): reads and writes go
// straight to the active peer as operations (ops.go), and nothing is
// written locally. The clinic's policy is the app_config row
// system/operation_mode (offline, online, user_choice); under
// user_choice the node's own choice decides (ConfigModePreference).

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/clinicsync/clinicsync/codec"
	"github.com/clinicsync/clinicsync/kv"
	pb "github.com/clinicsync/clinicsync/proto"
)

// Modes of a device.
const (
	ModeOffline = "offline"
	ModeOnline  = "online"
	// ModeUserChoice is a policy: the node's preference decides.
	ModeUserChoice = "user_choice"
)

// ConfigModePreference keeps the node's chosen mode (under the
// user_choice policy) in its config.
const ConfigModePreference = "operation_mode_preference"

// Errors of mode switching and online operations.
var (
	// ErrUnsyncedChanges refuses offline → online while local changes
	// wait to be pushed.
	ErrUnsyncedChanges = errors.New("Sync local changes before switching to online mode")
	// ErrModePolicy refuses a mode the clinic's policy does not allow.
	ErrModePolicy = errors.New("actors: the clinic's operation_mode policy does not allow this mode")
	// ErrOnline refuses a local-store operation while the node is
	// online (a sync with nothing to push, say).
	ErrOnline = errors.New("actors: the node is in online mode")
)

// ModeStatus is a device's mode: the one in effect, the clinic's policy
// (from app_config system/operation_mode; offline when absent or
// invalid) and the node's preference.
type ModeStatus struct {
	Mode, Policy, Preference string
}

// Mode reports the node's mode. Only a mobile node has one: hubs and
// clouds are always offline (they serve from their store).
func (n *Node) Mode() (ModeStatus, error) {
	if n.info.Kind != KindMobile {
		return ModeStatus{Mode: ModeOffline, Policy: ModeOffline, Preference: ModeOffline}, nil
	}
	policy, err := n.modePolicy()
	if err != nil {
		return ModeStatus{}, err
	}
	pref, err := n.store.Config(ConfigModePreference)
	if errors.Is(err, kv.ErrNotFound) || err == nil && pref != ModeOnline {
		pref, err = ModeOffline, nil
	}
	if err != nil {
		return ModeStatus{}, err
	}
	m := ModeStatus{Mode: policy, Policy: policy, Preference: pref}
	if policy == ModeUserChoice {
		m.Mode = pref
	}
	return m, nil
}

// modePolicy reads app_config namespace "system", key
// "operation_mode"; anything but online and user_choice is offline.
func (n *Node) modePolicy() (string, error) {
	policy := ModeOffline
	err := n.store.Rows("app_config", func(r kv.Record) error {
		if !r.Deleted && r.Cols["namespace"].Str == "system" && r.Cols["key"].Str == "operation_mode" {
			switch v := strings.Trim(strings.TrimSpace(r.Cols["value"].Str), `"`); v {
			case ModeOnline, ModeUserChoice:
				policy = v
			}
		}
		return nil
	})
	return policy, err
}

// SetMode switches the node to mode (ModeOnline or ModeOffline) and
// persists it. Offline → online is refused while local changes wait to
// be pushed (ErrUnsyncedChanges: sync first) and where the policy is
// offline; online → offline is refused only where the policy is online.
// Switching to the mode in effect changes nothing.
func (n *Node) SetMode(mode string) (ModeStatus, error) {
	if mode != ModeOnline && mode != ModeOffline {
		return ModeStatus{}, fmt.Errorf("%w: mode %q: want online or offline", ErrInvalidConfig, mode)
	}
	if n.info.Kind != KindMobile {
		return ModeStatus{}, fmt.Errorf("%w: only a mobile node has a mode; a %s serves from its store", ErrInvalidConfig, n.info.Kind)
	}
	cur, err := n.Mode()
	if err != nil || cur.Mode == mode {
		return cur, err
	}
	if cur.Policy != ModeUserChoice {
		return cur, fmt.Errorf("%w: it is %s (app_config system/operation_mode), so %s mode is not available here", ErrModePolicy, cur.Policy, mode)
	}
	if mode == ModeOnline {
		pending, err := n.store.PendingCount()
		if err != nil {
			return cur, err
		}
		if pending > 0 {
			return cur, fmt.Errorf("%w (%d pending)", ErrUnsyncedChanges, pending)
		}
	}
	if err := n.store.SetConfig(ConfigModePreference, mode); err != nil {
		return cur, err
	}
	return n.Mode()
}

// online reports whether the node is in online mode.
func (n *Node) online() (bool, error) {
	m, err := n.Mode()
	return m.Mode == ModeOnline, err
}

// Operator is a transport that makes online operations.
type Operator interface {
	// Operation runs the named query or command with params (a value
	// that encodes to a JSON object) and returns its JSON result.
	Operation(ctx context.Context, command bool, name string, params any) (json.RawMessage, error)
}

// OpError is an operation the peer refused: its code (CodeNotFound,
// CodePermissionDenied, AUTH_FAILED, ...) and message. It unwraps to
// the engine's errors as the Hikma app maps them: AUTH_FAILED and
// SESSION_EXPIRED to ErrUnauthorized, NOT_FOUND to kv.ErrNotFound,
// anything else to ErrPeerFailed (a server error).
type OpError struct {
	Op, Code, Message string
}

func (e *OpError) Error() string {
	return fmt.Sprintf("%s refused by the peer: %s (%s)", e.Op, e.Message, e.Code)
}

func (e *OpError) Unwrap() error {
	switch e.Code {
	case CodeAuthFailed, CodeSessionExpired, rpcCodeUnauthorized:
		return ErrUnauthorized
	case CodeNotFound:
		return kv.ErrNotFound
	case rpcCodeRevoked:
		return ErrPeerRevoked
	}
	return ErrPeerFailed
}

// Operation runs an operation on the peer's HTTP operations endpoint
// (OpsPath), as a user.
func (t *HTTPTransport) Operation(ctx context.Context, command bool, name string, params any) (json.RawMessage, error) {
	input, err := json.Marshal(map[string]any{"json": params})
	if err != nil {
		return nil, fmt.Errorf("actors: encoding the parameters of %s: %w", name, err)
	}
	kind, method := "query", http.MethodGet
	if command {
		kind, method = "command", http.MethodPost
	}
	u, err := url.Parse(strings.TrimRight(t.BaseURL, "/") + OpsPath + kind + "/" + url.PathEscape(name))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: peer URL %q is not http(s)://host[:port]", ErrInvalidConfig, t.BaseURL)
	}
	var body *bytes.Reader
	if command {
		body = bytes.NewReader(input)
	} else {
		u.RawQuery = url.Values{"input": {string(input)}}.Encode()
		body = bytes.NewReader(nil)
	}
	hr, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidConfig, err)
	}
	if command {
		hr.Header.Set("Content-Type", "application/json")
	}
	resp, raw, err := t.send(hr, name)
	if err != nil {
		return nil, err
	}
	var answer struct {
		Result struct {
			Data struct {
				JSON json.RawMessage `json:"json"`
			} `json:"data"`
		} `json:"result"`
		Error struct {
			JSON struct {
				Message string `json:"message"`
				Data    struct {
					Code string `json:"code"`
				} `json:"data"`
			} `json:"json"`
		} `json:"error"`
	}
	if json.Unmarshal(raw, &answer) != nil || resp.StatusCode != http.StatusOK && answer.Error.JSON.Data.Code == "" {
		return nil, statusError(name, t.BaseURL, resp, raw)
	}
	if e := answer.Error.JSON; e.Data.Code != "" {
		return nil, &OpError{Op: name, Code: e.Data.Code, Message: e.Message}
	}
	return answer.Result.Data.JSON, nil
}

// Operation runs an operation over native RPC, sealed like a pull or a
// push.
func (t *RPCTransport) Operation(ctx context.Context, command bool, name string, params any) (json.RawMessage, error) {
	b, err := json.Marshal(params)
	if err != nil {
		return nil, fmt.Errorf("actors: encoding the parameters of %s: %w", name, err)
	}
	dir := codec.DirQuery
	if command {
		dir = codec.DirCommand
	}
	resp, err := t.call(ctx, dir, &pb.RpcRequest{Op: &pb.RpcRequest_Operation{Operation: &pb.Operation{Name: name, Command: command, Json: b}}})
	var opErr *rpcOpRefusal
	if errors.As(err, &opErr) {
		return nil, &OpError{Op: name, Code: opErr.code, Message: opErr.msg}
	}
	if err != nil {
		return nil, err
	}
	if resp.GetOperation() == nil {
		return nil, fmt.Errorf("%w: %s %s: the answer holds no operation result", ErrBadRequest, name, t.Addr)
	}
	return resp.GetOperation().GetJson(), nil
}

// rpcOpRefusal is an operation's refusal inside a sealed answer: a
// Hikma code, not one of native RPC's own.
type rpcOpRefusal struct{ code, msg string }

func (e *rpcOpRefusal) Error() string { return e.msg }

// Operation finds the hub again if it moved (findingTransport).
func (t *findingTransport) Operation(ctx context.Context, command bool, name string, params any) (json.RawMessage, error) {
	return findAndCall(ctx, t, func(tr Transport) (json.RawMessage, error) {
		op, ok := tr.(Operator)
		if !ok {
			return nil, fmt.Errorf("%w: the peer's transport makes no online operations", ErrInvalidConfig)
		}
		return op.Operation(ctx, command, name, params)
	})
}

// Operation runs an online operation on the peer a sync would use (the
// selected one, else the first active hub, else the cloud), as the
// node's signed-in user, through the node's transports.
func (n *Node) Operation(ctx context.Context, command bool, name string, params any) (json.RawMessage, error) {
	return n.operationOn(ctx, "", command, name, params)
}

// operationOn is Operation on the peer peerID ("": the active peer).
func (n *Node) operationOn(ctx context.Context, peerID string, command bool, name string, params any) (json.RawMessage, error) {
	peers, err := n.store.Peers()
	if err != nil {
		return nil, err
	}
	sel := peerID
	if sel == "" {
		if sel, err = n.ActivePeer(); err != nil {
			return nil, err
		}
	}
	peer, err := ResolvePeer(peers, sel)
	if err != nil {
		return nil, err
	}
	factory := n.HTTPTransports(nil)
	if n.engine != nil && n.engine.transports != nil {
		factory = n.engine.transports
	}
	tr, err := factory(peer)
	if err != nil {
		return nil, err
	}
	defer closeTransport(tr)
	op, ok := tr.(Operator)
	if !ok {
		return nil, fmt.Errorf("%w: peer %s (%s) takes no online operations", ErrInvalidConfig, peer.ID, peer.URL)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultRequestTimeout)
		defer cancel()
	}
	return op.Operation(ctx, command, name, params)
}

// valueJSON is a value as an operation's JSON carries it: a timestamp
// as epoch ms, JSON text as itself.
func valueJSON(v codec.Value) any {
	switch v.Kind {
	case codec.KindString:
		return v.Str
	case codec.KindNumber:
		return v.Num
	case codec.KindBool:
		return v.Bool
	case codec.KindJSON:
		return json.RawMessage(v.Str)
	}
	return nil
}

// putOnline writes a row on the peer (rows.put) and returns it as the
// peer now holds it.
func (n *Node) putOnline(table, id string, vals map[string]codec.Value) (kv.Record, error) {
	cols := make(map[string]any, len(vals))
	for k, v := range vals {
		cols[k] = valueJSON(v)
	}
	ctx := context.Background()
	if _, err := n.Operation(ctx, true, "rows.put", map[string]any{"table": table, "id": id, "values": cols}); err != nil {
		return kv.Record{}, err
	}
	rs, err := n.rowsOnline(ctx, table, id)
	if err != nil {
		return kv.Record{}, err
	}
	return rs[0], nil
}

// rowsOnline reads rows from the peer: table/id (rows.get), or the
// table's live rows in id order (rows.list, page by page).
func (n *Node) rowsOnline(ctx context.Context, table, id string) ([]kv.Record, error) {
	var raws []json.RawMessage
	if id != "" {
		raw, err := n.Operation(ctx, false, "rows.get", map[string]any{"table": table, "id": id})
		if err != nil {
			return nil, err
		}
		raws = append(raws, raw)
	} else {
		for after := ""; ; {
			raw, err := n.Operation(ctx, false, "rows.list", map[string]any{"table": table, "after": after, "limit": opMaxLimit})
			if err != nil {
				return nil, err
			}
			var page struct {
				Data []json.RawMessage `json:"data"`
				More bool              `json:"more"`
			}
			if err := json.Unmarshal(raw, &page); err != nil {
				return nil, fmt.Errorf("%w: rows.list answer: %v", ErrBadRequest, err)
			}
			raws = append(raws, page.Data...)
			if !page.More || len(page.Data) == 0 {
				break
			}
			var last struct {
				ID string `json:"id"`
			}
			if err := json.Unmarshal(page.Data[len(page.Data)-1], &last); err != nil || last.ID == "" {
				return nil, fmt.Errorf("%w: rows.list answer: a row without an id", ErrBadRequest)
			}
			after = last.ID
		}
	}
	if len(raws) == 0 {
		return nil, nil
	}
	doc, err := json.Marshal(map[string]any{table: map[string]any{"updated": raws}})
	if err != nil {
		return nil, err
	}
	cs, rep, err := codec.DecodeChanges(doc, codec.Options{Catalog: n.store.Catalog(), MaxValueBytes: kv.MaxValueBytes})
	if err != nil {
		return nil, fmt.Errorf("%w: rows from the peer: %v", ErrBadRequest, err)
	}
	if len(rep.Rejected) > 0 {
		return nil, fmt.Errorf("%w: a row from the peer: %v", ErrBadRequest, rep.Rejected[0].Err)
	}
	out := make([]kv.Record, 0, len(raws))
	for _, r := range cs.Table(table).Updated {
		r.Changed = nil
		out = append(out, kv.Record{Row: r})
	}
	return out, nil
}

// onlineSkip is the result of a sync asked for in online mode with
// nothing local to push: skipped, nothing is kept locally to sync. With
// local changes pending (made before switching, or under a policy
// that turned online) the sync runs, so that they are not stranded.
func (n *Node) onlineSkip() (*Result, error) {
	on, err := n.online()
	if err != nil || !on {
		return nil, err
	}
	pending, err := n.store.PendingCount()
	if err != nil || pending > 0 {
		return nil, err
	}
	return &Result{Outcome: OutcomeSkipped, Message: "online mode: reads and writes go straight to the peer; nothing to sync",
		Err: ErrOnline}, nil
}
