package fsm

import (
	"fmt"
	"testing"

	"github.com/clinicsync/clinicsync/codec"
	"github.com/clinicsync/clinicsync/codec/schema"
)

// Chunks keep the order a server applies a push in (deletes first, then
// a patient before its events), and their bounds.
func TestPushChunks(t *testing.T) {
	cs := codec.NewChangeset()
	for i := range 3 {
		cs.Table("events").Created = append(cs.Table("events").Created, codec.Row{ID: fmt.Sprintf("e%d", i),
			Cols: map[string]codec.Value{"patient_id": codec.String("p0")}})
	}
	cs.Table("patients").Created = []codec.Row{{ID: "p0", Cols: map[string]codec.Value{"given_name": codec.String("Amina")}}}
	cs.Table("visits").Deleted = []string{"v9"}
	var got []string
	for _, c := range pushChunks(cs, schema.Default(), 2, 1<<20) {
		var ids []string
		for _, name := range c.TableNames() {
			tc := c.Tables[name]
			for _, r := range append(tc.Created, tc.Updated...) {
				ids = append(ids, name+"/"+r.ID)
			}
			for _, id := range tc.Deleted {
				ids = append(ids, name+"/-"+id)
			}
		}
		got = append(got, fmt.Sprint(ids))
	}
	if want := "[[patients/p0 visits/-v9] [events/e0 events/e1] [events/e2]]"; fmt.Sprint(got) != want {
		t.Errorf("chunks %v, want %s", got, want)
	}
	// A bound in bytes: each row alone when two do not fit.
	size := codec.RowSize(cs.Tables["events"].Created[0])
	if n := len(pushChunks(cs, schema.Default(), 100, size+1)); n != 5 {
		t.Errorf("%d chunks of at most one row, want 5", n)
	}
}
