package rancher

import "github.com/heraldhq/herald/pkg/event"

// EncoderFor is the encoder of a socket that asked for types (nil: every type) and holds the
// connection self. Norman never sends a type the client has no schema for, so Herald's own
// types (event.Internal) reach only a socket that names them in resourceTypes, and never
// the event about the socket itself. Sockets that did not ask share one encoder, so each
// event is still encoded once for all of them.
func EncoderFor(types []string, self string) Encoder {
	for _, t := range types {
		if event.Internal(t) {
			return Encoder{internal: true, self: self}
		}
	}
	return Encoder{}
}

// skips reports whether ev is not for this encoder's sockets.
func (e Encoder) skips(ev *event.Event) bool {
	if !event.Internal(ev.Type) {
		return false
	}
	return !e.internal || (e.self != "" && ev.ConnectionID() == e.self)
}
