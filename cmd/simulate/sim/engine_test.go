package sim

import (
	"context"
	"testing"

	"github.com/clinicsync/clinicsync/actors"
	"github.com/clinicsync/clinicsync/codec"
	"github.com/clinicsync/clinicsync/kv"
	pb "github.com/clinicsync/clinicsync/proto"
)

// Engine bugs the simulator found, each reduced to a few syncs on the
// engine alone; they stay as regression tests.

// lab is a hand-driven deployment: nodes, their peers, syncs in the
// order a test gives.
type lab struct {
	t     *testing.T
	clock *Clock
	net   *actors.MemNet
	nodes map[string]*node
}

func newLab(t *testing.T) *lab {
	return &lab{t: t, clock: &Clock{now: epoch}, net: actors.NewMemNet(), nodes: map[string]*node{}}
}

func (l *lab) node(name, kind string, peers ...string) *node {
	n, err := newNode(name, kind, "clinic-1", &nodeClock{world: l.clock}, "")
	if err != nil {
		l.t.Fatal(err)
	}
	if kind != kindMobile {
		n.server = &actors.Server{Relay: kind == kindHub}
		l.net.Listen(name, n.server)
	}
	if err := n.open(); err != nil {
		l.t.Fatal(err)
	}
	for _, p := range peers {
		typ := kv.PeerHub
		if p == cloudName {
			typ = kv.PeerCloud
		}
		if err := n.store.PutPeer(kv.Peer{ID: p, Type: typ}); err != nil {
			l.t.Fatal(err)
		}
		n.peers = append(n.peers, p)
		l.clock.advance(1)
	}
	l.nodes[name] = n
	return n
}

// sync runs one sync of n with peer (its first peer when "").
func (l *lab) sync(n *node, peer string) {
	l.clock.advance(1000)
	if peer == "" {
		peer = n.peers[0]
	}
	p, err := n.store.Peer(peer)
	if err != nil {
		l.t.Fatal(err)
	}
	tr := l.net.Dial(peer, n.caller(peer))
	res := actors.NewRun(actors.RunConfig{Store: n.store, Machine: n.machine, Clock: n.clock, Peer: p}).Drive(
		func(s actors.Step) (*pb.PullResponse, *pb.PushResponse, error) {
			if s.Pull != nil {
				r, err := tr.Pull(context.Background(), s.Pull)
				return r, nil, err
			}
			r, err := tr.Push(context.Background(), s.Push)
			return nil, r, err
		})
	if res.Outcome != actors.OutcomeOK {
		l.t.Fatalf("sync %s with %s: %s: %v", n.name, peer, res.Outcome, res.Err)
	}
}

// put writes patient p1 on n (creating it with filler columns).
func (l *lab) put(n *node, cols map[string]codec.Value) {
	l.clock.advance(1000)
	if _, err := n.store.Get("patients", "p1"); err != nil {
		t, _ := n.store.Catalog().Table("patients")
		complete(t, cols, codec.Int(l.clock.now))
	}
	if _, err := n.store.Put("patients", "p1", cols); err != nil {
		l.t.Fatal(err)
	}
}

func (l *lab) patient(n *node) (kv.Record, bool) {
	r, err := n.store.Get("patients", "p1")
	return r, err == nil && !r.Deleted
}

// Bug 1, fixed (found by every seed with deletes): a hub that pulled a
// delete from the cloud purged its row, so it never served that delete
// downstream: its devices kept the row for ever. Now a store that keeps
// tombstones leaves one (kv.Apply on Purge).
func TestEngineHubRelaysDeletes(t *testing.T) {
	l := newLab(t)
	l.node(cloudName, kindCloud)
	hub := l.node("hub", kindHub, cloudName)
	d1, d2 := l.node("d1", kindMobile, "hub"), l.node("d2", kindMobile, "hub")
	l.put(d1, map[string]codec.Value{"given_name": codec.String("Amina")})
	l.sync(d1, "")
	l.sync(hub, "")
	l.sync(d2, "")
	if err := d1.store.Delete("patients", "p1"); err != nil {
		t.Fatal(err)
	}
	l.sync(d1, "")
	l.sync(hub, "") // pushes the delete to the cloud
	l.sync(hub, "") // pulls it back: the hub purges its tombstone
	l.sync(d2, "")
	if _, alive := l.patient(d2); alive {
		t.Fatal("d2 still holds p1, deleted by d1 and on the cloud: the hub never served the delete")
	}
}

// Bug 2, fixed (a device switching between its hub and the cloud): the
// device pulled a row from a hub that lags the cloud, then pushed it to
// the cloud with a fresh last_pulled_at; the cloud took every pushed
// column, including stale ones the device never changed, so another
// device's later write was lost. Now a push only takes _changed columns.
func TestEngineSwitchKeepsLaterWrites(t *testing.T) {
	l := newLab(t)
	cloud := l.node(cloudName, kindCloud)
	hub := l.node("hub", kindHub, cloudName)
	s := l.node("s", kindMobile, "hub", cloudName)
	f := l.node("f", kindMobile, cloudName)
	d := l.node("d", kindMobile, "hub")
	l.put(f, map[string]codec.Value{"phone": codec.String("111")})
	l.sync(f, "")
	l.sync(hub, "")
	l.sync(d, "")
	l.sync(s, "hub")
	l.sync(s, cloudName)
	l.put(f, map[string]codec.Value{"phone": codec.String("222")}) // f's later write, acknowledged
	l.sync(f, "")
	l.sync(s, cloudName)                                            // s gets phone=222
	l.put(d, map[string]codec.Value{"camp": codec.String("Azraq")}) // the hub's uplink is down
	l.sync(d, "")
	l.sync(s, "hub") // the hub's row still has phone=111
	l.put(s, map[string]codec.Value{"hometown": codec.String("Homs")})
	l.sync(s, cloudName)
	l.sync(hub, "")
	r, _ := l.patient(cloud)
	if got := r.Cols["phone"].Str; got != "222" {
		t.Fatalf("cloud phone=%q: f's acknowledged write 222 was lost (s never changed phone)", got)
	}
}

// Bug 2, second face, fixed: a switching device got from a lagging hub
// a row the cloud deleted before the device's cloud cursor; back on the
// cloud, nothing after that cursor mentioned the row, so the device kept
// it for ever. Now a sync with another peer than the last one starts
// with a full pull that removes the synced rows the peer lacks.
func TestEngineSwitchKeepsDeletes(t *testing.T) {
	l := newLab(t)
	l.node(cloudName, kindCloud)
	hub := l.node("hub", kindHub, cloudName)
	s := l.node("s", kindMobile, "hub", cloudName)
	f := l.node("f", kindMobile, cloudName)
	d := l.node("d", kindMobile, "hub")
	l.put(f, map[string]codec.Value{"phone": codec.String("111")})
	l.sync(f, "")
	l.sync(hub, "")
	l.sync(d, "")
	l.sync(s, "hub")
	l.sync(s, cloudName)
	if err := f.store.Delete("patients", "p1"); err != nil {
		t.Fatal(err)
	}
	l.sync(f, "")
	l.sync(s, cloudName)                                            // s drops p1
	l.put(d, map[string]codec.Value{"camp": codec.String("Azraq")}) // the hub's uplink is down
	l.sync(d, "")
	l.sync(s, "hub") // the hub still has p1, changed: s gets it back
	l.sync(s, cloudName)
	l.sync(hub, "")
	l.sync(s, cloudName)
	if _, alive := l.patient(s); alive {
		t.Fatal("s holds p1, deleted on the cloud, and its cloud syncs will never say so")
	}
}
