package client

import (
	"os/exec"
	"strings"
	"testing"
)

// A program that only opens CONNECT-UDP tunnels does not link the
// CONNECT-IP backends: gVisor's netstack and wireguard's TUN stay where only
// the proxy's IP kind needs them.
func TestNoIPBackendDeps(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		for _, banned := range []string{"gvisor.dev/", "golang.zx2c4.com/"} {
			if strings.HasPrefix(pkg, banned) {
				t.Errorf("engine/client depends on %s", pkg)
			}
		}
	}
}
