package actors

// Where a node's store lives: the bbolt file of its data directory, or,
// for a cloud, a PostgreSQL database that several cloud nodes share (the
// directory then names it in StoreFile).

import (
	"context"
	"crypto/ecdh"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/clinicsync/clinicsync/kv"
	"github.com/clinicsync/clinicsync/pgstore"
)

// StoreFile, inside a node's data directory, holds the URL of the
// PostgreSQL database that keeps the node's store (mode 0600: the URL
// may carry a password). Without it the store is the bbolt file.
const StoreFile = "store.url"

// cfgPrivateKey keeps a shared store's private key (base64url): every
// cloud node over the database is the same node, with one key.
const cfgPrivateKey = "private_key"

// DBOptions tune a PostgreSQL store's connections (zero: defaults).
type DBOptions = pgstore.Options

// storeURL returns the database URL dir names ("" for a bbolt store).
func storeURL(dir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, StoreFile))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("actors: %w", err)
	}
	url := strings.TrimSpace(string(b))
	if url == "" {
		return "", fmt.Errorf("%w: %s is empty", ErrInvalidConfig, filepath.Join(dir, StoreFile))
	}
	return url, nil
}

// openShared connects to a PostgreSQL store, its schema brought up to
// date.
func openShared(url string, o DBOptions) (kv.Backend, error) {
	if !strings.HasPrefix(url, "postgres://") && !strings.HasPrefix(url, "postgresql://") {
		return nil, fmt.Errorf("%w: store %q: want a postgres:// URL", ErrInvalidConfig, redact(url))
	}
	timeout := o.ConnectTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	be, err := pgstore.Open(ctx, url, o)
	if errors.Is(err, kv.ErrUnavailable) {
		return nil, fmt.Errorf("store %s: %w (is the database server up and reachable from here?)", redact(url), err)
	}
	if err != nil {
		return nil, fmt.Errorf("store %s: %w", redact(url), err)
	}
	return be, nil
}

// redact hides a URL's password.
func redact(url string) string {
	at := strings.LastIndexByte(url, '@')
	scheme := strings.Index(url, "://")
	if at < 0 || scheme < 0 || at < scheme {
		return url
	}
	userinfo := url[scheme+3 : at]
	if i := strings.IndexByte(userinfo, ':'); i >= 0 {
		return url[:scheme+3] + userinfo[:i] + ":xxxxx" + url[at:]
	}
	return url
}

// initShared makes dir a cloud node over the PostgreSQL store at url:
// the database's node when it has one (another cloud node made it),
// else a new node whose key is kept in the database.
func initShared(dir, url string, kind Kind, name string, clinics []string, o DBOptions) (Info, error) {
	if kind != KindCloud {
		return Info{}, fmt.Errorf("%w: only a cloud keeps its store in PostgreSQL (--store); a %s keeps its bbolt file", ErrInvalidConfig, kind)
	}
	if held, err := holdsNode(dir); err != nil || held {
		if err == nil {
			err = fmt.Errorf("%w: %s already holds a node", ErrAlreadyInitialized, dir)
		}
		return Info{}, err
	}
	be, err := openShared(url, o)
	if err != nil {
		return Info{}, err
	}
	defer be.Close()
	info, err := readInfo(func(key string) (string, error) { return kv.ReadConfig(be, key) })
	switch {
	case errors.Is(err, kv.ErrNotFound):
		st, err := kv.New(be, kv.Options{Clock: SystemClock{}, KeepTombstones: true, Root: true})
		if err != nil {
			return Info{}, err
		}
		info, err = initStore(st, redact(url), kind, name, clinics, func(priv *ecdh.PrivateKey) error {
			return st.SetConfig(cfgPrivateKey, base64.RawURLEncoding.EncodeToString(priv.Bytes()))
		})
		if err != nil {
			return Info{}, err
		}
	case err != nil:
		return Info{}, err
	case info.Kind != KindCloud:
		return Info{}, fmt.Errorf("%w: the database holds a %s node, not a cloud", ErrInvalidConfig, info.Kind)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Info{}, fmt.Errorf("actors: creating data directory: %w", err)
	}
	if err := writePrivateFile(filepath.Join(dir, StoreFile), []byte(url+"\n")); err != nil {
		return Info{}, err
	}
	return info, nil
}

// holdsNode reports whether dir already holds a node's store.
func holdsNode(dir string) (bool, error) {
	for _, name := range []string{StoreFile, kv.FileName} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			return true, nil
		} else if !errors.Is(err, fs.ErrNotExist) {
			return false, fmt.Errorf("actors: %w", err)
		}
	}
	return false, nil
}

// Database is a shared store as status shows it.
type Database struct {
	URL           string      `json:"url"` // the password hidden
	SchemaVersion int         `json:"schema_version"`
	Nodes         []CloudNode `json:"nodes"` // serving within NodeSeenWithin, by instance
}

// CloudNode is a cloud node serving over a shared store, as its last
// heartbeat left it (config cfgCloudNode + instance).
type CloudNode struct {
	Instance string `json:"instance"` // host and data directory
	HTTP     string `json:"http"`
	Started  int64  `json:"started"` // ms
	Seen     int64  `json:"seen"`    // ms
}

const (
	cfgCloudNode = "cloud_node/"
	// NodeHeartbeat is how often a serving cloud node over a shared
	// store records that it serves; NodeSeenWithin is how recent a
	// heartbeat status counts as serving.
	NodeHeartbeat  = 30 * time.Second
	NodeSeenWithin = 2 * time.Minute
)

// thisNode is this serving process as its heartbeats describe it.
func (n *Node) thisNode(http string) *CloudNode {
	host, _ := os.Hostname()
	dir, _ := filepath.Abs(n.dir)
	return &CloudNode{Instance: host + ":" + dir, HTTP: http, Started: time.Now().UnixMilli()}
}

// beat records that me serves over the shared store. A failed write is
// logged (the database may be away).
func (n *Node) beat(me *CloudNode, log *slog.Logger) {
	me.Seen = time.Now().UnixMilli()
	b, _ := json.Marshal(me)
	if err := n.store.SetConfig(cfgCloudNode+me.Instance, string(b)); err != nil {
		log.Warn("recording this node's heartbeat in the database", "cause", err)
	}
}

// heartbeat beats every NodeHeartbeat until ctx ends.
func (n *Node) heartbeat(ctx context.Context, me *CloudNode, log *slog.Logger) {
	t := time.NewTicker(NodeHeartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			n.beat(me, log)
		}
	}
}

// database is the shared store's status (nil for a bbolt store).
func (n *Node) database() (*Database, error) {
	if !n.shared {
		return nil, nil
	}
	url, err := storeURL(n.dir)
	if err != nil {
		return nil, err
	}
	db := &Database{URL: redact(url), Nodes: []CloudNode{}}
	if pg, ok := n.store.Backend().(*pgstore.Backend); ok {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if db.SchemaVersion, err = pg.Version(ctx); err != nil {
			return nil, err
		}
	}
	beats, err := n.store.ConfigPrefix(cfgCloudNode)
	if err != nil {
		return nil, err
	}
	since := time.Now().Add(-NodeSeenWithin).UnixMilli()
	for _, k := range slices.Sorted(maps.Keys(beats)) {
		var cn CloudNode
		if json.Unmarshal([]byte(beats[k]), &cn) == nil && cn.Seen >= since {
			db.Nodes = append(db.Nodes, cn)
		}
	}
	return db, nil
}
