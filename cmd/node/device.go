package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/clinicsync/clinicsync/actors"
	"github.com/clinicsync/clinicsync/kv"
)

// cmdDevice: node device add|list|revoke: the hubs a cloud serves.
func cmdDevice(e *env, name string, args []string) error {
	return dispatch(e, name, args, map[string]command{
		"add": deviceAdd, "list": deviceList, "revoke": deviceRevoke,
	}, "want `node device add|list|revoke --data DIR ...`")
}

// deviceAdd: node device add --data DIR --name N [--clinic ID ...]
func deviceAdd(e *env, name string, args []string) error {
	f := e.flags(name)
	devName := f.String("name", "", "the hub's name")
	var clinics stringsFlag
	f.Var(&clinics, "clinic", "a clinic `id` the hub serves (repeatable; none: every clinic)")
	err := f.parseAll(args, "name")
	if err != nil {
		return err
	}
	var d kv.Device
	var key string
	err = f.withNode(func(n *actors.Node) (err error) {
		d, key, err = n.AddDevice(actors.DeviceConfig{Name: *devName, Clinics: clinics})
		return err
	})
	if err != nil {
		return &cmdError{name, err}
	}
	if f.json {
		return writeJSON(e.out, struct {
			DeviceID string `json:"device_id"`
			APIKey   string `json:"api_key"`
		}{d.ID, key})
	}
	return writePairs(e.out, [][2]string{{"device_id", d.ID}, {"api_key", key},
		{"note", "the API key is shown only once: give it to the hub (node peer add --api-key)"}})
}

// deviceList: node device list --data DIR
func deviceList(e *env, name string, args []string) error {
	f := e.flags(name)
	err := f.parseAll(args)
	if err != nil {
		return err
	}
	var devs []kv.Device
	seen := map[string]kv.Client{} // a hub's pulls, by device id
	err = f.withNode(func(n *actors.Node) (err error) {
		if devs, err = n.Devices(); err != nil {
			return err
		}
		clients, err := n.Clients()
		for _, c := range clients {
			if c.Hub {
				seen[c.ID] = c
			}
		}
		return err
	})
	if err != nil {
		return &cmdError{name, err}
	}
	if f.json {
		type device struct {
			DeviceID  string   `json:"device_id"`
			Name      string   `json:"name"`
			Clinics   []string `json:"clinics"`
			Status    string   `json:"status"`
			CreatedAt int64    `json:"created_at"`
			// SchemaVersion and LastSeen are from its last pull (null:
			// never pulled; a schema version of 0: not reported).
			SchemaVersion *int64 `json:"schema_version"`
			LastSeen      *int64 `json:"last_seen"`
		}
		list := make([]device, 0, len(devs))
		for _, d := range devs {
			dev := device{DeviceID: d.ID, Name: d.Name, Clinics: append([]string{}, d.ClinicIDs...), Status: d.Status, CreatedAt: d.CreatedAt}
			if c, ok := seen[d.ID]; ok {
				dev.SchemaVersion, dev.LastSeen = &c.SchemaVersion, &c.LastSeen
			}
			list = append(list, dev)
		}
		return writeJSON(e.out, struct {
			Devices []device `json:"devices"`
		}{list})
	}
	if len(devs) == 0 {
		return writePairs(e.out, [][2]string{{"devices", "none"}})
	}
	var pairs [][2]string
	for _, d := range devs {
		clinics := "all clinics"
		if len(d.ClinicIDs) > 0 {
			clinics = strings.Join(d.ClinicIDs, ",")
		}
		pulled := "never pulled"
		if c, ok := seen[d.ID]; ok {
			pulled = "schema unknown"
			if c.SchemaVersion > 0 {
				pulled = fmt.Sprintf("schema %d", c.SchemaVersion)
			}
			pulled += " last seen " + time.UnixMilli(c.LastSeen).UTC().Format(time.RFC3339)
		}
		pairs = append(pairs, [2]string{"device", strings.Join([]string{d.ID, d.Status, quoteName(d.Name), clinics,
			"added " + time.UnixMilli(d.CreatedAt).UTC().Format(time.RFC3339), pulled}, " ")})
	}
	return writePairs(e.out, pairs)
}

// deviceRevoke: node device revoke --data DIR ID
func deviceRevoke(e *env, name string, args []string) error {
	f := e.flags(name)
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	id, err := oneID(f, pos)
	if err != nil {
		return err
	}
	if err := f.withNode(func(n *actors.Node) error { return n.RevokeDevice(id) }); err != nil {
		return &cmdError{name, err}
	}
	if f.json {
		return writeJSON(e.out, struct {
			DeviceID string `json:"device_id"`
			Status   string `json:"status"`
		}{id, kv.StatusRevoked})
	}
	return writePairs(e.out, [][2]string{{"device_id", id}, {"status", kv.StatusRevoked}})
}

// oneID takes the single positional ID argument.
func oneID(f *flags, pos []string) (string, error) {
	switch len(pos) {
	case 0:
		return "", usageErr(f.name, "missing ID")
	case 1:
		return pos[0], nil
	}
	return "", usageErr(f.name, "unexpected argument %q", pos[1])
}

func quoteName(s string) string {
	if s == "" {
		return `""`
	}
	if strings.ContainsAny(s, " \t") {
		return `"` + s + `"`
	}
	return s
}
