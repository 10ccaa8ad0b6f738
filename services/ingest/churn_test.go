package ingest_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/pkg/agentstate"
	"github.com/heraldhq/herald/pkg/subject"
	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
	"github.com/heraldhq/herald/services/ingest"
)

// refused dials n with key and expects the churn refusal: an error frame that says what is
// going on, then close 4004.
func refused(t *testing.T, n *ingestNode, key string) {
	t.Helper()
	a := dialAgent(t, n.wsURL)
	a.send(map[string]any{"type": "auth", "api_key": key})
	m := a.read()
	msg, _ := m["message"].(string)
	if m["type"] != "error" || !strings.Contains(msg, "replaced 2 times within 1m0s") ||
		!strings.Contains(msg, "same API key") {
		t.Fatalf("refusal frame = %v, want the churn error", m)
	}
	a.expectClose(4004, "replaced too often, retry later")
}

// TestTwoAgentsOnOneKeyStopFlapping: two agents with one key on two ingests take over from each
// other at most twice; then the newcomer is refused (clearly, and again on every retry) while
// the holder stays connected.
func TestTwoAgentsOnOneKeyStopFlapping(t *testing.T) {
	env := newAgentEnv(t)
	n1 := env.startIngest(ingest.Config{})
	n2 := env.startIngest(ingest.Config{})

	first := connect(t, n1, "hk_web1")  // agent A
	second := connect(t, n2, "hk_web1") // agent B takes over (1)
	first.expectClose(4002, "replaced by a newer connection for this server")
	again := connect(t, n1, "hk_web1") // A reconnects and takes over (2)
	// Facts first, as Herald's agent does: that fixes the doc shape before any ping.
	again.send(map[string]any{"type": "facts", "data": map[string]any{"hostname": "h"}})
	second.expectClose(4002, "replaced by a newer connection for this server")

	for range 3 { // B retries, on either ingest: refused every time, A keeps its connection
		refused(t, n2, "hk_web1")
		refused(t, n1, "hk_web1")
	}
	again.alive()

	// The holder still serves commands: the refusals did not disturb it.
	ctx := env.callerCtx(t.Context(), "*.*.*")
	done := make(chan error, 1)
	go func() {
		_, err := n2.agents.RunCommand(ctx, &heraldv1.RunCommandRequest{ServerId: "web-1", Command: "uptime"})
		done <- err
	}()
	cmd := again.read()
	again.send(map[string]any{"type": "command_response", "command_id": cmd["command_id"], "output": "up", "exit_code": 0, "duration_ms": 1})
	if err := <-done; err != nil {
		t.Fatalf("RunCommand on the holder: %v", err)
	}

	// Another server's agent is not affected.
	connect(t, n2, "hk_web2").alive()
}

// TestOneAgentAfterABlipGetsIn: a single agent whose old connection is half-dead (still open
// on the ingest) reconnects and takes over, as often as a real blip happens.
func TestOneAgentAfterABlipGetsIn(t *testing.T) {
	env := newAgentEnv(t)
	n := env.startIngest(ingest.Config{})
	halfDead := connect(t, n, "hk_web1")
	fresh := connect(t, n, "hk_web1")
	halfDead.expectClose(4002, "")
	fresh.alive()
	env.waitEvent("agents", "online", "web-1")
}

// TestAlertFollowsAgentToAnotherIngest: an alert raised while the agent was on one ingest is
// resolved (same alert id, not raised again) by the ingest it moved to.
func TestAlertFollowsAgentToAnotherIngest(t *testing.T) {
	env := newAgentEnv(t)
	cfg := ingest.Config{AlertCPU: 80, AlertMemory: -1, AlertDisk: -1, AlertSamples: 2}
	n1 := env.startIngest(cfg)
	n2 := env.startIngest(cfg)
	alerts := env.natsSub(subject.Alerts("web-1"))
	base := time.Now().Add(-time.Minute)

	a := connect(t, n1, "hk_web1")
	for i, v := range []float64{95, 96} {
		a.send(docMetrics(v, base.Add(time.Duration(i)*time.Second), uint64(i+1)))
		a.read()
	}
	raised := receiveWithin(t, alerts)
	if raised["resolved"] != false {
		t.Fatalf("first alert = %v, want raised", raised)
	}

	b := connect(t, n2, "hk_web1")
	a.expectClose(4002, "")
	b.send(docMetrics(97, base.Add(3*time.Second), 3)) // still over: no second raise
	b.read()
	b.send(docMetrics(10, base.Add(4*time.Second), 4))
	b.read()
	resolved := receiveWithin(t, alerts)
	if resolved["id"] != raised["id"] || resolved["resolved"] != true {
		t.Fatalf("after the move: %v, want the resolve of %v", resolved, raised["id"])
	}
}

// slowStore is an agent state store whose metrics writes hang until released, as Redis does
// when it is unreachable and every call waits for its timeout.
type slowStore struct {
	agentstate.Store
	release chan struct{}
	entered chan struct{}
}

func (s *slowStore) PutMetrics(ctx context.Context, id string, ts time.Time, sample json.RawMessage) (bool, error) {
	select {
	case s.entered <- struct{}{}:
	default:
	}
	select {
	case <-s.release:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	return s.Store.PutMetrics(ctx, id, ts, sample)
}

// TestCommandRepliesDoNotWaitForTheStore: while the agent's metrics writes hang, a command
// reply still reaches its caller at once, and a flood of samples beyond the worker's bound is
// dropped rather than blocking the socket.
func TestCommandRepliesDoNotWaitForTheStore(t *testing.T) {
	env := newAgentEnv(t)
	slow := &slowStore{Store: agentstate.NewMemory(), release: make(chan struct{}), entered: make(chan struct{}, 1)}
	env.state = slow
	n := env.startIngest(ingest.Config{})
	a := connect(t, n, "hk_web1")
	base := time.Now().Add(-time.Hour)
	a.send(docMetrics(10, base, 1))
	select {
	case <-slow.entered:
	case <-time.After(waitFor):
		t.Fatal("the sample never reached the store")
	}
	for i := range 200 { // more than the worker holds
		a.send(docMetrics(10, base.Add(time.Duration(i+1)*time.Second), 0))
	}
	a.alive() // the read loop is free: a ping is answered behind the queued samples

	ctx := env.callerCtx(t.Context(), "*.*.*")
	done := make(chan error, 1)
	go func() {
		_, err := n.agents.RunCommand(ctx, &heraldv1.RunCommandRequest{ServerId: "web-1", Command: "uptime"})
		done <- err
	}()
	cmd := a.read()
	if cmd["type"] != "command" {
		t.Fatalf("frame = %v, want the command", cmd)
	}
	a.send(map[string]any{"type": "command_response", "command_id": cmd["command_id"], "output": "up", "exit_code": 0, "duration_ms": 1})
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("RunCommand: %v", err)
		}
	case <-time.After(waitFor):
		t.Fatal("the command reply waited for the store")
	}
	if n.svc.TelemetryDropped() == 0 {
		t.Error("a flood beyond the worker's bound dropped nothing")
	}
	close(slow.release)
}
