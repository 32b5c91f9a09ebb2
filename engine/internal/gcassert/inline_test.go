package gcassert

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const directive = "//gcassert:inline"

// claim is one function marked //gcassert:inline.
type claim struct {
	dir  string // package directory
	file string // base name
	line int    // of the function's name
	name string
}

// findClaims walks the module below root for non-test Go files and returns
// every marked function.
func findClaims(t *testing.T, root string) []claim {
	var claims []claim
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); path != root && (strings.HasPrefix(n, ".") || n == "testdata" || n == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ParseComments)
		if err != nil {
			return err
		}
		for _, decl := range f.Decls {
			fd, ok := decl.(*ast.FuncDecl)
			if !ok || fd.Doc == nil {
				continue
			}
			for _, c := range fd.Doc.List {
				if strings.TrimSpace(c.Text) == directive {
					pos := fset.Position(fd.Name.Pos())
					claims = append(claims, claim{dir: filepath.Dir(path), file: filepath.Base(path), line: pos.Line, name: fd.Name.Name})
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return claims
}

// TestInlineClaims compiles each package with a claim, with its tests (so
// that generic functions are instantiated), under -gcflags=-m, and fails for
// every marked function the compiler does not report as inlinable.
func TestInlineClaims(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles packages with -gcflags=-m")
	}
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Dir(strings.TrimSpace(string(out)))
	claims := findClaims(t, root)
	if len(claims) == 0 {
		t.Fatal("no //gcassert:inline claims found: is the module root right?")
	}
	byDir := make(map[string][]claim)
	for _, c := range claims {
		byDir[c.dir] = append(byDir[c.dir], c)
	}
	for dir, cs := range byDir {
		cmd := exec.Command("go", "test", "-c", "-o", os.DevNull, "-gcflags=-m", ".")
		cmd.Dir = dir
		report, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: go test -c -gcflags=-m: %v\n%s", dir, err, report)
		}
		for _, c := range cs {
			prefix := fmt.Sprintf("%s:%d:", c.file, c.line)
			found := false
			for _, l := range strings.Split(string(report), "\n") {
				if i := strings.Index(l, prefix); i >= 0 && (i == 0 || l[i-1] == '/') && strings.Contains(l, ": can inline ") {
					found = true
					break
				}
			}
			if !found {
				rel, _ := filepath.Rel(root, filepath.Join(c.dir, c.file))
				t.Errorf("%s:%d: %s is marked %s but the compiler does not report it inlinable", rel, c.line, c.name, directive)
			}
		}
	}
}
