package e2e_test

import (
	"os"
	"strconv"
	"strings"
)

// udpRcvbufErrors is the machine's count of UDP datagrams the kernel
// dropped because a socket's receive buffer was full (RcvbufErrors in
// /proc/net/snmp, every socket of every process), or -1 where it cannot be
// read.
func udpRcvbufErrors() int64 {
	b, err := os.ReadFile("/proc/net/snmp")
	if err != nil {
		return -1
	}
	var names []string
	for line := range strings.SplitSeq(string(b), "\n") {
		rest, ok := strings.CutPrefix(line, "Udp: ")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if names == nil {
			names = f
			continue
		}
		for i, n := range names {
			if n == "RcvbufErrors" && i < len(f) {
				v, err := strconv.ParseInt(f[i], 10, 64)
				if err == nil {
					return v
				}
			}
		}
	}
	return -1
}
