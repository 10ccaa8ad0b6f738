package subject

import "strings"

// Per-server subjects for what agents send and for reaching an agent. The server id is one
// escaped token, so any id (a UUID, a host name with dots) is safe.
const (
	metricsPrefix = "herald." + KindMetrics + "."
	logsPrefix    = "herald." + KindLogs + "."
	alertsPrefix  = "herald." + KindAlerts + "."
	agentPrefix   = "herald.agent."
)

// TelemetrySubjects are the subjects TelemetryStream stores: every server's samples, alerts
// and log entries (a server id is one token).
var TelemetrySubjects = []string{metricsPrefix + "*", alertsPrefix + "*", logsPrefix + "*"}

var telemetryPrefixes = [...]string{metricsPrefix, alertsPrefix, logsPrefix}

// Telemetry kinds, as TelemetryKind names them.
const (
	KindMetrics = "metrics"
	KindAlerts  = "alerts"
	KindLogs    = "logs"
)

// TelemetryKind says what a server's telemetry subject carries: KindMetrics, KindAlerts or
// KindLogs; "" for any other subject.
func TelemetryKind(subj string) string {
	if StreamOf(subj) != TelemetryStream {
		return ""
	}
	for _, k := range [...]string{KindMetrics, KindAlerts, KindLogs} {
		if strings.HasPrefix(subj, "herald."+k+".") {
			return k
		}
	}
	return ""
}

// Metrics is where an agent's samples for serverID are published; the payload is the sample's
// JSON object, exactly what a browser receives as "data".
func Metrics(serverID string) string { return metricsPrefix + EncodeToken(serverID) }

// Logs is where an agent's log entries for serverID are published (one JSON object each).
func Logs(serverID string) string { return logsPrefix + EncodeToken(serverID) }

// Alerts is where threshold alerts for serverID are published (one JSON object each).
func Alerts(serverID string) string { return alertsPrefix + EncodeToken(serverID) }

// AgentRPC is the request/reply subject served by whichever ingest holds serverID's agent; no
// responders means the agent is offline.
func AgentRPC(serverID string) string { return agentPrefix + EncodeToken(serverID) + ".rpc" }

// AgentTakeover is published by an ingest that accepted a connection for serverID, so any
// other ingest still holding an older connection for it closes that one.
func AgentTakeover(serverID string) string {
	return agentPrefix + EncodeToken(serverID) + ".takeover"
}

// AgentHolder is served by the connection that holds serverID's agent, on whichever ingest:
// a new connection asks it first whether it may take over (request/reply; no responders means
// nobody holds the server). The answer carries the recent takeovers, so refusing an agent
// replaced too often works across ingests.
func AgentHolder(serverID string) string {
	return agentPrefix + EncodeToken(serverID) + ".holder"
}
