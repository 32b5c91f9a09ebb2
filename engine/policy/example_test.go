package policy_test

import (
	"fmt"
	"net/netip"

	"github.com/masqroute/masqroute/engine/policy"
)

func ExamplePolicy_Check() {
	allow, _ := policy.ParsePrefixes("127.0.0.1")         // a local DNS cache
	deny, _ := policy.ParsePrefixes("203.0.113.0/24")     // a partner network
	ports, _ := policy.ParsePorts("53, 443, 51820-51830") // DNS, QUIC, WireGuard
	p, err := policy.New(policy.Config{Allow: allow, Deny: deny, AllowPorts: ports})
	if err != nil {
		panic(err)
	}
	for _, target := range []string{
		"127.0.0.1:53",
		"127.0.0.2:53",
		"[::ffff:169.254.169.254]:443",
		"[2002:a00:1::1]:443",
		"203.0.113.9:443",
		"192.0.2.1:22",
		"192.0.2.1:443",
	} {
		if err := p.Check(netip.MustParseAddrPort(target)); err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Println(target, "allowed")
	}
	// Output:
	// 127.0.0.1:53 allowed
	// policy: target 127.0.0.2:53 refused: loopback
	// policy: target [::ffff:169.254.169.254]:443 refused: link-local
	// policy: target [2002:a00:1::1]:443 refused: private (IPv4 10.0.0.1 in 6to4 2002::/16)
	// policy: target 203.0.113.9:443 refused: denied by rule 203.0.113.0/24
	// policy: target 192.0.2.1:22 refused: port not allowed
	// 192.0.2.1:443 allowed
}
