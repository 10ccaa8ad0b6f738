package agentwire

import "encoding/json"

// Message types of both shapes (see the package doc for who sends which).
const (
	TypeAuth            = "auth"
	TypeAuthSuccess     = "auth_success"
	TypeError           = "error"
	TypeMetrics         = "metrics"
	TypeMetricsReceived = "metrics_received"
	TypeLog             = "log"
	TypeFacts           = "facts"
	TypePing            = "ping"
	TypePong            = "pong"

	// Doc shape.
	TypeCommand         = "command"
	TypeCommandResponse = "command_response"
	TypeDockerCommand   = "docker_command"
	TypeDockerResponse  = "docker_response"

	// Chatops shape.
	TypeExecuteCommand     = "execute_command"
	TypeCommandResult      = "command_result"
	TypeStartContainer     = "start_container"
	TypeStopContainer      = "stop_container"
	TypeRestartContainer   = "restart_container"
	TypeGetContainerLogs   = "get_container_logs"
	TypeContainerStarted   = "container_started"
	TypeContainerStopped   = "container_stopped"
	TypeContainerRestarted = "container_restarted"
	TypeContainerLogs      = "container_logs"
)

// Fixed texts of the documented agent protocol.
const (
	MessageConnected      = "Connected successfully"
	MessageInvalidKey     = "Invalid or inactive API key"
	MessageInvalidMessage = "Invalid message format"
	StatusOK              = "ok"
)

// Docker actions (DockerCommand.Action, RPCRequest.Action).
const (
	ActionStart   = "start"
	ActionStop    = "stop"
	ActionRestart = "restart"
	ActionLogs    = "logs"
)

// ValidAction reports whether a is one of the docker actions Herald relays.
func ValidAction(a string) bool {
	switch a {
	case ActionStart, ActionStop, ActionRestart, ActionLogs:
		return true
	}
	return false
}

// Auth is the first message of every agent: {"type":"auth","api_key"}.
type Auth struct {
	Type   string `json:"type"`
	APIKey string `json:"api_key"`
}

// AuthSuccess answers a valid Auth (both shapes read it; chatops ignores server_id).
type AuthSuccess struct {
	Type     string `json:"type"`
	ServerID string `json:"server_id"`
	Message  string `json:"message"`
}

// Error is an error frame. The server sends only Type and Message; an agent refusing a request
// adds the request's id (CommandID in the doc shape, RequestID in chatops') and, in Herald's
// extension, a Code ("refused", "agent_error").
type Error struct {
	Type      string `json:"type"`
	Message   string `json:"message"`
	CommandID string `json:"command_id,omitempty"`
	RequestID string `json:"request_id,omitempty"`
	Code      string `json:"code,omitempty"`
}

// NewError returns the server's error frame with msg.
func NewError(msg string) Error { return Error{Type: TypeError, Message: msg} }

// Ping and Pong are the chatops application-level heartbeat ({"type":"ping"} / {"type":"pong"}).
type Ping struct {
	Type string `json:"type"`
}

// Metrics is a doc-shape sample, flat, with Herald's optional Seq. Timestamp is RFC 3339.
type Metrics struct {
	Type          string             `json:"type"`
	ServerID      string             `json:"server_id,omitempty"`
	CPUPercent    float64            `json:"cpu_percent"`
	MemoryPercent float64            `json:"memory_percent"`
	DiskUsage     []DiskUsage        `json:"disk_usage"`
	Network       []NetworkInterface `json:"network"`
	Timestamp     string             `json:"timestamp"`
	// Seq is Herald's extension: increasing per agent process, acknowledged by MetricsReceived.
	Seq uint64 `json:"seq,omitempty"`
}

// DiskUsage is one mounted file system in a doc-shape sample. The seed leaves the element
// shape open; this is Herald's, and the ingest's alert check reads "usage_percent" (or
// "used_percent" / "usedPercent" / "percent" from other doc agents).
type DiskUsage struct {
	Mountpoint   string  `json:"mountpoint"`
	Device       string  `json:"device,omitempty"`
	Fstype       string  `json:"fstype,omitempty"`
	TotalBytes   uint64  `json:"total_bytes"`
	UsedBytes    uint64  `json:"used_bytes"`
	FreeBytes    uint64  `json:"free_bytes"`
	UsagePercent float64 `json:"usage_percent"`
}

// NetworkInterface is one interface's cumulative counters in a doc-shape sample.
type NetworkInterface struct {
	Interface   string `json:"interface"`
	BytesSent   uint64 `json:"bytes_sent"`
	BytesRecv   uint64 `json:"bytes_recv"`
	PacketsSent uint64 `json:"packets_sent"`
	PacketsRecv uint64 `json:"packets_recv"`
}

// MetricsReceived acknowledges a sample: {"type":"metrics_received","status":"ok"} for chatops,
// plus "seq" for a Herald agent.
type MetricsReceived struct {
	Type   string `json:"type"`
	Status string `json:"status"`
	Seq    uint64 `json:"seq,omitempty"`
}

// ChatopsMetrics is the chatops agent's sample, nested under "data".
type ChatopsMetrics struct {
	Type string        `json:"type"`
	Data ChatopsSample `json:"data"`
}

// ChatopsSample is the "data" of ChatopsMetrics.
type ChatopsSample struct {
	ServerID   string           `json:"server_id"`
	Timestamp  string           `json:"timestamp"`
	CPU        ChatopsCPU       `json:"cpu"`
	Memory     ChatopsUsage     `json:"memory"`
	Disk       ChatopsUsage     `json:"disk"`
	Network    ChatopsNetwork   `json:"network"`
	Containers []Container      `json:"containers"`
	Processes  []ChatopsProcess `json:"processes"`
}

// ChatopsCPU is chatops' "cpu" object.
type ChatopsCPU struct {
	UsagePercent float64 `json:"usage_percent"`
	Cores        int     `json:"cores"`
	FrequencyMHz float64 `json:"frequency_mhz"`
}

// ChatopsUsage is chatops' "memory" and "disk" objects (disk: the root file system).
type ChatopsUsage struct {
	TotalGB      float64 `json:"total_gb"`
	UsedGB       float64 `json:"used_gb"`
	AvailableGB  float64 `json:"available_gb"`
	UsagePercent float64 `json:"usage_percent"`
}

// ChatopsNetwork is chatops' "network" object: cumulative counters since boot.
type ChatopsNetwork struct {
	BytesSent   uint64 `json:"bytes_sent"`
	BytesRecv   uint64 `json:"bytes_recv"`
	PacketsSent uint64 `json:"packets_sent"`
	PacketsRecv uint64 `json:"packets_recv"`
}

// Container is one container in chatops' sample.
type Container struct {
	ID      string          `json:"id"`
	Name    string          `json:"name"`
	Image   string          `json:"image"`
	Status  string          `json:"status"`
	State   string          `json:"state"`
	Created string          `json:"created"`
	Ports   []ContainerPort `json:"ports"`
}

// ContainerPort is one published port of a Container.
type ContainerPort struct {
	PrivatePort int    `json:"private_port"`
	PublicPort  int    `json:"public_port"`
	Type        string `json:"type"`
}

// ChatopsProcess is one process in chatops' sample (memory is RSS in MB).
type ChatopsProcess struct {
	PID    int32   `json:"pid"`
	Name   string  `json:"name"`
	CPU    float64 `json:"cpu"`
	Memory float64 `json:"memory"`
	Status string  `json:"status"`
	User   string  `json:"user"`
}

// Log is a log line from an agent: {"type":"log","data":{"level","message","timestamp"}}.
type Log struct {
	Type string   `json:"type"`
	Data LogEntry `json:"data"`
}

// LogEntry is the "data" of Log. Source and File are Herald's optional additions.
type LogEntry struct {
	Level     string `json:"level"`
	Message   string `json:"message"`
	Timestamp string `json:"timestamp"`
	Source    string `json:"source,omitempty"`
	File      string `json:"file,omitempty"`
}

// Facts is Herald's once-per-connection host description (Salt's grains).
type Facts struct {
	Type string    `json:"type"`
	Data FactsData `json:"data"`
}

// FactsData is the "data" of Facts. Extra carries anything else the agent wants to expose;
// the ingest stores "data" as sent.
type FactsData struct {
	Hostname        string         `json:"hostname"`
	OS              string         `json:"os"`
	Platform        string         `json:"platform,omitempty"`
	PlatformVersion string         `json:"platform_version,omitempty"`
	Kernel          string         `json:"kernel,omitempty"`
	KernelArch      string         `json:"kernel_arch,omitempty"`
	CPUCount        int            `json:"cpu_count"`
	CPUModel        string         `json:"cpu_model,omitempty"`
	MemoryTotal     uint64         `json:"memory_total,omitempty"`
	BootTime        string         `json:"boot_time,omitempty"`
	AgentVersion    string         `json:"agent_version,omitempty"`
	Extra           map[string]any `json:"extra,omitempty"`
}

// Command asks a doc-shape agent to run a shell command. TimeoutMs is Herald's extension.
type Command struct {
	Type      string `json:"type"`
	CommandID string `json:"command_id"`
	Command   string `json:"command"`
	TimeoutMs int64  `json:"timeout_ms,omitempty"`
}

// CommandResponse is a doc-shape agent's command result. Truncated is Herald's extension.
type CommandResponse struct {
	Type       string `json:"type"`
	CommandID  string `json:"command_id"`
	Output     string `json:"output"`
	ExitCode   int    `json:"exit_code"`
	DurationMs int64  `json:"duration_ms"`
	Truncated  bool   `json:"truncated,omitempty"`
}

// DockerCommand asks a doc-shape agent for a docker action. Tail is Herald's extension (logs).
type DockerCommand struct {
	Type        string `json:"type"`
	CommandID   string `json:"command_id"`
	Action      string `json:"action"`
	ContainerID string `json:"container_id"`
	Tail        int    `json:"tail,omitempty"`
}

// DockerResponse is a doc-shape agent's docker result. Logs is Herald's extension.
type DockerResponse struct {
	Type      string   `json:"type"`
	CommandID string   `json:"command_id"`
	Success   bool     `json:"success"`
	Message   string   `json:"message"`
	Logs      []string `json:"logs,omitempty"`
}

// ExecuteCommand asks a chatops agent to run a command.
type ExecuteCommand struct {
	Type      string `json:"type"`
	Command   string `json:"command"`
	RequestID string `json:"request_id"`
}

// CommandResult is a chatops agent's command result.
type CommandResult struct {
	Type      string            `json:"type"`
	Data      CommandResultData `json:"data"`
	RequestID string            `json:"request_id"`
}

// CommandResultData is the "data" of CommandResult.
type CommandResultData struct {
	Output   string `json:"output"`
	ExitCode int    `json:"exit_code"`
}

// ContainerAction asks a chatops agent to start, stop or restart a container. Timeout is in
// seconds and applies to stop and restart.
type ContainerAction struct {
	Type        string `json:"type"`
	ContainerID string `json:"container_id"`
	Timeout     int    `json:"timeout,omitempty"`
	RequestID   string `json:"request_id"`
}

// GetContainerLogs asks a chatops agent for a container's last Tail log lines.
type GetContainerLogs struct {
	Type        string `json:"type"`
	ContainerID string `json:"container_id"`
	Tail        int    `json:"tail"`
	RequestID   string `json:"request_id"`
}

// ContainerReply is a chatops agent's answer to a container message.
type ContainerReply struct {
	Type      string             `json:"type"`
	Data      ContainerReplyData `json:"data"`
	RequestID string             `json:"request_id"`
}

// ContainerReplyData is the "data" of ContainerReply.
type ContainerReplyData struct {
	ContainerID string   `json:"container_id"`
	Status      string   `json:"status,omitempty"`
	Logs        []string `json:"logs,omitempty"`
}

// Marshal encodes a message. The types here contain nothing json cannot encode except
// FactsData.Extra, so the error matters only for facts.
func Marshal(v any) ([]byte, error) { return json.Marshal(v) }
