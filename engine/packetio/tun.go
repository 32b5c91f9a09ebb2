package packetio

// TUNStats are a TUN's counters since OpenTUN.
type TUNStats struct {
	Written      uint64 // packets the kernel accepted
	WriteErrors  uint64 // packets refused by WritePackets or the kernel
	Read         uint64 // packets returned by ReadPackets
	SegmentDrops uint64 // reads that lost segments to tun.ErrTooManySegments
	ReadErrors   uint64 // other read errors returned to the caller
}
