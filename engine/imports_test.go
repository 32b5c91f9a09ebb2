package engine

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/masqroute/masqroute/"

// engineImports is everything package engine may import from this module:
// HTTP Datagram framing, the pull-mode hook, and the two leaf structures.
// No HTTP/3 glue, no proxy, no tunnel kind.
var engineImports = []string{
	"engine/internal/pull",
	"engine/internal/wire",
	"ringbuf",
	"shardmap",
}

// layers orders the module's packages: a package imports only packages of
// a lower layer, or of its own layer where the layer says so. So
// engine/proxy → engine → shardmap, ringbuf is the one direction, and
// nothing below engine/proxy can import it. A package that matches no layer
// fails the test: place it.
var layers = []struct {
	name     string
	match    func(path string) bool
	siblings bool // may import packages of the same layer
}{
	{"leaf structures", oneOf("shardmap", "ringbuf"), false},
	{"engine support", func(p string) bool {
		return strings.HasPrefix(p, "engine/internal/") || slices.Contains([]string{"engine/policy", "engine/packetio", "engine/echo", "engine/devcert", "engine/quiclb", "engine/quiclb/quiclbtest"}, p)
	}, true},
	{"router", oneOf("engine"), false},
	{"proxy and client", oneOf("engine/proxy", "engine/client"), false},
	{"metrics", oneOf("engine/metrics"), false},
	{"programs", func(p string) bool {
		return strings.HasPrefix(p, "cmd/") || p == "bench" || strings.HasPrefix(p, "bench/")
	}, true},
}

func oneOf(paths ...string) func(string) bool {
	return func(p string) bool { return slices.Contains(paths, p) }
}

func layerOf(path string) int {
	for i, l := range layers {
		if l.match(path) {
			return i
		}
	}
	return -1
}

type listedPackage struct {
	ImportPath   string
	Imports      []string
	TestImports  []string
	XTestImports []string
}

// listModule runs go list over the whole module and returns its packages by
// path relative to the module.
func listModule(t *testing.T) map[string]listedPackage {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to list packages with")
	}
	cmd := exec.Command(goTool, "list", "-json=ImportPath,Imports,TestImports,XTestImports", module+"...")
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go list: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("go list: %v", err)
	}
	pkgs := make(map[string]listedPackage)
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p listedPackage
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		pkgs[strings.TrimPrefix(p.ImportPath, module)] = p
	}
	return pkgs
}

// own keeps the imports of this module, relative to it.
func own(imports []string) []string {
	var out []string
	for _, p := range imports {
		if rel, ok := strings.CutPrefix(p, module); ok {
			out = append(out, rel)
		}
	}
	return out
}

func TestImportDirection(t *testing.T) {
	pkgs := listModule(t)
	eng, ok := pkgs["engine"]
	if !ok {
		t.Fatal("go list did not report package engine")
	}
	for _, imp := range eng.Imports {
		if rel, ok := strings.CutPrefix(imp, module); ok && !slices.Contains(engineImports, rel) {
			t.Errorf("engine imports %s, which is not in its allow-list", rel)
		}
		if !strings.Contains(imp, "/") || strings.HasPrefix(imp, module) {
			continue // the standard library, or checked above
		}
		if first, _, _ := strings.Cut(imp, "/"); strings.Contains(first, ".") {
			t.Errorf("engine imports %s: the router has no dependency outside the module", imp)
		}
	}
	// The router's own tests stand alone too: none needs the layers above.
	for _, imp := range own(slices.Concat(eng.TestImports, eng.XTestImports)) {
		if layerOf(imp) > layerOf("engine") {
			t.Errorf("engine's tests import %s, a layer above the router", imp)
		}
	}

	for path, p := range pkgs {
		from := layerOf(path)
		if from < 0 {
			t.Errorf("package %s is in no layer of this test", path)
			continue
		}
		for _, imp := range own(p.Imports) {
			to := layerOf(imp)
			switch {
			case to < 0:
				// Reported as a package of its own.
			case to > from, to == from && !layers[from].siblings:
				t.Errorf("%s (%s) imports %s (%s): a back edge", path, layers[from].name, imp, layers[to].name)
			}
		}
	}
}
