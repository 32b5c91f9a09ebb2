package wire

import (
	"bytes"
	"io"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/require"
)

var (
	settingsFrame = AppendSettingsFrame(nil, Settings{Datagram: true})
	goAway        = func(id uint64) []byte { return frame(FrameGoAway, varint(id)) }
	maxPushID     = func(id uint64) []byte { return frame(FrameMaxPushID, varint(id)) }
)

// readFrames reads until the first error, which it returns with the frames.
func readFrames(c *ControlStreamReader) ([]Frame, error) {
	var out []Frame
	for {
		f, err := c.Next()
		if err != nil {
			return out, err
		}
		out = append(out, f)
	}
}

func TestControlStreamReader(t *testing.T) {
	set := Frame{Type: FrameSettings, Settings: &Settings{Datagram: true}}
	for _, tc := range []struct {
		name  string
		peer  Role
		in    []byte
		want  []Frame   // frames before the error
		code  ErrorCode // the error that ends it
		cause error     // for H3_CLOSED_CRITICAL_STREAM
	}{
		{name: "empty stream", in: nil, code: ErrCodeClosedCriticalStream, cause: io.EOF},
		{name: "SETTINGS then end", in: settingsFrame, want: []Frame{set}, code: ErrCodeClosedCriticalStream, cause: io.EOF},
		{name: "end inside frame type", in: cat(settingsFrame, []byte{0x40}), want: []Frame{set}, code: ErrCodeClosedCriticalStream, cause: io.ErrUnexpectedEOF},
		{name: "end inside length", in: cat(settingsFrame, []byte{0x07}), want: []Frame{set}, code: ErrCodeClosedCriticalStream, cause: io.ErrUnexpectedEOF},
		{name: "end inside SETTINGS", in: settingsFrame[:3], code: ErrCodeClosedCriticalStream, cause: io.ErrUnexpectedEOF},
		{name: "end inside GOAWAY", in: cat(settingsFrame, []byte{0x07, 0x02, 0x40}), want: []Frame{set}, code: ErrCodeClosedCriticalStream, cause: io.ErrUnexpectedEOF},
		{name: "end inside unknown frame", in: cat(settingsFrame, []byte{0x21, 0x05, 1}), want: []Frame{set}, code: ErrCodeClosedCriticalStream, cause: io.ErrUnexpectedEOF},

		{name: "GOAWAY first", in: cat(goAway(0), settingsFrame), code: ErrCodeMissingSettings},
		{name: "reserved frame first", in: cat(frame(0x21, nil), settingsFrame), code: ErrCodeMissingSettings},
		{name: "DATA first", in: frame(FrameData, nil), code: ErrCodeMissingSettings},
		{name: "second SETTINGS", in: cat(settingsFrame, settingsFrame), want: []Frame{set}, code: ErrCodeFrameUnexpected},
		{name: "DATA", in: cat(settingsFrame, frame(FrameData, []byte{1})), want: []Frame{set}, code: ErrCodeFrameUnexpected},
		{name: "HEADERS", in: cat(settingsFrame, frame(FrameHeaders, []byte{1})), want: []Frame{set}, code: ErrCodeFrameUnexpected},
		{name: "PUSH_PROMISE", in: cat(settingsFrame, frame(FramePushPromise, []byte{1})), want: []Frame{set}, code: ErrCodeFrameUnexpected},
		{name: "HTTP/2 PRIORITY", in: cat(settingsFrame, frame(0x02, nil)), want: []Frame{set}, code: ErrCodeFrameUnexpected},
		{name: "HTTP/2 PING", in: cat(settingsFrame, frame(0x06, make([]byte, 8))), want: []Frame{set}, code: ErrCodeFrameUnexpected},
		{name: "HTTP/2 WINDOW_UPDATE", in: cat(settingsFrame, frame(0x08, nil)), want: []Frame{set}, code: ErrCodeFrameUnexpected},
		{name: "HTTP/2 CONTINUATION", in: cat(settingsFrame, frame(0x09, nil)), want: []Frame{set}, code: ErrCodeFrameUnexpected},

		{name: "bad SETTINGS", in: frame(FrameSettings, settingsPayload(0x33, 2)), code: ErrCodeSettingsError},
		{name: "truncated SETTINGS payload", in: frame(FrameSettings, []byte{0x33}), code: ErrCodeFrameError},
		{name: "oversize SETTINGS", in: cat(varint(FrameSettings), varint(MaxSettingsFrameLen+1)), code: ErrCodeExcessiveLoad},

		{name: "GOAWAY non-increasing", peer: RoleServer, in: cat(settingsFrame, goAway(8), goAway(8), goAway(4), goAway(0)),
			want: []Frame{set, {Type: FrameGoAway, GoAwayID: 8}, {Type: FrameGoAway, GoAwayID: 8}, {Type: FrameGoAway, GoAwayID: 4}, {Type: FrameGoAway, GoAwayID: 0}},
			code: ErrCodeClosedCriticalStream, cause: io.EOF},
		{name: "GOAWAY increasing", in: cat(settingsFrame, goAway(3), goAway(4)),
			want: []Frame{set, {Type: FrameGoAway, GoAwayID: 3}}, code: ErrCodeIDError},
		{name: "server GOAWAY not a request stream", peer: RoleServer, in: cat(settingsFrame, goAway(5)), want: []Frame{set}, code: ErrCodeIDError},
		{name: "client GOAWAY with a push ID", peer: RoleClient, in: cat(settingsFrame, goAway(5)),
			want: []Frame{set, {Type: FrameGoAway, GoAwayID: 5}}, code: ErrCodeClosedCriticalStream, cause: io.EOF},
		{name: "GOAWAY max ID", in: cat(settingsFrame, goAway(1<<62-1)),
			want: []Frame{set, {Type: FrameGoAway, GoAwayID: 1<<62 - 1}}, code: ErrCodeClosedCriticalStream, cause: io.EOF},
		{name: "GOAWAY non-minimal", in: cat(settingsFrame, frame(FrameGoAway, varintN(4, 8))),
			want: []Frame{set, {Type: FrameGoAway, GoAwayID: 4}}, code: ErrCodeClosedCriticalStream, cause: io.EOF},
		{name: "GOAWAY trailing byte", in: cat(settingsFrame, frame(FrameGoAway, []byte{4, 0})), want: []Frame{set}, code: ErrCodeFrameError},
		{name: "GOAWAY short varint", in: cat(settingsFrame, frame(FrameGoAway, []byte{0x80, 0})), want: []Frame{set}, code: ErrCodeFrameError},
		{name: "GOAWAY empty", in: cat(settingsFrame, frame(FrameGoAway, nil)), want: []Frame{set}, code: ErrCodeFrameError},
		{name: "GOAWAY huge length", in: cat(settingsFrame, varint(FrameGoAway), varint(1<<62-1)), want: []Frame{set}, code: ErrCodeFrameError},

		{name: "CANCEL_PUSH", in: cat(settingsFrame, frame(FrameCancelPush, varint(3)), frame(FrameCancelPush, varint(1))),
			want: []Frame{set, {Type: FrameCancelPush, PushID: 3}, {Type: FrameCancelPush, PushID: 1}}, code: ErrCodeClosedCriticalStream, cause: io.EOF},
		{name: "CANCEL_PUSH trailing", in: cat(settingsFrame, frame(FrameCancelPush, []byte{3, 3})), want: []Frame{set}, code: ErrCodeFrameError},

		{name: "MAX_PUSH_ID non-decreasing", in: cat(settingsFrame, maxPushID(2), maxPushID(2), maxPushID(9)),
			want: []Frame{set, {Type: FrameMaxPushID, PushID: 2}, {Type: FrameMaxPushID, PushID: 2}, {Type: FrameMaxPushID, PushID: 9}},
			code: ErrCodeClosedCriticalStream, cause: io.EOF},
		{name: "MAX_PUSH_ID decreasing", in: cat(settingsFrame, maxPushID(9), maxPushID(8)),
			want: []Frame{set, {Type: FrameMaxPushID, PushID: 9}}, code: ErrCodeIDError},
		{name: "MAX_PUSH_ID from a server", peer: RoleServer, in: cat(settingsFrame, maxPushID(1)), want: []Frame{set}, code: ErrCodeFrameUnexpected},
		{name: "MAX_PUSH_ID trailing", in: cat(settingsFrame, frame(FrameMaxPushID, []byte{1, 0})), want: []Frame{set}, code: ErrCodeFrameError},

		{name: "skipped frames", in: cat(settingsFrame,
			frame(FramePriorityUpdateRequest, []byte{0, 'u', '=', '1'}),
			frame(FramePriorityUpdatePush, []byte{0}),
			frame(0x21, nil),
			frame(1<<62-1, make([]byte, 100_000)),
			goAway(0)),
			want: []Frame{set, {Type: FrameGoAway}}, code: ErrCodeClosedCriticalStream, cause: io.EOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for name, r := range map[string]io.Reader{
				"bytes":    bytes.NewReader(tc.in),
				"one byte": iotest.OneByteReader(bytes.NewReader(tc.in)),
			} {
				c := NewControlStreamReader(r, tc.peer)
				got, err := readFrames(c)
				require.Equal(t, tc.want, got, name)
				h := requireCode(t, err, tc.code)
				if tc.cause != nil {
					require.ErrorIs(t, h, tc.cause, name)
				}
				_, err2 := c.Next()
				require.Same(t, h, err2, "sticky")
			}
		})
	}
}

func TestControlStreamReaderSkipped(t *testing.T) {
	in := cat(settingsFrame, frame(0x21, nil), frame(FramePriorityUpdateRequest, []byte{0}), frame(0xabcdef, make([]byte, 1<<20)))
	c := NewControlStreamReader(bytes.NewReader(in), RoleClient)
	_, err := readFrames(c)
	requireCode(t, err, ErrCodeClosedCriticalStream)
	require.EqualValues(t, 3, c.Skipped())
}

func TestControlStreamReaderLargeSettings(t *testing.T) {
	// 4096 distinct 2-byte identifiers with 2-byte values: exactly
	// MaxSettingsFrameLen bytes, which is accepted.
	var payload []byte
	for i := range uint64(4096) {
		payload = append(payload, varint(0x40+i)...)
		payload = append(payload, varint(0x40)...)
	}
	require.Len(t, payload, MaxSettingsFrameLen)
	c := NewControlStreamReader(bytes.NewReader(frame(FrameSettings, payload)), RoleClient)
	f, err := c.Next()
	require.NoError(t, err)
	require.Len(t, f.Settings.Other, MaxOtherSettings)
	require.Equal(t, 4096-MaxOtherSettings, f.Settings.OtherDropped)
}

func TestControlStreamReaderReadError(t *testing.T) {
	c := NewControlStreamReader(io.MultiReader(bytes.NewReader(settingsFrame), iotest.ErrReader(errBoom)), RoleServer)
	_, err := c.Next()
	require.NoError(t, err)
	_, err = c.Next()
	h := requireCode(t, err, ErrCodeClosedCriticalStream)
	require.ErrorIs(t, h, errBoom)
}

func TestReadStreamType(t *testing.T) {
	for _, v := range []uint64{StreamTypeControl, StreamTypePush, StreamTypeQPACKEncoder, StreamTypeQPACKDecoder, 0x21, 0x3fff, 1<<30 - 1, 1<<62 - 1} {
		r := bytes.NewReader(cat(varint(v), []byte("rest")))
		got, err := ReadStreamType(iotest.OneByteReader(r))
		require.NoError(t, err)
		require.Equal(t, v, got)
		require.Equal(t, 4, r.Len(), "reads exactly the varint")
	}
	_, err := ReadStreamType(bytes.NewReader(nil))
	require.Equal(t, io.EOF, err)
	_, err = ReadStreamType(bytes.NewReader([]byte{0xc0, 1, 2}))
	require.Equal(t, io.ErrUnexpectedEOF, err)
	_, err = ReadStreamType(iotest.ErrReader(errBoom))
	require.Equal(t, errBoom, err)
}

func TestRoleString(t *testing.T) {
	require.Equal(t, "client", RoleClient.String())
	require.Equal(t, "server", RoleServer.String())
	require.Equal(t, "Role(7)", Role(7).String())
}

func BenchmarkControlStreamReaderSkip(b *testing.B) {
	unknown := frame(FramePriorityUpdateRequest, []byte{0, 'u', '=', '3'})
	var in []byte
	for range 64 {
		in = append(in, unknown...)
	}
	in = append(in, goAway(0)...)
	c := NewControlStreamReader(io.MultiReader(bytes.NewReader(settingsFrame), &cycleReader{data: in}), RoleServer)
	if _, err := c.Next(); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Next(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(c.Skipped())/float64(b.N), "skipped/op")
}
