package actors

import (
	"reflect"
	"strings"
	"testing"

	"github.com/clinicsync/clinicsync/kv"
)

// Status reports pending rows per table, the selected peer, and the
// last sync per peer: a failure in the user's words, then a success,
// kept across a restart.
func TestStatusLastSync(t *testing.T) {
	p := newPair(t, KindHub)
	write(t, p.up, "u1")
	write(t, p.mobile, "m1")
	write(t, p.mobile, "m2")
	st, err := p.mobile.Status()
	if err != nil {
		t.Fatal(err)
	}
	if len(st.LastSync) != 0 || st.ActivePeer != "" || st.Pending != 2 ||
		!reflect.DeepEqual(st.PendingByTable, map[string]int{"patients": 2}) || st.Conflicts != 0 || st.Serving != nil {
		t.Fatalf("status before any sync = %+v", st)
	}

	p.net.Partition(p.peer, true)
	if res := p.sync(t); res.Outcome != OutcomeError {
		t.Fatalf("sync across a partition = %+v, want an error", res)
	}
	st, err = p.mobile.Status()
	if err != nil {
		t.Fatal(err)
	}
	ls := st.LastSync[p.peer]
	if ls.Outcome != OutcomeError || ls.Message != "Please make sure you are on the same network and Wi-Fi is enabled." ||
		!strings.Contains(ls.Cause, "unreachable") || ls.PeerType != kv.PeerHub || ls.Trigger != "manual" || ls.SyncID == "" ||
		ls.Started != testClock.t.UnixMilli() || ls.Ended < ls.Started {
		t.Errorf("last sync after a failure = %+v", ls)
	}

	p.net.Heal()
	if res := p.sync(t); res.Outcome != OutcomeOK {
		t.Fatalf("sync after healing = %+v", res)
	}
	if err := p.mobile.UsePeer(p.peer); err != nil {
		t.Fatal(err)
	}
	dir := p.mobile.Dir()
	if err := p.mobile.Close(); err != nil {
		t.Fatal(err)
	}
	n := openNode(t, dir) // a restart: nothing of it is in memory
	st, err = n.Status()
	if err != nil {
		t.Fatal(err)
	}
	want := LastSync{Peer: p.peer, PeerType: kv.PeerHub, SyncID: st.LastSync[p.peer].SyncID, Trigger: "manual",
		Started: testClock.t.UnixMilli(), Ended: testClock.t.UnixMilli(), Outcome: OutcomeOK, Pulled: 1, Pushed: 2}
	if got := st.LastSync[p.peer]; got != want || got.SyncID == ls.SyncID {
		t.Errorf("last sync after a restart = %+v, want %+v (a new sync id)", got, want)
	}
	if st.ActivePeer != p.peer || st.Pending != 0 || len(st.PendingByTable) != 0 {
		t.Errorf("status after the sync = %+v", st)
	}
}
