package subject

import (
	"fmt"
	"strings"
)

// Each stream republishes every message it stores onto a second subject space, with the
// headers that say where it was stored (the stream's name and the message's sequence): edges
// subscribe there, so every event, sample, alert and log entry they deliver carries its
// position without asking the stream. The space cannot be the stored subjects themselves,
// which the stream captures (a republish there would be stored again, a cycle), so it is the
// stored subject with "rp" after "herald":
//
//	herald.rp.evt.<scope>.<type>.<action>.<key>   from EventStream
//	herald.rp.metrics.<server>                    from TelemetryStream (alerts and logs alike)
//
// with the same tokens as the stored subject.

// republishedRoot is the first two tokens of every republished subject.
const republishedRoot = "herald.rp"

// RepublishedPrefix is the first three tokens of every republished event subject.
const RepublishedPrefix = republishedRoot + ".evt"

// RepublishedWildcard matches every republished event subject (the event stream's RePublish
// destination, for EventsWildcard as its source).
const RepublishedWildcard = RepublishedPrefix + ".>"

// The telemetry stream's RePublish. A stream has one RePublish, with one source, and the
// telemetry subjects have three prefixes: the source is every three-token herald subject. It
// is wider than the stream's subjects, which does no harm: a stream republishes only what it
// stores.
const (
	TelemetryRepublishSource      = "herald.*.*"
	TelemetryRepublishDestination = republishedRoot + ".{{wildcard(1)}}.{{wildcard(2)}}"
)

// ToRepublished maps a stored subject (an event's, a server's metrics, alerts or logs), or a
// filter subject from ForFilter or ForFilters, onto the subject its stream republishes it on.
func ToRepublished(stored string) (string, error) {
	if StreamOf(stored) == "" {
		return "", fmt.Errorf("%w: %q is not a subject a stream stores", ErrBadToken, stored)
	}
	return republishedRoot + strings.TrimPrefix(stored, "herald"), nil
}

// FromRepublished reverses ToRepublished: the stored subject a republished subject came from.
func FromRepublished(republished string) (string, error) {
	rest, ok := strings.CutPrefix(republished, republishedRoot+".")
	if stored := "herald." + rest; ok && StreamOf(stored) != "" {
		return stored, nil
	}
	return "", fmt.Errorf("%w: %q is not a republished subject", ErrBadToken, republished)
}

// StreamOf names the stream that stores subj (or the messages a filter subject selects):
// EventStream for event subjects, TelemetryStream for a server's metrics, alerts and logs, ""
// for anything else.
func StreamOf(subj string) string {
	if rest, ok := strings.CutPrefix(subj, EventsPrefix+"."); ok && rest != "" {
		return EventStream
	}
	for _, p := range telemetryPrefixes {
		if rest, ok := strings.CutPrefix(subj, p); ok && rest != "" && !strings.Contains(rest, ".") {
			return TelemetryStream
		}
	}
	return ""
}
