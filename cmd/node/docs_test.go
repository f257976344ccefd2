package main

import (
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var rewrite = flag.Bool("rewrite", false, "rewrite the generated docs (docs/node.md)")

// docCommands are the commands docs/node.md shows, groups by their
// subcommands.
var docCommands = []string{
	"init", "user add", "device add", "device list", "device revoke", "serve", "pairing",
	"peer add", "peer list", "peer use", "peer revoke", "login", "sync", "reset",
	"force-upload", "force-download", "put", "delete", "rows", "import", "mode", "status", "conflicts",
}

// TestCLIReference: docs/node.md is the node command's reference as
// its own help prints it (node help, and node CMD -h for each command):
// it fails when they drift; -rewrite writes it again.
func TestCLIReference(t *testing.T) {
	for name := range commands {
		if !slices.ContainsFunc(docCommands, func(c string) bool { return c == name || strings.HasPrefix(c, name+" ") }) {
			t.Errorf("command %s is missing from docCommands", name)
		}
	}
	var b strings.Builder
	b.WriteString("# `bin/node` command-line reference\n\n" +
		"Generated from the binary's own help (`bin/node help`, `bin/node COMMAND -h`) by\n" +
		"`go test ./cmd/node -run TestCLIReference -rewrite`; a test fails when it drifts.\n" +
		"The README explains what the commands are for; `docs/simulate.md` covers `bin/simulate`.\n\n" +
		"## Overview\n\n```text\n")
	b.WriteString(ok(t, "help"))
	b.WriteString("```\n")
	for _, c := range docCommands {
		r := runCLI(append(strings.Fields(c), "-h")...)
		if r.code != 0 || r.stderr != "" || !strings.Contains(r.stdout, "\nflags:\n") || !strings.Contains(r.stdout, "  --data directory\n") {
			t.Fatalf("node %s -h: %+v", c, r)
		}
		b.WriteString("\n## node " + c + "\n\n```text\n" + r.stdout + "```\n")
	}
	checkDoc(t, filepath.Join("..", "..", "docs", "node.md"), b.String())
}

// checkDoc compares a generated doc with its file, or writes it with
// -rewrite.
func checkDoc(t *testing.T, path, want string) {
	t.Helper()
	if *rewrite {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	got, err := os.ReadFile(path)
	if err != nil || string(got) != want {
		t.Errorf("%s is not what the help prints (%v): run go test ./cmd/node -run TestCLIReference -rewrite and read the diff", path, err)
	}
}
