package salt

import (
	"strings"

	"github.com/heraldhq/herald/pkg/event"
)

// TagQuery is the repeatable query parameter of /all_events that narrows a socket to the tags
// starting with one of its values (/all_events/<token>?tag=salt/job/&tag=herald/agents/).
// Herald's own types (event.Internal, tags herald/<type>/...) are sent only to a socket whose
// prefix names them (tag=herald/connections): a Salt client has no use for them.
const TagQuery = "tag"

// MaxTagPrefixes bounds the prefixes of one socket.
const MaxTagPrefixes = 32

// AllEventsEncoderFor is the encoder of an all_events socket that asked for the tag prefixes
// (none: every tag but Herald's own types) and holds the connection self, whose own
// connection event it never sends. Sockets that ask for the same prefixes and no internal
// type share one encoder, so each event is encoded once for all of them.
func AllEventsEncoderFor(prefixes []string, self string) AllEventsEncoder {
	var e AllEventsEncoder
	for _, p := range prefixes {
		if p == "" {
			continue
		}
		if strings.HasPrefix(p, "herald/"+event.TypeConnections) {
			e.internal, e.self = true, self
		}
		e.prefixes += p + "\n"
	}
	return e
}

// skips reports whether the event ev with Salt tag tag is not for this encoder's sockets.
func (e AllEventsEncoder) skips(ev *event.Event, tag string) bool {
	if event.Internal(ev.Type) && (!e.internal || (e.self != "" && ev.ConnectionID() == e.self)) {
		return true
	}
	if e.prefixes == "" {
		return false
	}
	for p := range strings.SplitSeq(strings.TrimSuffix(e.prefixes, "\n"), "\n") {
		if strings.HasPrefix(tag, p) {
			return false
		}
	}
	return true
}
