package actors_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/clinicsync/clinicsync/actors"
)

// A hub is created once with Init, then opened for use. Writes go to the
// local store and stay pending until a sync pushes them upstream.
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
	// Output:
	// kind: hub clinics: [clinic-1]
	// put: patients patient-1 created metadata: {"source":"example"}
	// state: idle mode: offline pending: 1 peers: 0
}
