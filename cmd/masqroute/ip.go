package main

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/masqroute/masqroute/engine/packetio"
	"github.com/masqroute/masqroute/engine/policy"
	"github.com/masqroute/masqroute/engine/proxy"
)

// ipConfig builds the CONNECT-IP configuration from the -ip flags, opening
// the packet backend. It returns nil when -ip is off. The proxy owns the
// device from then on and closes it.
func (c *serveConfig) ipConfig() (*proxy.IPConfig, error) {
	if c.ip == "" {
		return nil, nil
	}
	pool4, err := netip.ParsePrefix(c.ipPool4)
	if err != nil {
		return nil, fmt.Errorf("-ip-pool4: %w", err)
	}
	pool6, err := netip.ParsePrefix(c.ipPool6)
	if err != nil {
		return nil, fmt.Errorf("-ip-pool6: %w", err)
	}
	reach, err := policy.ParsePrefixes(c.ipReachable)
	if err != nil {
		return nil, fmt.Errorf("-ip-reachable: %w", err)
	}
	cfg := &proxy.IPConfig{Pool4: pool4, Pool6: pool6}
	// -allow widens the default reachable set, -deny narrows any: the
	// same flags as for CONNECT-UDP's targets.
	if cfg.Allow, err = policy.ParsePrefixes(c.allow); err != nil {
		return nil, fmt.Errorf("-allow: %w", err)
	}
	if cfg.Deny, err = policy.ParsePrefixes(c.deny); err != nil {
		return nil, fmt.Errorf("-deny: %w", err)
	}
	for _, t := range strings.Split(c.ipTemplates, ",") {
		if t = strings.TrimSpace(t); t != "" {
			cfg.Templates = append(cfg.Templates, t)
		}
	}
	switch c.ip {
	case "netstack":
		hosts, err := policy.ParsePrefixes(c.ipHosts)
		if err != nil {
			return nil, fmt.Errorf("-ip-hosts: %w", err)
		}
		var addrs []netip.Addr
		for _, h := range hosts {
			addrs = append(addrs, h.Addr())
			if c.ipReachable == "" {
				reach = append(reach, h)
			}
		}
		ns, err := packetio.NewNetstack(packetio.NetstackConfig{HostAddrs: addrs, MTU: c.ipMTU})
		if err != nil {
			return nil, fmt.Errorf("-ip netstack: %w", err)
		}
		cfg.Device = ns
	case "tun":
		tun, err := packetio.OpenTUN(c.ipTUN, c.ipMTU)
		if err != nil {
			return nil, fmt.Errorf("-ip tun: %w", err)
		}
		cfg.Device = tun
	}
	if len(reach) > 0 {
		cfg.Reachable = reach
	}
	return cfg, nil
}
