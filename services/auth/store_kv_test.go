package auth_test

import (
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/pkg/testutil/natstest"
	"github.com/heraldhq/herald/services/auth"
	"github.com/heraldhq/herald/services/auth/authtest"
)

// newJetStream starts a NATS server of the test's own (file storage in a temporary directory)
// and returns a JetStream client of it.
func newJetStream(t *testing.T) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(natstest.Connect(t, natstest.RunServer(t)))
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func TestKVStore(t *testing.T) {
	t.Parallel()
	authtest.RunStore(t, func(t *testing.T) auth.Store {
		st, err := auth.NewKVStore(t.Context(), newJetStream(t), auth.KVConfig{})
		if err != nil {
			t.Fatal(err)
		}
		return st
	})
}
