package codec_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLayering enforces the package boundaries of DESIGN.md from the
// real import graph (go list -deps): the pure packages import neither
// actors, bbolt, kv nor the network, and the store stays a store.
func TestLayering(t *testing.T) {
	const mod = "github.com/clinicsync/clinicsync/"
	rules := []struct {
		pkg       string
		forbidden []string
	}{
		{"codec/...", []string{"github.com/asynkron/protoactor-go", "go.etcd.io/bbolt", mod + "kv", mod + "fsm", mod + "actors", "net"}},
		{"fsm/...", []string{"github.com/asynkron/protoactor-go", "go.etcd.io/bbolt", mod + "kv", mod + "actors", "net"}},
		{"kv/...", []string{"github.com/asynkron/protoactor-go", mod + "fsm", mod + "actors", "net"}},
		{"pgstore/...", []string{"github.com/asynkron/protoactor-go", mod + "fsm", mod + "actors"}},
	}
	for _, r := range rules {
		out, err := exec.Command("go", "list", "-deps", "./../"+r.pkg).CombinedOutput()
		if err != nil {
			if strings.Contains(string(out), "matched no packages") {
				continue // the package does not exist yet
			}
			t.Fatalf("go list %s: %v\n%s", r.pkg, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			for _, f := range r.forbidden {
				if dep == f || strings.HasPrefix(dep, f+"/") {
					t.Errorf("%s imports %s (via go list -deps); DESIGN.md forbids it", r.pkg, dep)
				}
			}
		}
	}
}
