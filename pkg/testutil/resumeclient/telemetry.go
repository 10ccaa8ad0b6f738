package resumeclient

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/pkg/eventstream"
	"github.com/heraldhq/herald/pkg/subject"
)

// telemetryWindow bounds the samples in flight, as ingest's own window does, and
// telemetryAckTimeout how long one waits for its acknowledgement.
const (
	telemetryWindow     = 256
	telemetryAckTimeout = 5 * time.Second
)

// Telemetry stores samples of several servers in the telemetry stream the way ingest does:
// asynchronously, acknowledged, never retried (a sample the stream did not take is counted,
// and no viewer may see it). What each Viewer must end with is what Stored reads back from
// the stream: the stream, not the publisher, is the record.
type Telemetry struct {
	js    jetstream.JetStream
	st    jetstream.Stream
	first uint64 // the stream's last sequence before the first sample
	start string // its position: where every viewer starts
	lost  atomic.Int64
}

// NewTelemetry publishes through nc, after the stream's present end.
func NewTelemetry(ctx context.Context, nc *nats.Conn) (*Telemetry, error) {
	tl := &Telemetry{}
	var err error
	// The timeout, as ingest's: an acknowledgement lost with a node (the stream's leader
	// went before answering) would otherwise stay pending for ever. Such a sample may be
	// stored all the same; Stored reads the stream, so it counts if it is there.
	tl.js, err = jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(telemetryWindow),
		jetstream.WithPublishAsyncTimeout(telemetryAckTimeout),
		jetstream.WithPublishAsyncErrHandler(func(jetstream.JetStream, *nats.Msg, error) { tl.lost.Add(1) }))
	if err != nil {
		return nil, fmt.Errorf("telemetry: %w", err)
	}
	if tl.st, err = tl.js.Stream(ctx, subject.TelemetryStream); err != nil {
		return nil, fmt.Errorf("telemetry: %w", err)
	}
	info, err := tl.st.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("telemetry: %w", err)
	}
	tl.first = info.State.LastSeq
	tl.start = eventstream.FormatPosition(eventstream.EpochOf(info), info.State.LastSeq)
	return tl, nil
}

// Start is the position before the first sample: where a Viewer client starts.
func (tl *Telemetry) Start() string { return tl.start }

// Lost is how many samples the stream did not acknowledge.
func (tl *Telemetry) Lost() int64 { return tl.lost.Load() }

// Sample stores sample i (key strconv.Itoa(i)) of every one of servers.
func (tl *Telemetry) Sample(i int, servers []string) {
	for _, srv := range servers {
		data, _ := json.Marshal(sample{ServerID: srv, Key: strconv.Itoa(i)})
		if _, err := tl.js.PublishAsync(subject.Metrics(srv), data, jetstream.WithExpectStream(subject.TelemetryStream)); err != nil {
			tl.lost.Add(1)
		}
	}
}

type sample struct {
	ServerID string `json:"server_id"`
	Key      string `json:"key"`
}

// Stored waits for every acknowledgement (bounded by ctx) and returns, per server, the samples
// the stream holds after Start, in stream order.
func (tl *Telemetry) Stored(ctx context.Context) (map[string][]Acked, error) {
	select {
	case <-tl.js.PublishAsyncComplete():
	case <-ctx.Done():
		return nil, fmt.Errorf("telemetry acknowledgements still pending: %w", ctx.Err())
	}
	info, err := tl.st.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("telemetry: %w", err)
	}
	out := map[string][]Acked{}
	for seq := tl.first + 1; seq <= info.State.LastSeq; seq++ {
		m, err := tl.st.GetMsg(ctx, seq)
		if err != nil {
			return nil, fmt.Errorf("telemetry %d: %w", seq, err)
		}
		var s sample
		if err := json.Unmarshal(m.Data, &s); err != nil {
			return nil, fmt.Errorf("telemetry %d: %w", seq, err)
		}
		out[s.ServerID] = append(out[s.ServerID], Acked{Seq: seq, Key: s.Key, At: m.Time})
	}
	return out, nil
}

// Enough reports a server of which the stream stored fewer than the n samples sent, less those
// not acknowledged, or none at all: viewers checked against such a record would prove little.
func (tl *Telemetry) Enough(stored map[string][]Acked, servers []string, n int) error {
	for _, srv := range servers {
		if got := len(stored[srv]); got == 0 || int64(got) < int64(n)-tl.Lost() {
			return fmt.Errorf("telemetry: %d samples of %s stored, %d sent, %d not acknowledged", got, srv, n, tl.Lost())
		}
	}
	return nil
}
