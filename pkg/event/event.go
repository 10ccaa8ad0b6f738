// Package event is Herald's event model: what a platform or an agent reports, addressed by
// type.action.key and scoped to a Rancher-style level. It is pure data and needs only the
// standard library, so every service and every dialect can share it.
package event

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// ScopeGlobal is the scope of an event that belongs to no cluster or project.
const ScopeGlobal = "global"

// Limits on the parts of an event. They keep a subject well under NATS's limits and stop one
// publisher from filling everyone's queues with a single message.
const (
	MaxFieldBytes  = 256     // Type, Action, Scope, Principal
	MaxKeyBytes    = 1024    // Key
	MaxObjectBytes = 1 << 19 // Object and Original together (512 KiB)
)

// ErrInvalid is wrapped by every validation error; the message says which field and why.
var ErrInvalid = errors.New("invalid event")

// Event is one thing that happened. The JSON field names are Digital Rebar's (models.Event),
// so the canonical payload on NATS is already close to what DRP clients read.
type Event struct {
	Time      time.Time       `json:"Time"`
	Type      string          `json:"Type"`
	Action    string          `json:"Action"`
	Key       string          `json:"Key"`
	Scope     string          `json:"Scope,omitempty"`
	Principal string          `json:"Principal"`
	Object    json.RawMessage `json:"Object"`
	Original  json.RawMessage `json:"Original,omitempty"`
}

// Normalize fills the defaults a publisher may leave out: the time (now, UTC), the scope
// (global) and a JSON null Object.
func (e *Event) Normalize(now time.Time) {
	if e.Time.IsZero() {
		e.Time = now
	}
	e.Time = e.Time.UTC()
	if e.Scope == "" {
		e.Scope = ScopeGlobal
	}
	if len(e.Object) == 0 {
		e.Object = json.RawMessage("null")
	}
}

// Validate reports the first thing wrong with e, naming the field ("type: must not be empty").
// Keys may hold any valid UTF-8, dots and wildcard characters included: the subject mapping
// escapes them.
func (e *Event) Validate() error {
	if err := checkField("type", e.Type, MaxFieldBytes, true); err != nil {
		return err
	}
	if err := checkField("action", e.Action, MaxFieldBytes, true); err != nil {
		return err
	}
	if err := checkField("key", e.Key, MaxKeyBytes, false); err != nil {
		return err
	}
	if err := checkField("scope", e.Scope, MaxFieldBytes, false); err != nil {
		return err
	}
	if err := checkField("principal", e.Principal, MaxFieldBytes, false); err != nil {
		return err
	}
	if len(e.Object)+len(e.Original) > MaxObjectBytes {
		return fmt.Errorf("%w: object: larger than %d bytes", ErrInvalid, MaxObjectBytes)
	}
	if len(e.Object) > 0 && !json.Valid(e.Object) {
		return fmt.Errorf("%w: object: not valid JSON", ErrInvalid)
	}
	if len(e.Original) > 0 && !json.Valid(e.Original) {
		return fmt.Errorf("%w: original: not valid JSON", ErrInvalid)
	}
	return nil
}

func checkField(name, v string, max int, required bool) error {
	switch {
	case required && v == "":
		return fmt.Errorf("%w: %s: must not be empty", ErrInvalid, name)
	case len(v) > max:
		return fmt.Errorf("%w: %s: longer than %d bytes", ErrInvalid, name, max)
	case !utf8.ValidString(v):
		return fmt.Errorf("%w: %s: not valid UTF-8", ErrInvalid, name)
	}
	return nil
}

// ObjectFields returns the Object as a JSON object's fields, for dialects whose frames add
// keys to it (Rancher's type and id, Salt's _stamp). An Object that is not a JSON object is
// wrapped as {"value": <object>}; an absent or null one has no fields (norman's remove sends
// the object's identity only, never a null value). The map is the caller's.
func (e *Event) ObjectFields() (map[string]json.RawMessage, error) {
	var fields map[string]json.RawMessage
	switch {
	case len(e.Object) == 0 || string(e.Object) == "null":
		return map[string]json.RawMessage{}, nil
	case e.Object[0] == '{':
		if err := json.Unmarshal(e.Object, &fields); err != nil {
			return nil, fmt.Errorf("%w: object: %w", ErrInvalid, err)
		}
	}
	if fields == nil {
		fields = map[string]json.RawMessage{"value": e.Object}
	}
	return fields, nil
}
