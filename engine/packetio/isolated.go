package packetio

// IsolatedDevice is implemented by a Device whose network is a world of its own,
// with no way into the host the proxy runs on: Netstack and Responder. A
// CONNECT-IP proxy refuses the host's own addresses as destinations on
// every Device that does not implement it (a TUN interface leads into the
// host's routing table, where the host's addresses are local), so a
// Device of one's own is treated as leading into the host unless it says
// otherwise.
type IsolatedDevice interface {
	Device
	// Isolated reports whether the device's network is apart from the
	// host's.
	Isolated() bool
}

// Isolated reports true: the userspace network holds only its own hosts.
func (n *Netstack) Isolated() bool { return true }

// Isolated reports true: the responder answers for its own addresses and
// drops everything else.
func (r *Responder) Isolated() bool { return true }
