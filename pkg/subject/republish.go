package subject

import (
	"fmt"
	"strings"
)

// The event stream republishes every event it stores onto a second subject space, with the
// headers that say where it was stored (the stream's name and the event's sequence): edges
// subscribe there, so every event they deliver carries its position without asking the stream.
// The space cannot be the events' own subjects, which the stream captures (a republish there
// would be stored again, a cycle), so it is
//
//	herald.rp.evt.<scope>.<type>.<action>.<key>
//
// with the same tokens as the event subject.

// RepublishedPrefix is the first three tokens of every republished event subject.
const RepublishedPrefix = "herald.rp.evt"

// RepublishedWildcard matches every republished event subject (the stream's RePublish
// destination, for EventsWildcard as its source).
const RepublishedWildcard = RepublishedPrefix + ".>"

// ToRepublished maps an event subject, or a filter subject from ForFilter or ForFilters, onto
// the subject the stream republishes it on.
func ToRepublished(eventSubject string) (string, error) {
	rest, ok := strings.CutPrefix(eventSubject, EventsPrefix+".")
	if !ok || rest == "" {
		return "", fmt.Errorf("%w: %q is not an event subject", ErrBadToken, eventSubject)
	}
	return RepublishedPrefix + "." + rest, nil
}

// FromRepublished reverses ToRepublished: the event subject a republished subject came from.
func FromRepublished(republished string) (string, error) {
	rest, ok := strings.CutPrefix(republished, RepublishedPrefix+".")
	if !ok || rest == "" {
		return "", fmt.Errorf("%w: %q is not a republished event subject", ErrBadToken, republished)
	}
	return EventsPrefix + "." + rest, nil
}
