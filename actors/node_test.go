package actors

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/clinicsync/clinicsync/codec"
	"github.com/clinicsync/clinicsync/fsm"
	"github.com/clinicsync/clinicsync/kv"
)

// fixedClock is a test clock: the wall clock never enters these tests.
type fixedClock struct{ t time.Time }

func (c fixedClock) Now() time.Time { return c.t }

var testClock = fixedClock{time.Date(2024, 3, 1, 9, 0, 0, 0, time.UTC)}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// patientText is a complete patient as command-line text.
func patientText() map[string]string {
	return map[string]string{
		"given_name": "Amina", "surname": "Haddad", "date_of_birth": "1990-02-28",
		"citizenship": "JO", "hometown": "Irbid", "phone": "0790000000", "sex": "female",
		"additional_data": "{}", "metadata": "{}", "is_deleted": "false",
		"government_id": "G-1", "external_patient_id": "E-1",
	}
}

func initNode(t *testing.T, kind Kind, clinics ...string) (string, Info) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "node")
	info, err := Init(dir, InitConfig{Kind: kind, Name: "test " + string(kind), Clinics: clinics})
	if err != nil {
		t.Fatalf("Init: %v", err)
	}
	return dir, info
}

func openNode(t *testing.T, dir string) *Node {
	t.Helper()
	n, err := Open(dir, testClock)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// snapshot is what a refused write must leave unchanged.
type snapshot struct {
	cursor      int64
	pending     int
	live, tombs int
}

func snap(t *testing.T, n *Node, table string) snapshot {
	t.Helper()
	var s snapshot
	var err error
	if s.cursor, err = n.Store().LastCursor(); err != nil {
		t.Fatal(err)
	}
	if s.pending, err = n.Store().PendingCount(); err != nil {
		t.Fatal(err)
	}
	if s.live, s.tombs, err = n.Store().Count(table); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestNodeInit(t *testing.T) {
	dir, info := initNode(t, KindHub, "clinic-1", "clinic-2", "clinic-1")
	if !uuidRE.MatchString(info.NodeID) {
		t.Errorf("node id %q is not a UUID v4", info.NodeID)
	}
	if info.Kind != KindHub || info.Name != "test hub" {
		t.Errorf("info = %+v", info)
	}
	if got := strings.Join(info.Clinics, ","); got != "clinic-1,clinic-2" {
		t.Errorf("clinics = %q, want clinic-1,clinic-2 (deduplicated, in order)", got)
	}
	if _, err := codec.DecodePublicKey(info.PublicKey); err != nil {
		t.Errorf("public key: %v", err)
	}
	for name, want := range map[string]os.FileMode{KeyFile: 0o600, ".": 0o700 | os.ModeDir} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s mode = %v, want %v", name, fi.Mode(), want)
		}
	}

	n := openNode(t, dir)
	got := n.Info()
	if got.NodeID != info.NodeID || got.Kind != info.Kind || got.Name != info.Name ||
		got.PublicKey != info.PublicKey || strings.Join(got.Clinics, ",") != "clinic-1,clinic-2" {
		t.Errorf("Open: info = %+v, want %+v", got, info)
	}
	priv, err := n.PrivateKey()
	if err != nil {
		t.Fatalf("PrivateKey: %v", err)
	}
	if codec.EncodePublicKey(priv.PublicKey()) != info.PublicKey {
		t.Error("private key does not match the public key")
	}
}

func TestNodeInitRefused(t *testing.T) {
	dir, info := initNode(t, KindMobile)
	_, err := Init(dir, InitConfig{Kind: KindCloud})
	if !errors.Is(err, ErrAlreadyInitialized) || !strings.Contains(err.Error(), info.NodeID) {
		t.Errorf("second Init: %v, want ErrAlreadyInitialized naming %s", err, info.NodeID)
	}
	n := openNode(t, dir)
	if got := n.Info(); got.NodeID != info.NodeID || got.Kind != KindMobile {
		t.Errorf("after a refused init: info = %+v, want the first node", got)
	}

	for _, cfg := range []InitConfig{{Kind: "server"}, {Kind: ""}, {Kind: KindHub, Clinics: []string{"bad id"}}} {
		dir := filepath.Join(t.TempDir(), "x")
		if _, err := Init(dir, cfg); err == nil {
			t.Errorf("Init(%+v) succeeded", cfg)
		}
	}
	if _, err := Init("", InitConfig{Kind: KindHub}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("Init without a directory: %v", err)
	}
}

func TestNodeOpenBeforeInit(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{dir, filepath.Join(dir, "missing")} {
		_, err := Open(d, testClock)
		if !errors.Is(err, ErrNotInitialized) {
			t.Fatalf("Open(%s): %v, want ErrNotInitialized", d, err)
		}
		want := "run `node init --data " + d + " --kind"
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Open error %q lacks the hint %q", err, want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, kv.FileName)); !os.IsNotExist(err) {
		t.Errorf("Open before init created %s", kv.FileName)
	}
}

// Serving kinds keep pushed tombstones; devices purge them. Open derives
// this from the stored kind.
func TestNodeKindKeepsTombstones(t *testing.T) {
	for kind, wantTombs := range map[Kind]int{KindCloud: 1, KindHub: 1, KindMobile: 0} {
		dir, _ := initNode(t, kind)
		n := openNode(t, dir)
		r, err := n.Put("patients", "p1", patientText())
		if err != nil {
			t.Fatal(err)
		}
		if err := n.Delete("patients", r.ID); err != nil {
			t.Fatal(err)
		}
		pending, err := n.Store().Collect(0)
		if err != nil {
			t.Fatal(err)
		}
		refs := make([]kv.Ref, len(pending))
		for i, p := range pending {
			refs[i] = kv.Ref{Table: p.Table, ID: p.ID, Version: p.Version}
		}
		if _, err := n.Store().MarkSynced(refs); err != nil {
			t.Fatal(err)
		}
		if _, tombs, err := n.Store().Count("patients"); err != nil || tombs != wantTombs {
			t.Errorf("%s: %d tombstones after a pushed delete (err %v), want %d", kind, tombs, err, wantTombs)
		}
	}
}

func TestNodeAddUser(t *testing.T) {
	dir, _ := initNode(t, KindCloud, "clinic-1")
	n := openNode(t, dir)
	id, err := n.AddUser(UserConfig{Email: " Nurse@Example.ORG ", Password: "correct horse"})
	if err != nil {
		t.Fatalf("AddUser: %v", err)
	}
	if !uuidRE.MatchString(id) {
		t.Errorf("user id %q is not a UUID v4", id)
	}
	r, err := n.Store().Get("users", id)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]codec.Value{
		"email": codec.String("nurse@example.org"), "name": codec.String("nurse@example.org"),
		"role": codec.String("provider"), "clinic_id": codec.String("clinic-1"),
		"is_deleted": codec.Bool(false),
	}
	for col, v := range want {
		if !r.Cols[col].Equal(v) {
			t.Errorf("users.%s = %v, want %v", col, r.Cols[col], v)
		}
	}
	if r.Status != kv.Synced {
		t.Errorf("user status = %v, want synced (a cloud has no upstream)", r.Status)
	}
	hash := r.Cols["hashed_password"].Str
	if err := bcrypt.CompareHashAndPassword([]byte(hash), []byte("correct horse")); err != nil {
		t.Errorf("hashed_password does not verify: %v", err)
	}
	if err := bcrypt.CompareHashAndPassword([]byte(hash), []byte("wrong horse")); err == nil {
		t.Error("hashed_password verifies a wrong password")
	}
	if cost, err := bcrypt.Cost([]byte(hash)); err != nil || cost != BcryptCost {
		t.Errorf("bcrypt cost = %d (%v), want %d", cost, err, BcryptCost)
	}

	before := snap(t, n, "users")
	for _, c := range []struct {
		u    UserConfig
		want error
	}{
		{UserConfig{Email: "NURSE@example.org", Password: "another one"}, ErrDuplicateEmail},
		{UserConfig{Email: "doc@example.org", Password: "short"}, ErrInvalidPassword},
		{UserConfig{Email: "doc@example.org", Password: strings.Repeat("x", 73)}, ErrInvalidPassword},
		{UserConfig{Email: "not-an-email", Password: "long enough"}, ErrInvalidEmail},
		{UserConfig{Email: "Doc <doc@example.org>", Password: "long enough"}, ErrInvalidEmail},
		{UserConfig{Email: "", Password: "long enough"}, ErrInvalidEmail},
		{UserConfig{Email: "doc@example.org", Password: "long enough", Role: "Head Nurse"}, ErrInvalidConfig},
		{UserConfig{Email: "doc@example.org", Password: "long enough", ClinicID: "bad id"}, ErrInvalidConfig},
	} {
		if _, err := n.AddUser(c.u); !errors.Is(err, c.want) {
			t.Errorf("AddUser(%q, %q): %v, want %v", c.u.Email, c.u.Password, err, c.want)
		}
	}
	if after := snap(t, n, "users"); after != before {
		t.Errorf("refused AddUser changed the store: %+v → %+v", before, after)
	}

	// Explicit settings, and an email freed by a delete.
	id2, err := n.AddUser(UserConfig{Email: "doc@example.org", Password: "long enough",
		Name: "Dr Doc", Role: "admin", ClinicID: "clinic-9"})
	if err != nil {
		t.Fatal(err)
	}
	r2, _ := n.Store().Get("users", id2)
	if r2.Cols["name"].Str != "Dr Doc" || r2.Cols["role"].Str != "admin" || r2.Cols["clinic_id"].Str != "clinic-9" {
		t.Errorf("user row = %v", r2.Row)
	}
	if err := n.Delete("users", id); err != nil {
		t.Fatal(err)
	}
	if _, err := n.AddUser(UserConfig{Email: "nurse@example.org", Password: "new password"}); err != nil {
		t.Errorf("AddUser after the first nurse was deleted: %v", err)
	}
}

func TestNodePut(t *testing.T) {
	dir, _ := initNode(t, KindHub)
	n := openNode(t, dir)
	r, err := n.Put("patients", "", patientText())
	if err != nil {
		t.Fatalf("Put: %v", err)
	}
	if !uuidRE.MatchString(r.ID) || r.Status != kv.Created {
		t.Errorf("Put: id %q status %v", r.ID, r.Status)
	}
	if !r.Cols["is_deleted"].Equal(codec.Bool(false)) || !r.Cols["date_of_birth"].Equal(codec.String("1990-02-28")) {
		t.Errorf("Put: typed columns wrong: %v", r.Row)
	}

	before := snap(t, n, "patients")
	for _, c := range []struct {
		table string
		text  map[string]string
		want  error
		msg   string
	}{
		{"patient", map[string]string{"phone": "1"}, kv.ErrUnknownTable, `"patient"`},
		{"patients", map[string]string{"phone": "1", "phnoe": "2"}, kv.ErrUnknownColumn, `patients has no column "phnoe" (did you mean "phone"?)`},
		{"patients", map[string]string{"zzzzzz": "2"}, kv.ErrUnknownColumn, `patients has no column "zzzzzz"`},
		{"patients", map[string]string{"id": "x"}, kv.ErrUnknownColumn, "row metadata"},
		{"patients", map[string]string{"phone": "1", "date_of_birth": "1990-13-01"}, codec.ErrInvalidValue, "date_of_birth"},
		{"patients", map[string]string{"is_deleted": "maybe"}, codec.ErrInvalidValue, `"maybe"`},
		{"patients", map[string]string{"metadata": "{"}, codec.ErrInvalidValue, "metadata"},
		{"patients", map[string]string{"surname": "null"}, codec.ErrInvalidValue, "surname"},
	} {
		_, err := n.Put(c.table, r.ID, c.text)
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("Put(%s, %v): %v, want %v containing %q", c.table, c.text, err, c.want, c.msg)
		}
	}
	// A new row missing required columns is refused by the store.
	if _, err := n.Put("patients", "", map[string]string{"phone": "1"}); !errors.Is(err, kv.ErrInvalidValue) {
		t.Errorf("Put of an incomplete new row: %v", err)
	}
	if after := snap(t, n, "patients"); after != before {
		t.Errorf("refused Put changed the store: %+v → %+v", before, after)
	}
	got, _ := n.Store().Get("patients", r.ID)
	if !got.Cols["phone"].Equal(codec.String("0790000000")) {
		t.Errorf("refused Put changed the row: %v", got.Row)
	}

	// Update, delete, read back.
	if _, err := n.Put("patients", r.ID, map[string]string{"phone": "0791111111", "camp": "null"}); err != nil {
		t.Fatal(err)
	}
	rows, err := n.Rows("patients", r.ID)
	if err != nil || len(rows) != 1 || rows[0].Cols["phone"].Str != "0791111111" || !rows[0].Cols["camp"].IsNull() {
		t.Fatalf("Rows after update: %v %v", rows, err)
	}
	if err := n.Delete("patients", r.ID); err != nil {
		t.Fatal(err)
	}
	rows, err = n.Rows("patients", "")
	if err != nil || len(rows) != 1 || !rows[0].Deleted {
		t.Fatalf("Rows after delete: %v %v (want the tombstone)", rows, err)
	}
	if _, err := n.Rows("patients", "nope"); !errors.Is(err, kv.ErrNotFound) {
		t.Errorf("Rows of an unknown id: %v", err)
	}
	if err := n.Delete("patients", "nope"); !errors.Is(err, kv.ErrNotFound) {
		t.Errorf("Delete of an unknown id: %v", err)
	}
}

func TestNodeStatus(t *testing.T) {
	dir, info := initNode(t, KindMobile)
	n := openNode(t, dir)
	if _, err := n.Put("patients", "p1", patientText()); err != nil {
		t.Fatal(err)
	}
	if err := n.Store().PutPeer(kv.Peer{ID: "hub-1", Type: kv.PeerHub, URL: "http://10.0.0.2:8080"}); err != nil {
		t.Fatal(err)
	}
	s, err := n.Status()
	if err != nil {
		t.Fatal(err)
	}
	if s.NodeID != info.NodeID || s.Kind != KindMobile || s.State != "idle" || s.Mode != "offline" || s.Pending != 1 {
		t.Errorf("status = %+v", s)
	}
	if len(s.Peers) != 1 || s.Peers[0].ID != "hub-1" || s.Peers[0].Status != kv.StatusActive {
		t.Errorf("peers = %+v", s.Peers)
	}
}

func TestNodeKind(t *testing.T) {
	for k, pt := range map[Kind]string{KindCloud: kv.PeerCloud, KindHub: kv.PeerHub, KindMobile: kv.PeerMobile} {
		if got, err := ParseKind(string(k)); err != nil || got != k {
			t.Errorf("ParseKind(%s) = %v, %v", k, got, err)
		}
		if k.PeerType() != pt {
			t.Errorf("%s.PeerType() = %s, want %s", k, k.PeerType(), pt)
		}
	}
	if _, err := ParseKind("Hub"); !errors.Is(err, ErrInvalidKind) {
		t.Errorf("ParseKind(Hub): %v", err)
	}
}

func TestNodeEditDistance(t *testing.T) {
	for _, c := range []struct {
		a, b string
		d    int
	}{{"", "", 0}, {"phone", "phone", 0}, {"phnoe", "phone", 2}, {"phon", "phone", 1}, {"", "abc", 3}, {"kitten", "sitting", 3}} {
		if got := editDistance(c.a, c.b); got != c.d {
			t.Errorf("editDistance(%q, %q) = %d, want %d", c.a, c.b, got, c.d)
		}
	}
}

// A store held by another Node (as a running serve would hold it) is
// refused with kv.ErrLocked and a hint, after kv's one-second wait.
func TestNodeOpenLocked(t *testing.T) {
	dir, _ := initNode(t, KindHub)
	openNode(t, dir)
	_, err := Open(dir, testClock)
	if !errors.Is(err, kv.ErrLocked) || !strings.Contains(err.Error(), "node serve") {
		t.Errorf("second Open: %v, want kv.ErrLocked with a hint", err)
	}
}

// PutValues takes Go values and converts them by the codec's lossless
// rules, or refuses the whole write naming the column and the reason.
func TestNodePutValues(t *testing.T) {
	dir, _ := initNode(t, KindHub)
	n := openNode(t, dir)
	created := time.Date(2024, 3, 1, 8, 30, 0, 0, time.UTC)
	cols := map[string]any{
		"given_name": "Amina", "surname": "Haddad", "date_of_birth": "1990-02-28",
		"citizenship": "JO", "hometown": "Irbid", "phone": "0790000000", "sex": "female",
		"additional_data": json.RawMessage(`{ "a": [1, 2] }`), "metadata": "not json",
		"is_deleted": 0, "government_id": "G-1", "external_patient_id": "E-1",
		"created_at": created, "camp": nil,
	}
	r, err := n.PutValues("patients", "", cols)
	if err != nil {
		t.Fatalf("PutValues: %v", err)
	}
	for col, want := range map[string]codec.Value{
		"is_deleted":      codec.Bool(false),
		"date_of_birth":   codec.String("1990-02-28"),
		"additional_data": codec.JSONText(`{"a":[1,2]}`),
		"metadata":        codec.String("not json"), // kept as the string it is
		"created_at":      codec.Int(created.UnixMilli()),
		"camp":            codec.Null(),
	} {
		if !r.Cols[col].Equal(want) {
			t.Errorf("PutValues: %s = %v, want %v", col, r.Cols[col], want)
		}
	}
	if r, err := n.PutValues("patients", r.ID, map[string]any{"created_at": int64(1709281800000), "is_deleted": true}); err != nil ||
		!r.Cols["created_at"].Equal(codec.Int(1709281800000)) || !r.Cols["is_deleted"].Equal(codec.Bool(true)) {
		t.Errorf("PutValues(int64, bool): %v %v", r.Row, err)
	}

	before := snap(t, n, "patients")
	for _, c := range []struct {
		cols map[string]any
		want error
		msg  string
	}{
		{map[string]any{"phnoe": "1"}, kv.ErrUnknownColumn, `did you mean "phone"?`},
		{map[string]any{"phone": []byte("1")}, kv.ErrInvalidValue, "a []uint8 is not a column value"},
		{map[string]any{"phone": 7}, kv.ErrInvalidValue, "a number in a string column"},
		{map[string]any{"surname": nil}, kv.ErrInvalidValue, "null in a required column"},
		{map[string]any{"is_deleted": "false"}, kv.ErrInvalidValue, "is_deleted"},
		{map[string]any{"is_deleted": 1.5}, kv.ErrInvalidValue, "is_deleted"},
		{map[string]any{"created_at": int64(1) << 60}, kv.ErrInvalidValue, "beyond ±2^53"},
		{map[string]any{"created_at": math.NaN()}, kv.ErrInvalidValue, "not a finite number"},
		{map[string]any{"created_at": created.Add(time.Microsecond)}, kv.ErrInvalidValue, "created_at"},
		{map[string]any{"metadata": json.RawMessage(`{`)}, kv.ErrInvalidValue, "not valid JSON"},
		{map[string]any{"date_of_birth": "28/02/1990"}, kv.ErrInvalidValue, "date_of_birth"},
	} {
		_, err := n.PutValues("patients", r.ID, c.cols)
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("PutValues(%v): %v, want %v containing %q", c.cols, err, c.want, c.msg)
		} else if errors.Is(err, kv.ErrInvalidValue) && !strings.Contains(err.Error(), "patients/"+r.ID) {
			t.Errorf("PutValues(%v): %v does not name the row", c.cols, err)
		}
	}
	if after := snap(t, n, "patients"); after != before {
		t.Errorf("refused PutValues changed the store: %+v → %+v", before, after)
	}
}

// TestNewNode runs a node made over in-memory stores: its engine syncs
// through MemNet, Stop leaves the store open, and the files of a node
// directory fail with ErrNoDir.
func TestNewNode(t *testing.T) {
	open := func(kind Kind, id string) *kv.Store {
		st, err := kv.New(kv.NewMemory(), kv.Options{Clock: testClock, KeepTombstones: kind.Serves(), Root: kind == KindCloud, NodeID: id})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	cloud := NewNode(open(KindCloud, "cloud-1"), Info{NodeID: "cloud-1", Kind: KindCloud}, testClock)
	net := NewMemNet()
	net.Listen("cloud-1", cloud.Server(fsm.MergePolicy))
	st := open(KindMobile, "mobile-1")
	n := NewNode(st, Info{NodeID: "mobile-1", Kind: KindMobile, Clinics: []string{"c1"}}, testClock)
	if err := st.PutPeer(kv.Peer{ID: "cloud-1", Type: kv.PeerCloud}); err != nil {
		t.Fatal(err)
	}
	write(t, n, "p1")
	if err := n.Start(NodeConfig{Transports: net.Transports(n.Info().Caller()), Logger: slog.New(newLogSink()), Retries: -1}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitBound)
	defer cancel()
	res, err := n.Sync(ctx, SyncRequest{Trigger: Manual})
	if err != nil || res.Outcome != OutcomeOK || res.Pushed != 1 {
		t.Fatalf("sync: %+v, %v", res, err)
	}
	if _, err := cloud.Store().Get("patients", "p1"); err != nil {
		t.Errorf("the cloud did not get the push: %v", err)
	}
	n.Stop()
	if _, err := n.Sync(ctx, SyncRequest{Trigger: Manual}); !errors.Is(err, ErrClosed) {
		t.Errorf("sync after Stop: %v, want ErrClosed", err)
	}
	if _, err := st.Get("patients", "p1"); err != nil {
		t.Errorf("the store was closed by Stop: %v", err)
	}
	if n.Dir() != "" {
		t.Errorf("Dir() = %q", n.Dir())
	}
	if _, err := n.PrivateKey(); !errors.Is(err, ErrNoDir) || !errors.Is(err, ErrKeyFile) {
		t.Errorf("PrivateKey: %v, want ErrKeyFile and ErrNoDir", err)
	}
	if err := n.SetCredentials("a@b.c", "secret-password"); !errors.Is(err, ErrNoDir) {
		t.Errorf("SetCredentials: %v, want ErrNoDir", err)
	}
	if _, _, err := n.Credentials(); !errors.Is(err, ErrNoDir) {
		t.Errorf("Credentials: %v, want ErrNoDir", err)
	}
	if _, err := n.ListenControl(); !errors.Is(err, ErrNoDir) {
		t.Errorf("ListenControl: %v, want ErrNoDir", err)
	}
	hub := NewNode(open(KindHub, "hub-1"), Info{NodeID: "hub-1", Kind: KindHub}, testClock)
	if _, _, err := hub.TLSCertificate(); !errors.Is(err, ErrNoDir) {
		t.Errorf("TLSCertificate: %v, want ErrNoDir", err)
	}
}
