// Package metrics exposes a masqroute proxy's counters to Prometheus.
//
// NewCollector returns a prometheus.Collector that takes one
// engine.Proxy.Stats snapshot per scrape and turns it into the families
// below. Register it with a registry and serve that registry with promhttp:
//
//	reg := prometheus.NewRegistry()
//	reg.MustRegister(metrics.NewCollector(proxy))
//	http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
//
// The collector keeps no state besides a floor per counter series: a
// snapshot is read field by field while datagrams flow, so a counter summed
// over live and ended sessions can read a little high or low for an instant.
// A counter series is never reported lower than it was in an earlier scrape
// (Prometheus would take that for a restart).
//
// Two more collectors go beside it: NewBuildInfo (the build_info gauge,
// 1 with version, commit and goversion labels) and NewTunnelSetup (the
// tunnel_setup_duration_seconds histogram, by kind and result, fed by
// proxy.Hooks.TunnelSetup).
//
// # Metrics
//
// Connections:
//
//	masqroute_connections                       gauge    HTTP/3 connections open now
//	masqroute_connections_accepted_total        counter  connections accepted and served
//	masqroute_connections_rejected_total        counter  connections refused before the handshake (per Initial) or closed at once at the connection limit
//	masqroute_connections_refused_by_address_total{reason} counter  attempts refused before the handshake by client address: rate, concurrent, table_full
//	masqroute_retries_total                     counter  Retries asked for to verify a client address (under load)
//
// Tunnels:
//
//	masqroute_tunnels_active                    gauge    tunnels live now (being set up or open)
//	masqroute_tunnels_opened_total{kind}        counter  tunnel requests answered 2xx, by kind: "connect-udp", "connect-ip", ...
//	masqroute_tunnels_open{kind}                gauge    tunnels open now (answered 2xx), by kind
//	masqroute_tunnels_rejected_total{status,reason} counter requests refused, by HTTP status ("400" ... "503", "other")
//	                                                     and reason: "policy" (403), "dns", "dial" (502), "other"
//	masqroute_auth_refused_total{reason}        counter  authentication refusals: "token_missing", "token_malformed",
//	                                                     "token_invalid" (407), "cert_missing", "cert_invalid" (handshake failed)
//	masqroute_tunnels_idle_closed_total         counter  tunnels closed by the idle timeout
//
// Datagrams (UDP payloads of CONNECT-UDP, IP packets of CONNECT-IP,
// between clients and targets):
//
//	masqroute_datagrams_total{direction}        counter  datagrams carried: "to_target", "to_client"
//	masqroute_bytes_total{direction}            counter  their payload bytes
//	masqroute_capsule_datagrams_total           counter  client datagrams that came in DATAGRAM capsules
//	masqroute_datagrams_dropped_total{reason}   counter  datagrams dropped, by reason (below)
//	masqroute_target_unreachable_total          counter  ICMP errors reported by target sockets
//
// Drop reasons of masqroute_datagrams_dropped_total. Routers, before a
// datagram reaches its tunnel:
//
//	unknown_stream     no tunnel for its stream (after the hold queue, if any)
//	pending_overflow   tunnel still being set up and its pending buffer full
//	ring_full          tunnel's ring full: its session is behind
//	closed             tunnel ended with the datagram queued or in flight
//	held_refused       held for a stream whose tunnel then appeared, and refused by its ring on handover
//
// Tunnels:
//
//	malformed          client datagram without a parsable context ID
//	unknown_context    client datagram with a context ID other than 0
//	oversize           over the payload limit, or refused by the kernel as too large (both ways)
//	amplification      over the connection's byte budget toward targets (3× what the client sent + 64 KiB a second)
//	rate_limited       over the tunnel's or the connection's datagrams/s or bytes/s toward targets
//	send_error         the target socket failed to send it
//	return_oversize    reply too large for the client's QUIC datagrams
//	return_send_error  the QUIC connection refused the reply
//	return_queue_full  the connection's reply ring was full (a slow client; CONNECT-IP packets too)
//	return_stream_blocked  the HTTP/2 stream or HTTP/1.1 connection toward the client was backed up
//	return_closed      the connection ended with the reply still queued
//	teardown           discarded because its tunnel, or the proxy, was ending
//
// Connections:
//
//	capsule_error      malformed or oversize capsule (its stream is reset)
//	datagram_error     unparsable HTTP/3 datagram (its connection is closed)
//
// CONNECT-IP tunnels (IP packets; the tunnel reasons above apply too):
//
//	ip_source             client packet whose source is not the tunnel's address (answered with ICMP)
//	ip_scope              packet outside the tunnel's scope, or link-local (answered with ICMP)
//	ip_hop_limit          TTL / Hop Limit ran out at the proxy (answered with Time Exceeded)
//	ip_no_tunnel          packet from the network for an address no tunnel has (answered with ICMP)
//	ip_return_closed      packet from the network for a tunnel that was closing
//	ip_network_malformed  packet from the network that did not parse
//
// CONNECT-IP:
//
//	masqroute_ip_packets_from_network_total     counter  packets read from the network device
//	masqroute_icmp_sent_total{direction}        counter  ICMP errors the proxy made: "to_client", "to_network"
//	masqroute_ip_address_requests_total         counter  ADDRESS_REQUEST capsules answered
//	masqroute_ip_mtu_aborts_total               counter  tunnels aborted: no room for 1280-byte packets
//	masqroute_ip_addresses_in_use               gauge    client addresses assigned now
//
// CONNECT (TCP):
//
//	masqroute_tcp_tunnels_active                gauge    tunnels open now
//	masqroute_tcp_tunnels_opened_total          counter  requests answered with 200
//	masqroute_tcp_bytes_total{direction}        counter  bytes carried: "to_target", "to_client"
//	masqroute_tcp_half_closes_total{from}       counter  half-closes passed on: "client", "target"
//	masqroute_tcp_tunnels_aborted_total         counter  tunnels ended by a reset or an I/O error
//
// Connect-UDP-Bind (its datagrams and bytes count in datagrams_total and
// bytes_total with CONNECT-UDP's):
//
//	masqroute_bind_tunnels_active               gauge    bound tunnels open now
//	masqroute_bind_tunnels_opened_total         counter  tunnels started (bound sockets opened)
//	masqroute_bind_assigns_total{answer}        counter  COMPRESSION_ASSIGN: "accepted", "rejected"
//	masqroute_bind_closes_total                 counter  COMPRESSION_CLOSE from clients
//	masqroute_bind_drops_total{reason}          counter  "policy", "no_context", "firewall"
//
// Routers (one per HTTP/3 connection, summed over all of them, ended ones
// included):
//
//	masqroute_router_dispatched_total           counter  datagrams handed to a router
//	masqroute_router_delivered_total            counter  datagrams a router delivered to its session
//	masqroute_router_queued                     gauge    datagrams in session rings now
//	masqroute_router_held                       gauge    datagrams in hold queues now
//	masqroute_router_queue_delay_seconds        histogram time a datagram waited in its session's ring before its
//	                                                      turn on a worker; sampled (1 in max(64, 2 x ring size) per tunnel)
//	masqroute_router_held_total                 counter  datagrams that entered a hold queue (arrived before their request)
//	masqroute_router_held_delivered_total       counter  held datagrams that reached their session
//	masqroute_router_sessions{state}            gauge    sessions now: "pending", "active"
//	masqroute_router_sessions_started_total     counter  session starts admitted
//	masqroute_router_sessions_registered_total  counter  sessions registered directly
//	masqroute_router_sessions_activated_total   counter  session inits that succeeded
//	masqroute_router_sessions_failed_total      counter  session inits that failed (error, panic, timeout)
//	masqroute_router_sessions_cancelled_total   counter  pending sessions cancelled
//	masqroute_router_sessions_closed_total      counter  active sessions ended
//	masqroute_router_sessions_rejected_total{reason} counter  starts refused: "limit", "exists", "kind"
//
// Every datagram a router was handed ends in exactly one of delivered,
// queued, held or a router drop reason.
//
// Data path: the work behind each datagram, counted rather than timed.
// Divide by datagrams (masqroute_router_dispatched_total, or round trips)
// for per-datagram costs, and datagrams by batches or system calls for
// batch sizes. The socket and poller series are the process's (one proxy
// per daemon); they count the Linux data path and stay at 0 elsewhere.
//
//	masqroute_datapath_workers                  gauge    executor worker goroutines
//	masqroute_datapath_worker_tunnels_placed_total{worker} counter  tunnels placed on each worker (round-robin, or by QUIC transport)
//	masqroute_datapath_wakeups_total{goroutine} counter  parked goroutines woken: "worker", "sender", "poller"
//	masqroute_datapath_batches_total{goroutine} counter  batches run: worker (a session's turn), sender, poller (a socket's read turn)
//	masqroute_datapath_batched_datagrams_total{goroutine} counter  datagrams in them: "worker", "sender"
//	masqroute_datapath_sender_queue_full_total  counter  replies dropped: the connection's outbound queue was full
//	masqroute_datapath_poller_events_total      counter  readiness events the pollers collected
//	masqroute_datapath_poller_requeues_total    counter  poller read turns that filled their batch
//	masqroute_datapath_syscalls_total{direction} counter system calls on target sockets: "to_target", "from_target"; on batched QUIC sockets: "to_client"
//	masqroute_datapath_datagrams_total{direction} counter datagrams they carried, same directions (to_client: QUIC packets queued)
//	masqroute_datapath_empty_reads_total        counter  target-socket reads that found nothing (EAGAIN)
//	masqroute_datapath_gso_sends_total          counter  UDP GSO sends (two or more datagrams in one message)
//	masqroute_datapath_gso_datagrams_total      counter  datagrams in them
//	masqroute_datapath_gso_refusals_total       counter  GSO sends the kernel refused (resent without GSO)
//	masqroute_datapath_gso_disabled             gauge    1 once GSO is off for every socket
//	masqroute_datapath_client_flushes_total     counter  queues of QUIC packets a batched QUIC socket's flusher sent
//	masqroute_datapath_client_gso_sends_total   counter  sends toward clients carrying two or more QUIC packets (UDP GSO)
//	masqroute_datapath_client_gso_packets_total counter  QUIC packets in them
//	masqroute_datapath_client_send_drops_total  counter  QUIC packets the kernel refused (lost, to quic-go)
//	masqroute_datapath_client_gso_refusals_total counter GSO sends toward clients refused (that socket then sends without GSO)
//
// The sender series read 0 until the per-connection outbound sender
// fills them.
package metrics
