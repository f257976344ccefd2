package main

import (
	"github.com/clinicsync/clinicsync/actors"
)

// cmdUser: node user add --data DIR --email E --password P [--name N] [--role R] [--clinic ID]
func cmdUser(e *env, name string, args []string) error {
	return dispatch(e, name, args, map[string]command{"add": userAdd},
		"want `node user add --data DIR --email E --password P`")
}

func userAdd(e *env, name string, args []string) error {
	f := e.flags(name)
	email := f.String("email", "", "the user's email (their login)")
	password := f.String("password", "", "at least 8 characters")
	userName := f.String("name", "", "display name (default: the email)")
	role := f.String("role", "", "role (default: provider)")
	clinic := f.String("clinic", "", "clinic `id` (default: the node's first clinic)")
	err := f.parseAll(args, "email", "password")
	if err != nil {
		return err
	}
	var id string
	err = f.withNode(func(n *actors.Node) (err error) {
		id, err = n.AddUser(actors.UserConfig{Email: *email, Password: *password,
			Name: *userName, Role: *role, ClinicID: *clinic})
		return err
	})
	if err != nil {
		return &cmdError{name, err}
	}
	if f.json {
		return writeJSON(e.out, struct {
			UserID string `json:"user_id"`
		}{id})
	}
	return writePairs(e.out, [][2]string{{"user_id", id}})
}
