package herald_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/eventstream"
	"github.com/heraldhq/herald/pkg/natsx"
	"github.com/heraldhq/herald/pkg/subject"
	"github.com/heraldhq/herald/pkg/testutil"
	"github.com/heraldhq/herald/pkg/testutil/natstest"
	"github.com/heraldhq/herald/pkg/token"
	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
	"github.com/heraldhq/herald/services/ingest"
)

// failoverPublisher publishes through one ingest's gRPC EventService, one event at a time,
// and keeps what each call answered.
type failoverPublisher struct {
	name   string
	token  string // may post every event
	client heraldv1.EventServiceClient

	mu      sync.Mutex
	acked   map[uint64]string // stream sequence -> the event's key
	errs    []time.Time       // when each failed call returned
	failed  []string          // the keys of the failed calls
	wrong   []error           // failures that were not "unavailable"
	issued  int
	slowest time.Duration // the longest acknowledged call
}

// counts returns how many calls were acknowledged and how many failed so far.
func (p *failoverPublisher) counts() (acked, failed int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.acked), len(p.errs)
}

// run publishes until ctx ends or limit events have been tried.
func (p *failoverPublisher) run(ctx context.Context, limit int) {
	for n := range limit {
		if ctx.Err() != nil {
			return
		}
		key := fmt.Sprintf("%s-%d", p.name, n)
		began := time.Now()
		resp, err := p.client.Publish(bearer(ctx, p.token), &heraldv1.PublishRequest{Event: &heraldv1.Event{
			Type: "machines", Action: "save", Key: key,
		}})
		p.mu.Lock()
		p.issued++
		switch {
		case err == nil:
			p.acked[resp.GetSequence()] = key
			p.slowest = max(p.slowest, time.Since(began))
		case ctx.Err() != nil:
		default:
			p.errs = append(p.errs, time.Now())
			p.failed = append(p.failed, key)
			if c := status.Code(err); c != codes.Unavailable && c != codes.DeadlineExceeded {
				p.wrong = append(p.wrong, err)
			}
		}
		p.mu.Unlock()
		if err != nil && ctx.Err() == nil {
			// A failing ingest answers at once; give NATS a moment rather than spin.
			select {
			case <-ctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
}

// startFailoverIngest runs an ingest whose NATS connection is given every node of c, node
// first and in that order, with gRPC on a loopback port, and returns a publisher through it.
func startFailoverIngest(t *testing.T, c *natstest.Cluster, node int, name string, issuer *token.Issuer) *failoverPublisher {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	nc, err := natsx.Connect(t.Context(), c.ClientURLs(node), name, log, nats.DontRandomize())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	svc, err := ingest.New(ingest.Config{StreamReplicas: 3, PublishTimeout: 2 * time.Second}, ingest.Deps{
		NC: nc, Verifier: token.NewVerifier(issuer.PublicKey()), Log: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	addr := serveIngest(t, svc, name)
	tok, _, err := issuer.Issue("publisher", []string{"*.*.*"})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &failoverPublisher{name: name, token: tok, client: heraldv1.NewEventServiceClient(conn), acked: map[uint64]string{}}
}

// streamLeader returns the index of the node leading HERALD_EVENTS, or -1.
func streamLeader(c *natstest.Cluster) int {
	for i := range 3 {
		if s := c.Server(i); s != nil && s.JetStreamIsStreamLeader(server.DEFAULT_GLOBAL_ACCOUNT, subject.EventStream) {
			return i
		}
	}
	return -1
}

// Two ingests publish through node 0 of a three-node cluster, which also leads the R3 event
// stream; node 0 goes down and comes back on its ports with its store. Publishing carries on
// through the other nodes, callers see only "unavailable" errors and only for a bounded
// window around the loss. Then the two other nodes go: with no quorum every call fails and
// none is acknowledged, until one comes back. Every event any caller saw acknowledged is in
// the stream afterwards, once, at the sequence it was acknowledged with.
func TestPublishRidesOutNATSNodeLoss(t *testing.T) {
	t.Parallel()
	c := natstest.RunCluster(t, 3)
	priv, err := token.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	issuer := token.NewIssuer(priv, time.Hour)
	pubs := []*failoverPublisher{
		startFailoverIngest(t, c, 0, "ingest-a", issuer),
		startFailoverIngest(t, c, 0, "ingest-b", issuer),
	}
	// Make node 0 the stream leader too: its loss then costs a leader election, the worst case.
	testutil.Eventually(t, 30*time.Second, func() error {
		l := streamLeader(c)
		if l == 0 {
			return nil
		}
		if l > 0 {
			_ = c.Server(l).JetStreamStepdownStream(server.DEFAULT_GLOBAL_ACCOUNT, subject.EventStream)
		}
		return fmt.Errorf("stream leader is node %d, want 0", l)
	})

	// An edge-like listener on node 1, which stays up while node 0 goes: which stored events
	// reach the republished subjects? (RePublish is core NATS, sent by the stream leader.)
	var rpMu sync.Mutex
	republished := map[uint64]bool{}
	listener := natstest.Connect(t, c.Server(1))
	if _, err := listener.Subscribe(subject.RepublishedWildcard, func(m *nats.Msg) {
		if seq, err := eventstream.Sequence(m.Header); err == nil {
			rpMu.Lock()
			republished[seq] = true
			rpMu.Unlock()
		}
	}); err != nil {
		t.Fatal(err)
	}
	if err := listener.Flush(); err != nil {
		t.Fatal(err)
	}
	rp, err := subject.ToRepublished("herald.evt.global.machines.save.x")
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		if !c.Server(0).GlobalAccount().SubscriptionInterest(rp) {
			return errors.New("the stream leader does not see the listener yet")
		}
		return nil
	})

	ctx, stop := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	for _, p := range pubs {
		wg.Go(func() { p.run(ctx, 100_000) })
	}
	defer func() { stop(); wg.Wait() }()
	totals := func() (acked, failed int) {
		for _, p := range pubs {
			a, f := p.counts()
			acked, failed = acked+a, failed+f
		}
		return acked, failed
	}
	total := func() int { a, _ := totals(); return a }
	atLeast := func(n int, within time.Duration) {
		t.Helper()
		testutil.Eventually(t, within, func() error {
			if got := total(); got < n {
				return fmt.Errorf("%d events acknowledged, want %d", got, n)
			}
			return nil
		})
	}
	failures := func(n int, within time.Duration) {
		t.Helper()
		testutil.Eventually(t, within, func() error {
			if _, got := totals(); got < n {
				return fmt.Errorf("%d publishes failed, want %d", got, n)
			}
			return nil
		})
	}

	atLeast(100, 20*time.Second)
	killedAt := time.Now()
	c.Shutdown(0)
	before := total()
	atLeast(before+100, 30*time.Second)
	recoveredIn := time.Since(killedAt)
	c.Restart(0)
	restartedAt := time.Now()
	after := total()
	atLeast(after+100, 30*time.Second)

	// Two nodes down: node 0 alone is no quorum, and the ingests, back on it, must fail every
	// publish, never acknowledge one. Calls in flight at the loss may still be acknowledged, so
	// the count is taken once failures have begun, and must not move while they go on.
	quorumLostAt := time.Now()
	// The listener's node goes next: count what it missed only among the events stored
	// before, and only once the publishes in flight have had their answer.
	_ = listener.Drain()
	var phase1 []uint64
	for _, p := range pubs {
		p.mu.Lock()
		for seq := range p.acked {
			phase1 = append(phase1, seq)
		}
		p.mu.Unlock()
	}
	_, failedBefore := totals()
	c.Shutdown(1)
	c.Shutdown(2)
	failures(failedBefore+len(pubs), 30*time.Second)
	noQuorumAcks, failedNow := totals()
	failures(failedNow+2*len(pubs), 30*time.Second)
	if got := total(); got != noQuorumAcks {
		t.Errorf("%d publishes acknowledged without a quorum", got-noQuorumAcks)
	}
	quorumBackAt := time.Now()
	c.Restart(1)
	atLeast(noQuorumAcks+100, 30*time.Second)
	quorumRecovery := time.Since(quorumBackAt)
	stop()
	wg.Wait()

	// Every acknowledged event is stored at its sequence, read through the node that came back.
	js, err := jetstream.New(natstest.Connect(t, c.Server(0)))
	if err != nil {
		t.Fatal(err)
	}
	var st jetstream.Stream
	testutil.Eventually(t, 20*time.Second, func() error {
		st, err = js.Stream(t.Context(), ingest.StreamName)
		return err
	})
	acked, issued, errs, noQuorumFailed := 0, 0, 0, 0
	var firstErr, lastErr time.Time
	for _, p := range pubs {
		if len(p.wrong) > 0 {
			t.Errorf("%s: %d failures were not Unavailable, first: %v", p.name, len(p.wrong), p.wrong[0])
		}
		issued += p.issued
		for _, at := range p.errs {
			if !at.Before(quorumLostAt) {
				noQuorumFailed++ // the no-quorum phase fails by design
				continue
			}
			errs++
			if firstErr.IsZero() || at.Before(firstErr) {
				firstErr = at
			}
			if at.After(lastErr) {
				lastErr = at
			}
		}
		for seq, key := range p.acked {
			acked++
			var msg *jetstream.RawStreamMsg
			testutil.Eventually(t, 10*time.Second, func() error {
				msg, err = st.GetMsg(t.Context(), seq)
				if errors.Is(err, jetstream.ErrMsgNotFound) {
					t.Fatalf("%s: event %s acknowledged at sequence %d is not in the stream", p.name, key, seq)
				}
				return err
			})
			var ev event.Event
			if err := json.Unmarshal(msg.Data, &ev); err != nil || ev.Key != key {
				t.Fatalf("%s: sequence %d holds %s (%v), acknowledged for %s", p.name, seq, msg.Data, err, key)
			}
		}
	}
	// No event is stored twice, and some that failed may be stored anyway (the acknowledgement
	// was lost with the node): a failure means "unknown", never a false success the other way.
	stored := map[string]int{}
	info, err := st.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		msg, err := st.GetMsg(t.Context(), seq)
		if err != nil {
			t.Fatalf("sequence %d: %v", seq, err)
		}
		var ev event.Event
		if err := json.Unmarshal(msg.Data, &ev); err != nil {
			t.Fatal(err)
		}
		stored[ev.Key]++
	}
	storedFailed := 0
	for k, n := range stored {
		if n > 1 {
			t.Errorf("event %s stored %d times", k, n)
		}
	}
	for _, p := range pubs {
		for _, k := range p.failed {
			storedFailed += stored[k]
		}
	}
	rpMu.Lock()
	notRepublished := 0
	for _, seq := range phase1 {
		if !republished[seq] {
			notRepublished++
		}
	}
	rpMu.Unlock()
	t.Logf("of the %d events acknowledged before the quorum went, %d never reached the republished subjects "+
		"on a node that stayed up", len(phase1), notRepublished)
	slowest := time.Duration(0)
	for _, p := range pubs {
		slowest = max(slowest, p.slowest)
	}
	window, from := time.Duration(0), "-"
	if errs > 0 {
		window, from = lastErr.Sub(firstErr), firstErr.Sub(killedAt).Round(time.Millisecond).String()
		if firstErr.Before(killedAt) {
			t.Errorf("a publish failed %s before the node was lost", killedAt.Sub(firstErr))
		}
	}
	t.Logf("%d calls, %d acknowledged and all stored once; %d failed (Unavailable), "+
		"spanning %s from %s after the loss; slowest call %s; 100 acknowledgements after the loss within %s; "+
		"node back %s after the loss; from two nodes lost until the quorum was back %d calls failed and none was "+
		"acknowledged while no quorum existed; 100 acknowledgements within %s of restarting a node; %d failed calls in all "+
		"were stored anyway (their acknowledgement was lost)", issued, acked, errs, window, from,
		slowest.Round(time.Millisecond), recoveredIn.Round(time.Millisecond), restartedAt.Sub(killedAt).Round(time.Millisecond),
		noQuorumFailed, quorumRecovery.Round(time.Millisecond), storedFailed)
	if window > 15*time.Second {
		t.Errorf("publishes failed over %s, want the error window within 15s", window)
	}
}
