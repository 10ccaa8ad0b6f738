package agentwire

import (
	"encoding/json"
	"fmt"
)

// RPC kinds (RPCRequest.Kind).
const (
	KindCommand = "command"
	KindDocker  = "docker"
)

// RPC failure codes (RPCReply.Code). An empty Code means the agent answered.
const (
	// CodeTimeout: the agent did not answer within the request's timeout.
	CodeTimeout = "timeout"
	// CodeAgentError: the agent answered with an error frame (or the agent could not be sent to).
	CodeAgentError = "agent_error"
	// CodeRefused: the agent refuses such requests (commands not enabled on it).
	CodeRefused = "refused"
	// CodeGone: the agent's connection ended before it answered.
	CodeGone = "gone"
	// CodeInvalid: the holding ingest could not decode or translate the request.
	CodeInvalid = "invalid"
)

// RPCRequest is the body of a request on subject.AgentRPC(serverID), sent by the ingest that
// serves the gRPC call to the ingest holding the agent (possibly itself).
type RPCRequest struct {
	// Kind is KindCommand or KindDocker.
	Kind string `json:"kind"`
	// ID correlates the agent's reply: sent as command_id (doc) or request_id (chatops). It is
	// also the job id (jid) of the jobs.* events.
	ID string `json:"id"`
	// Command is the shell command (KindCommand).
	Command string `json:"command,omitempty"`
	// TimeoutMs bounds the agent's answer; the holding ingest replies CodeTimeout after it.
	TimeoutMs int64 `json:"timeout_ms,omitempty"`
	// Action is one of ActionStart, ActionStop, ActionRestart, ActionLogs (KindDocker).
	Action string `json:"action,omitempty"`
	// ContainerID names the container (KindDocker).
	ContainerID string `json:"container_id,omitempty"`
	// Tail is the number of log lines for ActionLogs (0: the agent's default).
	Tail int `json:"tail,omitempty"`
	// Principal is the authenticated caller, for the jobs.* events.
	Principal string `json:"principal,omitempty"`
}

// RPCReply is the body of the reply to an RPCRequest. An empty Code means the agent returned a
// result (Output/ExitCode for commands, Success/Message/Logs for docker); otherwise Code says
// why there is none and Error describes it.
type RPCReply struct {
	Output     string   `json:"output,omitempty"`
	ExitCode   int      `json:"exit_code"`
	DurationMs int64    `json:"duration_ms"`
	Truncated  bool     `json:"truncated,omitempty"`
	Success    bool     `json:"success"`
	Message    string   `json:"message,omitempty"`
	Logs       []string `json:"logs,omitempty"`
	Error      string   `json:"error,omitempty"`
	Code       string   `json:"code,omitempty"`
}

// DefaultContainerTimeout is chatops' stop/restart grace in seconds, sent with stop and restart.
const DefaultContainerTimeout = 10

// DefaultLogTail is the number of log lines asked of a chatops agent when the request has none.
const DefaultLogTail = 100

// EncodeRequest translates req into the frame an agent of the given shape understands
// (ShapeUnknown is sent as doc, the documented protocol). Errors wrap ErrInvalid.
func EncodeRequest(shape Shape, req RPCRequest) ([]byte, error) {
	if req.ID == "" {
		return nil, fmt.Errorf("%w: rpc: id must not be empty", ErrInvalid)
	}
	switch req.Kind {
	case KindCommand:
		if shape == ShapeChatops {
			return json.Marshal(ExecuteCommand{Type: TypeExecuteCommand, Command: req.Command, RequestID: req.ID})
		}
		return json.Marshal(Command{Type: TypeCommand, CommandID: req.ID, Command: req.Command, TimeoutMs: req.TimeoutMs})
	case KindDocker:
		if !ValidAction(req.Action) {
			return nil, fmt.Errorf("%w: rpc: unknown docker action %q", ErrInvalid, req.Action)
		}
		if shape != ShapeChatops {
			return json.Marshal(DockerCommand{Type: TypeDockerCommand, CommandID: req.ID,
				Action: req.Action, ContainerID: req.ContainerID, Tail: req.Tail})
		}
		switch req.Action {
		case ActionLogs:
			tail := req.Tail
			if tail <= 0 {
				tail = DefaultLogTail
			}
			return json.Marshal(GetContainerLogs{Type: TypeGetContainerLogs, ContainerID: req.ContainerID,
				Tail: tail, RequestID: req.ID})
		case ActionStart:
			return json.Marshal(ContainerAction{Type: TypeStartContainer, ContainerID: req.ContainerID, RequestID: req.ID})
		case ActionStop:
			return json.Marshal(ContainerAction{Type: TypeStopContainer, ContainerID: req.ContainerID,
				Timeout: DefaultContainerTimeout, RequestID: req.ID})
		default: // ActionRestart
			return json.Marshal(ContainerAction{Type: TypeRestartContainer, ContainerID: req.ContainerID,
				Timeout: DefaultContainerTimeout, RequestID: req.ID})
		}
	}
	return nil, fmt.Errorf("%w: rpc: unknown kind %q", ErrInvalid, req.Kind)
}

// IsReply reports whether a message answers a request: a result of either shape, or an error
// frame carrying a command_id / request_id.
func IsReply(e Envelope) bool {
	switch e.Type {
	case TypeCommandResponse, TypeDockerResponse, TypeCommandResult, TypeContainerStarted,
		TypeContainerStopped, TypeContainerRestarted, TypeContainerLogs:
		return true
	case TypeError:
		return e.ID != ""
	}
	return false
}

// DecodeReply reads an agent's answer of either shape (see IsReply) into an RPCReply, with
// the id it correlates on. DurationMs is whatever the agent reported (chatops reports none).
// Errors wrap ErrInvalid.
func DecodeReply(frame []byte) (string, RPCReply, error) {
	env, err := Peek(frame)
	if err != nil {
		return "", RPCReply{}, err
	}
	if !IsReply(env) {
		return "", RPCReply{}, fmt.Errorf("%w: %q is not a reply", ErrInvalid, env.Type)
	}
	if env.ID == "" {
		return "", RPCReply{}, fmt.Errorf("%w: reply without command_id or request_id", ErrInvalid)
	}
	var r RPCReply
	switch env.Type {
	case TypeCommandResponse:
		m, err := Decode[CommandResponse](frame)
		if err != nil {
			return "", RPCReply{}, err
		}
		r = RPCReply{Output: m.Output, ExitCode: m.ExitCode, DurationMs: m.DurationMs,
			Truncated: m.Truncated, Success: m.ExitCode == 0}
	case TypeDockerResponse:
		m, err := Decode[DockerResponse](frame)
		if err != nil {
			return "", RPCReply{}, err
		}
		r = RPCReply{Success: m.Success, Message: m.Message, Logs: m.Logs}
	case TypeCommandResult:
		m, err := Decode[CommandResult](frame)
		if err != nil {
			return "", RPCReply{}, err
		}
		r = RPCReply{Output: m.Data.Output, ExitCode: m.Data.ExitCode, Success: m.Data.ExitCode == 0}
	case TypeContainerStarted, TypeContainerStopped, TypeContainerRestarted, TypeContainerLogs:
		m, err := Decode[ContainerReply](frame)
		if err != nil {
			return "", RPCReply{}, err
		}
		r = RPCReply{Success: true, Logs: m.Data.Logs}
		switch env.Type {
		case TypeContainerStarted:
			r.Message = "Container started"
		case TypeContainerStopped:
			r.Message = "Container stopped"
		case TypeContainerRestarted:
			r.Message = "Container restarted"
		default:
			r.Message = fmt.Sprintf("%d log lines", len(m.Data.Logs))
		}
	default: // TypeError with an id
		m, err := Decode[Error](frame)
		if err != nil {
			return "", RPCReply{}, err
		}
		r = RPCReply{Message: m.Message, Error: m.Message, Code: CodeAgentError}
		if m.Code == CodeRefused {
			r.Code = CodeRefused
		}
		if r.Error == "" {
			r.Error = "agent reported an error"
		}
		r.ExitCode = -1
	}
	return env.ID, r, nil
}
