// Package eventstream says where an event sits in the HERALD_EVENTS stream, so a client can
// tell an edge what it last saw and the edge can replay from there.
//
// A position is "<epoch>:<seq>": seq is the stream sequence the event was stored at, and the
// epoch names the stream's incarnation. A stream deleted and created again starts its sequences
// from 1 anew, so a sequence alone from the old stream would silently skip or repeat events;
// with the epoch in the position such a position is recognised as from another stream. The
// epoch is the stream's creation time, which the cluster agrees on, keeps across restarts and
// config updates, and only changes when the stream is created again.
//
// Edges learn each event's position without asking the stream: the stream republishes what it
// stores onto subject.RepublishedWildcard with the sequence in the Nats-Sequence header (see
// Sequence).
package eventstream

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/pkg/subject"
)

// ErrBadPosition is wrapped by ParsePosition's errors and Sequence's.
var ErrBadPosition = errors.New("eventstream: bad position")

// maxEpochLen bounds an epoch read from a client (Epoch's are 13 characters until 2262).
const maxEpochLen = 16

// Position is where one event is stored: the stream's epoch and the event's sequence.
type Position struct {
	Epoch string
	Seq   uint64
}

// String is FormatPosition(p.Epoch, p.Seq).
func (p Position) String() string { return FormatPosition(p.Epoch, p.Seq) }

// FormatPosition returns "<epoch>:<seq>", the form clients store and send back.
func FormatPosition(epoch string, seq uint64) string {
	return epoch + ":" + strconv.FormatUint(seq, 10)
}

// ParsePosition reads what FormatPosition wrote. Sequence 0 is valid: the position before the
// stream's first event. The epoch must look like one Epoch returns (lower-case base 36, at most
// 16 characters); whether it is the stream's current one is for the caller to compare.
func ParsePosition(s string) (Position, error) {
	epoch, seqText, ok := strings.Cut(s, ":")
	if !ok {
		return Position{}, fmt.Errorf("%w: %q: want <epoch>:<sequence>", ErrBadPosition, s)
	}
	if epoch == "" || len(epoch) > maxEpochLen || strings.IndexFunc(epoch, notBase36) >= 0 {
		return Position{}, fmt.Errorf("%w: %q: epoch must be 1 to %d of 0-9 a-z", ErrBadPosition, s, maxEpochLen)
	}
	// A position has one spelling: leading zeros are refused.
	seq, err := strconv.ParseUint(seqText, 10, 64)
	if err != nil || (len(seqText) > 1 && seqText[0] == '0') {
		return Position{}, fmt.Errorf("%w: %q: sequence must be a decimal number", ErrBadPosition, s)
	}
	return Position{Epoch: epoch, Seq: seq}, nil
}

func notBase36(r rune) bool { return (r < '0' || r > '9') && (r < 'a' || r > 'z') }

// Epoch returns the epoch of the HERALD_EVENTS stream as it is now. It fails (wrapping
// jetstream.ErrStreamNotFound) if the stream does not exist.
func Epoch(ctx context.Context, js jetstream.JetStream) (string, error) {
	return EpochIn(ctx, js, subject.EventStream)
}

// EpochIn is Epoch for any of Herald's streams (subject.EventStream, subject.TelemetryStream):
// each has its own epoch and sequences.
func EpochIn(ctx context.Context, js jetstream.JetStream, stream string) (string, error) {
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return "", fmt.Errorf("eventstream: epoch of %s: %w", stream, err)
	}
	return EpochOf(st.CachedInfo()), nil
}

// EpochOf returns the epoch of the stream info describes, for a caller that already has it
// (for example to compare a position with the stream's first sequence too).
func EpochOf(info *jetstream.StreamInfo) string {
	return strconv.FormatInt(info.Created.UnixNano(), 36)
}

// Sequence returns the stream sequence of a message the stream republished, from its
// Nats-Sequence header. It fails if the message was not republished by HERALD_EVENTS
// (its Nats-Stream header names another stream, or it has none).
func Sequence(h nats.Header) (uint64, error) { return SequenceIn(h, subject.EventStream) }

// SequenceIn is Sequence for a message republished by stream.
func SequenceIn(h nats.Header, stream string) (uint64, error) {
	if got := h.Get(jetstream.StreamHeader); got != stream {
		return 0, fmt.Errorf("%w: message from stream %q, want %s", ErrBadPosition, got, stream)
	}
	seq, err := strconv.ParseUint(h.Get(jetstream.SequenceHeader), 10, 64)
	if err != nil || seq == 0 {
		return 0, fmt.Errorf("%w: %s header %q", ErrBadPosition, jetstream.SequenceHeader, h.Get(jetstream.SequenceHeader))
	}
	return seq, nil
}

// DuplicateWindow is how long the stream remembers a message id (Nats-Msg-Id) to drop a
// retried publish: longer than any caller's retry loop.
const DuplicateWindow = 2 * time.Minute

// StreamConfig is HERALD_EVENTS: every event subject, kept maxAge (and at most maxBytes, 0 for
// no limit, oldest dropped first) on file, on replicas nodes.
//
// The stream republishes every event it stores onto subject.RepublishedWildcard, with its
// sequence in the Nats-Sequence header: edges subscribe there, so each event they deliver
// carries its position in stream order, with no round trip. Durability is the NATS servers'
// business (deploy/nats/cluster.conf syncs every write before acknowledging it); with replicas
// 3 an acknowledgement means a quorum of nodes stored it.
func StreamConfig(maxAge time.Duration, maxBytes int64, replicas int) jetstream.StreamConfig {
	cfg := storedAndRepublished(maxAge, maxBytes, replicas, subject.EventsWildcard, subject.RepublishedWildcard)
	cfg.Name = subject.EventStream
	cfg.Description = "Herald events, kept so reconnecting clients can catch up"
	cfg.Subjects = []string{subject.EventsWildcard}
	// NATS refuses a duplicate window longer than the stream keeps messages.
	cfg.Duplicates = min(DuplicateWindow, maxAge)
	return cfg
}

// storedAndRepublished is what Herald's two streams share: on file, on replicas nodes, oldest
// dropped first past maxAge or maxBytes, and every message stored republished from source
// onto destination with its sequence, which is where edges read.
func storedAndRepublished(maxAge time.Duration, maxBytes int64, replicas int, source, destination string) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Storage:   jetstream.FileStorage,
		Retention: jetstream.LimitsPolicy,
		Discard:   jetstream.DiscardOld,
		MaxAge:    maxAge,
		MaxBytes:  maxBytes,
		Replicas:  replicas,
		RePublish: &jetstream.RePublish{Source: source, Destination: destination},
	}
}

// Telemetry stream limits, for ingest flags left zero. Samples are superseded within seconds
// and log entries are read live: the stream only has to outlast a viewer's reconnect.
const (
	DefaultTelemetryMaxAge   = 15 * time.Minute
	DefaultTelemetryMaxBytes = 256 << 20 // 256 MiB
)

// TelemetryConfig is HERALD_TELEMETRY: every server's samples, alerts and log entries
// (subject.TelemetrySubjects), kept maxAge (and at most maxBytes, 0 for no limit, oldest
// dropped first) on file, on replicas nodes, the event stream's number.
//
// Like HERALD_EVENTS it republishes what it stores (onto herald.rp.metrics.<server> and so
// on, with Nats-Sequence), which is where edges read telemetry, so every frame a viewer gets
// has a position in this stream and a viewer can resume from it. Ingest publishes without
// message ids (a sample is not retried), so the duplicate window only has to be valid: the
// smallest NATS keeps.
func TelemetryConfig(maxAge time.Duration, maxBytes int64, replicas int) jetstream.StreamConfig {
	cfg := storedAndRepublished(maxAge, maxBytes, replicas, subject.TelemetryRepublishSource, subject.TelemetryRepublishDestination)
	cfg.Name = subject.TelemetryStream
	cfg.Description = "Herald servers' recent samples, alerts and log entries, kept so reconnecting viewers can catch up"
	cfg.Subjects = subject.TelemetrySubjects
	cfg.Duplicates = min(telemetryDuplicateWindow, maxAge)
	return cfg
}

const telemetryDuplicateWindow = time.Second
