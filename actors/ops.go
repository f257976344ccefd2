package actors

// Online operations (reference §3.6): the reads and writes a device in
// online mode makes straight through its peer instead of its own store.
// One set of operations, served on the Hikma RPC (/rpc/command and
// /rpc/query, sealed), on HTTP (/api/v2/rpc/{query,command}/<name>,
// and on a cloud also /rpc/{query,command}/<name>, the Hikma app's
// cloud transport) and on native RPC. Writes are one-row pushes through
// the same engine as a sync (normalization, merge by column version,
// scope, the hub's relay upstream); reads answer rows as a pull would.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"

	"github.com/clinicsync/clinicsync/codec/schema"
	"github.com/clinicsync/clinicsync/fsm"
)

// Codes of refused operations, beside the Hikma RPC's (CodeAuthFailed,
// ...).
const (
	CodeNotFound         = "NOT_FOUND"
	CodePermissionDenied = "PERMISSION_DENIED"
	CodeValidation       = "VALIDATION_ERROR"
)

// Page bounds of the list operations.
const (
	opDefaultLimit = 20
	opMaxLimit     = 500
)

// opCall is one operation being served.
type opCall struct {
	h      *CloudHandler
	caller hikmaCaller
	params map[string]json.RawMessage
}

type opFunc func(*opCall) (any, *rpcError)

// queries and commands are the operations, by name. rows.* are
// clinicsync's own, for Go devices: any synced table by name.
var (
	queries  map[string]opFunc
	commands map[string]opFunc
)

func init() {
	queries = map[string]opFunc{
		"get_patient":      getPatient,
		"search_patients":  searchPatients,
		"get_patients":     getPatients,
		"get_visits":       childRows("visits", "patient_id", "check_in_timestamp"),
		"get_visit_events": childRows("events", "visit_id", "created_at"),
		"events.by_form":   eventsByForm,
		"vitals.list":      childRows("patient_vitals", "patient_id", "timestamp"),
		"problems.list":    childRows("patient_problems", "patient_id", "created_at"),
		"problems.get":     getRow("patient_problems"),
		"rows.get":         rowsGet,
		"rows.list":        rowsList,
	}
	commands = map[string]opFunc{
		"register_patient": registerPatient,
		"delete_patient":   deleteRow("patients", "patient_id"),
		"visits.create":    createRow("visits"),
		"visits.update":    updateRow("visits"),
		"events.create":    createRow("events"),
		"create_event":     createRow("events"),
		"events.update":    updateRow("events"),
		"events.delete":    deleteRow("events", "id"),
		"vitals.create":    createRow("patient_vitals"),
		"vitals.update":    updateRow("patient_vitals"),
		"problems.create":  createRow("patient_problems"),
		"problems.update":  updateRow("patient_problems"),
		"rows.put":         rowsPut,
		"rows.delete":      rowsDelete,
	}
}

// Operations lists the operations a serving node answers: queries and
// commands, sorted.
func Operations() (queryNames, commandNames []string) {
	return slices.Sorted(maps.Keys(queries)), slices.Sorted(maps.Keys(commands))
}

// operation runs the named operation for caller with params (a JSON
// object, or null).
func (h *CloudHandler) operation(caller hikmaCaller, command bool, name string, params json.RawMessage) (any, *rpcError) {
	ops, kind := queries, "query"
	if command {
		ops, kind = commands, "command"
	}
	f, ok := ops[name]
	if !ok {
		q, c := Operations()
		return nil, opError(CodeNotSupported, "%s %q is not served here (queries: %s; commands: %s, sync_push, login, ping)",
			kind, name, strings.Join(q, ", "), strings.Join(c, ", "))
	}
	var p map[string]json.RawMessage
	if len(bytes.TrimSpace(params)) > 0 && string(bytes.TrimSpace(params)) != "null" {
		if err := json.Unmarshal(params, &p); err != nil {
			return nil, opError(CodeBadRequest, "%s %s: the parameters are not a JSON object: %v", kind, name, err)
		}
	}
	return f(&opCall{h: h, caller: caller, params: p})
}

// ---- parameters ----

func (c *opCall) str(names ...string) (string, *rpcError) {
	for _, n := range names {
		raw, ok := c.params[n]
		if !ok || string(raw) == "null" {
			continue
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", opError(CodeBadRequest, "parameter %s must be a string, got %s", n, raw)
		}
		return s, nil
	}
	return "", nil
}

func (c *opCall) need(names ...string) (string, *rpcError) {
	s, rerr := c.str(names...)
	if rerr == nil && s == "" {
		rerr = opError(CodeBadRequest, "parameter %s is required", names[0])
	}
	return s, rerr
}

func (c *opCall) int(name string, def int) (int, *rpcError) {
	raw, ok := c.params[name]
	if !ok || string(raw) == "null" {
		return def, nil
	}
	var n int
	if err := json.Unmarshal(raw, &n); err != nil || n < 0 {
		return 0, opError(CodeBadRequest, "parameter %s must be a whole number >= 0, got %s", name, raw)
	}
	return n, nil
}

// page reads limit (default 20, at most 500) and offset.
func (c *opCall) page() (limit, offset int, rerr *rpcError) {
	if limit, rerr = c.int("limit", opDefaultLimit); rerr != nil {
		return
	}
	if limit == 0 || limit > opMaxLimit {
		return 0, 0, opError(CodeBadRequest, "limit must be 1 to %d, got %d", opMaxLimit, limit)
	}
	offset, rerr = c.int("offset", 0)
	return
}

// table is a table online operations may read and write by name: a
// synced table the catalog knows; writes also refuse tables that only
// flow down (user_clinic_permissions, app_config) and users.
func (c *opCall) table(name string, write bool) (*schema.Table, *rpcError) {
	t, ok := c.h.server.Store.Catalog().Table(name)
	switch {
	case !ok:
		return nil, opError(CodeBadRequest, "unknown table %q", name)
	case write && (t.Flow == schema.Down || t.Name == "users"):
		return nil, opError(CodePermissionDenied, "table %s is managed on the cloud and cannot be written online", t.Name)
	}
	return t, nil
}

// opsCaller is the caller of an operation authenticated as a user
// (Basic credentials, or a sign-in token): its clinic and permissions
// from its users row and user_clinic_permissions.
func (h *CloudHandler) opsCaller(c fsm.Caller) (hikmaCaller, error) {
	u, err := h.server.Store.Get("users", c.ID)
	if err != nil {
		return hikmaCaller{}, fmt.Errorf("the user %s: %w", c.ID, err)
	}
	clinic, role := u.Cols["clinic_id"].Str, u.Cols["role"].Str
	perms, err := loadPermissions(h.server.Store, c.ID, clinic)
	if err != nil {
		return hikmaCaller{}, err
	}
	return hikmaCaller{Caller: c, ClinicID: clinic, Role: role, Perms: perms}, nil
}

// Paths of the operations over HTTP: OpsPath + "query/<name>" and
// OpsPath + "command/<name>". A cloud also answers them under
// CloudOpsPath, where the Hikma app's cloud transport calls them.
const (
	OpsPath      = "/api/v2/rpc/"
	CloudOpsPath = "/rpc/"
)

// opsHTTP serves an operation over HTTP, as the Hikma app's cloud
// transport (tRPC) calls it: GET (or POST) …/query/<name>?input=
// {"json":params}, POST …/command/<name> with {"json":data}; the
// answer is {"result":{"data":{"json":result}}}, a refusal
// {"error":{"json":{"message","code","data":{"code","httpStatus"}}}}.
// The caller is a user: Basic email:password, or Bearer a token from
// /api/auth/sign-in.
func (h *CloudHandler) opsHTTP(w http.ResponseWriter, r *http.Request, rest string, out *outcome) *httpError {
	kind, name, _ := strings.Cut(rest, "/")
	command := kind == "command"
	if kind != "query" && !command || name == "" || strings.Contains(name, "/") {
		return refuse(http.StatusNotFound, "not found: %s (want …/query/<name> or …/command/<name>)", r.URL.Path)
	}
	if command && r.Method != http.MethodPost || r.Method != http.MethodGet && r.Method != http.MethodPost {
		allow := "GET, POST"
		if command {
			allow = "POST"
		}
		return notAllowed(w, r, allow)
	}
	c, herr := h.opsAuthenticate(w, r)
	if herr != nil {
		return herr
	}
	out.caller = callerKey(c)
	if herr := h.allow(w, callerKey(c)); herr != nil {
		return herr
	}
	var input []byte
	if r.Method == http.MethodGet {
		input = []byte(r.URL.Query().Get("input"))
	} else {
		body, held, herr := h.readBody(w, r, callerKey(c))
		if herr != nil {
			return herr
		}
		defer h.budget.give(callerKey(c), held)
		input = body
	}
	var wrapped struct {
		JSON json.RawMessage `json:"json"`
	}
	if len(bytes.TrimSpace(input)) > 0 {
		if err := json.Unmarshal(input, &wrapped); err != nil {
			return opsHTTPError(w, opError(CodeBadRequest, "the input is not {\"json\": parameters}: %v", err))
		}
	}
	hc, err := h.opsCaller(c)
	if err != nil {
		return internal(err)
	}
	out.extra = append(out.extra, "op", kind+"/"+name)
	res, rerr := h.operation(hc, command, name, wrapped.JSON)
	if rerr != nil {
		if rerr.code == CodeServerError {
			return internal(rerr.cause)
		}
		return opsHTTPError(w, rerr)
	}
	writeJSON(w, http.StatusOK, map[string]any{"result": map[string]any{"data": map[string]any{"json": res}}})
	return nil
}

// opsHTTPStatus is the HTTP status of a refused operation.
var opsHTTPStatus = map[string]int{CodeAuthFailed: http.StatusUnauthorized, CodePermissionDenied: http.StatusForbidden,
	CodeNotFound: http.StatusNotFound, CodeConflict: http.StatusConflict, CodeNotSupported: http.StatusNotFound,
	CodeRateLimited: http.StatusTooManyRequests}

// opsHTTPError writes a refused operation in tRPC's error shape; the
// request is logged as answered.
func opsHTTPError(w http.ResponseWriter, rerr *rpcError) *httpError {
	status, ok := opsHTTPStatus[rerr.code]
	if !ok {
		status = http.StatusBadRequest
	}
	writeJSON(w, status, map[string]any{"error": map[string]any{"json": map[string]any{
		"message": rerr.msg, "code": -32600, "data": map[string]any{"code": rerr.code, "httpStatus": status}}}})
	return nil
}

// opsAuthenticate finds the user of an operation: Bearer a sign-in
// token, else what /api/v2/sync accepts from a user (a hub's key is
// refused: operations are a user's).
func (h *CloudHandler) opsAuthenticate(w http.ResponseWriter, r *http.Request) (fsm.Caller, *httpError) {
	if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && r.URL.Query().Get("peerType") == "" {
		id, err := h.tokens.Verify(tok)
		if err != nil {
			return fsm.Caller{}, refuse(http.StatusUnauthorized, "%v: sign in again", err)
		}
		if live, err := h.auth.live(id); err != nil || !live {
			return fsm.Caller{}, refuse(http.StatusUnauthorized, "the user of this token no longer exists: sign in again")
		}
		return fsm.Caller{ID: id}, nil
	}
	c, err := h.auth.Authenticate(r, ClientAddress(r, h.trustFF))
	var throttled *ThrottledError
	switch {
	case errors.As(err, &throttled):
		return fsm.Caller{}, tooMany(w, throttled.Wait, "Too many failed sign-ins. Please try again later.")
	case errors.Is(err, ErrUnauthorized):
		w.Header().Set("WWW-Authenticate", `Basic realm="clinicsync", charset="UTF-8"`)
		return fsm.Caller{}, refuse(http.StatusUnauthorized, "%v", err)
	case err != nil:
		return fsm.Caller{}, internal(fmt.Errorf("authenticating: %w", err))
	case c.Hub:
		return fsm.Caller{}, refuse(http.StatusForbidden, "online operations are a user's: a hub's key cannot make them")
	}
	return c, nil
}
