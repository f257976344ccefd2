package main

import (
	"github.com/clinicsync/clinicsync/actors"
)

// cmdMode: node mode --data DIR [online|offline]
func cmdMode(e *env, name string, args []string) error {
	f := e.flags(name)
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if len(pos) > 1 || len(pos) == 1 && pos[0] != actors.ModeOnline && pos[0] != actors.ModeOffline {
		return usageErr(name, "want no argument (show the mode), online or offline")
	}
	var m actors.ModeStatus
	err = f.withNode(func(n *actors.Node) (err error) {
		if len(pos) == 0 {
			m, err = n.Mode()
			return err
		}
		m, err = n.SetMode(pos[0])
		return err
	})
	if err != nil {
		return err
	}
	if f.json {
		return writeJSON(e.out, struct {
			Mode       string `json:"mode"`
			Policy     string `json:"policy"`
			Preference string `json:"preference"`
		}{m.Mode, m.Policy, m.Preference})
	}
	return writePairs(e.out, [][2]string{{"mode", m.Mode}, {"policy", m.Policy}, {"preference", m.Preference}})
}
