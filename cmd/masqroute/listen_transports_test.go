package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"github.com/stretchr/testify/require"

	"github.com/masqroute/masqroute/engine/client"
	"github.com/masqroute/masqroute/engine/echo"
	"github.com/masqroute/masqroute/engine/quiclb/quiclbtest"
)

// childEnv makes the test binary run as the daemon (for the tests that need
// two processes): init runs main, which exits, before any test starts.
const childEnv = "MASQROUTE_TEST_RUN_DAEMON"

func init() {
	if os.Getenv(childEnv) == "1" {
		main()
	}
}

func TestTransportFlagErrors(t *testing.T) {
	for _, tc := range []struct{ args []string }{
		{[]string{"-self-signed", "-transports", "0"}},
		{[]string{"-self-signed", "-transports", "257"}},
		{[]string{"-self-signed", "-server-id", "0x12"}},
		{[]string{"-self-signed", "-cid-config-rotation", "7"}},
		{[]string{"-self-signed", "-reuseport-group", "g"}},
	} {
		var out, errOut syncBuffer
		err := run(context.Background(), tc.args, &out, &errOut)
		require.Equal(t, 2, exitCode(err, io.Discard), "%v: %v", tc.args, err)
	}
}

const (
	fleetKeys = "token 0101010101010101010101010101010101010101010101010101010101010101\n" +
		"reset 0202020202020202020202020202020202020202020202020202020202020202\n" +
		"ticket 0303030303030303030303030303030303030303030303030303030303030303\n"
)

func TestTransportsServeEveryConnection(t *testing.T) {
	es, err := echo.Listen("127.0.0.1:0")
	require.NoError(t, err)
	defer es.Close()
	dir := t.TempDir()
	caFile, keyFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "keys")
	require.NoError(t, os.WriteFile(keyFile, []byte(fleetKeys), 0o600))
	d := startDaemon(t, "-self-signed", "-write-ca", caFile, "-listen", "127.0.0.1:0", "-log-format", "json",
		"-metrics", "127.0.0.1:0", "-pprof", "", "-allow", es.Addr().Addr().String(),
		"-transports", "2", "-workers", "2", "-server-id", "0x00000000000000a1", "-fleet-key-file", keyFile, "-shutdown-timeout", "1s")
	started := startedRecord(t, d)
	addr, metricsURL := started["listen"].(string), started["metrics"].(string)
	tlsConf := trustCAs(t, caFile)

	const conns = 16
	cs := dialThroughRelays(t, addr, tlsConf, es.Addr().String(), conns)
	for _, c := range cs {
		require.NoError(t, c.echo(3))
		require.NoError(t, c.relay.Rebind())
		require.NoError(t, c.echo(3))
	}
	_, body := get(t, metricsURL)
	require.Equal(t, 2.0, metricValue(t, body, `masqroute_quic_transports{steered="true"}`))
	t0 := metricValue(t, body, `masqroute_quic_transport_connections_total{transport="0"}`)
	t1 := metricValue(t, body, `masqroute_quic_transport_connections_total{transport="1"}`)
	require.Equal(t, float64(conns), t0+t1)
	require.Positive(t, t0, "no connection on transport 0")
	require.Positive(t, t1, "no connection on transport 1")
	// One tunnel per connection, on the worker of its transport's index
	// (round-robin would give 8 and 8, which an 8/8 split cannot tell
	// apart: engine/proxy's TestWorkerAffinityPerTransport can).
	require.Equal(t, t0, metricValue(t, body, `masqroute_datapath_worker_tunnels_placed_total{worker="0"}`), "tunnels on worker 0")
	require.Equal(t, t1, metricValue(t, body, `masqroute_datapath_worker_tunnels_placed_total{worker="1"}`), "tunnels on worker 1")
	for tr := range 2 {
		require.Zero(t, metricValue(t, body, fmt.Sprintf(`masqroute_quic_transport_unknown_cid_total{transport="%d"}`, tr)))
	}
	if runtime.GOOS == "linux" { // -batch-writes (default): quic-go's packets left through the flushers
		packets := metricValue(t, body, `masqroute_datapath_datagrams_total{direction="to_client"}`)
		require.GreaterOrEqual(t, packets, float64(conns*6), "every echo went back through a batched socket")
		calls := metricValue(t, body, `masqroute_datapath_syscalls_total{direction="to_client"}`)
		require.Positive(t, calls)
		require.LessOrEqual(t, calls, packets)
		require.Zero(t, metricValue(t, body, `masqroute_datapath_client_send_drops_total`))
	}
}

// trustCAs trusts the CAs in files (PEM).
func trustCAs(t *testing.T, files ...string) *tls.Config {
	t.Helper()
	pool := x509.NewCertPool()
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		require.True(t, pool.AppendCertsFromPEM(b), f)
	}
	return &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", NextProtos: []string{http3.NextProtoH3}}
}

// relayClient is one client connection through its own NAT relay, with one
// tunnel to the echo target.
type relayClient struct {
	relay *quiclbtest.Relay
	qc    *quic.Conn
	conn  *client.Conn
	udp   *client.UDPConn
}

func dialThroughRelays(t *testing.T, proxyAddr string, tlsConf *tls.Config, target string, n int) []*relayClient {
	t.Helper()
	pa, err := net.ResolveUDPAddr("udp", proxyAddr)
	require.NoError(t, err)
	cs := make([]*relayClient, n)
	for i := range cs {
		r, err := quiclbtest.NewRelay(pa)
		require.NoError(t, err)
		t.Cleanup(func() { r.Close() })
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		qc, err := quic.DialAddr(ctx, r.Addr().String(), tlsConf, &quic.Config{EnableDatagrams: true, MaxIdleTimeout: 10 * time.Second})
		require.NoError(t, err)
		conn, err := client.NewConn(qc, proxyAddr, nil)
		require.NoError(t, err)
		t.Cleanup(func() { conn.Close() })
		u, err := conn.DialUDP(ctx, target)
		cancel()
		require.NoError(t, err)
		cs[i] = &relayClient{relay: r, qc: qc, conn: conn, udp: u}
	}
	return cs
}

// echo sends until n datagrams came back, for at most 3 s.
func (c *relayClient) echo(n int) error {
	deadline := time.Now().Add(3 * time.Second)
	buf := make([]byte, 64)
	for got := 0; got < n; {
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d echoes", got, n)
		}
		if _, err := c.udp.Write([]byte("hello")); err != nil {
			return err
		}
		c.udp.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if m, err := c.udp.Read(buf); err == nil && m == 5 {
			got++
		} else if c.qc.Context().Err() != nil {
			return context.Cause(c.qc.Context())
		}
	}
	return nil
}

// child is a daemon in a process of its own.
type child struct {
	cmd     *exec.Cmd
	stderr  syncBuffer
	started map[string]any
	exited  chan error
}

func startChild(t *testing.T, args ...string) *child {
	t.Helper()
	c := &child{cmd: exec.Command(os.Args[0], args...), exited: make(chan error, 1)}
	c.cmd.Env = append(os.Environ(), childEnv+"=1")
	pr, err := c.cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, c.cmd.Start())
	startedCh := make(chan map[string]any, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			line := sc.Text()
			c.stderr.Write([]byte(line + "\n"))
			if strings.Contains(line, startedJSON) {
				var rec map[string]any
				if json.Unmarshal([]byte(line), &rec) == nil {
					startedCh <- rec
				}
			}
		}
		c.exited <- c.cmd.Wait()
	}()
	t.Cleanup(func() {
		if c.cmd.ProcessState == nil {
			c.cmd.Process.Kill()
			<-c.exited
		}
	})
	select {
	case c.started = <-startedCh:
	case err := <-c.exited:
		t.Fatalf("daemon exited: %v\n%s", err, c.stderr.String())
	case <-time.After(10 * time.Second):
		t.Fatalf("daemon did not start\n%s", c.stderr.String())
	}
	return c
}

// TestTwoInstancesShareAPort: two daemon processes on one port, each with
// its own server ID, steered by the kernel through the group file. Clients
// spread over both survive NAT rebinding; then one instance drains and
// exits, and no connection of the other is reset or lost, before or after
// its sockets moved in the group.
func TestTwoInstancesShareAPort(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two daemon processes")
	}
	es, err := echo.Listen("127.0.0.1:0")
	require.NoError(t, err)
	defer es.Close()
	dir := t.TempDir()
	keyFile, group := filepath.Join(dir, "keys"), filepath.Join(dir, "group")
	require.NoError(t, os.WriteFile(keyFile, []byte(fleetKeys), 0o600))
	args := func(sid, listen, ca string) []string {
		return []string{"-self-signed", "-write-ca", ca, "-listen", listen, "-log-format", "json",
			"-metrics", "127.0.0.1:0", "-pprof", "", "-allow", es.Addr().Addr().String(),
			"-transports", "2", "-server-id", sid, "-fleet-key-file", keyFile, "-reuseport-group", group,
			"-shutdown-timeout", "1s"}
	}
	caA, caB := filepath.Join(dir, "a.pem"), filepath.Join(dir, "b.pem")
	a := startChild(t, args("0x00000000000000a1", "127.0.0.1:0", caA)...)
	addr := a.started["listen"].(string)
	b := startChild(t, args("0x00000000000000b2", addr, caB)...)

	const conns = 16
	cs := dialThroughRelays(t, addr, trustCAs(t, caA, caB), es.Addr().String(), conns)
	for i, c := range cs {
		require.NoError(t, c.echo(3), "client %d", i)
		require.NoError(t, c.relay.Rebind())
		require.NoError(t, c.echo(3), "client %d after rebinding", i)
	}
	connsOn := func(c *child) int {
		_, body := get(t, c.started["metrics"].(string))
		return int(metricValue(t, body, `masqroute_quic_transport_connections_total{transport="0"}`) +
			metricValue(t, body, `masqroute_quic_transport_connections_total{transport="1"}`))
	}
	onA, onB := connsOn(a), connsOn(b)
	require.Equal(t, conns, onA+onB)
	require.Positive(t, onA, "every client on B")
	require.Positive(t, onB, "every client on A")

	// A drains: GOAWAY, its tunnels get -shutdown-timeout, it re-steers
	// the group for B and exits. B's clients echo all along.
	require.NoError(t, a.cmd.Process.Signal(syscall.SIGTERM))
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for _, c := range cs {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if c.qc.Context().Err() != nil {
					return
				}
				c.echo(1)
			}
		})
	}
	select {
	case err := <-a.exited:
		require.NoError(t, err, "A's exit\n%s", a.stderr.String())
	case <-time.After(10 * time.Second):
		t.Fatalf("A did not exit\n%s", a.stderr.String())
	}
	close(stop)
	wg.Wait()

	var alive, ended, resets int
	for i, c := range cs {
		if c.qc.Context().Err() != nil {
			ended++
			var sr *quic.StatelessResetError
			if errors.As(context.Cause(c.qc.Context()), &sr) {
				resets++
			}
			continue
		}
		alive++
		require.NoError(t, c.relay.Rebind())
		require.NoError(t, c.echo(3), "client %d on B after A left", i)
	}
	require.Zero(t, resets, "stateless resets")
	require.Equal(t, onB, alive, "B's connections alive after A left")
	require.Equal(t, onA, ended, "A's connections ended by its drain")
	require.Contains(t, b.stderr.String(), `"msg":"started"`)
}
