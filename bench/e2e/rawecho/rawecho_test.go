package rawecho

import (
	"context"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/masqroute/masqroute/engine/devcert"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestEcho(t *testing.T) {
	cert, err := devcert.Loopback()
	require.NoError(t, err)
	s, err := Listen("127.0.0.1:0", cert.ServerTLS(), nil)
	require.NoError(t, err)
	defer func() { require.NoError(t, s.Close()) }()

	tlsConf := cert.ClientTLS()
	tlsConf.NextProtos = []string{ALPN}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	qc, err := quic.DialAddr(ctx, s.Addr().String(), tlsConf, &quic.Config{EnableDatagrams: true})
	require.NoError(t, err)
	for i := range 10 {
		msg := []byte{byte(i), 'x'}
		require.NoError(t, qc.SendDatagram(msg))
		got, err := qc.ReceiveDatagram(ctx)
		require.NoError(t, err)
		require.Equal(t, msg, got)
	}
	require.Equal(t, uint64(10), s.Echoed.Load())
	// The connection is left open: Close ends it.
}
