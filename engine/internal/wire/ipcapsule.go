package wire

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/quic-go/quic-go/quicvarint"
)

// CONNECT-IP capsule values (RFC 9484 §4.7). The capsule framing (type,
// length) is CapsuleReader's and AppendCapsule's; the functions here parse
// and encode the value only:
//
//	Assigned Address / Requested Address {   // §4.7.1, §4.7.2
//	  Request ID (i),
//	  IP Version (8),                        // 4 or 6
//	  IP Address (32..128),
//	  IP Prefix Length (8),                  // host bits beyond it are 0
//	}
//
//	IP Address Range {                       // §4.7.3
//	  IP Version (8),
//	  Start IP Address (32..128),
//	  End IP Address (32..128),              // inclusive, Start <= End
//	  IP Protocol (8),                       // 0: all protocols
//	}
//
// A capsule value is a sequence of these, back to back, with no count: an
// entry cut by the end of the value is malformed. Values are bounded by the
// CapsuleReader (DefaultMaxCapsuleValue), so parsing is bounded too.

// ErrMalformedIPCapsule: an ADDRESS_ASSIGN, ADDRESS_REQUEST or
// ROUTE_ADVERTISEMENT capsule value breaks RFC 9484 §4.7. The returned error
// wraps it with the rule that was broken and the index of the entry. The
// caller aborts the request stream: RFC 9484 §4.7.1–§4.7.3 send malformed
// capsules to the error handling of RFC 9297 §3.3 (reset the stream with
// H3_MESSAGE_ERROR), and ask for the stream to be aborted on an empty
// ADDRESS_REQUEST and on misordered or overlapping routes.
var ErrMalformedIPCapsule = errors.New("wire: malformed CONNECT-IP capsule")

// AssignedAddress is one entry of an ADDRESS_ASSIGN capsule (RFC 9484
// §4.7.1): the receiver may use any address in Prefix as a source address.
type AssignedAddress struct {
	// RequestID is the Request ID of the RequestedAddress this answers, or 0
	// for an unsolicited assignment.
	RequestID uint64
	// Prefix has no host bits set. A refused request is answered with the
	// all-zero address and the full length: 0.0.0.0/32 or ::/128.
	Prefix netip.Prefix
}

// RequestedAddress is one entry of an ADDRESS_REQUEST capsule (RFC 9484
// §4.7.2).
type RequestedAddress struct {
	// RequestID is never 0, and an endpoint never reuses one; that a peer
	// does not reuse IDs across capsules is for the caller to check.
	RequestID uint64
	// Prefix has no host bits set. An all-zero address (0.0.0.0 or ::)
	// asks for any address of that family, with a prefix of that length.
	Prefix netip.Prefix
}

// IPRoute is one IP Address Range of a ROUTE_ADVERTISEMENT capsule (RFC 9484
// §4.7.3): the sender forwards packets to [Start, End] of protocol Protocol.
type IPRoute struct {
	// Start and End are of the same family, without zone, Start <= End.
	Start, End netip.Addr
	// Protocol is the IP protocol number allowed; 0 allows all protocols.
	// ICMP is always allowed, whatever Protocol says.
	Protocol uint8
}

// Entry sizes: an address entry is a 1..8-byte Request ID, the version, the
// address and the prefix length; a range is the version, two addresses and
// the protocol.
const (
	minAddressEntryLen = 1 + 1 + 4 + 1
	routeEntryLen4     = 1 + 4 + 4 + 1
	routeEntryLen6     = 1 + 16 + 16 + 1
)

// ParseAddressAssign parses the value of an ADDRESS_ASSIGN capsule (RFC 9484
// §4.7.1). An empty value is valid (every address was removed) and gives an
// empty result. Errors wrap ErrMalformedIPCapsule. It allocates the result
// only, once, at its exact size.
func ParseAddressAssign(value []byte) ([]AssignedAddress, error) {
	n, err := countAddresses(value, false)
	if err != nil || n == 0 {
		return nil, err
	}
	out := make([]AssignedAddress, n)
	for i := range out {
		var m int
		out[i].RequestID, out[i].Prefix, m, _ = readAddress(value)
		value = value[m:]
	}
	return out, nil
}

// ParseAddressRequest parses the value of an ADDRESS_REQUEST capsule (RFC
// 9484 §4.7.2). Beyond the rules of ParseAddressAssign, a Request ID of zero
// and an empty capsule are malformed. Duplicate Request IDs are not checked.
func ParseAddressRequest(value []byte) ([]RequestedAddress, error) {
	n, err := countAddresses(value, true)
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, fmt.Errorf("%w: ADDRESS_REQUEST without a Requested Address", ErrMalformedIPCapsule)
	}
	out := make([]RequestedAddress, n)
	for i := range out {
		var m int
		out[i].RequestID, out[i].Prefix, m, _ = readAddress(value)
		value = value[m:]
	}
	return out, nil
}

// AppendAddressAssign appends the value of an ADDRESS_ASSIGN capsule holding
// addrs to b; frame it with AppendCapsule(…, CapsuleAddressAssign, …). It
// panics if an entry could not be parsed back: a Request ID above 2^62-1, an
// invalid Prefix or one with host bits set.
func AppendAddressAssign(b []byte, addrs []AssignedAddress) []byte {
	for _, a := range addrs {
		b = appendAddress(b, a.RequestID, a.Prefix)
	}
	return b
}

// AppendAddressRequest appends the value of an ADDRESS_REQUEST capsule
// holding addrs to b. It panics as AppendAddressAssign does, and also on an
// empty addrs or a zero Request ID, which the peer would reject.
func AppendAddressRequest(b []byte, addrs []RequestedAddress) []byte {
	if len(addrs) == 0 {
		panic("wire: ADDRESS_REQUEST without a Requested Address")
	}
	for _, a := range addrs {
		if a.RequestID == 0 {
			panic("wire: ADDRESS_REQUEST with Request ID 0")
		}
		b = appendAddress(b, a.RequestID, a.Prefix)
	}
	return b
}

// countAddresses validates every address entry of value and counts them.
func countAddresses(value []byte, request bool) (int, error) {
	n := 0
	for len(value) > 0 {
		id, _, m, err := readAddress(value)
		if err != nil {
			return 0, fmt.Errorf("%w: address %d: %s", ErrMalformedIPCapsule, n, err)
		}
		if request && id == 0 {
			return 0, fmt.Errorf("%w: address %d: Request ID 0", ErrMalformedIPCapsule, n)
		}
		value = value[m:]
		n++
	}
	return n, nil
}

// Reasons for a malformed entry; countAddresses and countRoutes wrap them in
// ErrMalformedIPCapsule with the entry's index.
var (
	errEntryTruncated = errors.New("truncated")
	errEntryVersion   = errors.New("IP Version not 4 or 6")
	errEntryPrefixLen = errors.New("prefix length above the address length")
	errEntryHostBits  = errors.New("address bits set beyond the prefix length")
	errEntryRange     = errors.New("Start IP Address above End IP Address")
)

// readAddress decodes the address entry at the start of b and returns its
// length. It checks every rule of RFC 9484 §4.7.1 that a single entry can
// break.
func readAddress(b []byte) (id uint64, p netip.Prefix, n int, err error) {
	if len(b) < minAddressEntryLen {
		return 0, netip.Prefix{}, 0, errEntryTruncated
	}
	id, n, err = quicvarint.Parse(b)
	if err != nil {
		return 0, netip.Prefix{}, 0, errEntryTruncated
	}
	addr, m, err := readAddr(b[n:], 1)
	if err != nil {
		return 0, netip.Prefix{}, 0, err
	}
	n += m
	if n >= len(b) {
		return 0, netip.Prefix{}, 0, errEntryTruncated
	}
	bits := int(b[n])
	n++
	if bits > addr.BitLen() {
		return 0, netip.Prefix{}, 0, errEntryPrefixLen
	}
	p = netip.PrefixFrom(addr, bits)
	if p.Masked() != p {
		return 0, netip.Prefix{}, 0, errEntryHostBits
	}
	return id, p, n, nil
}

// readAddr decodes an IP Version byte followed by count addresses of that
// version, and returns the first and the number of bytes read.
func readAddr(b []byte, count int) (netip.Addr, int, error) {
	if len(b) == 0 {
		return netip.Addr{}, 0, errEntryTruncated
	}
	var size int
	switch b[0] {
	case 4:
		size = 4
	case 6:
		size = 16
	default:
		return netip.Addr{}, 0, errEntryVersion
	}
	n := 1 + count*size
	if len(b) < n {
		return netip.Addr{}, 0, errEntryTruncated
	}
	addr, _ := netip.AddrFromSlice(b[1 : 1+size])
	return addr, n, nil
}

func appendAddress(b []byte, id uint64, p netip.Prefix) []byte {
	if !p.IsValid() || p.Masked() != p {
		panic(fmt.Sprintf("wire: cannot encode address prefix %v", p))
	}
	b = quicvarint.Append(b, id)
	b = appendVersionAddr(b, p.Addr())
	return append(b, byte(p.Bits()))
}

// appendVersionAddr appends the IP Version of a and a itself.
func appendVersionAddr(b []byte, a netip.Addr) []byte {
	if a.Is4() {
		a4 := a.As4()
		return append(append(b, 4), a4[:]...)
	}
	a16 := a.As16()
	return append(append(b, 6), a16[:]...)
}

// ParseRouteAdvertisement parses the value of a ROUTE_ADVERTISEMENT capsule
// (RFC 9484 §4.7.3) and checks the order of its ranges (see
// ValidateRoutes). An empty value is valid (every route was withdrawn) and
// gives an empty result. Errors wrap ErrMalformedIPCapsule. It allocates the
// result only, once, at its exact size.
func ParseRouteAdvertisement(value []byte) ([]IPRoute, error) {
	n, err := countRoutes(value)
	if err != nil || n == 0 {
		return nil, err
	}
	out := make([]IPRoute, n)
	for i := range out {
		var m int
		out[i], m, _ = readRoute(value)
		value = value[m:]
	}
	if err := ValidateRoutes(out); err != nil {
		return nil, err
	}
	return out, nil
}

// AppendRouteAdvertisement appends the value of a ROUTE_ADVERTISEMENT
// capsule holding routes to b; frame it with AppendCapsule(…,
// CapsuleRouteAdvertisement, …). It panics if ValidateRoutes(routes) fails:
// RFC 9484 §4.7.3 forbids sending such a list, and the peer would abort the
// stream. Callers that take routes from configuration check them with
// ValidateRoutes first.
func AppendRouteAdvertisement(b []byte, routes []IPRoute) []byte {
	if err := ValidateRoutes(routes); err != nil {
		panic(err)
	}
	for _, r := range routes {
		b = appendVersionAddr(b, r.Start)
		if r.End.Is4() {
			a4 := r.End.As4()
			b = append(b, a4[:]...)
		} else {
			a16 := r.End.As16()
			b = append(b, a16[:]...)
		}
		b = append(b, r.Protocol)
	}
	return b
}

func countRoutes(value []byte) (int, error) {
	n := 0
	for len(value) > 0 {
		_, m, err := readRoute(value)
		if err != nil {
			return 0, fmt.Errorf("%w: range %d: %s", ErrMalformedIPCapsule, n, err)
		}
		value = value[m:]
		n++
	}
	return n, nil
}

// readRoute decodes the IP Address Range at the start of b and returns its
// length. It checks the rules a single range can break; ValidateRoutes
// checks those between ranges.
func readRoute(b []byte) (IPRoute, int, error) {
	start, n, err := readAddr(b, 2)
	if err != nil {
		return IPRoute{}, 0, err
	}
	if n >= len(b) {
		return IPRoute{}, 0, errEntryTruncated
	}
	end, _ := netip.AddrFromSlice(b[1+(n-1)/2 : n])
	if start.Compare(end) > 0 {
		return IPRoute{}, 0, errEntryRange
	}
	return IPRoute{Start: start, End: end, Protocol: b[n]}, n + 1, nil
}

// ValidateRoutes checks routes against RFC 9484 §4.7.3. Each range must have
// valid Start and End of the same family, without zone, with Start <= End.
// If range A precedes range B:
//
//  1. the IP Version of A is at most that of B;
//  2. if the versions are equal, the IP Protocol of A is at most that of B;
//  3. if versions and protocols are equal, A's End is strictly below B's
//     Start (so ranges of one protocol are sorted and disjoint).
//
// It also checks what §4.7.3 makes optional to validate but mandatory to
// reject once detected: a range of a specific protocol must not overlap a
// range of protocol 0 (all protocols) of the same family.
//
// The rules are stated on all pairs, but checking neighbours suffices for
// 1–3 (each is a lexicographic order on (version, protocol, address)). For
// the overlap rule, rule 2 puts the protocol-0 ranges of each family first,
// sorted and disjoint, so each specific range is checked against the one
// protocol-0 range that could overlap it, found by binary search:
// O(n log n). Errors wrap ErrMalformedIPCapsule. It does not allocate
// unless it fails.
func ValidateRoutes(routes []IPRoute) error {
	for i, r := range routes {
		switch {
		case !r.Start.IsValid() || !r.End.IsValid() || r.Start.Is4() != r.End.Is4():
			return fmt.Errorf("%w: range %d: invalid addresses %v-%v", ErrMalformedIPCapsule, i, r.Start, r.End)
		case r.Start.Zone() != "" || r.End.Zone() != "":
			return fmt.Errorf("%w: range %d: address with a zone", ErrMalformedIPCapsule, i)
		case r.Start.Compare(r.End) > 0:
			return fmt.Errorf("%w: range %d: %s", ErrMalformedIPCapsule, i, errEntryRange)
		}
		if i == 0 {
			continue
		}
		p := routes[i-1]
		switch {
		case p.Start.BitLen() > r.Start.BitLen():
			return fmt.Errorf("%w: range %d: IPv6 range before an IPv4 range", ErrMalformedIPCapsule, i)
		case p.Start.BitLen() < r.Start.BitLen():
		case p.Protocol > r.Protocol:
			return fmt.Errorf("%w: range %d: IP Protocol %d after %d", ErrMalformedIPCapsule, i, r.Protocol, p.Protocol)
		case p.Protocol == r.Protocol && p.End.Compare(r.Start) >= 0:
			return fmt.Errorf("%w: range %d: overlaps or precedes range %d of the same protocol", ErrMalformedIPCapsule, i, i-1)
		}
	}
	// The list is now sorted by (family, protocol, start). Check each
	// family's specific ranges against its protocol-0 ranges.
	for base := 0; base < len(routes); {
		end := base
		for end < len(routes) && routes[end].Start.BitLen() == routes[base].Start.BitLen() {
			end++
		}
		fam := routes[base:end]
		k := 0
		for k < len(fam) && fam[k].Protocol == 0 {
			k++
		}
		all := fam[:k]
		for j, r := range fam[k:] {
			// First protocol-0 range that does not end before r starts; it
			// overlaps r unless it starts after r ends. Later ones start
			// later still.
			a, z := 0, len(all)
			for a < z {
				mid := int(uint(a+z) >> 1)
				if all[mid].End.Compare(r.Start) < 0 {
					a = mid + 1
				} else {
					z = mid
				}
			}
			if a < len(all) && all[a].Start.Compare(r.End) <= 0 {
				return fmt.Errorf("%w: range %d (protocol %d) overlaps range %d (all protocols)",
					ErrMalformedIPCapsule, base+k+j, r.Protocol, base+a)
			}
		}
		base = end
	}
	return nil
}
