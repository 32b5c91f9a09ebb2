// Package ipaddr is the address arithmetic of CONNECT-IP (RFC 9484): client
// address pools, inclusive address ranges and a tunnel's scope. It knows
// nothing of proxies, sessions or packets; engine/proxy builds on it.
package ipaddr
