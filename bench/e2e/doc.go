// Package e2e is masqroute's end-to-end benchmark: real QUIC connections on
// loopback, masqroute's proxy against a baseline proxy built on quic-go's
// stock http3.Server (package baseline) and against raw QUIC datagrams
// (package rawecho), all driven by the same load generator (package
// loadgen, also behind cmd/masqload).
//
// Start starts one implementation with a UDP echo target in this process;
// StartProcess starts the server in a process of its own (ChildMain, the
// re-executed test binary), pinned to a CPU, and reads its CPU time,
// context switches, syscalls and data-path counters (Process). Env.Run
// drives either. BenchmarkE2E (e2e_test.go) uses StartProcess; TestE2ESmoke
// and `masqload -local` use Start.
package e2e
