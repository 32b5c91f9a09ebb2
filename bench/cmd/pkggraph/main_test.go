package main

import (
	"bytes"
	"os"
	"os/exec"
	"testing"
)

// The checked-in diagram is what the imports draw today.
func TestDiagramIsCurrent(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command to list packages with")
	}
	imports, err := listImports()
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("../../../docs/img/packages.svg")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(render(imports), want) {
		t.Fatal("docs/img/packages.svg is stale: go run ./bench/cmd/pkggraph > docs/img/packages.svg")
	}
}

// Layout is deterministic: map order must not leak into the picture.
func TestRenderIsStable(t *testing.T) {
	imports := map[string][]string{
		"a": {"b", "c"}, "b": {"d"}, "c": {"d"}, "d": nil, "e": {"d"}, "lone": nil,
	}
	first := render(imports)
	for range 20 {
		if !bytes.Equal(render(imports), first) {
			t.Fatal("two renders of the same imports differ")
		}
	}
}
