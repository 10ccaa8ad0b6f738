package ingest_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/heraldhq/herald/pkg/token"
	"google.golang.org/grpc/metadata"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/subject"
	"github.com/heraldhq/herald/pkg/testutil"
	"github.com/heraldhq/herald/pkg/testutil/natstest"
	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
	"github.com/heraldhq/herald/services/ingest"
)

const waitFor = 10 * time.Second

// stack is a running ingest service on an embedded NATS, reachable over real gRPC.
type stack struct {
	ns     *server.Server
	nc     *nats.Conn // the service's own connection
	svc    *ingest.Service
	client heraldv1.EventServiceClient // sends a token that may post every event
	issuer *token.Issuer
	priv   ed25519.PrivateKey // the issuer's key, for tokens with other lifetimes
	addr   string
}

func startStack(t testing.TB, cfg ingest.Config) *stack {
	t.Helper()
	ns := natstest.RunServer(t)
	nc := natstest.Connect(t, ns)
	priv, err := token.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	issuer := token.NewIssuer(priv, time.Hour)
	svc, err := ingest.New(cfg, ingest.Deps{NC: nc, Verifier: token.NewVerifier(issuer.PublicKey())})
	if err != nil {
		t.Fatalf("New: %v", err)
	}

	runUntilReady(t, svc, waitFor)

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	svc.RegisterGRPC(gs)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)

	s := &stack{ns: ns, nc: nc, svc: svc, issuer: issuer, priv: priv, addr: lis.Addr().String()}
	s.client = s.clientWith(t, "*.*.*")
	return s
}

// runUntilReady runs svc until the test ends and waits, at most within, until it is ready.
func runUntilReady(t testing.TB, svc *ingest.Service, within time.Duration) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-runErr; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case <-svc.Ready():
	case err := <-runErr:
		t.Fatalf("Run ended before ready: %v", err)
	case <-time.After(within):
		t.Fatal("service not ready")
	}
}

// clientWith is an EventService client whose calls carry a token with perms (none: no token).
func (s *stack) clientWith(t testing.TB, perms ...string) heraldv1.EventServiceClient {
	t.Helper()
	return s.clientIssued(t, s.issuer, perms...)
}

// clientIssued is clientWith with tokens from issuer.
func (s *stack) clientIssued(t testing.TB, issuer *token.Issuer, perms ...string) heraldv1.EventServiceClient {
	t.Helper()
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if perms != nil {
		raw, _, err := issuer.Issue("publisher", perms)
		if err != nil {
			t.Fatal(err)
		}
		opts = append(opts, grpc.WithUnaryInterceptor(func(ctx context.Context, method string, req, reply any,
			cc *grpc.ClientConn, invoker grpc.UnaryInvoker, o ...grpc.CallOption) error {
			return invoker(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+raw), method, req, reply, cc, o...)
		}), grpc.WithStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn,
			method string, streamer grpc.Streamer, o ...grpc.CallOption) (grpc.ClientStream, error) {
			return streamer(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+raw), desc, cc, method, o...)
		}))
	}
	conn, err := grpc.NewClient(s.addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return heraldv1.NewEventServiceClient(conn)
}

// Publishing needs a token allowed events.post.<type>; the caller becomes the principal.
func TestPublishIsAuthorized(t *testing.T) {
	t.Parallel()
	s := startStack(t, ingest.Config{})
	req := &heraldv1.PublishRequest{Event: &heraldv1.Event{Type: "machines", Action: "create", Key: "m1"}}
	if _, err := s.clientWith(t).Publish(t.Context(), req); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("no token: %v, want Unauthenticated", err)
	}
	if _, err := s.clientWith(t, "events.post.profiles").Publish(t.Context(), req); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("events.post.profiles posting machines: %v, want PermissionDenied", err)
	}
	ch := subscribe(t, s, "herald.evt.>")
	if _, err := s.clientWith(t, "events.post.machines").Publish(t.Context(), req); err != nil {
		t.Fatalf("events.post.machines: %v", err)
	}
	var ev struct{ Principal string }
	if err := json.Unmarshal(receive(t, ch).Data, &ev); err != nil || ev.Principal != "user:publisher" {
		t.Fatalf("published Principal %q (%v), want the caller, user:publisher", ev.Principal, err)
	}
}

// subscribe returns a channel of the messages a fresh core NATS subscriber sees on subj.
func subscribe(t *testing.T, s *stack, subj string) chan *nats.Msg {
	t.Helper()
	nc := natstest.Connect(t, s.ns)
	ch := make(chan *nats.Msg, 64)
	sub, err := nc.ChanSubscribe(subj, ch)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := nc.Flush(); err != nil { // the subscription is known to the server
		t.Fatal(err)
	}
	return ch
}

func receive(t *testing.T, ch chan *nats.Msg) *nats.Msg {
	t.Helper()
	select {
	case m := <-ch:
		return m
	case <-time.After(waitFor):
		t.Fatal("no message on NATS")
		return nil
	}
}

func TestPublishReachesNATSWithCanonicalJSON(t *testing.T) {
	s := startStack(t, ingest.Config{})
	ch := subscribe(t, s, subject.EventsWildcard)

	obj, err := structpb.NewValue(map[string]any{"Name": "global", "Params": map[string]any{"a": 1.5}})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2025, 3, 4, 5, 6, 7, 8000, time.UTC)
	resp, err := s.client.Publish(t.Context(), &heraldv1.PublishRequest{Event: &heraldv1.Event{
		Time: timestamppb.New(at), Type: "profiles", Action: "save", Key: "global",
		Principal: "user:admin", Object: obj,
	}})
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}

	want := event.Event{
		Time: at, Type: "profiles", Action: "save", Key: "global", Scope: event.ScopeGlobal,
		Principal: "user:admin", Object: json.RawMessage(`{"Name":"global","Params":{"a":1.5}}`),
	}
	wantJSON, err := json.Marshal(&want)
	if err != nil {
		t.Fatal(err)
	}
	m := receive(t, ch)
	if got := string(m.Data); got != string(wantJSON) {
		t.Errorf("payload\n got %s\nwant %s", got, wantJSON)
	}
	if wantSubj := subject.ForEvent(&want); m.Subject != wantSubj || resp.GetSubject() != wantSubj {
		t.Errorf("subject: NATS %q, response %q, want %q", m.Subject, resp.GetSubject(), wantSubj)
	}
	if resp.GetSequence() != 1 {
		t.Errorf("sequence = %d, want 1 (first event in a new stream)", resp.GetSequence())
	}
	if !resp.GetTime().AsTime().Equal(at) {
		t.Errorf("time = %v, want %v", resp.GetTime().AsTime(), at)
	}

	// A second event without time, scope or object gets the defaults and the next sequence.
	before := time.Now()
	resp, err = s.client.Publish(t.Context(), &heraldv1.PublishRequest{Event: &heraldv1.Event{
		Type: "machines", Action: "create", Key: "m1",
	}})
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if resp.GetSequence() != 2 {
		t.Errorf("sequence = %d, want 2", resp.GetSequence())
	}
	m = receive(t, ch)
	var got event.Event
	if err := json.Unmarshal(m.Data, &got); err != nil {
		t.Fatal(err)
	}
	if got.Scope != event.ScopeGlobal || string(got.Object) != "null" || got.Time.Before(before.Add(-time.Second)) {
		t.Errorf("defaults not applied: %s", m.Data)
	}
	if !got.Time.Equal(resp.GetTime().AsTime()) {
		t.Errorf("response time %v != event time %v", resp.GetTime().AsTime(), got.Time)
	}
}

func TestKeysRoundTripThroughNATS(t *testing.T) {
	s := startStack(t, ingest.Config{})
	ch := subscribe(t, s, subject.EventsWildcard)

	keys := []string{
		"10.0.0.1:8092", "a.b.c", "*", ">", "a b", " lead", "tab\there",
		"runner:3f2a-9c", "ünïcødé ✓", "日本語.キー", "%2E", "a..b", "",
	}
	for _, key := range keys {
		if _, err := s.client.Publish(t.Context(), &heraldv1.PublishRequest{Event: &heraldv1.Event{
			Type: "machines", Action: "update", Key: key, Scope: "c-1.p 2",
		}}); err != nil {
			t.Fatalf("Publish key %q: %v", key, err)
		}
		m := receive(t, ch)
		var got event.Event
		if err := json.Unmarshal(m.Data, &got); err != nil {
			t.Fatal(err)
		}
		if got.Key != key {
			t.Errorf("payload key = %q, want %q", got.Key, key)
		}
		scope, _, _, subjKey, err := subject.ParseEvent(m.Subject)
		if err != nil {
			t.Fatalf("subject %q: %v", m.Subject, err)
		}
		if subjKey != key || scope != "c-1.p 2" {
			t.Errorf("subject %q decodes to key %q scope %q, want %q %q", m.Subject, subjKey, scope, key, "c-1.p 2")
		}
	}
}

func TestInvalidEventsAreInvalidArgument(t *testing.T) {
	s := startStack(t, ingest.Config{})
	ch := subscribe(t, s, subject.EventsWildcard)

	cases := []struct {
		name string
		ev   *heraldv1.Event
		want string // substring of the status message
	}{
		{"no event", nil, "event: must be set"},
		{"empty type", &heraldv1.Event{Action: "create", Key: "k"}, "event.type: must not be empty"},
		{"empty action", &heraldv1.Event{Type: "machines", Key: "k"}, "event.action: must not be empty"},
		{"long key", &heraldv1.Event{Type: "machines", Action: "create", Key: strings.Repeat("k", event.MaxKeyBytes+1)}, "event.key:"},
		{"long type", &heraldv1.Event{Type: strings.Repeat("t", event.MaxFieldBytes+1), Action: "a"}, "event.type:"},
		{"unset object value", &heraldv1.Event{Type: "machines", Action: "create", Object: &structpb.Value{}}, "event.object:"},
		{"bad time", &heraldv1.Event{Type: "machines", Action: "create", Time: &timestamppb.Timestamp{Nanos: -1}}, "event.time:"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.client.Publish(t.Context(), &heraldv1.PublishRequest{Event: tc.ev})
			st := status.Convert(err)
			if st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), tc.want) {
				t.Errorf("got %v %q, want InvalidArgument containing %q", st.Code(), st.Message(), tc.want)
			}
		})
	}
	// gRPC refuses invalid UTF-8 in proto strings before it is sent; the in-process API
	// must refuse it too.
	_, err := s.svc.Publish(t.Context(), &event.Event{Type: "machines", Action: "create", Key: "\xff"})
	if !errors.Is(err, event.ErrInvalid) || !strings.Contains(err.Error(), "key:") {
		t.Errorf("Publish with invalid UTF-8 key: err = %v, want event.ErrInvalid naming the key", err)
	}
	// NATS keeps order per publisher: if any invalid event had been published, it would
	// arrive before this valid one.
	if _, err := s.svc.Publish(t.Context(), &event.Event{Type: "sentinel", Action: "create"}); err != nil {
		t.Fatal(err)
	}
	var got event.Event
	if m := receive(t, ch); json.Unmarshal(m.Data, &got) != nil || got.Type != "sentinel" {
		t.Errorf("invalid event reached NATS: %s %s", m.Subject, m.Data)
	}
}

func TestPublishWithNATSDownIsUnavailable(t *testing.T) {
	const timeout = 500 * time.Millisecond
	s := startStack(t, ingest.Config{PublishTimeout: timeout})
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
	testutil.Eventually(t, waitFor, func() error {
		if s.nc.IsConnected() {
			return errors.New("client still connected")
		}
		return nil
	})

	start := time.Now()
	_, err := s.client.Publish(t.Context(), &heraldv1.PublishRequest{Event: &heraldv1.Event{
		Type: "machines", Action: "create", Key: "m1",
	}})
	elapsed := time.Since(start)
	if st := status.Convert(err); st.Code() != codes.Unavailable || st.Message() == "" {
		t.Errorf("got %v %q, want Unavailable with a message", st.Code(), st.Message())
	}
	if elapsed > timeout+2*time.Second {
		t.Errorf("Publish took %s with NATS down, want about %s at most", elapsed, timeout)
	}
}

func TestPublishHonoursCallerDeadline(t *testing.T) {
	// A reconnecting client buffers the publish and never gets an ack: only a deadline ends it.
	ns := natstest.RunServer(t)
	nc := natstest.Connect(t, ns, nats.MaxReconnects(-1), nats.ReconnectWait(time.Hour))
	svc, err := ingest.New(ingest.Config{PublishTimeout: time.Minute}, ingest.Deps{NC: nc})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- svc.Run(ctx) }()
	select {
	case <-svc.Ready():
	case err := <-runErr:
		t.Fatalf("Run: %v", err)
	case <-time.After(waitFor):
		t.Fatal("not ready")
	}
	ns.Shutdown()
	ns.WaitForShutdown()
	testutil.Eventually(t, waitFor, func() error {
		if nc.IsConnected() {
			return errors.New("client still connected")
		}
		return nil
	})

	callCtx, callCancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer callCancel()
	start := time.Now()
	_, err = svc.Publish(callCtx, &event.Event{Type: "machines", Action: "create", Key: "m1"})
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ingest.ErrUnavailable) {
		t.Errorf("err = %v, want ErrUnavailable wrapping the caller's deadline", err)
	}
	if n := strings.Count(err.Error(), "event bus unavailable"); n != 1 {
		t.Errorf("err = %q says \"event bus unavailable\" %d times, want once", err, n)
	}
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("Publish took %s, want the caller's 300ms deadline honoured", elapsed)
	}
	cancel()
	if err := <-runErr; err != nil {
		t.Errorf("Run: %v", err)
	}
}

func TestStreamConfiguredFromConfig(t *testing.T) {
	s := startStack(t, ingest.Config{StreamMaxAge: time.Hour, StreamMaxBytes: 1 << 20})
	js, err := s.nc.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	info, err := js.StreamInfo(ingest.StreamName)
	if err != nil {
		t.Fatalf("stream %s: %v", ingest.StreamName, err)
	}
	c := info.Config
	if c.MaxAge != time.Hour || c.MaxBytes != 1<<20 || c.Storage != nats.FileStorage ||
		c.Discard != nats.DiscardOld || fmt.Sprint(c.Subjects) != "["+subject.EventsWildcard+"]" ||
		c.Duplicates != 2*time.Minute || c.Replicas != 1 || c.RePublish == nil ||
		c.RePublish.Source != subject.EventsWildcard || c.RePublish.Destination != subject.RepublishedWildcard {
		t.Errorf("stream config = %+v", c)
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	if err := (ingest.Config{}).Validate(); err != nil {
		t.Errorf("zero Config: %v", err)
	}
	for _, c := range []ingest.Config{
		{StreamMaxAge: -1}, {StreamMaxBytes: -1}, {PublishTimeout: -1}, {StreamReplicas: 7},
		{AgentAuthTimeout: -1}, {AgentMaxFrameBytes: -1}, {AgentPongWait: -1},
		{AgentPingInterval: time.Minute, AgentPongWait: 30 * time.Second}, {AlertCPU: 101},
		{AlertSamples: -1}, {CommandTimeout: time.Hour, MaxCommandTimeout: time.Minute},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil, want an error", c)
		}
	}
	if _, err := ingest.New(ingest.Config{}, ingest.Deps{}); err == nil {
		t.Error("New without NATS connection succeeded")
	}
}
