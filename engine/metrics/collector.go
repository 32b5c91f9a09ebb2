package metrics

import (
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/masqroute/masqroute/engine/proxy"
)

const namespace = "masqroute"

// emitFunc reports one series of a family: its value and its label values,
// in the order of the family's label names.
type emitFunc func(value float64, labelValues ...string)

// A family is one metric name and how its series are read from a snapshot.
type family struct {
	desc *prometheus.Desc
	typ  prometheus.ValueType
	read func(st *proxy.Stats, emit emitFunc)
}

// collector is the Collector NewCollector returns.
type collector struct {
	p        *proxy.Proxy
	families []family

	mu    sync.Mutex // serializes Collect; guards floor
	floor counterFloor
}

// NewCollector returns a Collector of p's counters (see the package doc for
// the metric names). Each scrape takes one p.Stats snapshot.
func NewCollector(p *proxy.Proxy) prometheus.Collector {
	return &collector{p: p, families: families(), floor: make(counterFloor)}
}

// Describe sends the descriptors of every family.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, f := range c.families {
		ch <- f.desc
	}
	ch <- queueDelayDesc
}

// Collect takes one snapshot of the proxy's counters and sends every series.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	st := c.p.Stats()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, f := range c.families {
		f.read(&st, func(v float64, lvs ...string) {
			if f.typ == prometheus.CounterValue {
				v = c.floor.raise(f.desc, lvs, v)
			}
			ch <- prometheus.MustNewConstMetric(f.desc, f.typ, v, lvs...)
		})
	}
	ch <- queueDelayHistogram(&st.DataPath.QueueDelay)
}

// counterFloor remembers the highest value reported for each counter series,
// so that a snapshot read while sessions end never makes a counter go back.
type counterFloor map[string]float64

// raise returns max(v, the series' floor) and records it as the new floor.
func (fl counterFloor) raise(d *prometheus.Desc, labelValues []string, v float64) float64 {
	key := d.String() + "\xff" + strings.Join(labelValues, "\xff")
	if old, ok := fl[key]; ok && old > v {
		return old
	}
	fl[key] = v
	return v
}

func newDesc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(namespace+"_"+name, help, labels, nil)
}

// scalar is a family with one unlabelled series.
func scalar(typ prometheus.ValueType, name, help string, get func(*proxy.Stats) float64) family {
	return family{
		desc: newDesc(name, help),
		typ:  typ,
		read: func(st *proxy.Stats, emit emitFunc) { emit(get(st)) },
	}
}

func counter(name, help string, get func(*proxy.Stats) uint64) family {
	return scalar(prometheus.CounterValue, name, help, func(st *proxy.Stats) float64 { return float64(get(st)) })
}

func gauge(name, help string, get func(*proxy.Stats) float64) family {
	return scalar(prometheus.GaugeValue, name, help, get)
}

// labelled is a family with one label whose values are fixed.
type labelled struct {
	value string
	get   func(*proxy.Stats) uint64
}

func vector(typ prometheus.ValueType, name, help, label string, series ...labelled) family {
	return family{
		desc: newDesc(name, help, label),
		typ:  typ,
		read: func(st *proxy.Stats, emit emitFunc) {
			for _, s := range series {
				emit(float64(s.get(st)), s.value)
			}
		},
	}
}

// refusalStatuses are the HTTP statuses the proxy refuses tunnels with
// (design.md, "Bad input"); each gets a series from the start, at 0, so
// that rates over them work before the first refusal. Others appear when
// they happen.
var refusalStatuses = []int{400, 401, 403, 404, 405, 407, 500, 501, 502, 503}

// rejectedByStatus reads proxy.Stats.Rejected as series labelled status
// and reason: the known statuses always, then any other in ascending order,
// status 0 as "other". 403 splits into reason "policy" (the target policy)
// and "other", 502 into "dns", "dial" and "other"; every other status has
// reason "other" only. A part is read after the total, so the remainder is
// clamped at 0 rather than go negative for an instant.
func rejectedByStatus(st *proxy.Stats, emit emitFunc) {
	one := func(s int, label string) {
		total := st.Rejected[s]
		switch s {
		case 403:
			emit(float64(st.RefusedPolicy), label, "policy")
			total = sub(total, st.RefusedPolicy)
		case 502:
			emit(float64(st.FailedDNS), label, "dns")
			emit(float64(st.FailedDial), label, "dial")
			total = sub(total, st.FailedDNS+st.FailedDial)
		}
		emit(float64(total), label, "other")
	}
	for _, s := range refusalStatuses {
		one(s, strconv.Itoa(s))
	}
	extra := make([]int, 0, len(st.Rejected))
	for s := range st.Rejected {
		if s != 0 && !isRefusalStatus(s) {
			extra = append(extra, s)
		}
	}
	sort.Ints(extra)
	for _, s := range extra {
		one(s, strconv.Itoa(s))
	}
	one(0, "other")
}

// sub is a - b, or 0 when b is larger.
func sub(a, b uint64) uint64 {
	if b > a {
		return 0
	}
	return a - b
}

func isRefusalStatus(s int) bool {
	for _, r := range refusalStatuses {
		if r == s {
			return true
		}
	}
	return false
}

// families lists every metric, in the order of the package doc.
func families() []family {
	type st = proxy.Stats
	return append([]family{
		// Connections.
		gauge("connections", "HTTP/3 connections open now.",
			func(s *st) float64 { return float64(s.Conns) }),
		counter("connections_accepted_total", "HTTP/3 connections accepted and served.",
			func(s *st) uint64 { return s.ConnsAccepted }),
		counter("connections_rejected_total", "Connections refused (before the handshake, on the daemon's transports; one per Initial handled) or closed at once because the connection limit was reached.",
			func(s *st) uint64 { return s.ConnsRejected }),
		vector(prometheus.CounterValue, "connections_refused_by_address_total",
			"Connection attempts refused before the handshake by client address: rate (new connections/s), "+
				"concurrent (connections open), table_full (too many client addresses).", "reason",
			labelled{"rate", func(s *st) uint64 { return s.AddrRefusedRate }},
			labelled{"concurrent", func(s *st) uint64 { return s.AddrRefusedConcurrent }},
			labelled{"table_full", func(s *st) uint64 { return s.AddrRefusedTableFull }}),
		counter("retries_total", "Retry packets asked for to verify a client address before its handshake (under load).",
			func(s *st) uint64 { return s.AddrRetries }),

		// Tunnels.
		gauge("tunnels_active", "Tunnels live now, being set up or open.",
			func(s *st) float64 { return float64(s.Tunnels) }),
		{
			desc: newDesc("tunnels_opened_total", "Tunnel requests answered with a 2xx status, by kind (the request's :protocol).", "kind"),
			typ:  prometheus.CounterValue,
			read: func(s *st, emit emitFunc) {
				for _, kind := range sortedKeys(s.OpenedByProtocol) {
					emit(float64(s.OpenedByProtocol[kind]), kind)
				}
			},
		},
		{
			desc: newDesc("tunnels_rejected_total",
				"Requests the proxy refused, by HTTP status and reason: policy (403, target forbidden), dns (502, the name did not resolve in time), "+
					"dial (502, no socket to the target), other (every other refusal; status other: a status outside the usual refusals).",
				"status", "reason"),
			typ:  prometheus.CounterValue,
			read: rejectedByStatus,
		},
		{
			desc: newDesc("auth_refused_total",
				"Authentication refusals, by reason: token_missing, token_malformed, token_invalid (407), cert_missing, cert_invalid (TLS handshake failed).", "reason"),
			typ: prometheus.CounterValue,
			read: func(s *st, emit emitFunc) {
				for _, r := range sortedKeys(s.AuthRefused) {
					emit(float64(s.AuthRefused[r]), r)
				}
			},
		},
		counter("tunnels_idle_closed_total", "Tunnels closed by the idle timeout.",
			func(s *st) uint64 { return s.IdleClosed }),
		{
			desc: newDesc("tunnels_open", "Tunnels open now (answered 2xx and not yet ended), by kind (the request's :protocol).", "kind"),
			typ:  prometheus.GaugeValue,
			read: func(s *st, emit emitFunc) {
				for _, kind := range sortedKeys(s.TunnelsByProtocol) {
					emit(float64(s.TunnelsByProtocol[kind]), kind)
				}
			},
		},

		// Datagrams.
		vector(prometheus.CounterValue, "datagrams_total",
			"Datagrams carried, CONNECT-UDP payloads and CONNECT-IP packets alike: to_target written to targets (or the CONNECT-IP network), "+
				"to_client sent back to clients.", "direction",
			labelled{"to_target", func(s *st) uint64 { return s.ToTarget }},
			labelled{"to_client", func(s *st) uint64 { return s.ToClient }}),
		vector(prometheus.CounterValue, "bytes_total",
			"Bytes of those datagrams (UDP payloads, whole IP packets for CONNECT-IP), by direction (to_target, to_client).", "direction",
			labelled{"to_target", func(s *st) uint64 { return s.ToTargetBytes }},
			labelled{"to_client", func(s *st) uint64 { return s.ToClientBytes }}),
		counter("capsule_datagrams_total",
			"Client datagrams that arrived in DATAGRAM capsules on the request stream instead of QUIC datagrams.",
			func(s *st) uint64 { return s.CapsuleDatagrams }),
		vector(prometheus.CounterValue, "datagrams_dropped_total",
			"Datagrams dropped, by reason: router (unknown_stream, pending_overflow, ring_full, closed, held_refused), "+
				"tunnel (malformed, unknown_context, oversize, amplification, rate_limited, send_error, return_oversize, return_send_error, "+
				"return_queue_full, return_stream_blocked, return_closed, teardown), "+
				"connection (capsule_error, datagram_error).", "reason",
			labelled{"unknown_stream", func(s *st) uint64 { return s.Router.DroppedUnknown }},
			labelled{"pending_overflow", func(s *st) uint64 { return s.Router.DroppedPendingOverflow }},
			labelled{"ring_full", func(s *st) uint64 { return s.Router.DroppedRingFull }},
			labelled{"closed", func(s *st) uint64 { return s.Router.DroppedClosed }},
			labelled{"held_refused", func(s *st) uint64 { return s.Router.DroppedHeldRefused }},
			labelled{"malformed", func(s *st) uint64 { return s.DropMalformed }},
			labelled{"unknown_context", func(s *st) uint64 { return s.DropUnknownContext }},
			labelled{"oversize", func(s *st) uint64 { return s.DropOversize }},
			labelled{"amplification", func(s *st) uint64 { return s.DropAmplification }},
			labelled{"rate_limited", func(s *st) uint64 { return s.DropRateLimited }},
			labelled{"send_error", func(s *st) uint64 { return s.DropSendError }},
			labelled{"return_oversize", func(s *st) uint64 { return s.DropReturnOversize }},
			labelled{"return_send_error", func(s *st) uint64 { return s.DropReturnSendError }},
			labelled{"return_queue_full", func(s *st) uint64 { return s.DropReturnQueueFull }},
			labelled{"return_stream_blocked", func(s *st) uint64 { return s.DropReturnBlocked }},
			labelled{"return_closed", func(s *st) uint64 { return s.DropReturnClosed }},
			labelled{"teardown", func(s *st) uint64 { return s.DropTeardown }},
			labelled{"capsule_error", func(s *st) uint64 { return s.CapsuleErrors }},
			labelled{"datagram_error", func(s *st) uint64 { return s.DatagramErrors }},
			labelled{"ip_source", func(s *st) uint64 { return s.DropSource }},
			labelled{"ip_scope", func(s *st) uint64 { return s.DropScope }},
			labelled{"ip_hop_limit", func(s *st) uint64 { return s.DropHopLimit }},
			labelled{"ip_no_tunnel", func(s *st) uint64 { return s.IPNoTunnel }},
			labelled{"ip_return_closed", func(s *st) uint64 { return s.IPReturnClosed }},
			labelled{"ip_network_malformed", func(s *st) uint64 { return s.IPNetworkMalformed }}),
		counter("target_unreachable_total",
			"ICMP errors (host or port unreachable) reported by target sockets.",
			func(s *st) uint64 { return s.TargetUnreachable }),

		// CONNECT-IP.
		counter("ip_packets_from_network_total", "Packets read from the CONNECT-IP network device.",
			func(s *st) uint64 { return s.IPFromNetwork }),
		vector(prometheus.CounterValue, "icmp_sent_total",
			"ICMP errors the proxy generated, by direction: to_client (into a tunnel), to_network.", "direction",
			labelled{"to_client", func(s *st) uint64 { return s.ICMPToClient }},
			labelled{"to_network", func(s *st) uint64 { return s.ICMPToNetwork }}),
		counter("ip_address_requests_total", "ADDRESS_REQUEST capsules answered.",
			func(s *st) uint64 { return s.IPAddressRequests }),
		counter("ip_mtu_aborts_total", "CONNECT-IP tunnels aborted because the connection cannot carry 1280-byte packets.",
			func(s *st) uint64 { return s.IPMTUAborts }),
		gauge("ip_addresses_in_use", "Client addresses assigned to CONNECT-IP tunnels now.",
			func(s *st) float64 { return float64(s.IPAddressesInUse) }),

		// CONNECT (TCP).
		gauge("tcp_tunnels_active", "CONNECT (TCP) tunnels open now.",
			func(s *st) float64 { return float64(s.TCP.Live) }),
		counter("tcp_tunnels_opened_total", "CONNECT (TCP) requests answered with 200.",
			func(s *st) uint64 { return s.TCP.Opened }),
		vector(prometheus.CounterValue, "tcp_bytes_total",
			"Bytes carried by CONNECT (TCP) tunnels, by direction: to_target, to_client.", "direction",
			labelled{"to_target", func(s *st) uint64 { return s.TCP.ToTargetBytes }},
			labelled{"to_client", func(s *st) uint64 { return s.TCP.ToClientBytes }}),
		vector(prometheus.CounterValue, "tcp_half_closes_total",
			"Half-closes passed through CONNECT (TCP) tunnels, by the side that closed: client (a TCP FIN to the target), "+
				"target (a stream FIN to the client).", "from",
			labelled{"client", func(s *st) uint64 { return s.TCP.ClientFIN }},
			labelled{"target", func(s *st) uint64 { return s.TCP.TargetFIN }}),
		counter("tcp_tunnels_aborted_total", "CONNECT (TCP) tunnels ended by a reset or an I/O error on either side.",
			func(s *st) uint64 { return s.TCP.Aborted }),

		// Connect-UDP-Bind.
		gauge("bind_tunnels_active", "Connect-UDP-Bind tunnels (bound UDP sockets) open now.",
			func(s *st) float64 { return float64(s.Bind.Live) }),
		counter("bind_tunnels_opened_total", "Connect-UDP-Bind tunnels started (bound sockets opened).",
			func(s *st) uint64 { return s.Bind.Opened }),
		vector(prometheus.CounterValue, "bind_assigns_total",
			"COMPRESSION_ASSIGN capsules from clients, by answer: accepted (ACK), rejected (CLOSE).", "answer",
			labelled{"accepted", func(s *st) uint64 { return s.Bind.AssignAccepted }},
			labelled{"rejected", func(s *st) uint64 { return s.Bind.AssignRejected }}),
		counter("bind_closes_total", "COMPRESSION_CLOSE capsules from clients.",
			func(s *st) uint64 { return s.Bind.Closes }),
		vector(prometheus.CounterValue, "bind_drops_total",
			"Connect-UDP-Bind datagrams dropped, by reason: policy (client datagram to a refused peer), "+
				"no_context (client datagram on an unknown or closed context), firewall (peer datagram with no context to carry it).", "reason",
			labelled{"policy", func(s *st) uint64 { return s.Bind.DropPolicy }},
			labelled{"no_context", func(s *st) uint64 { return s.Bind.DropNoContext }},
			labelled{"firewall", func(s *st) uint64 { return s.Bind.DropFirewall }}),

		// Routers.
		counter("router_dispatched_total", "Datagrams handed to the routers.",
			func(s *st) uint64 { return s.Router.Dispatched }),
		counter("router_delivered_total", "Datagrams the routers delivered to their tunnel's session.",
			func(s *st) uint64 { return s.Router.Delivered }),
		gauge("router_queued", "Datagrams in session rings now, waiting for their session.",
			func(s *st) float64 { return float64(s.Router.Queued) }),
		gauge("router_held", "Datagrams in hold queues now, waiting for their stream's request.",
			func(s *st) float64 { return float64(s.Router.HeldNow) }),
		counter("router_held_total", "Datagrams that arrived before their stream's request and entered a hold queue.",
			func(s *st) uint64 { return s.Router.Held }),
		counter("router_held_delivered_total", "Held datagrams that reached their session.",
			func(s *st) uint64 { return s.Router.HeldDelivered }),
		vector(prometheus.GaugeValue, "router_sessions", "Router sessions now, by state (pending, active).", "state",
			labelled{"pending", func(s *st) uint64 { return uint64(max(s.Router.Pending, 0)) }},
			labelled{"active", func(s *st) uint64 { return uint64(max(s.Router.Active, 0)) }}),
		counter("router_sessions_started_total", "Session starts the routers admitted.",
			func(s *st) uint64 { return s.Router.Started }),
		counter("router_sessions_registered_total", "Sessions registered directly, without a start.",
			func(s *st) uint64 { return s.Router.Registered }),
		counter("router_sessions_activated_total", "Session inits that succeeded.",
			func(s *st) uint64 { return s.Router.Activated }),
		counter("router_sessions_failed_total", "Session inits that failed (error, panic, timeout).",
			func(s *st) uint64 { return s.Router.Failed }),
		counter("router_sessions_cancelled_total", "Pending sessions cancelled (starter gave up, stream reset, connection closed).",
			func(s *st) uint64 { return s.Router.Cancelled }),
		counter("router_sessions_closed_total", "Active sessions that ended.",
			func(s *st) uint64 { return s.Router.Closed }),
		vector(prometheus.CounterValue, "router_sessions_rejected_total",
			"Session starts the routers refused, by reason: limit (tunnel limit), exists (stream already routed), kind (no session kind).",
			"reason",
			labelled{"limit", func(s *st) uint64 { return s.Router.RejectedLimit }},
			labelled{"exists", func(s *st) uint64 { return s.Router.RejectedExists }},
			labelled{"kind", func(s *st) uint64 { return s.Router.RejectedKind }}),
	}, dataPathFamilies()...)
}

// dataPathFamilies are the masqroute_datapath_* metrics: counts of the work
// behind each datagram (wake-ups, system calls, batches), which stay stable
// on a noisy machine where timings do not.
func dataPathFamilies() []family {
	type st = proxy.Stats
	return []family{
		gauge("datapath_workers", "Executor worker goroutines that run the tunnels' client-to-target batches.",
			func(s *st) float64 { return float64(s.DataPath.Workers) }),
		{
			desc: newDesc("datapath_worker_tunnels_placed_total",
				"Tunnels placed on each executor worker, by worker index: round-robin, or the worker of the QUIC transport their connection came in on.",
				"worker"),
			typ: prometheus.CounterValue,
			read: func(s *st, emit emitFunc) {
				for i, n := range s.DataPath.WorkerPlaced {
					emit(float64(n), strconv.Itoa(i))
				}
			},
		},
		vector(prometheus.CounterValue, "datapath_wakeups_total",
			"Data-path goroutines woken after parking, by goroutine: worker (executor), sender (a connection's outbound sender), "+
				"poller (target-socket readiness).", "goroutine",
			labelled{"worker", func(s *st) uint64 { return s.DataPath.WorkerWakeups }},
			labelled{"sender", func(s *st) uint64 { return s.DataPath.SenderWakeups }},
			labelled{"poller", func(s *st) uint64 { return s.DataPath.PollerWakeups }}),
		vector(prometheus.CounterValue, "datapath_batches_total",
			"Batches run, by goroutine: worker (one session's turn), sender (replies drained toward one client), "+
				"poller (one target socket's read turn).", "goroutine",
			labelled{"worker", func(s *st) uint64 { return s.DataPath.WorkerTurns }},
			labelled{"sender", func(s *st) uint64 { return s.DataPath.SenderBatches }},
			labelled{"poller", func(s *st) uint64 { return s.DataPath.PollerTurns }}),
		vector(prometheus.CounterValue, "datapath_batched_datagrams_total",
			"Datagrams in those batches, by goroutine (worker, sender); mean batch size = this / batches.", "goroutine",
			labelled{"worker", func(s *st) uint64 { return s.DataPath.WorkerDatagrams }},
			labelled{"sender", func(s *st) uint64 { return s.DataPath.SenderDatagrams }}),
		counter("datapath_sender_queue_full_total",
			"Replies dropped because their connection's outbound queue was full.",
			func(s *st) uint64 { return s.DataPath.SenderQueueFull }),
		counter("datapath_poller_events_total", "Readiness events the pollers collected (events per wake-up = this / wakeups).",
			func(s *st) uint64 { return s.DataPath.PollerEvents }),
		counter("datapath_poller_requeues_total", "Poller read turns that filled their batch and were queued again.",
			func(s *st) uint64 { return s.DataPath.PollerRequeues }),
		vector(prometheus.CounterValue, "datapath_syscalls_total",
			"System calls on data path sockets, by direction: to_target (sendmmsg, sendmsg), from_target (recvmmsg, empty ones included), to_client (the batched QUIC socket's sendmmsg).",
			"direction",
			labelled{"to_target", func(s *st) uint64 { return s.DataPath.TargetWriteSyscalls }},
			labelled{"from_target", func(s *st) uint64 { return s.DataPath.TargetReadSyscalls }},
			labelled{"to_client", func(s *st) uint64 { return s.DataPath.ClientWriteSyscalls }}),
		vector(prometheus.CounterValue, "datapath_datagrams_total",
			"Datagrams those system calls carried, by direction (to_target, from_target; to_client: QUIC packets queued, send drops included); batch size = this / syscalls.",
			"direction",
			labelled{"to_target", func(s *st) uint64 { return s.DataPath.TargetWriteDatagrams }},
			labelled{"from_target", func(s *st) uint64 { return s.DataPath.TargetReadDatagrams }},
			labelled{"to_client", func(s *st) uint64 { return s.DataPath.ClientPackets }}),
		counter("datapath_empty_reads_total", "Reads from target sockets that found nothing (EAGAIN).",
			func(s *st) uint64 { return s.DataPath.TargetReadEmpty }),
		counter("datapath_gso_sends_total", "Sends toward targets that carried two or more datagrams as one UDP GSO message.",
			func(s *st) uint64 { return s.DataPath.GSOSends }),
		counter("datapath_gso_datagrams_total", "Datagrams in those GSO sends.",
			func(s *st) uint64 { return s.DataPath.GSODatagrams }),
		counter("datapath_gso_refusals_total", "GSO sends the kernel refused; each was sent again without GSO.",
			func(s *st) uint64 { return s.DataPath.GSORefusals }),
		counter("datapath_client_flushes_total", "Queues of QUIC packets the batched QUIC socket's flusher sent (one wake-up each, at most).",
			func(s *st) uint64 { return s.DataPath.ClientFlushes }),
		counter("datapath_client_gso_sends_total", "Sends toward clients that carried two or more QUIC packets as one UDP GSO message.",
			func(s *st) uint64 { return s.DataPath.ClientGSOSends }),
		counter("datapath_client_gso_packets_total", "QUIC packets in those GSO sends.",
			func(s *st) uint64 { return s.DataPath.ClientGSOPackets }),
		counter("datapath_client_send_drops_total", "QUIC packets the kernel refused on the batched QUIC socket (to quic-go, lost on the path).",
			func(s *st) uint64 { return s.DataPath.ClientSendDropped }),
		counter("datapath_client_gso_refusals_total", "GSO sends toward clients the kernel refused; the socket then sends without GSO.",
			func(s *st) uint64 { return s.DataPath.ClientGSORefusals }),
		gauge("datapath_gso_disabled", "1 once UDP GSO is off for every target socket (the kernel lacks it or refused it), else 0.",
			func(s *st) float64 {
				if s.DataPath.GSODisabled {
					return 1
				}
				return 0
			}),
	}
}

// sortedKeys returns m's keys in order, so series come out stable.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
