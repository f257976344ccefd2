package main

import (
	"fmt"
	"strings"

	"github.com/clinicsync/clinicsync/actors"
)

// cmdInit: node init --data DIR --kind cloud|hub|mobile [--name N] [--clinic ID ...] [--store postgres://...]
func cmdInit(e *env, name string, args []string) error {
	f := e.flags(name)
	kind := f.String("kind", "", "cloud, hub or mobile")
	nodeName := f.String("name", "", "a name for people")
	var clinics stringsFlag
	f.Var(&clinics, "clinic", "a clinic `id` (repeatable)")
	store := f.String("store", "", "cloud: keep the store in the PostgreSQL database at this `URL` (postgres://user:password@host:port/db), shared by every cloud node initialized with it; the first makes the node, the others join it (default: a bbolt file in --data)")
	err := f.parseAll(args, "kind")
	if err != nil {
		return err
	}
	k, err := actors.ParseKind(*kind)
	if err != nil {
		return usageErr(name, "--kind %q: want cloud, hub or mobile", *kind)
	}
	// init never forwards: a served directory holds a node already.
	if pid, err := actors.PingControl(f.data); err == nil {
		return fmt.Errorf("%w: %s is served by pid %d", actors.ErrAlreadyInitialized, f.data, pid)
	}
	info, err := actors.Init(f.data, actors.InitConfig{Kind: k, Name: *nodeName, Clinics: clinics, Store: *store})
	if err != nil {
		return err
	}
	if f.json {
		return writeJSON(e.out, struct {
			NodeID    string `json:"node_id"`
			Kind      string `json:"kind"`
			PublicKey string `json:"public_key"`
		}{info.NodeID, string(info.Kind), info.PublicKey})
	}
	pairs := [][2]string{{"node_id", info.NodeID}, {"kind", string(info.Kind)}, {"public_key", info.PublicKey}}
	if info.Name != "" {
		pairs = append(pairs, [2]string{"name", info.Name})
	}
	if len(info.Clinics) > 0 {
		pairs = append(pairs, [2]string{"clinics", strings.Join(info.Clinics, ",")})
	}
	return writePairs(e.out, pairs)
}
