package event

import "encoding/json"

// TypeConnections is the type of the events Herald publishes about its own sockets
// (connections.create|delete.<principal>, Object the connection).
const TypeConnections = "connections"

// Internal reports whether typ is Herald's own bookkeeping rather than something a platform
// reported. Foreign dialects (Rancher, Salt) have no schema for such types, so they send them
// only to a socket that asks for them by name.
func Internal(typ string) bool { return typ == TypeConnections }

// ConnectionID is the id of the connection a connections event is about ("" for any other
// event), so a socket can leave out the event about itself.
func (e *Event) ConnectionID() string {
	if e.Type != TypeConnections {
		return ""
	}
	var c struct {
		ID string `json:"ID"`
	}
	_ = json.Unmarshal(e.Object, &c)
	return c.ID
}
