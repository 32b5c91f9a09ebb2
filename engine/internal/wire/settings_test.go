package wire

import (
	"testing"

	"github.com/quic-go/quic-go/quicvarint"
	"github.com/stretchr/testify/require"
)

func settingsPayload(pairs ...uint64) []byte {
	var b []byte
	for _, v := range pairs {
		b = append(b, varint(v)...)
	}
	return b
}

func TestParseSettings(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		want Settings
		code ErrorCode // 0: no error
	}{
		{name: "empty", in: nil, want: Settings{}},
		{name: "masqroute", in: settingsPayload(0x33, 1, 0x08, 1, 0x06, 4096),
			want: Settings{Datagram: true, ExtendedConnect: true, MaxFieldSectionSize: 4096, HasMaxFieldSectionSize: true}},
		{name: "explicit zeros", in: settingsPayload(0x33, 0, 0x08, 0, 0x06, 0),
			want: Settings{HasMaxFieldSectionSize: true}},
		{name: "unknown, QPACK and reserved kept", in: settingsPayload(0x01, 100, 0x07, 16, 0x21, 5, 1<<62-1, 1<<62-1),
			want: Settings{Other: []Setting{{0x01, 100}, {0x07, 16}, {0x21, 5}, {1<<62 - 1, 1<<62 - 1}}}},
		{name: "non-minimal encodings", in: cat(varintN(0x33, 8), varintN(1, 4)), want: Settings{Datagram: true}},

		{name: "cut in identifier", in: cat(settingsPayload(0x33, 1), []byte{0x40}), code: ErrCodeFrameError},
		{name: "missing value", in: settingsPayload(0x33), code: ErrCodeFrameError},
		{name: "cut in value", in: cat(varint(0x06), []byte{0x80, 0}), code: ErrCodeFrameError},
		{name: "duplicate known", in: settingsPayload(0x33, 1, 0x33, 1), code: ErrCodeSettingsError},
		{name: "duplicate unknown", in: settingsPayload(0x21, 1, 0x06, 1, 0x21, 2), code: ErrCodeSettingsError},
		{name: "duplicate non-minimal", in: cat(varint(0x08), varint(1), varintN(0x08, 2), varint(1)), code: ErrCodeSettingsError},
		{name: "HTTP/2 0x00", in: settingsPayload(0x00, 0), code: ErrCodeSettingsError},
		{name: "HTTP/2 ENABLE_PUSH", in: settingsPayload(0x02, 0), code: ErrCodeSettingsError},
		{name: "HTTP/2 MAX_CONCURRENT_STREAMS", in: settingsPayload(0x03, 100), code: ErrCodeSettingsError},
		{name: "HTTP/2 INITIAL_WINDOW_SIZE", in: settingsPayload(0x04, 65535), code: ErrCodeSettingsError},
		{name: "HTTP/2 MAX_FRAME_SIZE", in: settingsPayload(0x05, 16384), code: ErrCodeSettingsError},
		{name: "H3_DATAGRAM = 2", in: settingsPayload(0x33, 2), code: ErrCodeSettingsError},
		{name: "H3_DATAGRAM = max", in: settingsPayload(0x33, 1<<62-1), code: ErrCodeSettingsError},
		{name: "ENABLE_CONNECT_PROTOCOL = 2", in: settingsPayload(0x08, 2), code: ErrCodeSettingsError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := ParseSettings(tc.in)
			if tc.code != 0 {
				requireCode(t, err, tc.code)
				require.Equal(t, Settings{}, s)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, s)
		})
	}
}

func TestParseSettingsBoundsOther(t *testing.T) {
	var pairs []uint64
	for i := range uint64(1000) {
		pairs = append(pairs, 0x100+i, i)
	}
	s, err := ParseSettings(settingsPayload(pairs...))
	require.NoError(t, err)
	require.Len(t, s.Other, MaxOtherSettings)
	require.Equal(t, 1000-MaxOtherSettings, s.OtherDropped)
	require.Equal(t, Setting{0x100, 0}, s.Other[0])

	// A duplicate beyond the kept ones is still found.
	_, err = ParseSettings(settingsPayload(append(pairs, 0x100+999, 1)...))
	requireCode(t, err, ErrCodeSettingsError)
}

func TestAppendSettingsFrame(t *testing.T) {
	for _, s := range []Settings{
		{},
		{Datagram: true},
		{Datagram: true, ExtendedConnect: true, MaxFieldSectionSize: 1<<62 - 1, HasMaxFieldSectionSize: true},
		{ExtendedConnect: true, Other: []Setting{{0x01, 0}, {0x21, 1<<62 - 1}}},
	} {
		f := AppendSettingsFrame([]byte{0xff}, s)
		require.Equal(t, byte(0xff), f[0], "appends")
		typ, n, err := quicvarint.Parse(f[1:])
		require.NoError(t, err)
		require.EqualValues(t, FrameSettings, typ)
		length, m, err := quicvarint.Parse(f[1+n:])
		require.NoError(t, err)
		payload := f[1+n+m:]
		require.EqualValues(t, len(payload), length)
		got, err := ParseSettings(payload)
		require.NoError(t, err)
		require.Equal(t, s, got)
	}
	require.Equal(t, []byte{0x04, 0x02, 0x33, 0x01}, AppendSettingsFrame(nil, Settings{Datagram: true}))

	for _, bad := range [][]Setting{{{0x33, 1}}, {{0x08, 1}}, {{0x06, 1}}, {{0x02, 0}}, {{0x21, 1}, {0x21, 2}}} {
		require.Panics(t, func() { AppendSettingsFrame(nil, Settings{Other: bad}) }, "%v", bad)
	}
}

func BenchmarkParseSettings(b *testing.B) {
	f := AppendSettingsFrame(nil, Settings{Datagram: true, ExtendedConnect: true, Other: []Setting{{0x01, 0}, {0x07, 0}, {0x5f, 3}}})
	payload := f[2:]
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseSettings(payload); err != nil {
			b.Fatal(err)
		}
	}
}
