package quiclb

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const (
	hex1 = "0101010101010101010101010101010101010101010101010101010101010101"
	hex2 = "0202020202020202020202020202020202020202020202020202020202020202"
	hex3 = "0303030303030303030303030303030303030303030303030303030303030303"
)

func TestParseFleetKeys(t *testing.T) {
	file := "# fleet keys\n\ntoken " + hex1 + "\nreset  " + hex2 + "\nticket " + hex3 + "\nticket " + hex1 + "\n"
	path := filepath.Join(t.TempDir(), "keys")
	require.NoError(t, os.WriteFile(path, []byte(file), 0o600))
	k, err := LoadFleetKeys(path)
	require.NoError(t, err)
	require.Equal(t, byte(1), k.Token[0])
	require.Equal(t, byte(2), k.Reset[31])
	require.Len(t, k.Tickets, 2)
	require.Equal(t, byte(3), k.Tickets[0][0]) // the first encrypts

	for name, bad := range map[string]string{
		"no ticket":    "token " + hex1 + "\nreset " + hex2,
		"no token":     "reset " + hex2 + "\nticket " + hex3,
		"short key":    "token 0101\nreset " + hex2 + "\nticket " + hex3,
		"two tokens":   "token " + hex1 + "\ntoken " + hex1 + "\nreset " + hex2 + "\nticket " + hex3,
		"unknown name": "tokn " + hex1 + "\nreset " + hex2 + "\nticket " + hex3,
		"not hex":      "token " + strings.Repeat("zz", 32) + "\nreset " + hex2 + "\nticket " + hex3,
	} {
		_, err := ParseFleetKeys([]byte(bad))
		require.Error(t, err, name)
	}
}

func TestResetKeysPerServerID(t *testing.T) {
	var master [32]byte
	copy(master[:], hex1)
	a1, a2, b := DeriveResetKey(master, sidA), DeriveResetKey(master, sidA), DeriveResetKey(master, sidB)
	require.Equal(t, *a1, *a2, "a server ID's key is stable across restarts")
	require.NotEqual(t, *a1, *b, "two server IDs share a reset key")
	other := master
	other[0] ^= 1
	require.NotEqual(t, *a1, *DeriveResetKey(other, sidA), "the key does not depend on the master")
	require.NotEqual(t, master, [32]byte(*a1))
}
