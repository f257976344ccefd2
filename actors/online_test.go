package actors

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/clinicsync/clinicsync/codec"
	"github.com/clinicsync/clinicsync/kv"
)

// setPolicy stores the clinic's operation_mode policy on n.
func setPolicy(t *testing.T, n *Node, policy string) {
	t.Helper()
	at := codec.Int(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC).UnixMilli())
	if _, err := n.store.Put("app_config", "cfg-operation-mode", map[string]codec.Value{"namespace": codec.String("system"),
		"key": codec.String("operation_mode"), "value": codec.String(policy), "data_type": codec.String("string"),
		"created_at": at, "updated_at": at, "last_modified": at}); err != nil {
		t.Fatal(err)
	}
}

// onlineHub serves a hub (native RPC and TLS) with a nurse allowed to
// register and edit, and the user_choice policy; it returns the hub,
// where it serves and the nurse's id.
func onlineHub(t *testing.T) (*Node, Addrs, string) {
	t.Helper()
	hub := rpcNode(t, KindHub)
	nurse, err := hub.AddUser(UserConfig{Email: rpcEmail, Password: rpcPassword, ClinicID: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	putPermissions(t, hub, "perm-nurse", nurse, "c1", permRegister, permEdit)
	setPolicy(t, hub, ModeUserChoice)
	a, _ := serveFor(t, hub, ServeOptions{RPC: "127.0.0.1:0", HTTPS: "127.0.0.1:0", Discovery: DiscoveryOff,
		UpstreamInterval: -1, Logger: slog.New(slog.DiscardHandler), Cloud: CloudConfig{RateLimit: -1}})
	return hub, a, nurse
}

// pairedPhone is a started mobile node signed in as the nurse and
// paired with the hub at url (native RPC or TLS).
func pairedPhone(t *testing.T, a Addrs, tls bool) *Node {
	t.Helper()
	phone := rpcNode(t, KindMobile)
	if err := phone.SetCredentials(rpcEmail, rpcPassword); err != nil {
		t.Fatal(err)
	}
	p := *a.Pairing
	if tls {
		p.RPC = ""
	}
	cfg, err := PairingPeer(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := phone.AddPeer(cfg); err != nil {
		t.Fatal(err)
	}
	if err := phone.Start(NodeConfig{Transports: phone.HTTPTransports(nil), Logger: slog.New(slog.DiscardHandler), Retries: -1}); err != nil {
		t.Fatal(err)
	}
	return phone
}

// namedPatient is patientText named name, of clinic c1.
func namedPatient(name string) map[string]string {
	p := patientText()
	p["given_name"], p["primary_clinic_id"] = name, "c1"
	return p
}

// TestOnlineMode: a device switches to online mode once its changes are
// synced; its writes, reads and deletes then land on the hub (over
// native RPC and over TLS) and never in its own store; what the nurse
// may not do is refused; syncs are skipped.
func TestOnlineMode(t *testing.T) {
	hub, a, _ := onlineHub(t)
	for _, tls := range []bool{false, true} {
		name := map[bool]string{false: "native RPC", true: "TLS"}[tls]
		t.Run(name, func(t *testing.T) {
			phone := pairedPhone(t, a, tls)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if m, err := phone.Mode(); err != nil || m.Mode != ModeOffline || m.Policy != ModeOffline {
				t.Fatalf("mode before any sync: %+v %v, want offline (no policy known)", m, err)
			}
			local := "local-" + strings.ReplaceAll(name, " ", "")
			if _, err := phone.Put("patients", local, namedPatient("Offline")); err != nil {
				t.Fatal(err)
			}
			if _, err := phone.SetMode(ModeOnline); !errors.Is(err, ErrModePolicy) {
				t.Fatalf("online before the policy is known: %v, want ErrModePolicy", err)
			}
			if res, err := phone.Sync(ctx, SyncRequest{}); err != nil || res.Outcome != OutcomeOK {
				t.Fatalf("sync: %+v %v", res, err)
			}
			// The policy came down; the local patient went up. Another
			// local change blocks the switch until synced.
			if _, err := phone.Put("patients", local, map[string]string{"hometown": "Zarqa"}); err != nil {
				t.Fatal(err)
			}
			if _, err := phone.SetMode(ModeOnline); !errors.Is(err, ErrUnsyncedChanges) ||
				!strings.Contains(err.Error(), "Sync local changes before switching to online mode") {
				t.Fatalf("online with an unsynced change: %v, want ErrUnsyncedChanges", err)
			}
			if res, err := phone.Sync(ctx, SyncRequest{}); err != nil || res.Outcome != OutcomeOK {
				t.Fatalf("sync: %+v %v", res, err)
			}
			if m, err := phone.SetMode(ModeOnline); err != nil || m.Mode != ModeOnline || m.Policy != ModeUserChoice {
				t.Fatalf("online after syncing: %+v %v", m, err)
			}
			before := localCount(t, phone)

			id := "online-" + strings.ReplaceAll(name, " ", "")
			r, err := phone.Put("patients", id, namedPatient("Online"))
			if err != nil || r.Cols["given_name"].Str != "Online" {
				t.Fatalf("online put: %+v %v", r, err)
			}
			onHub, err := hub.Rows("patients", id)
			if err != nil || onHub[0].Cols["given_name"].Str != "Online" || onHub[0].Versions["given_name"].Wall == 0 {
				t.Fatalf("the online patient on the hub: %+v %v, want it with column versions", onHub, err)
			}
			if _, err := phone.store.Get("patients", id); !errors.Is(err, kv.ErrNotFound) {
				t.Errorf("the online patient is in the phone's store: %v", err)
			}
			// A partial update changes only what it names.
			if _, err := phone.Put("patients", id, map[string]string{"hometown": "Amman"}); err != nil {
				t.Fatal(err)
			}
			rows, err := phone.Rows("patients", id)
			if err != nil || rows[0].Cols["hometown"].Str != "Amman" || rows[0].Cols["given_name"].Str != "Online" {
				t.Fatalf("online read after an update: %+v %v", rows, err)
			}
			all, err := phone.Rows("patients", "")
			if err != nil || !hasID(all, id) || !hasID(all, local) {
				t.Errorf("online list: %d rows %v, want %s and %s", len(all), err, id, local)
			}
			// Not granted: deleting records.
			var opErr *OpError
			if err := phone.Delete("patients", id); !errors.As(err, &opErr) || opErr.Code != CodePermissionDenied || !errors.Is(err, ErrPeerFailed) {
				t.Errorf("online delete without the permission: %v, want PERMISSION_DENIED", err)
			}
			if _, err := phone.Rows("patients", "nobody"); !errors.Is(err, kv.ErrNotFound) {
				t.Errorf("online read of a missing row: %v, want kv.ErrNotFound", err)
			}
			if _, err := phone.Put("patients", "bad", map[string]string{"given_name": "X", "date_of_birth": "2026-02-30"}); err == nil {
				t.Errorf("an impossible date was accepted online")
			}
			if res, err := phone.Sync(ctx, SyncRequest{}); err != nil || res.Outcome != OutcomeSkipped || !errors.Is(res.Err, ErrOnline) {
				t.Errorf("sync in online mode: %+v %v, want skipped", res, err)
			}
			if n := localCount(t, phone); n != before {
				t.Errorf("online mode wrote %d rows locally", n-before)
			}
			// Back offline: always allowed.
			if m, err := phone.SetMode(ModeOffline); err != nil || m.Mode != ModeOffline {
				t.Fatalf("offline again: %+v %v", m, err)
			}
		})
	}
}

// TestModePolicy: each operation_mode value is honoured: offline allows
// no online mode, online no offline one, user_choice the device's
// choice, and anything else counts as offline.
func TestModePolicy(t *testing.T) {
	phone := rpcNode(t, KindMobile)
	for _, c := range []struct {
		policy, pref, want string
		refused            string // the switch refused
	}{
		{"offline", ModeOnline, ModeOffline, ModeOnline},
		{"online", ModeOffline, ModeOnline, ModeOffline},
		{"user_choice", ModeOnline, ModeOnline, ""},
		{"user_choice", ModeOffline, ModeOffline, ""},
		{"sync_hub", ModeOnline, ModeOffline, ModeOnline},
	} {
		setPolicy(t, phone, c.policy)
		if _, err := phone.store.MarkSynced(pendingRefs(t, phone)); err != nil {
			t.Fatal(err)
		}
		if err := phone.store.SetConfig(ConfigModePreference, c.pref); err != nil {
			t.Fatal(err)
		}
		m, err := phone.Mode()
		if err != nil || m.Mode != c.want {
			t.Errorf("policy %s, preference %s: mode %+v %v, want %s", c.policy, c.pref, m, err, c.want)
		}
		if c.refused != "" {
			if _, err := phone.SetMode(c.refused); !errors.Is(err, ErrModePolicy) {
				t.Errorf("policy %s: switching to %s: %v, want ErrModePolicy", c.policy, c.refused, err)
			}
		}
	}
	hub := rpcNode(t, KindHub)
	if _, err := hub.SetMode(ModeOnline); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("a hub switching to online: %v, want ErrInvalidConfig", err)
	}
}

// localCount counts every row the node's store holds.
func localCount(t *testing.T, n *Node) int {
	t.Helper()
	total := 0
	for _, tb := range n.store.Catalog().Names() {
		live, dead, err := n.store.Count(tb)
		if err != nil {
			t.Fatal(err)
		}
		total += live + dead
	}
	return total
}

func pendingRefs(t *testing.T, n *Node) []kv.Ref {
	t.Helper()
	rs, err := n.store.Collect(0)
	if err != nil {
		t.Fatal(err)
	}
	var refs []kv.Ref
	for _, r := range rs {
		refs = append(refs, kv.RefOf(r))
	}
	return refs
}

func hasID(rs []kv.Record, id string) bool {
	for _, r := range rs {
		if r.ID == id {
			return true
		}
	}
	return false
}
