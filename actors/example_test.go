package actors_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/clinicsync/clinicsync/actors"
	"github.com/clinicsync/clinicsync/fsm"
	"github.com/clinicsync/clinicsync/kv"
)

// A hub is created once with Init, then opened for use. Writes go to the
// local store and stay pending until a sync pushes them upstream. Start
// runs the node's sync engine; Sync asks it for one sync with the
// resolved peer (here a cloud, served over the in-memory network), and
// Subscribe follows the sync state machine.
func Example() {
	tmp, err := os.MkdirTemp("", "clinicsync-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	dir := filepath.Join(tmp, "hub")

	info, err := actors.Init(dir, actors.InitConfig{Kind: actors.KindHub, Name: "Irbid hub", Clinics: []string{"clinic-1"}})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("kind:", info.Kind, "clinics:", info.Clinics)

	node, err := actors.Open(dir, actors.SystemClock{})
	if err != nil {
		log.Fatal(err)
	}
	defer node.Close()

	rec, err := node.Put("patients", "patient-1", map[string]string{
		"given_name": "Amina", "surname": "Haddad", "date_of_birth": "1990-02-28",
		"citizenship": "JO", "hometown": "Irbid", "phone": "0790000000", "sex": "female",
		"additional_data": "{}", "metadata": `{"source": "example"}`, "is_deleted": "false",
		"government_id": "G-1", "external_patient_id": "E-1", "primary_clinic_id": "clinic-1",
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("put:", rec.Table, rec.ID, rec.Status, "metadata:", rec.Cols["metadata"])

	st, err := node.Status()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("state:", st.State, "mode:", st.Mode, "pending:", st.Pending, "peers:", len(st.Peers))

	// A cloud with a patient of its own, served on an in-memory network.
	cloudDir := filepath.Join(tmp, "cloud")
	if _, err := actors.Init(cloudDir, actors.InitConfig{Kind: actors.KindCloud, Name: "cloud"}); err != nil {
		log.Fatal(err)
	}
	cloud, err := actors.Open(cloudDir, actors.SystemClock{})
	if err != nil {
		log.Fatal(err)
	}
	defer cloud.Close()
	if _, err := cloud.Put("patients", "patient-2", map[string]string{
		"given_name": "Omar", "surname": "Saleh", "date_of_birth": "1985-07-01",
		"citizenship": "JO", "hometown": "Amman", "phone": "0791111111", "sex": "male",
		"additional_data": "{}", "metadata": "{}", "is_deleted": "false",
		"government_id": "G-2", "external_patient_id": "E-2", "primary_clinic_id": "clinic-1",
	}); err != nil {
		log.Fatal(err)
	}
	net := actors.NewMemNet()
	net.Listen("cloud", cloud.Server(fsm.MergePolicy))

	// The hub pairs with the cloud, starts its engine and syncs.
	if err := node.Store().PutPeer(kv.Peer{ID: "cloud", Type: kv.PeerCloud}); err != nil {
		log.Fatal(err)
	}
	seen := make(chan fsm.Transition, 16)
	unsubscribe := node.Subscribe(func(t fsm.Transition) { seen <- t })
	defer unsubscribe()
	err = node.Start(actors.NodeConfig{
		Transports: net.Transports(node.Info().Caller()),
		Logger:     slog.New(slog.DiscardHandler),
	})
	if err != nil {
		log.Fatal(err)
	}
	res, err := node.Sync(context.Background(), actors.SyncRequest{Trigger: actors.Manual})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("sync: %s with %s, pulled %d, pushed %d\n", res.Outcome, res.Peer, res.Pulled, res.Pushed)
	for t := range seen { // delivered in order, from another goroutine
		fmt.Println(" ", t)
		if t.Event == fsm.FinishSync {
			break
		}
	}

	st, err = node.Status()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("state:", st.State, "pending:", st.Pending, "peers:", len(st.Peers))
	// Output:
	// kind: hub clinics: [clinic-1]
	// put: patients patient-1 created metadata: {"source":"example"}
	// state: idle mode: offline pending: 1 peers: 0
	// sync: ok with cloud, pulled 1, pushed 1
	//   start_sync: idle -> fetching fetched=0 pushed=0
	//   start_resolve: fetching -> resolving fetched=1 pushed=0
	//   start_push: resolving -> pushing fetched=0 pushed=1
	//   finish_sync: pushing -> idle fetched=0 pushed=0
	// state: idle pending: 0 peers: 1
}

// A cloud, a hub and two phones, all in one Go program and talking over
// the network on 127.0.0.1. Serve serves a node until its context ends:
// the cloud its HTTP sync API; the hub the Hikma RPC on plain HTTP,
// /api/v2/sync over TLS (pinned by the phones through its pairing
// string), and its upstream loop, which syncs it with the cloud on its
// own. A patient written on phone 1 reaches the cloud through the hub's
// relay and phone 2 through the hub, with nobody syncing the hub by
// hand.
func ExampleNode_Serve() {
	tmp, err := os.MkdirTemp("", "clinicsync-serve-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	quiet := slog.New(slog.DiscardHandler)
	open := func(name string, cfg actors.InitConfig) *actors.Node {
		dir := filepath.Join(tmp, name)
		if _, err := actors.Init(dir, cfg); err != nil {
			log.Fatal(err)
		}
		n, err := actors.Open(dir, actors.SystemClock{})
		if err != nil {
			log.Fatal(err)
		}
		return n
	}
	ctx, stop := context.WithCancel(context.Background())
	var served sync.WaitGroup
	// serve runs n.Serve until stop and returns where n serves.
	serve := func(n *actors.Node, opts actors.ServeOptions) actors.Addrs {
		ready := make(chan actors.Addrs, 1)
		opts.Ready = func(a actors.Addrs) error { ready <- a; return nil }
		failed := make(chan error, 1)
		served.Add(1)
		go func() {
			defer served.Done()
			if err := n.Serve(ctx, opts); err != nil {
				failed <- err
			}
		}()
		select {
		case a := <-ready:
			return a
		case err := <-failed:
			log.Fatal(err)
		}
		panic("unreachable")
	}

	// The cloud, with a nurse, and the hub registered as one of its
	// devices.
	cloud := open("cloud", actors.InitConfig{Kind: actors.KindCloud, Clinics: []string{"clinic-1"}})
	defer cloud.Close()
	if _, err := cloud.AddUser(actors.UserConfig{Email: "nurse@example.org", Password: "correct horse", ClinicID: "clinic-1"}); err != nil {
		log.Fatal(err)
	}
	_, apiKey, err := cloud.AddDevice(actors.DeviceConfig{Name: "North hub", Clinics: []string{"clinic-1"}})
	if err != nil {
		log.Fatal(err)
	}
	cloudAt := serve(cloud, actors.ServeOptions{HTTP: "127.0.0.1:0", Logger: quiet})

	// The hub: its cloud peer, then TLS and a short upstream interval.
	hub := open("hub", actors.InitConfig{Kind: actors.KindHub, Name: "North hub", Clinics: []string{"clinic-1"}})
	defer hub.Close()
	if _, err := hub.AddPeer(actors.PeerConfig{Type: kv.PeerCloud, URL: cloudAt.HTTP, APIKey: apiKey}); err != nil {
		log.Fatal(err)
	}
	hubAt := serve(hub, actors.ServeOptions{HTTP: "127.0.0.1:0", HTTPS: "127.0.0.1:0",
		UpstreamInterval: 200 * time.Millisecond, Logger: quiet})
	pairing := hubAt.Pairing.String() // what `node pairing` prints, or a QR code holds
	fmt.Println("hub pairing:", hubAt.Pairing.Type, "with TLS pin:", hubAt.Pairing.FP == hubAt.Fingerprint)

	// Two phones pair with the hub and sign in once the hub has the
	// nurse from the cloud.
	var phones []*actors.Node
	for _, name := range []string{"phone1", "phone2"} {
		phone := open(name, actors.InitConfig{Kind: actors.KindMobile})
		defer phone.Close()
		p, err := actors.ParsePairing(pairing)
		if err != nil {
			log.Fatal(err)
		}
		peer, err := actors.PairingPeer(p)
		if err != nil {
			log.Fatal(err)
		}
		if _, err := phone.AddPeer(peer); err != nil {
			log.Fatal(err)
		}
		if err := phone.Start(actors.NodeConfig{Transports: phone.HTTPTransports(nil), Logger: quiet}); err != nil {
			log.Fatal(err)
		}
		eventually("a login on "+name, func() bool {
			res, err := phone.Login(ctx, "nurse@example.org", "correct horse", "")
			return err == nil && res.Outcome == actors.OutcomeOK
		})
		phones = append(phones, phone)
	}
	fmt.Println("phones signed in:", len(phones))

	// A patient written on phone 1 with Go values, and pushed to the hub.
	rec, err := phones[0].PutValues("patients", "patient-1", map[string]any{
		"given_name": "Amina", "surname": "Haddad", "date_of_birth": "1990-02-28",
		"citizenship": "JO", "hometown": "Irbid", "phone": "0790000000", "sex": "female",
		"additional_data": json.RawMessage(`{}`), "metadata": json.RawMessage(`{"source": "example"}`),
		"is_deleted": false, "government_id": "G-1", "external_patient_id": "E-1",
		"primary_clinic_id": "clinic-1", "camp": nil,
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("put on phone 1:", rec.ID, rec.Status, "metadata:", rec.Cols["metadata"])
	res, err := phones[0].Sync(ctx, actors.SyncRequest{Trigger: actors.Manual})
	if err != nil || res.Outcome != actors.OutcomeOK {
		log.Fatal(res, err)
	}
	fmt.Println("phone 1 pushed:", res.Pushed)

	name := func(n *actors.Node) string {
		rows, err := n.Rows("patients", "patient-1")
		if err != nil {
			return ""
		}
		return rows[0].Cols["given_name"].Str
	}
	eventually("the patient on the cloud", func() bool { return name(cloud) != "" })
	fmt.Println("on the cloud:", name(cloud))
	eventually("the patient on phone 2", func() bool {
		_, err := phones[1].Sync(ctx, actors.SyncRequest{Trigger: actors.Manual})
		return err == nil && name(phones[1]) != ""
	})
	fmt.Println("on phone 2:", name(phones[1]))

	stop()
	served.Wait()
	// Output:
	// hub pairing: sync_hub with TLS pin: true
	// phones signed in: 2
	// put on phone 1: patient-1 created metadata: {"source":"example"}
	// phone 1 pushed: 1
	// on the cloud: Amina
	// on phone 2: Amina
}

// eventually polls done until it reports true, pausing briefly between
// tries; the bound is for a stuck node, not a speed limit.
func eventually(what string, done func() bool) {
	deadline := time.After(2 * time.Minute)
	for !done() {
		select {
		case <-deadline:
			log.Fatalf("waited 2m for %s", what)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
