// Package agentwire is the JSON protocol spoken on the agent WebSocket (GET /api/v1/agents/ws)
// and the NATS request/reply body that reaches an agent through the ingest holding it
// (subject.AgentRPC). It has no dependencies beyond the standard library, so both the
// ingest and the agent import it.
//
// # Two shapes
//
// The server-monitoring agent protocol as its specification documents it, and the open-source
// ChatOps product that implements it (its agent and backend), put different messages on the
// wire (the README's "Agents" section). Herald accepts both and answers each agent in the shape
// it speaks.
//
// Doc shape (the documented protocol), every message a flat JSON object with a "type":
//
//	C→S {"type":"auth","api_key"}
//	S→C {"type":"auth_success","server_id","message":"Connected successfully"}
//	S→C {"type":"error","message"}            ("Invalid or inactive API key", "Invalid message format")
//	C→S {"type":"metrics","server_id","cpu_percent","memory_percent","disk_usage":[...],"network":[...],"timestamp"}
//	S→C {"type":"command","command_id","command"}
//	C→S {"type":"command_response","command_id","output","exit_code","duration_ms"}
//	S→C {"type":"docker_command","command_id","action","container_id"}
//	C→S {"type":"docker_response","command_id","success","message"}
//	C→S {"type":"log","data":{"level","message","timestamp"}}
//
// Chatops shape (its agent at commit 625e9fb): the same auth exchange, then
//
//	C→S {"type":"metrics","data":{"server_id","timestamp","cpu":{},"memory":{},"disk":{},"network":{},"containers":[],"processes":[]}}
//	S→C {"type":"metrics_received","status":"ok"}
//	C→S {"type":"ping"}  S→C {"type":"pong"}
//	S→C {"type":"execute_command","command","request_id"}
//	C→S {"type":"command_result","data":{"output","exit_code"},"request_id"}
//	S→C {"type":"start_container"|"stop_container"|"restart_container","container_id","timeout","request_id"}
//	S→C {"type":"get_container_logs","container_id","tail","request_id"}
//	C→S {"type":"container_started"|"container_stopped"|"container_restarted"|"container_logs","data":{...},"request_id"}
//	C→S {"type":"error","message","request_id"}
//
// # Herald's extensions of the doc shape
//
// Herald's own agent (services/agent) speaks the doc shape plus optional fields that a plain
// doc agent simply does not send:
//
//   - metrics carry "seq" (uint64, increasing within one agent process). The ingest acknowledges
//     every metrics message that carries a seq with {"type":"metrics_received","status":"ok","seq":N},
//     so the agent can drop the sample from its offline buffer. Doc metrics without seq get no
//     ack (the document defines none, and a strict doc agent might reject an unknown type);
//     chatops metrics always get the plain ack its agent waits for.
//   - {"type":"facts","data":{"hostname","os","platform","kernel","cpu_count",...}} once per
//     connection, right after auth_success (Salt calls them grains).
//   - command may carry "timeout_ms"; command_response may carry "truncated" (the output was cut
//     at the agent's cap).
//   - docker_command may carry "tail" (for action "logs"); docker_response may carry "logs" (lines).
//   - an agent that refuses a request answers {"type":"error","message","command_id","code"} with
//     code "refused" (commands not enabled) or "agent_error".
//
// # Shape detection
//
// ShapeOf classifies one message. The first message that is specific to a shape fixes the
// connection's shape for good: chatops for nested metrics ("data" object), "ping",
// "command_result" and the container_* replies; doc for flat metrics, "command_response",
// "docker_response", "facts" and "log". Until then the connection is treated as doc, the
// documented protocol. Herald's agent sends facts first, so it is pinned to doc at once.
//
// # Decoding
//
// Every decoder here takes untrusted bytes and returns an error wrapping ErrInvalid instead of
// panicking (fuzzed). Unknown fields are ignored; the normalizers keep them.
package agentwire
