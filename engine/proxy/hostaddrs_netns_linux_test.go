package proxy_test

import (
	"errors"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/masqroute/masqroute/engine/proxy"
)

// netnsChild marks the test binary re-executed inside a network namespace.
const netnsChild = "MASQROUTE_TEST_NETNS_CHILD"

// The host's addresses, end to end: in a network namespace of its own (a
// user namespace makes it possible unprivileged), the test puts addresses
// on a dummy interface (a bridge without ports where the kernel has no
// dummy driver) and checks that a proxy with the default HostAddrs and
// watch (rtnetlink) refuses a CONNECT-UDP request naming them, and follows
// when one is added or removed — no SIGHUP, no RefreshHostAddrs. It only
// looks at the answers: no datagram is sent to any of these addresses (and
// the namespace has no route out). Skipped, saying why, where the machine
// allows no such namespace or has no ip(8).
func TestHostAddrsNetns(t *testing.T) {
	if os.Getenv(netnsChild) == "" {
		runInNetns(t, "TestHostAddrsNetns")
		return
	}
	// The child's TestMain checks for leaked goroutines right after this
	// test; give the listener's goroutines, which end after Close returns,
	// time to go on a loaded machine. (Registered first: runs last.)
	t.Cleanup(func() {
		for deadline := time.Now().Add(10 * time.Second); goleak.Find() != nil && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond)
		}
	})
	ipCmd(t, "link", "set", "lo", "up")
	link := "dummy"
	if _, err := ipTry("link", "add", "mq0", "type", "dummy"); err != nil {
		link = "bridge"
		ipCmd(t, "link", "add", "mq0", "type", "bridge")
	}
	t.Logf("interface mq0: %s", link)
	ipCmd(t, "link", "set", "mq0", "up")

	env := startProxy(t, proxy.Config{}) // the default HostAddrs and watch
	c := env.rawDial(t)
	a4, a6 := netip.MustParseAddr("8.8.8.8"), netip.MustParseAddr("2001:4860:4860::8888")
	hostHas := func(a netip.Addr, want bool) {
		t.Helper()
		require.Eventually(t, func() bool { return slices.Contains(env.proxy.HostAddrs(), a) == want },
			5*time.Second, 5*time.Millisecond, "%s on the host's list: want %v, have %v", a, want, env.proxy.HostAddrs())
	}
	ownHost := func(a netip.Addr) string {
		t.Helper()
		resp := c.do(t, http.MethodConnect, "connect-udp", udpPath(strings.ReplaceAll(a.String(), ":", "%3A"), "53"))
		resp.Body.Close()
		return resp.Header.Get("Proxy-Status")
	}

	hostHas(a4, false)
	ipCmd(t, "addr", "add", a4.String()+"/32", "dev", "mq0")
	hostHas(a4, true)
	require.Contains(t, ownHost(a4), "own host")
	ipCmd(t, "addr", "add", a6.String()+"/128", "dev", "mq0", "nodad")
	hostHas(a6, true)
	require.Contains(t, ownHost(a6), "own host")
	ipCmd(t, "addr", "del", a4.String()+"/32", "dev", "mq0")
	hostHas(a4, false)
	require.NotContains(t, ownHost(a4), "own host", "no longer the host's (and unreachable here: no route)")
	require.Contains(t, ownHost(a6), "own host")
}

// runInNetns runs the test named run in a child of the test binary, in new
// user and network namespaces, and reports its result as this test's.
func runInNetns(t *testing.T, run string) {
	t.Helper()
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("no ip(8) to set up interfaces in the namespace:", err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+run+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), netnsChild+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNET,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
	}
	out, err := cmd.CombinedOutput()
	var started *exec.ExitError
	if err != nil && !errors.As(err, &started) {
		t.Skipf("no user and network namespace here (%v): the end-to-end check of the host's addresses needs one", err)
	}
	t.Logf("in a network namespace:\n%s", out)
	if err != nil {
		t.Fatalf("the test failed in its namespace: %v", err)
	}
	if !strings.Contains(string(out), "--- PASS: "+run) {
		t.Fatalf("the test did not pass in its namespace")
	}
}

func ipTry(args ...string) ([]byte, error) { return exec.Command("ip", args...).CombinedOutput() }

func ipCmd(t *testing.T, args ...string) {
	t.Helper()
	out, err := ipTry(args...)
	require.NoError(t, err, "ip %s: %s", strings.Join(args, " "), out)
}
