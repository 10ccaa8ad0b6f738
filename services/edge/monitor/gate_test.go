package monitor

import (
	"slices"
	"testing"

	"github.com/heraldhq/herald/pkg/wsconn"
)

// seqSink records what it is given and, like the socket, drops a frame at or below the last
// sequence it took.
type seqSink struct {
	last uint64
	got  []string
}

func (s *seqSink) Deliver(frame []byte, seq uint64) bool {
	if seq > 0 && seq <= s.last {
		return true
	}
	s.last = max(s.last, seq)
	s.got = append(s.got, string(frame))
	return true
}

func (s *seqSink) Close(wsconn.Disconnect) {}

// An alert stored before the latest sample, held while the viewer was set up, still reaches
// it, ahead of the sample: the held frames and the latest go out in stream order, and the live
// copy of the latest is dropped.
func TestGateSendsHeldFramesInStreamOrder(t *testing.T) {
	sink := &seqSink{}
	g := &gate{Sink: sink}
	g.Deliver([]byte("alert-100"), 100)
	g.Deliver([]byte("sample-101"), 101) // the live copy of the latest
	g.Deliver([]byte("log-102"), 102)
	g.open([]byte("latest-101"), 101)
	g.Deliver([]byte("sample-103"), 103)
	want := []string{"alert-100", "latest-101", "log-102", "sample-103"}
	if !slices.Equal(sink.got, want) {
		t.Fatalf("viewer got %q, want %q", sink.got, want)
	}
}
