package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var rewrite = flag.Bool("rewrite", false, "rewrite the generated docs (docs/simulate.md)")

// TestCLIReference: docs/simulate.md is what `simulate --help` prints;
// -rewrite writes it again.
func TestCLIReference(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"--help"}, &out, &errOut); code != 0 || errOut.Len() == 0 {
		t.Fatalf("simulate --help: exit %d, %q %q", code, out.String(), errOut.String())
	}
	want := "# `bin/simulate` command-line reference\n\n" +
		"Generated from `bin/simulate --help` by `go test ./cmd/simulate -run TestCLIReference -rewrite`;\n" +
		"a test fails when it drifts. The README's Quick start explains the simulation and its checks;\n" +
		"`docs/node.md` covers `bin/node`.\n\n```text\n" + errOut.String() + "```\n"
	path := filepath.Join("..", "..", "docs", "simulate.md")
	if *rewrite {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if got, err := os.ReadFile(path); err != nil || string(got) != want {
		t.Errorf("%s is not what --help prints (%v): run go test ./cmd/simulate -run TestCLIReference -rewrite", path, err)
	}
}
