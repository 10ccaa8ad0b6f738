package herald_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/crypto/bcrypt"

	"github.com/heraldhq/herald/pkg/subject"
	"github.com/heraldhq/herald/pkg/testutil"
	"github.com/heraldhq/herald/pkg/testutil/natstest"
	"github.com/heraldhq/herald/services/auth"
)

// TestAuthBucketsReplicatedOnCluster: with three replicas on a three-node cluster, auth's
// identity data rides out the loss of the node auth talks to: logins and API keys keep
// working once auth has reconnected, and a second auth instance on another node shares them.
func TestAuthBucketsReplicatedOnCluster(t *testing.T) {
	cluster := natstest.RunCluster(t, 3)
	start := func(node int) *auth.Service {
		nc, err := nats.Connect(cluster.ClientURLs(node), nats.DontRandomize(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		a, err := auth.New(auth.Config{AdminPassword: "correct horse", BcryptCost: bcrypt.MinCost, KVReplicas: 3},
			auth.Deps{NC: nc, JetStream: js})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		ran := make(chan struct{})
		go func() { _ = a.Run(ctx); close(ran) }()
		t.Cleanup(func() { cancel(); <-ran })
		return a
	}
	a := start(0)
	var key auth.NewAPIKey
	testutil.Eventually(t, 20*time.Second, func() (err error) {
		key, err = a.CreateAPIKey(t.Context(), "web-1", "cluster test")
		return err
	})
	cluster.Shutdown(0)
	testutil.Eventually(t, 30*time.Second, func() error {
		if _, err := a.Login(t.Context(), "admin", "correct horse"); err != nil {
			return err
		}
		_, err := a.VerifyAPIKey(t.Context(), key.Key)
		return err
	})
	b := start(2)
	testutil.Eventually(t, 20*time.Second, func() error {
		if _, err := b.Login(t.Context(), "admin", "correct horse"); err != nil {
			return err
		}
		_, err := b.VerifyAPIKey(t.Context(), key.Key)
		return err
	})
	// Every bucket is really kept on three nodes.
	nc, err := nats.Connect(cluster.ClientURLs(1))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	for _, bucket := range []string{subject.AuthUsersBucket, subject.AuthAPIKeysBucket, subject.AuthKeySetBucket} {
		kv, err := js.KeyValue(t.Context(), bucket)
		if err != nil {
			t.Fatal(err)
		}
		st, err := kv.Status(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if bs, ok := st.(*jetstream.KeyValueBucketStatus); !ok || bs.StreamInfo().Config.Replicas != 3 {
			t.Fatalf("bucket %s: status %+v, want 3 replicas", bucket, st)
		}
	}
	cluster.Restart(0)
}
