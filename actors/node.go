package actors

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math"
	"net/mail"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"golang.org/x/crypto/bcrypt"

	"github.com/clinicsync/clinicsync/codec"
	"github.com/clinicsync/clinicsync/codec/schema"
	"github.com/clinicsync/clinicsync/kv"
)

// Kind is what a node is in the sync tree.
type Kind string

// Node kinds.
const (
	KindCloud  Kind = "cloud"  // the root: serves hubs and devices
	KindHub    Kind = "hub"    // serves devices on a LAN, syncs with the cloud
	KindMobile Kind = "mobile" // a device
)

// ParseKind parses cloud, hub or mobile.
func ParseKind(s string) (Kind, error) {
	switch k := Kind(s); k {
	case KindCloud, KindHub, KindMobile:
		return k, nil
	}
	return "", fmt.Errorf("%w %q: want cloud, hub or mobile", ErrInvalidKind, s)
}

// PeerType is the Hikma peerType of a node of this kind (kv.PeerCloud,
// kv.PeerHub, kv.PeerMobile).
func (k Kind) PeerType() string {
	switch k {
	case KindCloud:
		return kv.PeerCloud
	case KindHub:
		return kv.PeerHub
	case KindMobile:
		return kv.PeerMobile
	}
	return ""
}

// Serves reports whether nodes of this kind serve downstream clients
// (cloud and hub). Serving nodes keep tombstones after pushing them
// upstream, so that they can still serve the deletes.
func (k Kind) Serves() bool { return k == KindCloud || k == KindHub }

// KeyFile is the node's X25519 private key inside its data directory:
// the 32 raw bytes in base64url without padding, mode 0600.
const KeyFile = "node.key"

// Config keys of the node's identity in the store (kv.Store.Config).
// node_id is written last by Init: its presence means "initialized".
const (
	cfgNodeID    = "node_id"
	cfgKind      = "kind"
	cfgName      = "name"
	cfgClinics   = "clinics" // JSON array of clinic ids
	cfgPublicKey = "public_key"
)

// InitConfig describes a new node.
type InitConfig struct {
	Kind    Kind
	Name    string   // for people; may be empty
	Clinics []string // clinic ids the node serves or belongs to
	// Store, for a cloud, is a postgres:// URL: the node's store is that
	// database, shared by every cloud node initialized with it (the
	// first makes the node; the others join it). Empty: a bbolt file.
	Store string
	DB    DBOptions // the database's connections, with Store
}

// Info is a node's identity.
type Info struct {
	NodeID    string
	Kind      Kind
	Name      string
	Clinics   []string
	PublicKey string // X25519, base64url without padding
}

// Init creates a node in dir: the directory (0700) if needed, a node id
// (a random UUID v4), an X25519 key pair whose private half goes to
// dir/node.key (0600) and whose public half, with the id, kind, name
// and clinics, goes to the store's config. It refuses a directory that
// already holds a node.
func Init(dir string, cfg InitConfig) (Info, error) {
	if dir == "" {
		return Info{}, fmt.Errorf("%w: no data directory given", ErrInvalidConfig)
	}
	kind, err := ParseKind(string(cfg.Kind))
	if err != nil {
		return Info{}, err
	}
	clinics := []string{}
	for _, c := range cfg.Clinics {
		if !schema.ValidID(c) {
			return Info{}, fmt.Errorf("%w: clinic id %q: want 1-128 characters from [A-Za-z0-9_.-]", ErrInvalidConfig, c)
		}
		if !slices.Contains(clinics, c) {
			clinics = append(clinics, c)
		}
	}
	if cfg.Store != "" {
		return initShared(dir, cfg.Store, kind, cfg.Name, clinics, cfg.DB)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Info{}, fmt.Errorf("actors: creating data directory: %w", err)
	}
	if url, err := storeURL(dir); err != nil || url != "" {
		if err == nil {
			err = fmt.Errorf("%w: %s is a node whose store is %s", ErrAlreadyInitialized, dir, redact(url))
		}
		return Info{}, err
	}
	// Init writes no rows, so the clock is never read; the store still
	// wants one.
	st, err := kv.Open(dir, kv.Options{Clock: SystemClock{}, KeepTombstones: kind.Serves(), Root: kind == KindCloud})
	if err != nil {
		return Info{}, lockedHint(err)
	}
	info, err := initStore(st, dir, kind, cfg.Name, clinics, func(priv *ecdh.PrivateKey) error {
		return writeKeyFile(filepath.Join(dir, KeyFile), priv)
	})
	if cerr := st.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return Info{}, err
	}
	return info, nil
}

// initStore writes a new node's identity into its open store (where
// names it in errors), its private key kept by keep.
func initStore(st *kv.Store, where string, kind Kind, name string, clinics []string, keep func(*ecdh.PrivateKey) error) (Info, error) {
	if id, err := st.Config(cfgNodeID); err == nil {
		k, _ := st.Config(cfgKind)
		return Info{}, fmt.Errorf("%w: %s is node %s (%s)", ErrAlreadyInitialized, where, id, k)
	} else if !errors.Is(err, kv.ErrNotFound) {
		return Info{}, err
	}
	id, err := newUUID()
	if err != nil {
		return Info{}, err
	}
	priv, err := codec.GenerateKey(rand.Reader)
	if err != nil {
		return Info{}, err
	}
	if err := keep(priv); err != nil {
		return Info{}, err
	}
	info := Info{NodeID: id, Kind: kind, Name: name, Clinics: clinics,
		PublicKey: codec.EncodePublicKey(priv.PublicKey())}
	clinicsJSON, err := json.Marshal(clinics)
	if err != nil {
		return Info{}, err
	}
	for _, kvp := range [][2]string{
		{cfgKind, string(kind)},
		{cfgName, name},
		{cfgClinics, string(clinicsJSON)},
		{cfgPublicKey, info.PublicKey},
		{cfgNodeID, id}, // last: marks the node initialized
	} {
		if err := st.SetConfig(kvp[0], kvp[1]); err != nil {
			return Info{}, err
		}
	}
	return info, nil
}

// writeKeyFile writes the private key through a temporary file renamed
// into place, so that a crash leaves either no key or a whole one, and
// an existing file's looser mode is not inherited.
func writeKeyFile(path string, priv *ecdh.PrivateKey) error {
	return writePrivateFile(path, []byte(base64.RawURLEncoding.EncodeToString(priv.Bytes())+"\n"))
}

// Node is an initialized node opened for use: its store and identity,
// and, once started (Start), its sync engine. A Node is safe for
// concurrent use.
type Node struct {
	dir    string
	info   Info
	store  *kv.Store
	clock  kv.Clock
	shared bool // the store is a PostgreSQL database (StoreFile)

	// engineMu guards engine and closed.
	engineMu sync.Mutex
	engine   *engine // nil until Start
	closed   bool
	// feed delivers state transitions to Subscribe's callers (it has
	// its own lock).
	feed transitionFeed

	// userMu guards AddUser's duplicate-email check and the write that
	// follows it, so that two AddUser calls cannot both pass the check.
	userMu sync.Mutex

	// served is what Serve serves while it runs (nil otherwise), for
	// Status.
	served atomic.Pointer[served]
}

// Open opens the node in dir. clock is the store's source of time (nil
// means SystemClock). Open fails with ErrNotInitialized when dir holds
// no node, and with kv.ErrLocked when another process (a running
// serve) holds the store.
func Open(dir string, clock kv.Clock) (*Node, error) {
	return OpenWith(dir, clock, DBOptions{})
}

// OpenWith is Open with the connection options of a PostgreSQL store
// (ignored for a bbolt one). It fails with pgstore.ErrUnavailable when
// the database does not answer.
func OpenWith(dir string, clock kv.Clock, db DBOptions) (*Node, error) {
	if clock == nil {
		clock = SystemClock{}
	}
	url, err := storeURL(dir)
	if err != nil {
		return nil, err
	}
	var be kv.Backend
	if url != "" {
		if be, err = openShared(url, db); err != nil {
			return nil, err
		}
	} else {
		path := filepath.Join(dir, kv.FileName)
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			return nil, notInitialized(dir)
		} else if err != nil {
			return nil, fmt.Errorf("actors: %w", err)
		}
		if be, err = kv.OpenBolt(path, time.Second); err != nil {
			return nil, lockedHint(err)
		}
	}
	// The store's options depend on the node's kind, which is in the
	// store: read the identity from the backend first.
	info, err := readInfo(func(key string) (string, error) { return kv.ReadConfig(be, key) })
	if err != nil {
		be.Close()
		if errors.Is(err, kv.ErrNotFound) {
			return nil, notInitialized(dir)
		}
		return nil, err
	}
	st, err := kv.New(be, kv.Options{Clock: clock, KeepTombstones: info.Kind.Serves(), Root: info.Kind == KindCloud, NodeID: info.NodeID})
	if err != nil {
		be.Close()
		return nil, err
	}
	return &Node{dir: dir, info: info, store: st, clock: clock, shared: url != ""}, nil
}

// NewNode makes a node over an open store, with no directory: for
// simulators and tests that keep stores in memory. The caller keeps
// the store (Stop, not Close, ends the node and leaves it open). The
// files of a node's directory (key, credentials, TLS, control socket)
// fail with ErrNoDir. clock nil means SystemClock.
func NewNode(store *kv.Store, info Info, clock kv.Clock) *Node {
	if clock == nil {
		clock = SystemClock{}
	}
	if info.Clinics == nil {
		info.Clinics = []string{}
	}
	return &Node{info: info, store: store, clock: clock}
}

// file is the path of name in the node's directory.
func (n *Node) file(name string) (string, error) {
	if n.dir == "" {
		return "", fmt.Errorf("%w: no %s", ErrNoDir, name)
	}
	return filepath.Join(n.dir, name), nil
}

func notInitialized(dir string) error {
	return fmt.Errorf("%w in %s: run `node init --data %s --kind cloud|hub|mobile` first", ErrNotInitialized, dir, dir)
}

func lockedHint(err error) error {
	if errors.Is(err, kv.ErrLocked) {
		return fmt.Errorf("%w (a `node serve` process probably holds it)", err)
	}
	return err
}

// readInfo reads the node's identity through config (a store's or a
// backend's).
func readInfo(config func(key string) (string, error)) (Info, error) {
	var info Info
	id, err := config(cfgNodeID)
	if err != nil {
		return Info{}, err
	}
	info.NodeID = id
	kind, err := config(cfgKind)
	if err != nil {
		return Info{}, fmt.Errorf("%w: node %s has no kind", kv.ErrCorrupt, id)
	}
	if info.Kind, err = ParseKind(kind); err != nil {
		return Info{}, fmt.Errorf("%w: node %s: %v", kv.ErrCorrupt, id, err)
	}
	if info.Name, err = config(cfgName); err != nil && !errors.Is(err, kv.ErrNotFound) {
		return Info{}, err
	}
	if c, err := config(cfgClinics); err == nil {
		if err := json.Unmarshal([]byte(c), &info.Clinics); err != nil {
			return Info{}, fmt.Errorf("%w: node %s: clinics: %v", kv.ErrCorrupt, id, err)
		}
	} else if !errors.Is(err, kv.ErrNotFound) {
		return Info{}, err
	}
	if info.Clinics == nil {
		info.Clinics = []string{}
	}
	if info.PublicKey, err = config(cfgPublicKey); err != nil {
		return Info{}, fmt.Errorf("%w: node %s has no public key", kv.ErrCorrupt, id)
	}
	return info, nil
}

// Info returns the node's identity.
func (n *Node) Info() Info {
	info := n.info
	info.Clinics = slices.Clone(n.info.Clinics)
	return info
}

// Dir returns the node's data directory ("" for NewNode's).
func (n *Node) Dir() string { return n.dir }

// Store returns the node's store.
func (n *Node) Store() *kv.Store { return n.store }

// Close stops the sync engine, if started (a sync in flight ends with
// an error wrapping ErrSyncAborted, having stored what it had), drops
// the state subscriptions, and closes the store.
func (n *Node) Close() error {
	n.stopEngine()
	return n.store.Close()
}

// Stop stops the sync engine as Close does, but leaves the store open:
// for a store its caller owns (NewNode). Later syncs get ErrClosed.
func (n *Node) Stop() { n.stopEngine() }

// PrivateKey reads the node's X25519 private key from its key file and
// checks it against the public key in the store.
func (n *Node) PrivateKey() (*ecdh.PrivateKey, error) {
	path, err := n.file(KeyFile)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKeyFile, err)
	}
	var text []byte
	if n.shared { // in the database, shared by its cloud nodes
		path = "the store's " + cfgPrivateKey
		var s string
		s, err = n.store.Config(cfgPrivateKey)
		text = []byte(s)
	} else {
		text, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKeyFile, err)
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(strings.TrimSpace(string(text)))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: not base64url: %v", ErrKeyFile, path, err)
	}
	priv, err := ecdh.X25519().NewPrivateKey(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrKeyFile, path, err)
	}
	if codec.EncodePublicKey(priv.PublicKey()) != n.info.PublicKey {
		return nil, fmt.Errorf("%w: %s does not match the node's public key", ErrKeyFile, path)
	}
	return priv, nil
}

// Put writes a row from command-line text: each column's text is parsed
// with codec.ParseText against the catalog column, then the row is
// written as PutValues writes it. An empty id makes a new random UUID
// v4. Nothing is written if any column is unknown or any value does not
// parse.
func (n *Node) Put(table, id string, text map[string]string) (kv.Record, error) {
	t, ok := n.store.Catalog().Table(table)
	if !ok {
		return kv.Record{}, fmt.Errorf("%w %q", kv.ErrUnknownTable, table)
	}
	cols := make(map[string]any, len(text))
	for _, name := range slices.Sorted(maps.Keys(text)) {
		col, ok := t.Column(name)
		if !ok {
			return kv.Record{}, unknownColumn(t, name)
		}
		v, err := codec.ParseText(col, text[name])
		if err != nil {
			return kv.Record{}, err
		}
		cols[name] = v
	}
	return n.PutValues(table, id, cols)
}

// PutValues creates or updates a row from Go values, as a local write
// (kv.Store.Put): pending until a sync pushes it. An empty id makes a
// new random UUID v4. Each value is converted to its column's type by
// the codec's lossless rules (codec.NormalizeValue, README
// "Normalization rules"):
//
//   - nil is null (refused in a required column);
//   - string: kept in a string, date ("YYYY-MM-DD") or decimal column;
//     a numeric or ISO-8601 string converted in a number or timestamp
//     column; in a JSON column, JSON text is stored as JSON, other text
//     as a string;
//   - bool;
//   - int, int8 ... int64, uint ... uint64 (within ±2^53, so exact as a
//     float64) and finite float32/float64: numbers, epoch milliseconds
//     in a timestamp column (or seconds, told apart by magnitude), 0 and
//     1 in a bool column;
//   - json.RawMessage: JSON text, refused when not valid JSON;
//   - time.Time: its instant in a timestamp column, its date in a date
//     column when it is a UTC midnight (sub-millisecond digits refused);
//   - codec.Value: as it is (the store checks it against its column:
//     codec.CheckValue).
//
// Any other type, and a value its column's rules refuse, fails the whole
// write with an error wrapping kv.ErrInvalidValue that names the table,
// id, column, value and reason; an unknown column fails with
// kv.ErrUnknownColumn. Nothing is written then.
//
// In online mode (Mode) the row is written on the peer instead
// (rows.put, through the peer's push engine) and returned as the peer
// holds it; nothing is written locally.
func (n *Node) PutValues(table, id string, cols map[string]any) (kv.Record, error) {
	t, ok := n.store.Catalog().Table(table)
	if !ok {
		return kv.Record{}, fmt.Errorf("%w %q", kv.ErrUnknownTable, table)
	}
	vals := make(map[string]codec.Value, len(cols))
	for _, name := range slices.Sorted(maps.Keys(cols)) {
		col, ok := t.Column(name)
		if !ok {
			return kv.Record{}, unknownColumn(t, name)
		}
		if v, ok := cols[name].(codec.Value); ok { // checked by the store
			vals[name] = v
			continue
		}
		v, err := goValue(cols[name])
		if err == nil {
			v, err = codec.NormalizeValue(col, v)
		}
		if err != nil {
			return kv.Record{}, fmt.Errorf("%w: %s/%s: %v", kv.ErrInvalidValue, table, id, err)
		}
		vals[name] = v
	}
	if id == "" {
		var err error
		if id, err = newUUID(); err != nil {
			return kv.Record{}, err
		}
	}
	if on, err := n.online(); err != nil || on {
		if err != nil {
			return kv.Record{}, err
		}
		return n.putOnline(table, id, vals)
	}
	return n.store.Put(table, id, vals)
}

// maxExactInt is the largest integer every float64 up to which is exact.
const maxExactInt = 1 << 53

// goValue turns a Go value into the codec value it stands for, before
// its column's normalization.
func goValue(x any) (codec.Value, error) {
	integer := func(i int64) (codec.Value, error) {
		if i > maxExactInt || i < -maxExactInt {
			return codec.Value{}, fmt.Errorf("integer %d is beyond ±2^53, not exact as a number", i)
		}
		return codec.Int(i), nil
	}
	switch v := x.(type) {
	case nil:
		return codec.Null(), nil
	case string:
		return codec.String(v), nil
	case bool:
		return codec.Bool(v), nil
	case int:
		return integer(int64(v))
	case int8:
		return integer(int64(v))
	case int16:
		return integer(int64(v))
	case int32:
		return integer(int64(v))
	case int64:
		return integer(v)
	case uint:
		return goValue(uint64(v))
	case uint8:
		return integer(int64(v))
	case uint16:
		return integer(int64(v))
	case uint32:
		return integer(int64(v))
	case uint64:
		if v > maxExactInt {
			return codec.Value{}, fmt.Errorf("integer %d is beyond 2^53, not exact as a number", v)
		}
		return codec.Int(int64(v)), nil
	case float32:
		return goValue(float64(v))
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return codec.Value{}, fmt.Errorf("%v is not a finite number", v)
		}
		return codec.Number(v), nil
	case json.RawMessage:
		if !json.Valid(v) {
			return codec.Value{}, fmt.Errorf("json.RawMessage %q is not valid JSON", v)
		}
		var b bytes.Buffer
		if err := json.Compact(&b, v); err != nil {
			return codec.Value{}, fmt.Errorf("json.RawMessage: %v", err)
		}
		return codec.JSONText(b.String()), nil
	case time.Time:
		return codec.String(v.Format(time.RFC3339Nano)), nil
	}
	return codec.Value{}, fmt.Errorf("a %T is not a column value (want string, bool, an integer, float64, nil, json.RawMessage, time.Time or codec.Value)", x)
}

// unknownColumn names the column and, when one is close, suggests it.
func unknownColumn(t *schema.Table, name string) error {
	err := fmt.Errorf("%w: %s has no column %q", kv.ErrUnknownColumn, t.Name, name)
	if name == "id" || name == "_status" || name == "_changed" {
		return fmt.Errorf("%w (%s is row metadata, not a column)", err, name)
	}
	best, bestD := "", 3 // suggest only within two edits
	for _, c := range t.Columns {
		if d := editDistance(name, c.Name); d < bestD {
			best, bestD = c.Name, d
		}
	}
	if best != "" {
		return fmt.Errorf("%w (did you mean %q?)", err, best)
	}
	return err
}

// editDistance is the Levenshtein distance between a and b, in bytes
// (column names are ASCII).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// Delete deletes a row locally (it becomes a tombstone pending
// upstream); in online mode on the peer (rows.delete).
func (n *Node) Delete(table, id string) error {
	if on, err := n.online(); err != nil || on {
		if err != nil {
			return err
		}
		if _, ok := n.store.Catalog().Table(table); !ok {
			return fmt.Errorf("%w %q", kv.ErrUnknownTable, table)
		}
		_, err = n.Operation(context.Background(), true, "rows.delete", map[string]any{"table": table, "id": id})
		return err
	}
	return n.store.Delete(table, id)
}

// Rows returns the rows of a table in id order, tombstones included; with
// a non-empty id, just that row (kv.ErrNotFound if absent). In online
// mode they come from the peer (rows.get, rows.list): its live rows,
// without sync metadata.
func (n *Node) Rows(table, id string) ([]kv.Record, error) {
	if on, err := n.online(); err != nil || on {
		if err != nil {
			return nil, err
		}
		if _, ok := n.store.Catalog().Table(table); !ok {
			return nil, fmt.Errorf("%w %q", kv.ErrUnknownTable, table)
		}
		return n.rowsOnline(context.Background(), table, id)
	}
	if id != "" {
		r, err := n.store.Get(table, id)
		if err != nil {
			return nil, err
		}
		return []kv.Record{r}, nil
	}
	var out []kv.Record
	err := n.store.Rows(table, func(r kv.Record) error {
		out = append(out, r)
		return nil
	})
	return out, err
}

// Conflicts returns the node's conflict log, oldest first: the values
// that lost to another writer's newer edit, with the table and id
// ("" for any).
func (n *Node) Conflicts(table, id string) ([]kv.Conflict, error) {
	if table != "" {
		if _, ok := n.store.Catalog().Table(table); !ok {
			return nil, fmt.Errorf("%w: %s", kv.ErrUnknownTable, table)
		}
	}
	var out []kv.Conflict
	err := n.store.Conflicts(table, id, func(c kv.Conflict) error {
		out = append(out, c)
		return nil
	})
	return out, err
}

// Status is what a node is doing, what it has to push, and how its
// last syncs went.
type Status struct {
	NodeID string
	Kind   Kind
	// State is the sync state machine's state ("idle" while the sync
	// engine is not started).
	State string
	// Mode is "offline" (through the local store) or "online" (straight
	// through the peer): Node.Mode.
	Mode string
	// ActivePeer is the selected peer (`node peer use`; "" when none
	// is). A sync that names no peer uses it while it is usable
	// (ResolvePeer).
	ActivePeer string
	Peers      []kv.Peer
	// LastSync is the last sync with each peer that has ended, by peer
	// id; a peer never synced with has none. It is kept in the store,
	// so it survives restarts.
	LastSync map[string]LastSync
	// Pending is the number of rows with changes to push upstream, and
	// PendingByTable the same per table (tables with none are absent).
	Pending        int
	PendingByTable map[string]int
	// Conflicts is the number of entries in the conflict log (values
	// that lost to a newer edit: Node.Conflicts).
	Conflicts int
	// Clients are the downstream clients a serving node has seen pull,
	// with the app schema version each last reported.
	Clients []kv.Client
	// Serving is set while this process serves the node (Node.Serve).
	Serving *Serving
	// Database is a cloud's shared store (nil for a bbolt file): its
	// schema version and the cloud nodes serving over it.
	Database *Database
}

// Status reports the node's sync state, peers and their last syncs,
// pending changes, conflict log size, downstream clients and, while
// this process serves it, where and with how many sessions.
func (n *Node) Status() (Status, error) {
	st := Status{NodeID: n.info.NodeID, Kind: n.info.Kind, State: string(n.State()), LastSync: map[string]LastSync{}}
	var err error
	if st.ActivePeer, err = n.ActivePeer(); err != nil {
		return Status{}, err
	}
	if st.Peers, err = n.store.Peers(); err != nil {
		return Status{}, err
	}
	for _, p := range st.Peers {
		ls, ok, err := n.lastSync(p.ID)
		if err != nil {
			return Status{}, err
		}
		if ok {
			st.LastSync[p.ID] = ls
		}
	}
	if st.Pending, err = n.store.PendingCount(); err != nil {
		return Status{}, err
	}
	mode, err := n.Mode()
	if err != nil {
		return Status{}, err
	}
	st.Mode = mode.Mode
	if st.PendingByTable, err = n.store.PendingByTable(); err != nil {
		return Status{}, err
	}
	if st.Conflicts, err = n.store.ConflictCount(); err != nil {
		return Status{}, err
	}
	if st.Clients, err = n.store.Clients(); err != nil {
		return Status{}, err
	}
	if st.Database, err = n.database(); err != nil {
		return Status{}, err
	}
	if s := n.served.Load(); s != nil {
		st.Serving = &Serving{Addrs: s.addrs}
		if s.hikma != nil {
			st.Serving.HikmaSessions = s.hikma.Sessions()
		}
		if s.rpc != nil {
			st.Serving.RPCSessions = s.rpc.sessions()
		}
	}
	return st, nil
}

// Clients lists the downstream clients a serving node has seen pull,
// with their app schema versions.
func (n *Node) Clients() ([]kv.Client, error) { return n.store.Clients() }

// Users.
const (
	// MinPasswordLen is the shortest password AddUser accepts, in
	// characters. bcrypt also caps passwords at 72 bytes.
	MinPasswordLen = 8
	// BcryptCost is the bcrypt cost of users.hashed_password.
	BcryptCost = 10
	// DefaultRole is the role of a user added without one.
	DefaultRole = "provider"
)

// UserConfig describes a user to add.
type UserConfig struct {
	Email    string // normalized to lower case
	Password string // at least MinPasswordLen characters, at most 72 bytes
	Name     string // default: the email
	Role     string // default: DefaultRole
	// ClinicID is the user's clinic; default the node's first clinic,
	// or "" when the node has none.
	ClinicID string
}

// AddUser adds a row to the synced users table, so that it travels to
// hubs like any other row, with the password hashed with bcrypt. The
// email must be a plain address not used by another live user. It
// returns the new user's id.
func (n *Node) AddUser(u UserConfig) (string, error) {
	email := strings.ToLower(strings.TrimSpace(u.Email))
	if a, err := mail.ParseAddress(email); err != nil || a.Address != email || a.Name != "" {
		return "", fmt.Errorf("%w %q: want a plain address such as name@example.org", ErrInvalidEmail, u.Email)
	}
	if utf8.RuneCountInString(u.Password) < MinPasswordLen {
		return "", fmt.Errorf("%w: at least %d characters needed", ErrInvalidPassword, MinPasswordLen)
	}
	if len(u.Password) > 72 {
		return "", fmt.Errorf("%w: at most 72 bytes (a bcrypt limit)", ErrInvalidPassword)
	}
	name := strings.TrimSpace(u.Name)
	if name == "" {
		name = email
	}
	role := strings.TrimSpace(u.Role)
	if role == "" {
		role = DefaultRole
	}
	if !schema.ValidName(role) {
		return "", fmt.Errorf("%w: role %q: want lower-case snake_case such as provider or admin", ErrInvalidConfig, u.Role)
	}
	clinic := u.ClinicID
	if clinic == "" && len(n.info.Clinics) > 0 {
		clinic = n.info.Clinics[0]
	}
	if clinic != "" && !schema.ValidID(clinic) {
		return "", fmt.Errorf("%w: clinic id %q: want 1-128 characters from [A-Za-z0-9_.-]", ErrInvalidConfig, clinic)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(u.Password), BcryptCost)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrInvalidPassword, err)
	}
	id, err := newUUID()
	if err != nil {
		return "", err
	}

	n.userMu.Lock()
	defer n.userMu.Unlock()
	if other, err := n.userByEmail(email); err != nil {
		return "", err
	} else if other != "" {
		return "", fmt.Errorf("%w: %s is user %s", ErrDuplicateEmail, email, other)
	}
	_, err = n.store.Put("users", id, map[string]codec.Value{
		"email":           codec.String(email),
		"name":            codec.String(name),
		"role":            codec.String(role),
		"clinic_id":       codec.String(clinic),
		"is_deleted":      codec.Bool(false),
		"hashed_password": codec.String(string(hash)),
	})
	if err != nil {
		return "", err
	}
	return id, nil
}

// userByEmail returns the id of the live user (neither a tombstone nor
// soft-deleted) with that email (compared in lower case), or "".
func (n *Node) userByEmail(email string) (string, error) {
	found := ""
	err := n.store.Rows("users", func(r kv.Record) error {
		if found != "" || r.Deleted || r.Cols["is_deleted"].Bool {
			return nil
		}
		if e := r.Cols["email"]; e.Kind == codec.KindString && strings.ToLower(e.Str) == email {
			found = r.ID
		}
		return nil
	})
	return found, err
}

// newUUID returns a random (version 4) UUID from crypto/rand.
func newUUID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("actors: reading randomness: %w", err)
	}
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // RFC 4122 variant
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]), nil
}
