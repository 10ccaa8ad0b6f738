package socket

import (
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

// A replay's consumer is kept only on a node that holds every event.
func TestCompleteHost(t *testing.T) {
	cluster := &jetstream.ClusterInfo{Leader: "n1", Replicas: []*jetstream.PeerInfo{
		{Name: "n2", Current: true}, {Name: "n3", Current: false, Lag: 900}}}
	for _, tc := range []struct {
		c    *jetstream.ClusterInfo
		host string
		want bool
	}{
		{cluster, "n1", true},  // the leader
		{cluster, "n2", true},  // a current replica
		{cluster, "n3", false}, // back from a crash, still catching up
		{cluster, "n4", false}, // not a node of the stream
		{nil, "n1", true},      // one server, no cluster
		{&jetstream.ClusterInfo{Leader: "n1"}, "n1", true},
	} {
		if got := complete(tc.c, tc.host); got != tc.want {
			t.Errorf("complete(%v, %q) = %v, want %v", tc.c, tc.host, got, tc.want)
		}
	}
}
