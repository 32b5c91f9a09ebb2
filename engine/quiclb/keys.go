package quiclb

import (
	"bufio"
	"bytes"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"strings"

	"github.com/quic-go/quic-go"
)

// FleetKeys are the secrets every host of a fleet shares. A key file holds
// one key a line, a name and 64 hex digits, in any order; blank lines and
// lines starting with # are skipped:
//
//	token  <hex>   Retry and NEW_TOKEN tokens (quic.Transport.TokenGeneratorKey)
//	reset  <hex>   the stateless-reset master key; each server ID gets its own
//	               key from it (ResetKey)
//	ticket <hex>   TLS session-ticket keys, one line each, the first
//	               encrypts new tickets, all decrypt (tls.Config.SetSessionTicketKeys)
//
// token and reset appear once, ticket at least once.
type FleetKeys struct {
	Token   quic.TokenGeneratorKey
	Reset   [32]byte
	Tickets [][32]byte
}

// LoadFleetKeys reads a key file.
func LoadFleetKeys(path string) (*FleetKeys, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	k, err := ParseFleetKeys(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// ParseFleetKeys reads a key file's contents.
func ParseFleetKeys(b []byte) (*FleetKeys, error) {
	k := &FleetKeys{}
	var haveToken, haveReset bool
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, value, _ := strings.Cut(line, " ")
		var key [32]byte
		raw, err := hex.DecodeString(strings.TrimSpace(value))
		if err != nil || len(raw) != len(key) {
			return nil, fmt.Errorf("line %d: %s: want 64 hex digits", n, name)
		}
		copy(key[:], raw)
		switch {
		case name == "token" && !haveToken:
			k.Token, haveToken = quic.TokenGeneratorKey(key), true
		case name == "reset" && !haveReset:
			k.Reset, haveReset = key, true
		case name == "ticket":
			k.Tickets = append(k.Tickets, key)
		case name == "token" || name == "reset":
			return nil, fmt.Errorf("line %d: a second %s key", n, name)
		default:
			return nil, fmt.Errorf("line %d: unknown key %q (token, reset, ticket)", n, name)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if !haveToken || !haveReset || len(k.Tickets) == 0 {
		return nil, fmt.Errorf("want a token, a reset and at least one ticket key")
	}
	return k, nil
}

// resetKeyLabel separates the reset keys from anything else derived from
// the same master.
const resetKeyLabel = "masqroute stateless reset v1"

// ResetKey is server id's stateless-reset key: HKDF-SHA256 of the fleet's
// reset master with the server ID as salt. Every transport of a host uses
// its server ID's key, so a host can reset its own connections after a
// restart; no host can make a valid reset for another server ID's
// connections (RFC 9000 §10.3.2), even when a packet reaches the wrong host.
func (k *FleetKeys) ResetKey(id ServerID) *quic.StatelessResetKey {
	return DeriveResetKey(k.Reset, id)
}

// DeriveResetKey derives server id's stateless-reset key from master.
func DeriveResetKey(master [32]byte, id ServerID) *quic.StatelessResetKey {
	out, err := hkdf.Key(sha256.New, master[:], id[:], resetKeyLabel, 32)
	if err != nil {
		panic(err) // 32 bytes of SHA-256 output: HKDF cannot fail
	}
	var key quic.StatelessResetKey
	copy(key[:], out)
	return &key
}
