package herald_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go"
	"golang.org/x/crypto/bcrypt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/heraldhq/herald/pkg/app"
	"github.com/heraldhq/herald/pkg/subject"
	"github.com/heraldhq/herald/pkg/testutil"
	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
	"github.com/heraldhq/herald/services/herald"
)

// agentBinary builds the real herald-agent once per test run.
func agentBinary(t *testing.T) string {
	t.Helper()
	return testutil.GoBuild(t, "../agent", "./cmd/herald-agent")
}

// startAgentStack is startStack with heartbeats short enough to observe in a test.
func startAgentStack(t *testing.T) *herald.Stack {
	t.Helper()
	cfg := herald.Config{Listen: app.ListenConfig{HTTPAddr: "127.0.0.1:0", GRPCAddr: "127.0.0.1:0"}}
	cfg.NATS.StoreDir = t.TempDir()
	cfg.Auth.AdminPassword = "correct horse"
	cfg.Auth.BcryptCost = bcrypt.MinCost
	cfg.Ingest.AgentPingInterval = 250 * time.Millisecond
	cfg.Ingest.AgentPongWait = time.Second
	return runStack(t, cfg)
}

// startAgent runs the real agent binary against url until the test ends or it is killed;
// extra are more of its flags.
func startAgent(t *testing.T, url, key string, extra ...string) *exec.Cmd {
	t.Helper()
	cmd, _ := launchAgent(t, url, key, append([]string{"-interval", "200ms", "-enable-commands", "-ping-interval", "500ms"}, extra...)...)
	return cmd
}

func adminToken(t *testing.T, s *herald.Stack) string {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"username": "admin", "password": "correct horse"})
	resp, err := http.Post("http://"+s.HTTPAddr()+"/api/v1/auth/login", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var login struct{ Token string }
	if err := json.NewDecoder(resp.Body).Decode(&login); err != nil || login.Token == "" {
		t.Fatalf("login: HTTP %d, %v", resp.StatusCode, err)
	}
	return login.Token
}

// TestAgentEndToEnd runs the real agent binary against the in-process stack: metrics reach a
// viewer, RunCommand returns output and exit codes, samples buffered through an outage arrive
// none lost and none doubled, and a killed agent goes offline with commands failing fast.
func TestAgentEndToEnd(t *testing.T) {
	s := startAgentStack(t)
	tok := adminToken(t, s)
	const server = herald.DevServerID

	// Watch events (agents and jobs) over DRP's socket, and every published sample over NATS.
	events := dialDRP(t, s.HTTPAddr(), "token="+tok)
	expectAck(t, events, "register", "agents.*."+server)
	expectAck(t, events, "register", "jobs.*.*")
	nc, err := nats.Connect("", nats.InProcessServer(s.NATSServer()))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	samples := make(chan *nats.Msg, 4096)
	if _, err := nc.ChanSubscribe(subject.Metrics(server), samples); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	// The agent reaches ingest through a proxy the test can cut.
	proxy := testutil.StartProxy(t, s.HTTPAddr())
	agent := startAgent(t, "ws://"+proxy.Addr()+"/api/v1/agents/ws", s.DevAPIKey())
	waitEvent(t, events, "agents", "online", 15*time.Second)

	// A browser viewer gets the agent's samples.
	viewer, _, err := websocket.DefaultDialer.Dial("ws://"+s.HTTPAddr()+"/api/v1/ws/metrics/"+server, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer viewer.Close()
	if err := viewer.WriteJSON(map[string]string{"type": "auth", "token": tok}); err != nil {
		t.Fatal(err)
	}
	var frame struct {
		Type string
		Data struct {
			ServerID   string   `json:"server_id"`
			CPUPercent *float64 `json:"cpu_percent"`
		}
	}
	for i := 0; i < 3; i++ { // auth_success, then samples (the latest one, then live ones)
		_ = viewer.SetReadDeadline(time.Now().Add(10 * time.Second))
		if err := viewer.ReadJSON(&frame); err != nil {
			t.Fatalf("viewer: %v", err)
		}
		if i == 0 && frame.Type != "auth_success" {
			t.Fatalf("viewer got %+v, want auth_success", frame)
		}
	}
	if frame.Type != "metrics" || frame.Data.ServerID != server || frame.Data.CPUPercent == nil {
		t.Fatalf("viewer got %+v, want a metrics sample of %s with cpu_percent", frame, server)
	}

	// Commands over gRPC, authenticated with the admin token.
	cc, err := grpc.NewClient(s.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	agents := heraldv1.NewAgentServiceClient(cc)
	ctx := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+tok)
	run := func(command string) (*heraldv1.RunCommandResponse, error) {
		return agents.RunCommand(ctx, &heraldv1.RunCommandRequest{ServerId: server, Command: command,
			Timeout: durationpb.New(10 * time.Second)})
	}
	res, err := run("echo hi")
	if err != nil || res.GetOutput() != "hi\n" || res.GetExitCode() != 0 || res.GetDuration().AsDuration() <= 0 {
		t.Fatalf("echo hi: %+v, %v; want output hi, exit 0 and a duration", res, err)
	}
	waitEvent(t, events, "jobs", "new", 5*time.Second)
	waitEvent(t, events, "jobs", "ret", 5*time.Second)
	if res, err := run("echo oops >&2; exit 3"); err != nil || res.GetExitCode() != 3 || !strings.Contains(res.GetOutput(), "oops") {
		t.Fatalf("exit 3: %+v, %v; want exit code 3 with its output", res, err)
	}
	if _, err := agents.RunCommand(t.Context(), &heraldv1.RunCommandRequest{ServerId: server, Command: "true"}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("RunCommand without a token: %v, want Unauthenticated", err)
	}

	// An outage: samples taken while the agent cannot reach ingest arrive after it reconnects,
	// with their original timestamps, none lost and none doubled.
	proxy.Cut()
	waitEvent(t, events, "agents", "offline", 10*time.Second)
	outage := time.Now()
	// The outage lasts 1.5 s, several samples' worth: a duration of the scenario, not a wait
	// for something to happen.
	<-time.After(1500 * time.Millisecond)
	proxy.Restore()
	waitEvent(t, events, "agents", "online", 30*time.Second)
	// Reconnected: keep reading until samples newer than the reconnection arrive.
	type sample struct {
		Seq       uint64    `json:"seq"`
		Timestamp time.Time `json:"timestamp"`
	}
	var got []sample
	reconnected := time.Now()
	testutil.Eventually(t, 20*time.Second, func() error {
		for {
			select {
			case m := <-samples:
				var smp sample
				if err := json.Unmarshal(m.Data, &smp); err != nil {
					return err
				}
				got = append(got, smp)
			default:
				if len(got) > 0 && got[len(got)-1].Timestamp.After(reconnected.Add(500*time.Millisecond)) {
					return nil
				}
				return fmt.Errorf("%d samples so far", len(got))
			}
		}
	})
	// The agent numbers its samples: consecutive published samples must have consecutive
	// numbers (none lost, none doubled) and their original, increasing timestamps.
	duringOutage := 0
	for i := 1; i < len(got); i++ {
		if got[i].Seq != got[i-1].Seq+1 || !got[i].Timestamp.After(got[i-1].Timestamp) {
			t.Fatalf("sample %d (%v) follows %d (%v): lost or doubled (all: %v)",
				got[i].Seq, got[i].Timestamp, got[i-1].Seq, got[i-1].Timestamp, got)
		}
		if got[i].Timestamp.After(outage) && got[i].Timestamp.Before(outage.Add(time.Second)) {
			duringOutage++
		}
	}
	if duringOutage < 3 {
		t.Fatalf("only %d samples taken during the outage arrived, want the buffered ones", duringOutage)
	}

	// Killed: offline within the heartbeat bound, and commands fail fast.
	if err := agent.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, events, "agents", "offline", 5*time.Second)
	start := time.Now()
	_, err = run("echo late")
	if status.Code(err) != codes.Unavailable || time.Since(start) > 2*time.Second {
		t.Fatalf("RunCommand to a dead agent: %v after %s, want Unavailable at once", err, time.Since(start))
	}
}

// waitEvent reads DRP frames until one of type.action arrives, skipping others.
func waitEvent(t *testing.T, ws *websocket.Conn, typ, action string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for i := 0; i < 10000; i++ {
		_ = ws.SetReadDeadline(deadline)
		_, msg, err := ws.ReadMessage()
		if err != nil {
			t.Fatalf("waiting for %s.%s: %v", typ, action, err)
		}
		var ev struct{ Type, Action string }
		if json.Unmarshal(msg, &ev) == nil && ev.Type == typ && ev.Action == action {
			return
		}
	}
	t.Fatalf("no %s.%s event", typ, action)
}
