// Package e2e is masqroute's end-to-end benchmark: real QUIC connections on
// loopback, masqroute's proxy against a baseline proxy built on quic-go's
// stock http3.Server (package baseline) and against raw QUIC datagrams
// (package rawecho), all driven by the same load generator (package
// loadgen, also behind cmd/masqload).
//
// Start starts one implementation with a UDP echo target; Env.Run drives
// it. BenchmarkE2E and TestE2ESmoke (e2e_test.go) use them; `masqload
// -local` does too.
package e2e
