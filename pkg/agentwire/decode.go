package agentwire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// ErrInvalid is wrapped by every decoding error: the frame is not a message of this protocol.
// The ingest answers it with {"type":"error","message":"Invalid message format"}.
var ErrInvalid = errors.New("agentwire: invalid message")

// Envelope is what every message has in common, read without decoding the rest.
type Envelope struct {
	// Type is the message's "type"; never empty in a decoded Envelope.
	Type string
	// ID is the correlation id: "command_id" (doc) or else "request_id" (chatops); may be empty.
	ID string
	// NestedData reports a JSON object under "data" (chatops metrics, logs, facts, replies).
	NestedData bool
}

// envelope is the JSON view Peek decodes. A non-string id makes the frame invalid: ids are
// echoed back verbatim and compared as strings.
type envelope struct {
	Type      string          `json:"type"`
	CommandID string          `json:"command_id"`
	RequestID string          `json:"request_id"`
	Data      json.RawMessage `json:"data"`
}

// Peek reads a frame's type, correlation id and whether it nests a "data" object. The frame
// must be one JSON object with a non-empty string "type".
func Peek(frame []byte) (Envelope, error) {
	var e envelope
	if err := strictObject(frame, &e); err != nil {
		return Envelope{}, err
	}
	if e.Type == "" {
		return Envelope{}, fmt.Errorf("%w: type: must be a non-empty string", ErrInvalid)
	}
	id := e.CommandID
	if id == "" {
		id = e.RequestID
	}
	return Envelope{Type: e.Type, ID: id, NestedData: isObject(e.Data)}, nil
}

// Decode unmarshals a frame into a message struct (Auth, Command, ...). It checks the frame is
// one JSON object; the caller checks "type" (usually from Peek).
func Decode[T any](frame []byte) (T, error) {
	var v T
	err := strictObject(frame, &v)
	return v, err
}

// strictObject unmarshals frame, which must be exactly one JSON object, into v.
func strictObject(frame []byte, v any) error {
	trimmed := bytes.TrimSpace(frame)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return fmt.Errorf("%w: not a JSON object", ErrInvalid)
	}
	if err := json.Unmarshal(trimmed, v); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return nil
}

// isObject reports whether raw is a JSON object (leading whitespace allowed).
func isObject(raw json.RawMessage) bool {
	t := bytes.TrimSpace(raw)
	return len(t) > 0 && t[0] == '{'
}

// Shape is the protocol variant an agent speaks.
type Shape int

// Shapes. ShapeUnknown means "not decided by this message".
const (
	ShapeUnknown Shape = iota
	ShapeDoc
	ShapeChatops
)

// String returns "doc", "chatops" or "unknown".
func (s Shape) String() string {
	switch s {
	case ShapeDoc:
		return "doc"
	case ShapeChatops:
		return "chatops"
	}
	return "unknown"
}

// ShapeOf returns the shape a message proves its sender speaks, or ShapeUnknown when the
// message exists in both shapes (auth, error, pong) or in neither. See the package doc for
// how a connection uses it.
func ShapeOf(e Envelope) Shape {
	switch e.Type {
	case TypeMetrics:
		if e.NestedData {
			return ShapeChatops
		}
		return ShapeDoc
	case TypePing, TypeCommandResult, TypeContainerStarted, TypeContainerStopped,
		TypeContainerRestarted, TypeContainerLogs:
		return ShapeChatops
	case TypeCommandResponse, TypeDockerResponse, TypeFacts, TypeLog:
		return ShapeDoc
	}
	return ShapeUnknown
}
