package template_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/masqroute/masqroute/engine/internal/template"
	"github.com/masqroute/masqroute/engine/policy"
)

// staticResolver answers every name with the same addresses.
type staticResolver []netip.Addr

func (r staticResolver) LookupNetIP(context.Context, string, string) ([]netip.Addr, error) {
	return r, nil
}

// Example shows a proxy's per-request pipeline: match, parse, resolve
// under the policy, and the status each failure answers.
func Example() {
	tm, err := template.Parse("https://{authority}/.well-known/masque/udp/{target_host}/{target_port}/",
		"target_host", "target_port")
	if err != nil {
		panic(err)
	}
	pol := policy.Default()
	r := staticResolver{netip.MustParseAddr("10.0.0.7"), netip.MustParseAddr("2001:db8::7")}

	target := func(host, requestURI string) (string, int) {
		vals, ok := tm.Match("https://" + host + requestURI)
		if !ok {
			return "no match", 404
		}
		t, err := template.ParseHostPort(vals["target_host"], vals["target_port"])
		if err != nil {
			return err.Error(), 400
		}
		var refusal error // the first address the policy refused, and why
		ap, err := template.Resolve(context.Background(), r, t, 5*time.Second, func(a netip.Addr) bool {
			err := pol.Check(netip.AddrPortFrom(a, t.Port))
			if refusal == nil {
				refusal = err
			}
			return err == nil
		})
		switch {
		case errors.Is(err, template.ErrNoAllowedAddress):
			return refusal.Error(), 403
		case err != nil:
			return err.Error(), 502
		}
		return ap.String(), 200
	}
	for _, uri := range []string{
		"/.well-known/masque/udp/example.com/443/",
		"/.well-known/masque/udp/0x7f.1/53/",
		"/.well-known/masque/udp/example.com/0/",
		"/.well-known/masque/udp/example.com/443/extra",
	} {
		fmt.Println(target("proxy.example:4433", uri))
	}
	// Output:
	// [2001:db8::7]:443 200
	// policy: target 127.0.0.1:53 refused: loopback 403
	// masqroute/template: bad target port: "0" 400
	// no match 404
}
