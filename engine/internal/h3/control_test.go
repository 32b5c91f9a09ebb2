package h3

import (
	"context"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/quicvarint"
	"github.com/stretchr/testify/require"

	"github.com/masqroute/masqroute/engine/internal/wire"
)

// TestUniStreamViolations: a raw peer breaks the rules of RFC 9114 §6.2
// and RFC 9204 §4.2; the server closes the connection with the right code,
// and Serve returns that error.
func TestUniStreamViolations(t *testing.T) {
	settings := clientSettings(wire.Settings{})
	for _, tc := range []struct {
		name      string
		datagrams bool // the client's QUIC datagram support
		peer      func(t *testing.T, qc *quic.Conn, sc *serverConn)
		want      wire.ErrorCode
	}{
		{"GOAWAY before SETTINGS", true, func(t *testing.T, qc *quic.Conn, sc *serverConn) {
			openUni(t, qc, wire.StreamTypeControl, appendGoAway(nil, 0))
		}, wire.ErrCodeMissingSettings},
		{"second control stream", true, func(t *testing.T, qc *quic.Conn, sc *serverConn) {
			openUni(t, qc, wire.StreamTypeControl, settings)
			openUni(t, qc, wire.StreamTypeControl, settings)
		}, wire.ErrCodeStreamCreationError},
		{"control stream closed", true, func(t *testing.T, qc *quic.Conn, sc *serverConn) {
			require.NoError(t, openUni(t, qc, wire.StreamTypeControl, settings).Close())
		}, wire.ErrCodeClosedCriticalStream},
		{"control stream reset", true, func(t *testing.T, qc *quic.Conn, sc *serverConn) {
			str := openUni(t, qc, wire.StreamTypeControl, settings)
			<-sc.PeerSettings() // a reset before the stream type is ignored
			str.CancelWrite(0x21)
		}, wire.ErrCodeClosedCriticalStream},
		{"control stream closed before SETTINGS", true, func(t *testing.T, qc *quic.Conn, sc *serverConn) {
			require.NoError(t, openUni(t, qc, wire.StreamTypeControl).Close())
		}, wire.ErrCodeClosedCriticalStream},
		{"DATA on the control stream", true, func(t *testing.T, qc *quic.Conn, sc *serverConn) {
			openUni(t, qc, wire.StreamTypeControl, settings, rawFrame(wire.FrameData, []byte("x")))
		}, wire.ErrCodeFrameUnexpected},
		{"second SETTINGS", true, func(t *testing.T, qc *quic.Conn, sc *serverConn) {
			openUni(t, qc, wire.StreamTypeControl, settings, settings)
		}, wire.ErrCodeFrameUnexpected},
		{"invalid setting", true, func(t *testing.T, qc *quic.Conn, sc *serverConn) {
			openUni(t, qc, wire.StreamTypeControl, rawFrame(wire.FrameSettings, []byte{wire.SettingH3Datagram, 2}))
		}, wire.ErrCodeSettingsError},
		{"H3_DATAGRAM without QUIC datagrams", false, func(t *testing.T, qc *quic.Conn, sc *serverConn) {
			openUni(t, qc, wire.StreamTypeControl, clientSettings(wire.Settings{Datagram: true}))
		}, wire.ErrCodeSettingsError},
		{"CANCEL_PUSH without MAX_PUSH_ID", true, func(t *testing.T, qc *quic.Conn, sc *serverConn) {
			openUni(t, qc, wire.StreamTypeControl, settings, rawFrame(wire.FrameCancelPush, []byte{0}))
		}, wire.ErrCodeIDError},
		{"CANCEL_PUSH above MAX_PUSH_ID", true, func(t *testing.T, qc *quic.Conn, sc *serverConn) {
			openUni(t, qc, wire.StreamTypeControl, settings,
				rawFrame(wire.FrameMaxPushID, []byte{3}), rawFrame(wire.FrameCancelPush, []byte{3}),
				rawFrame(wire.FrameCancelPush, []byte{4}))
		}, wire.ErrCodeIDError},
		{"push stream from a client", true, func(t *testing.T, qc *quic.Conn, sc *serverConn) {
			openUni(t, qc, wire.StreamTypePush, []byte{0})
		}, wire.ErrCodeStreamCreationError},
		{"second QPACK encoder stream", true, func(t *testing.T, qc *quic.Conn, sc *serverConn) {
			openUni(t, qc, wire.StreamTypeQPACKEncoder)
			openUni(t, qc, wire.StreamTypeQPACKEncoder)
		}, wire.ErrCodeStreamCreationError},
		{"second QPACK decoder stream", true, func(t *testing.T, qc *quic.Conn, sc *serverConn) {
			openUni(t, qc, wire.StreamTypeQPACKDecoder)
			openUni(t, qc, wire.StreamTypeQPACKDecoder)
		}, wire.ErrCodeStreamCreationError},
		{"QPACK encoder stream closed", true, func(t *testing.T, qc *quic.Conn, sc *serverConn) {
			require.NoError(t, openUni(t, qc, wire.StreamTypeQPACKEncoder, []byte{0x20}).Close())
		}, wire.ErrCodeClosedCriticalStream},
		{"QPACK decoder stream closed", true, func(t *testing.T, qc *quic.Conn, sc *serverConn) {
			require.NoError(t, openUni(t, qc, wire.StreamTypeQPACKDecoder).Close())
		}, wire.ErrCodeClosedCriticalStream},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startServer(t, Config{Handler: okHandler})
			qc := dialQUIC(t, srv, tc.datagrams)
			sc := srv.next(t)
			tc.peer(t, qc, sc)
			require.Equal(t, tc.want, waitConnError(t, qc))
			code, ok := wire.CodeOf(sc.wait(t))
			require.True(t, ok)
			require.Equal(t, tc.want, code)
		})
	}
}

// TestUniStreamsAccepted: what a well-behaved peer may do on its
// unidirectional streams leaves the connection up.
func TestUniStreamsAccepted(t *testing.T) {
	srv := startServer(t, Config{Handler: okHandler})
	qc := dialQUIC(t, srv, true)
	sc := srv.next(t)

	const grease = 0x1f*7 + 0x21
	ctrl := openUni(t, qc, wire.StreamTypeControl,
		clientSettings(wire.Settings{Datagram: true, Other: []wire.Setting{{ID: grease, Value: 1}}}),
		rawFrame(grease, []byte("ignored")),
		rawFrame(wire.FramePriorityUpdateRequest, []byte{0, 'u', '=', '1'}),
		rawFrame(wire.FrameMaxPushID, []byte{8}),
		rawFrame(wire.FrameCancelPush, []byte{8}),
		appendGoAway(nil, 4))
	openUni(t, qc, wire.StreamTypeQPACKEncoder, []byte{0x20}) // Set Dynamic Table Capacity 0
	openUni(t, qc, wire.StreamTypeQPACKDecoder)

	// A stream of an unknown type is refused with STOP_SENDING.
	unknown := openUni(t, qc, grease, []byte("payload"))
	select {
	case <-unknown.Context().Done():
	case <-time.After(waitShort):
		t.Fatal("unknown stream type not refused")
	}
	var se *quic.StreamError
	require.ErrorAs(t, context.Cause(unknown.Context()), &se)
	require.EqualValues(t, wire.ErrCodeStreamCreationError, se.ErrorCode)

	// A stream that ends before its type is ignored.
	empty, err := qc.OpenUniStream()
	require.NoError(t, err)
	require.NoError(t, empty.Close())

	select {
	case <-sc.PeerSettings():
	case <-time.After(waitShort):
		t.Fatal("no SETTINGS")
	}
	require.True(t, sc.Settings().Datagram)
	require.Equal(t, []wire.Setting{{ID: grease, Value: 1}}, sc.Settings().Other)

	// More control frames keep flowing.
	_, err = ctrl.Write(rawFrame(grease, nil))
	require.NoError(t, err)
	time.Sleep(50 * time.Millisecond)
	require.NoError(t, qc.Context().Err())

	// The server's own control stream: type, then SETTINGS.
	str, err := qc.AcceptUniStream(context.Background())
	require.NoError(t, err)
	typ, err := wire.ReadStreamType(str)
	require.NoError(t, err)
	require.EqualValues(t, wire.StreamTypeControl, typ)
	r := wire.NewControlStreamReader(str, wire.RoleServer)
	f, err := r.Next()
	require.NoError(t, err)
	require.True(t, f.Settings.ExtendedConnect)
	require.True(t, f.Settings.HasMaxFieldSectionSize)
	require.EqualValues(t, DefaultMaxHeaderBytes, f.Settings.MaxFieldSectionSize)
	require.False(t, f.Settings.Datagram)
	for _, o := range f.Settings.Other {
		require.NotContains(t, []uint64{wire.SettingQPACKMaxTableCapacity, wire.SettingQPACKBlockedStreams}, o.ID)
	}

	require.NoError(t, qc.CloseWithError(quic.ApplicationErrorCode(wire.ErrCodeNoError), ""))
	require.NoError(t, sc.wait(t))
}

// TestAppendGoAway checks the GOAWAY encoder.
func TestAppendGoAway(t *testing.T) {
	b := appendGoAway(nil, 1<<20)
	require.Equal(t, []byte{wire.FrameGoAway, 4}, b[:2])
	v, n, err := quicvarint.Parse(b[2:])
	require.NoError(t, err)
	require.Equal(t, 4, n)
	require.EqualValues(t, 1<<20, v)
}
