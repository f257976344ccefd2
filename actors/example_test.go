package actors_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"os"
	"path/filepath"

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
