// Package metrics is every Prometheus metric Herald exports, named in this one file, and the
// /metrics handler that serves them. Each service records into the package's variables; a
// process serves them all from its HTTP mux (Register), so the all-in-one shows every
// service's metrics on one page.
//
// Names follow the Prometheus naming guide: herald_<part>_<what>, _total for counters,
// _seconds for durations. No label takes an unbounded value: there are no principals, server
// ids or instance ids in labels, only small fixed sets (a dialect, a close code, a result).
package metrics

import (
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Registry holds every Herald metric plus the Go runtime and process collectors.
var Registry = prometheus.NewRegistry()

// Path is where every process serves its metrics.
const Path = "/metrics"

// Handler serves Registry in the Prometheus text (or OpenMetrics) format.
func Handler() http.Handler {
	return promhttp.HandlerFor(Registry, promhttp.HandlerOpts{Registry: Registry})
}

// Register adds GET /metrics to mux.
func Register(mux *http.ServeMux) { mux.Handle("GET "+Path, Handler()) }

// Edge: the browser and CLI gateway.
var (
	// EdgeConnections is the number of open client sockets per dialect.
	EdgeConnections = gaugeVec("herald_edge_connections", "Open client WebSockets on the edge, by dialect.", "dialect")
	// EdgeConnects counts sockets opened per dialect (after a successful upgrade).
	EdgeConnects = counterVec("herald_edge_connects_total", "Client WebSockets opened, by dialect.", "dialect")
	// EdgeDisconnects counts sockets closed per dialect and close code ("1006" when the
	// connection broke without a close frame).
	EdgeDisconnects = counterVec("herald_edge_disconnects_total", "Client WebSockets closed, by dialect and close code.", "dialect", "code")
	// EdgeNATSMessages counts messages the edge's hub received from NATS.
	EdgeNATSMessages = counter("herald_edge_nats_messages_total", "Messages the edge received from NATS for its clients.")
	// EdgeDeliveries counts frames the hub handed to client send queues.
	EdgeDeliveries = counter("herald_edge_deliveries_total", "Frames handed to client send queues (one per client per message).")
	// EdgeDropped counts messages the hub could not deliver, by reason: "nats" (NATS dropped
	// them on the way to the edge), "encode" (the message could not be rendered in a dialect).
	EdgeDropped = counterVec("herald_edge_dropped_messages_total", "Messages the edge could not deliver, by reason (nats, encode; interrupted: clients closed because the edge lost NATS).", "reason")
	// EdgeSubscriptions is the number of NATS subscriptions the hub holds (one per distinct
	// filter).
	EdgeSubscriptions = gauge("herald_edge_nats_subscriptions", "NATS subscriptions held by the edge's hub, one per distinct filter.")
	// EdgeDrainSeconds is how long the last drain took from the first close to the last.
	EdgeDrainSeconds = gauge("herald_edge_drain_duration_seconds", "How long the last drain of the edge's sockets took.")
)

// WebSocket: every server-side socket (edge dialects and ingest's agent socket).
var (
	// WSFramesWritten counts data frames written to peers.
	WSFramesWritten = counter("herald_ws_frames_written_total", "WebSocket data frames written to peers.")
	// WSBytesWritten counts bytes written to peers, framing included.
	WSBytesWritten = counter("herald_ws_bytes_written_total", "Bytes of WebSocket data frames written to peers, framing included.")
	// WSSlowCloses counts sockets closed because their send queue overflowed.
	WSSlowCloses = counter("herald_ws_slow_consumer_closes_total", "WebSockets closed as slow consumers (send queue overflowed).")
	// WSSendQueue is the depth of a socket's send queue, sampled once per batch write (so
	// only where there is traffic, and at no cost per message).
	WSSendQueue = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "herald_ws_send_queue_depth",
		Help:    "Messages in a WebSocket's send queue when a batch write starts.",
		Buckets: prometheus.ExponentialBuckets(1, 4, 7), // 1 .. 4096
	})
)

// Ingest: events in, agents.
var (
	// IngestPublishSeconds is how long storing one event in HERALD_EVENTS took.
	IngestPublishSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "herald_ingest_publish_duration_seconds",
		Help:    "Time to store one event in the event stream, acknowledgement included.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	})
	// IngestPublishErrors counts publishes that failed, by reason: "invalid" (the event) or
	// "unavailable" (NATS or the stream).
	IngestPublishErrors = counterVec("herald_ingest_publish_errors_total", "Event publishes that failed, by reason (invalid, unavailable).", "reason")
	// IngestAgents is the number of agents connected to this ingest.
	IngestAgents = gauge("herald_ingest_agents", "Agents connected to this ingest.")
	// IngestSamples counts metrics samples received from agents.
	IngestSamples = counter("herald_ingest_agent_samples_total", "Metrics samples received from agents.")
	// IngestTelemetryLost counts samples, alerts and log entries that HERALD_TELEMETRY did not
	// acknowledge (no quorum, no stream, too many in flight): no viewer sees them.
	IngestTelemetryLost = counter("herald_ingest_telemetry_lost_total", "Samples, alerts and log entries the telemetry stream did not store.")
	// IngestCommands counts commands and Docker actions routed to agents, by kind
	// (command, docker) and outcome (ok, failed, offline, timeout, error).
	IngestCommands = counterVec("herald_ingest_commands_total", "Commands and Docker actions sent to agents, by kind and outcome.", "kind", "outcome")
)

// Auth.
var (
	// AuthLogins counts password logins by result: ok, denied (bad credentials), invalid,
	// rate_limited, error.
	AuthLogins = counterVec("herald_auth_logins_total", "Password logins, by result (ok, denied, invalid, rate_limited, error).", "result")
	// AuthTokensVerified counts tokens checked by AuthService.Verify, by result (valid, invalid).
	AuthTokensVerified = counterVec("herald_auth_tokens_verified_total", "Tokens verified by the auth service, by result (valid, invalid).", "result")
	// AuthRateLimited counts login attempts refused by the failure limiter.
	AuthRateLimited = counter("herald_auth_rate_limited_total", "Login attempts refused because of too many recent failures.")
)

// Registry: the fleet's connection registry.
var (
	// RegistryOps counts registry calls by operation (add, remove, refresh, sweep, list) and
	// result (ok, error).
	RegistryOps = counterVec("herald_registry_operations_total", "Connection registry calls, by operation and result (ok, error).", "op", "result")
	// RegistryDegraded is 1 while some tracker in the process serves without its registry.
	RegistryDegraded = gauge("herald_registry_degraded", "1 while the connection registry is unreachable and the process serves degraded.")
	// RegistryDegradedSeconds adds up the time trackers spent degraded.
	RegistryDegradedSeconds = counter("herald_registry_degraded_seconds_total", "Time spent serving without the connection registry.")
)

// NATS: each connection is labelled with its name (one per service: herald-edge, ...).
var (
	// NATSConnected is 1 while the named connection is connected.
	NATSConnected = gaugeVec("herald_nats_connected", "1 while the named NATS connection is connected.", "conn")
	// NATSReconnects counts reconnections of the named connection.
	NATSReconnects = counterVec("herald_nats_reconnects_total", "Reconnections of the named NATS connection.", "conn")
	// NATSDisconnects counts losses of the named connection.
	NATSDisconnects = counterVec("herald_nats_disconnects_total", "Disconnections of the named NATS connection.", "conn")
)

// Code is a close code as a label value.
func Code(code int) string { return strconv.Itoa(code) }

// EdgeSocketOpened counts one client socket of a dialect ("drp", "rancher", "salt",
// "metrics", "logs") as open, and returns the call that counts it closed with its close code
// (the code sent, the peer's, or 1006 for a broken connection). Call that exactly once.
func EdgeSocketOpened(dialect string) (closed func(code int)) {
	EdgeConnects.WithLabelValues(dialect).Inc()
	open := EdgeConnections.WithLabelValues(dialect)
	open.Inc()
	return func(code int) {
		open.Dec()
		EdgeDisconnects.WithLabelValues(dialect, Code(code)).Inc()
	}
}

func init() {
	Registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		WSSendQueue, IngestPublishSeconds,
	)
}

func counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	Registry.MustRegister(c)
	return c
}

func counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	Registry.MustRegister(c)
	return c
}

func gauge(name, help string) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
	Registry.MustRegister(g)
	return g
}

func gaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
	Registry.MustRegister(g)
	return g
}
