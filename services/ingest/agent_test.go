package ingest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/heraldhq/herald/pkg/agentstate"
	"github.com/heraldhq/herald/pkg/authwire"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/eventstream"
	"github.com/heraldhq/herald/pkg/subject"
	"github.com/heraldhq/herald/pkg/testutil"
	"github.com/heraldhq/herald/pkg/testutil/natstest"
	"github.com/heraldhq/herald/pkg/token"
	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
	"github.com/heraldhq/herald/services/ingest"
)

// API keys the test auth responder knows, and the servers they are bound to.
var testKeys = map[string]authwire.APIKeyInfo{
	"hk_web1": {KeyID: "k1", ServerID: "web-1", Name: "web one"},
	"hk_web2": {KeyID: "k2", ServerID: "web-2", Name: "web two"},
	"hk_db1":  {KeyID: "k3", ServerID: "db.1", Name: "db"},
}

// agentEnv is one NATS server with a real authwire responder for API keys, a token issuer
// for gRPC callers, and any number of ingests sharing them.
type agentEnv struct {
	t      *testing.T
	ns     *server.Server
	issuer *token.Issuer
	state  agentstate.Store
	events chan event.Event
}

func newAgentEnv(t *testing.T) *agentEnv {
	t.Helper()
	ns := natstest.RunServer(t)
	priv, err := token.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	env := &agentEnv{t: t, ns: ns, issuer: token.NewIssuer(priv, time.Hour), state: agentstate.NewMemory()}

	authNC := natstest.Connect(t, ns)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() {
		served <- authwire.Responder{
			Login: func(context.Context, authwire.LoginRequest) authwire.LoginReply {
				return authwire.LoginError(authwire.CodeUnauthorized, "no users here")
			},
			VerifyAPIKey: func(_ context.Context, req authwire.APIKeyRequest) authwire.APIKeyReply {
				info, ok := testKeys[req.Key]
				if !ok {
					return authwire.APIKeyError(authwire.CodeUnauthorized, "invalid or revoked API key")
				}
				return authwire.APIKeyReply{KeyID: info.KeyID, ServerID: info.ServerID, Name: info.Name}
			},
			PublicKey: env.issuer.PublicKey(),
		}.Serve(ctx, authNC, "")
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("auth responder: %v", err)
		}
	})
	// The responder subscribes asynchronously: wait until it answers.
	testutil.Eventually(t, waitFor, func() error {
		_, err := authwire.VerifyAPIKey(t.Context(), authNC, "hk_web1")
		return err
	})

	env.events = make(chan event.Event, 256)
	evNC := natstest.Connect(t, ns)
	sub, err := evNC.Subscribe(subject.EventsWildcard, func(m *nats.Msg) {
		var ev event.Event
		if json.Unmarshal(m.Data, &ev) == nil {
			select {
			case env.events <- ev:
			default:
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := evNC.Flush(); err != nil {
		t.Fatal(err)
	}
	return env
}

// ingestNode is one running ingest: HTTP (agent socket) and gRPC (AgentService).
type ingestNode struct {
	svc    *ingest.Service
	wsURL  string
	base   string
	agents heraldv1.AgentServiceClient
}

func (env *agentEnv) startIngest(cfg ingest.Config) *ingestNode {
	t := env.t
	t.Helper()
	nc := natstest.Connect(t, env.ns)
	svc, err := ingest.New(cfg, ingest.Deps{NC: nc, State: env.state, Verifier: token.NewVerifier(env.issuer.PublicKey()), Log: testLog(t)})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- svc.Run(ctx) }()
	select {
	case <-svc.Ready():
	case err := <-runErr:
		t.Fatalf("Run ended before ready: %v", err)
	case <-time.After(waitFor):
		t.Fatal("ingest not ready")
	}

	mux := http.NewServeMux()
	svc.Register(mux)
	hs := httptest.NewServer(mux)

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	svc.RegisterGRPC(gs)
	go func() { _ = gs.Serve(lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = conn.Close()
		gs.Stop()
		cancel() // closes the agent sockets before the HTTP server goes
		if err := <-runErr; err != nil {
			t.Errorf("Run: %v", err)
		}
		hs.Close()
	})
	return &ingestNode{svc: svc, base: hs.URL, wsURL: "ws" + strings.TrimPrefix(hs.URL, "http") + ingest.AgentSocketPath,
		agents: heraldv1.NewAgentServiceClient(conn)}
}

// callerCtx returns a context carrying a token with perms.
func (env *agentEnv) callerCtx(ctx context.Context, perms ...string) context.Context {
	tok, _, err := env.issuer.Issue("alice", perms)
	if err != nil {
		env.t.Fatal(err)
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
}

// waitEvent returns the first event of type.action.key, skipping others.
func (env *agentEnv) waitEvent(typ, action, key string) event.Event {
	env.t.Helper()
	timeout := time.After(waitFor)
	for {
		select {
		case ev := <-env.events:
			if ev.Type == typ && ev.Action == action && ev.Key == key {
				return ev
			}
		case <-timeout:
			env.t.Fatalf("no %s.%s.%s event", typ, action, key)
			return event.Event{}
		}
	}
}

// natsSub collects what an edge sees of a server's telemetry on subj: the telemetry stream's
// republished copy, so only what ingest stored there (and every message with its sequence in
// that stream; receive checks it) arrives.
func (env *agentEnv) natsSub(subj string) chan *nats.Msg {
	env.t.Helper()
	nc := natstest.Connect(env.t, env.ns)
	ch := make(chan *nats.Msg, 256)
	rp, err := subject.ToRepublished(subj)
	if err != nil || subject.StreamOf(subj) != subject.TelemetryStream {
		env.t.Fatalf("%s is not a telemetry subject: %v", subj, err)
	}
	sub, err := nc.ChanSubscribe(rp, ch)
	if err != nil {
		env.t.Fatal(err)
	}
	env.t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		env.t.Fatal(err)
	}
	return ch
}

// agentClient is a test agent: a real gorilla WebSocket client.
type agentClient struct {
	t  *testing.T
	ws *websocket.Conn
}

func dialAgent(t *testing.T, url string) *agentClient {
	t.Helper()
	ws, resp, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	_ = resp.Body.Close()
	t.Cleanup(func() { _ = ws.Close() })
	return &agentClient{t: t, ws: ws}
}

// connect dials and authenticates with key, expecting auth_success for serverID.
func connect(t *testing.T, n *ingestNode, key string) *agentClient {
	t.Helper()
	a := dialAgent(t, n.wsURL)
	a.send(map[string]any{"type": "auth", "api_key": key})
	m := a.read()
	if m["type"] != "auth_success" || m["server_id"] != testKeys[key].ServerID || m["message"] != "Connected successfully" {
		t.Fatalf("auth reply = %v", m)
	}
	return a
}

func (a *agentClient) send(v any) {
	a.t.Helper()
	if err := a.ws.WriteJSON(v); err != nil {
		a.t.Fatalf("write: %v", err)
	}
}

func (a *agentClient) sendRaw(s string) {
	a.t.Helper()
	if err := a.ws.WriteMessage(websocket.TextMessage, []byte(s)); err != nil {
		a.t.Fatalf("write: %v", err)
	}
}

// read returns the next frame as a JSON object.
func (a *agentClient) read() map[string]any {
	a.t.Helper()
	_ = a.ws.SetReadDeadline(time.Now().Add(waitFor))
	_, b, err := a.ws.ReadMessage()
	if err != nil {
		a.t.Fatalf("read: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		a.t.Fatalf("frame %s is not a JSON object: %v", b, err)
	}
	return m
}

// expectError reads the protocol's error frame with message.
func (a *agentClient) expectError(message string) {
	a.t.Helper()
	if m := a.read(); m["type"] != "error" || m["message"] != message {
		a.t.Fatalf("frame = %v, want error %q", m, message)
	}
}

// expectClose reads until the server's close frame and checks its code and reason.
func (a *agentClient) expectClose(code int, reason string) {
	a.t.Helper()
	_ = a.ws.SetReadDeadline(time.Now().Add(waitFor))
	for range 100 {
		_, b, err := a.ws.ReadMessage()
		if err == nil {
			a.t.Logf("frame before close: %s", b)
			continue
		}
		var ce *websocket.CloseError
		if !errors.As(err, &ce) {
			a.t.Fatalf("read error %v, want close %d", err, code)
		}
		if ce.Code != code || (reason != "" && ce.Text != reason) {
			a.t.Fatalf("close %d %q, want %d %q", ce.Code, ce.Text, code, reason)
		}
		return
	}
	a.t.Fatal("no close frame")
}

// alive checks the socket still works: {"type":"ping"} is answered by {"type":"pong"}.
func (a *agentClient) alive() {
	a.t.Helper()
	a.send(map[string]string{"type": "ping"})
	if m := a.read(); m["type"] != "pong" {
		a.t.Fatalf("ping answered by %v", m)
	}
}

func docMetrics(cpu float64, ts time.Time, seq uint64) map[string]any {
	m := map[string]any{"type": "metrics", "server_id": "whatever", "cpu_percent": cpu, "memory_percent": 40.0,
		"disk_usage": []any{map[string]any{"mountpoint": "/", "usage_percent": 30.0}}, "network": []any{},
		"timestamp": ts.UTC().Format(time.RFC3339Nano)}
	if seq > 0 {
		m["seq"] = seq
	}
	return m
}

func decodeMsg(t *testing.T, m *nats.Msg) map[string]any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal(m.Data, &v); err != nil {
		t.Fatalf("payload %s: %v", m.Data, err)
	}
	return v
}

// receiveWithin is the next telemetry message from a natsSub, which must come with its
// sequence in the telemetry stream.
func receiveWithin(t *testing.T, ch chan *nats.Msg) map[string]any {
	t.Helper()
	m := receive(t, ch)
	if _, err := eventstream.SequenceIn(m.Header, subject.TelemetryStream); err != nil {
		t.Fatalf("%s: %v", m.Subject, err)
	}
	return decodeMsg(t, m)
}

func TestDocAgent(t *testing.T) {
	env := newAgentEnv(t)
	n := env.startIngest(ingest.Config{})
	metrics := env.natsSub(subject.Metrics("web-1"))
	logs := env.natsSub(subject.Logs("web-1"))

	a := connect(t, n, "hk_web1")
	online := env.waitEvent("agents", "online", "web-1")
	var pres map[string]any
	_ = json.Unmarshal(online.Object, &pres)
	if pres["server_id"] != "web-1" || pres["remote_addr"] == "" {
		t.Errorf("online object = %s", online.Object)
	}

	a.send(map[string]any{"type": "facts", "data": map[string]any{"hostname": "h1", "os": "linux", "cpu_count": 4}})
	facts := env.waitEvent("agents", "facts", "web-1")
	if !strings.Contains(string(facts.Object), `"hostname":"h1"`) {
		t.Errorf("facts event object = %s", facts.Object)
	}
	if f, ok, err := env.state.Facts(t.Context(), "web-1"); err != nil || !ok || !strings.Contains(string(f), "h1") {
		t.Errorf("stored facts = %s, %v, %v", f, ok, err)
	}

	ts := time.Now().Add(-time.Second).Truncate(time.Millisecond)
	a.send(docMetrics(12.5, ts, 1))
	if m := a.read(); m["type"] != "metrics_received" || m["status"] != "ok" || m["seq"] != 1.0 {
		t.Fatalf("ack = %v", m)
	}
	got := receiveWithin(t, metrics)
	if got["server_id"] != "web-1" || got["cpu_percent"] != 12.5 || got["timestamp"] != ts.UTC().Format(time.RFC3339Nano) {
		t.Errorf("published sample = %v", got)
	}
	if _, ok := got["type"]; ok {
		t.Errorf("sample keeps the frame's type: %v", got)
	}
	if latest, ok, _ := env.state.LatestMetrics(t.Context(), "web-1"); !ok || !strings.Contains(string(latest), `"cpu_percent":12.5`) {
		t.Errorf("latest = %s", latest)
	}

	// A plain doc agent (no seq) gets no ack: the next frame it sees answers its ping.
	a.send(docMetrics(13, ts.Add(time.Second), 0))
	a.alive()
	if got := receiveWithin(t, metrics); got["cpu_percent"] != 13.0 {
		t.Errorf("second sample = %v", got)
	}

	a.send(map[string]any{"type": "log", "data": map[string]any{"level": "INFO", "message": "Log message", "timestamp": "2024-01-01T00:00:00Z"}})
	if got := receiveWithin(t, logs); got["message"] != "Log message" || got["level"] != "INFO" || got["server_id"] != "web-1" {
		t.Errorf("log entry = %v", got)
	}

	// Commands in the doc shape, through gRPC.
	ctx := env.callerCtx(t.Context(), "commands.run.web-1")
	type result struct {
		resp *heraldv1.RunCommandResponse
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := n.agents.RunCommand(ctx, &heraldv1.RunCommandRequest{ServerId: "web-1", Command: "echo hi",
			Timeout: durationpb.New(5 * time.Second)})
		done <- result{resp, err}
	}()
	cmd := a.read()
	if cmd["type"] != "command" || cmd["command"] != "echo hi" || cmd["command_id"] == "" || cmd["timeout_ms"] != 5000.0 {
		t.Fatalf("command frame = %v", cmd)
	}
	jid := cmd["command_id"].(string)
	a.send(map[string]any{"type": "command_response", "command_id": jid, "output": "hi\n", "exit_code": 0, "duration_ms": 150})
	r := <-done
	if r.err != nil {
		t.Fatalf("RunCommand: %v", r.err)
	}
	if r.resp.GetOutput() != "hi\n" || r.resp.GetExitCode() != 0 || r.resp.GetDuration().AsDuration() != 150*time.Millisecond || r.resp.GetJobId() != jid {
		t.Errorf("RunCommand = %v", r.resp)
	}
	if len(jid) != 20 {
		t.Errorf("job id %q is not a 20-digit Salt jid", jid)
	}
	jn := env.waitEvent("jobs", "new", jid)
	if !strings.Contains(string(jn.Object), `"fun":"cmd.run"`) || !strings.Contains(string(jn.Object), `"tgt":"web-1"`) ||
		!strings.Contains(string(jn.Object), `"user":"alice"`) || jn.Principal != "user:alice" {
		t.Errorf("jobs.new = %+v %s", jn, jn.Object)
	}
	jr := env.waitEvent("jobs", "ret", jid)
	if !strings.Contains(string(jr.Object), `"return":"hi\n"`) || !strings.Contains(string(jr.Object), `"retcode":0`) {
		t.Errorf("jobs.ret = %s", jr.Object)
	}

	// Docker in the doc shape.
	dctx := env.callerCtx(t.Context(), "docker.*.web-1")
	ddone := make(chan *heraldv1.DockerActionResponse, 1)
	go func() {
		resp, err := n.agents.DockerAction(dctx, &heraldv1.DockerActionRequest{ServerId: "web-1", Action: "start", ContainerId: "nginx"})
		if err != nil {
			t.Errorf("DockerAction: %v", err)
		}
		ddone <- resp
	}()
	dc := a.read()
	if dc["type"] != "docker_command" || dc["action"] != "start" || dc["container_id"] != "nginx" {
		t.Fatalf("docker frame = %v", dc)
	}
	a.send(map[string]any{"type": "docker_response", "command_id": dc["command_id"], "success": true, "message": "Container started"})
	if resp := <-ddone; resp.GetMessage() != "Container started" || !resp.GetSuccess() {
		t.Errorf("DockerAction = %v", resp)
	}

	a.ws.Close()
	off := env.waitEvent("agents", "offline", "web-1")
	if !strings.Contains(string(off.Object), `"reason":"`) {
		t.Errorf("offline object = %s", off.Object)
	}
}

func TestChatopsAgent(t *testing.T) {
	env := newAgentEnv(t)
	n := env.startIngest(ingest.Config{})
	metrics := env.natsSub(subject.Metrics("web-2"))

	// The key check chatops' agent makes before dialing.
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, n.base+ingest.APIKeyMePath, nil)
	req.Header.Set("X-API-Key", "hk_web2")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var me map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&me)
	_ = resp.Body.Close()
	if resp.StatusCode != 200 || me["server_id"] != "web-2" || me["key_id"] != "k2" || me["name"] != "web two" || me["is_active"] != true {
		t.Fatalf("api-keys/me = %d %v", resp.StatusCode, me)
	}

	a := connect(t, n, "hk_web2")
	a.alive() // {"type":"ping"}: chatops' heartbeat, and it fixes the shape
	a.sendRaw(`{"type":"metrics","data":{"server_id":"x","timestamp":"2025-01-01T00:00:00Z",
		"cpu":{"usage_percent":45.2,"cores":8,"frequency_mhz":2400},"memory":{"total_gb":15.5,"usage_percent":62.5},
		"disk":{"total_gb":457,"usage_percent":26.3},"network":{"bytes_sent":123,"bytes_recv":456},
		"containers":[],"processes":[{"pid":1,"name":"systemd"}]}}`)
	ack := a.read()
	if len(ack) != 2 || ack["type"] != "metrics_received" || ack["status"] != "ok" {
		t.Fatalf("ack = %v, want exactly {type: metrics_received, status: ok}", ack)
	}
	got := receiveWithin(t, metrics)
	if got["cpu_percent"] != 45.2 || got["memory_percent"] != 62.5 || got["server_id"] != "web-2" {
		t.Errorf("sample = %v", got)
	}
	for _, k := range []string{"cpu", "memory", "disk", "network", "containers", "processes"} {
		if _, ok := got[k]; !ok {
			t.Errorf("sample lost %q: %v", k, got)
		}
	}

	ctx := env.callerCtx(t.Context(), "*.*.*")
	done := make(chan error, 1)
	var cmdResp *heraldv1.RunCommandResponse
	go func() {
		var err error
		cmdResp, err = n.agents.RunCommand(ctx, &heraldv1.RunCommandRequest{ServerId: "web-2", Command: "false"})
		done <- err
	}()
	cmd := a.read()
	if cmd["type"] != "execute_command" || cmd["command"] != "false" || cmd["request_id"] == "" {
		t.Fatalf("command frame = %v", cmd)
	}
	a.send(map[string]any{"type": "command_result", "data": map[string]any{"output": "", "exit_code": 1}, "request_id": cmd["request_id"]})
	if err := <-done; err != nil {
		t.Fatalf("RunCommand: %v", err)
	}
	if cmdResp.GetExitCode() != 1 || cmdResp.GetDuration() == nil {
		t.Errorf("RunCommand = %v", cmdResp)
	}

	ldone := make(chan *heraldv1.DockerActionResponse, 1)
	go func() {
		resp, err := n.agents.DockerAction(ctx, &heraldv1.DockerActionRequest{ServerId: "web-2", Action: "logs", ContainerId: "c1", Tail: 2})
		if err != nil {
			t.Errorf("DockerAction: %v", err)
		}
		ldone <- resp
	}()
	lc := a.read()
	if lc["type"] != "get_container_logs" || lc["container_id"] != "c1" || lc["tail"] != 2.0 {
		t.Fatalf("logs frame = %v", lc)
	}
	a.send(map[string]any{"type": "container_logs", "data": map[string]any{"container_id": "c1", "logs": []string{"a", "b"}}, "request_id": lc["request_id"]})
	if resp := <-ldone; !resp.GetSuccess() || strings.Join(resp.GetLogs(), ",") != "a,b" {
		t.Errorf("logs = %v", resp)
	}

	// Chatops' error frame for a docker failure is the action's result, success false.
	sdone := make(chan *heraldv1.DockerActionResponse, 1)
	go func() {
		resp, err := n.agents.DockerAction(ctx, &heraldv1.DockerActionRequest{ServerId: "web-2", Action: "stop", ContainerId: "c1"})
		if err != nil {
			t.Errorf("DockerAction: %v", err)
		}
		sdone <- resp
	}()
	sc := a.read()
	if sc["type"] != "stop_container" || sc["timeout"] != 10.0 {
		t.Fatalf("stop frame = %v", sc)
	}
	a.send(map[string]any{"type": "error", "message": "Docker not available", "request_id": sc["request_id"]})
	if resp := <-sdone; resp.GetSuccess() || resp.GetMessage() != "Docker not available" {
		t.Errorf("stop = %v", resp)
	}
}

func TestAgentAuthFailures(t *testing.T) {
	env := newAgentEnv(t)
	n := env.startIngest(ingest.Config{AgentAuthTimeout: 300 * time.Millisecond})

	t.Run("BadKey", func(t *testing.T) {
		a := dialAgent(t, n.wsURL)
		a.send(map[string]any{"type": "auth", "api_key": "hk_nope"})
		a.expectError("Invalid or inactive API key")
		a.expectClose(websocket.ClosePolicyViolation, "Invalid or inactive API key")
	})
	t.Run("MessageBeforeAuth", func(t *testing.T) {
		a := dialAgent(t, n.wsURL)
		a.send(docMetrics(1, time.Now(), 0))
		a.expectError("Invalid message format")
		a.expectClose(websocket.ClosePolicyViolation, "Authentication required: send {'type': 'auth', 'api_key': '...'} as first message")
	})
	t.Run("BadJSONBeforeAuth", func(t *testing.T) {
		a := dialAgent(t, n.wsURL)
		a.sendRaw(`{"type":"auth",`)
		a.expectError("Invalid message format")
		a.expectClose(websocket.ClosePolicyViolation, "")
	})
	t.Run("NoAuthInTime", func(t *testing.T) {
		a := dialAgent(t, n.wsURL)
		start := time.Now()
		if m := a.read(); m["type"] != "error" {
			t.Fatalf("frame = %v", m)
		}
		a.expectClose(websocket.ClosePolicyViolation, "Authentication required: send {'type': 'auth', 'api_key': '...'} as first message")
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("refused after %s, deadline 300ms", d)
		}
	})
	t.Run("APIKeyMe", func(t *testing.T) {
		for _, key := range []string{"", "hk_nope"} {
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, n.base+ingest.APIKeyMePath, nil)
			if key != "" {
				req.Header.Set("X-API-Key", key)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("key %q: status %d, want 401", key, resp.StatusCode)
			}
		}
	})
	// The service is still up: a good agent connects.
	connect(t, n, "hk_web1").alive()
}

func TestAgentBadInputAfterAuth(t *testing.T) {
	env := newAgentEnv(t)
	n := env.startIngest(ingest.Config{AgentMaxFrameBytes: 4096})
	other := connect(t, n, "hk_web2")
	a := connect(t, n, "hk_web1")

	a.sendRaw(`{"type":"metrics",`)
	a.expectError("Invalid message format")
	a.sendRaw(`{"type":"launch_missiles"}`)
	a.expectError("Invalid message format")
	a.send(map[string]any{"type": "metrics", "cpu_percent": "very high"})
	a.expectError("Invalid message format")
	a.sendRaw(`[1,2,3]`)
	a.expectError("Invalid message format")
	a.alive() // the socket stays open after bad input

	a.sendRaw(`{"type":"log","data":{"message":"` + strings.Repeat("x", 5000) + `"}}`)
	a.expectClose(websocket.CloseMessageTooBig, "")

	// The other agent is unaffected, and new agents still connect.
	other.alive()
	other.send(docMetrics(5, time.Now(), 3))
	if m := other.read(); m["type"] != "metrics_received" || m["seq"] != 3.0 {
		t.Errorf("other agent's ack = %v", m)
	}
	connect(t, n, "hk_db1").alive()
}

func TestTakeoverAcrossIngests(t *testing.T) {
	env := newAgentEnv(t)
	n1 := env.startIngest(ingest.Config{})
	n2 := env.startIngest(ingest.Config{})
	old := connect(t, n1, "hk_web1")
	env.waitEvent("agents", "online", "web-1")
	newer := connect(t, n2, "hk_web1")
	// Facts first, as Herald's agent does: that fixes the doc shape before any ping.
	newer.send(map[string]any{"type": "facts", "data": map[string]any{"hostname": "h"}})
	old.expectClose(4002, "replaced by a newer connection for this server")
	newer.alive()

	// Commands now reach the newer connection, whichever ingest takes the call.
	ctx := env.callerCtx(t.Context(), "*.*.*")
	done := make(chan error, 1)
	go func() {
		_, err := n1.agents.RunCommand(ctx, &heraldv1.RunCommandRequest{ServerId: "web-1", Command: "uptime"})
		done <- err
	}()
	cmd := newer.read()
	newer.send(map[string]any{"type": "command_response", "command_id": cmd["command_id"], "output": "up", "exit_code": 0, "duration_ms": 1})
	if err := <-done; err != nil {
		t.Fatalf("RunCommand after takeover: %v", err)
	}

	// Same ingest: a third connection replaces the second.
	third := connect(t, n2, "hk_web1")
	newer.expectClose(4002, "")
	third.alive()
}

func TestRunCommandReachesAgentOnEitherIngest(t *testing.T) {
	env := newAgentEnv(t)
	n1 := env.startIngest(ingest.Config{})
	n2 := env.startIngest(ingest.Config{})
	a1 := connect(t, n1, "hk_web1")
	a2 := connect(t, n2, "hk_web2")
	ctx := env.callerCtx(t.Context(), "commands.run.*")

	for _, tc := range []struct {
		via    *ingestNode
		agent  *agentClient
		server string
	}{{n2, a1, "web-1"}, {n1, a2, "web-2"}, {n1, a1, "web-1"}, {n2, a2, "web-2"}} {
		done := make(chan *heraldv1.RunCommandResponse, 1)
		go func() {
			resp, err := tc.via.agents.RunCommand(ctx, &heraldv1.RunCommandRequest{ServerId: tc.server, Command: "hostname"})
			if err != nil {
				t.Errorf("RunCommand %s: %v", tc.server, err)
			}
			done <- resp
		}()
		cmd := tc.agent.read()
		tc.agent.send(map[string]any{"type": "command_response", "command_id": cmd["command_id"], "output": tc.server, "exit_code": 0, "duration_ms": 2})
		if resp := <-done; resp.GetOutput() != tc.server {
			t.Errorf("RunCommand %s = %v", tc.server, resp)
		}
	}
}

func TestRunCommandErrors(t *testing.T) {
	env := newAgentEnv(t)
	n := env.startIngest(ingest.Config{MaxCommandTimeout: time.Minute})
	a := connect(t, n, "hk_web1")
	admin := env.callerCtx(t.Context(), "*.*.*")

	code := func(err error) codes.Code { return status.Code(err) }

	start := time.Now()
	_, err := n.agents.RunCommand(admin, &heraldv1.RunCommandRequest{ServerId: "nobody", Command: "ls"})
	if code(err) != codes.Unavailable || !strings.Contains(err.Error(), "agent nobody is offline") {
		t.Errorf("offline agent: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("offline agent took %s, want at once", d)
	}

	if _, err := n.agents.RunCommand(t.Context(), &heraldv1.RunCommandRequest{ServerId: "web-1", Command: "ls"}); code(err) != codes.Unauthenticated {
		t.Errorf("no token: %v", err)
	}
	bad := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer nonsense")
	if _, err := n.agents.RunCommand(bad, &heraldv1.RunCommandRequest{ServerId: "web-1", Command: "ls"}); code(err) != codes.Unauthenticated {
		t.Errorf("bad token: %v", err)
	}
	viewer := env.callerCtx(t.Context(), "metrics.read.*", "commands.run.web-2", "docker.logs.web-1")
	if _, err := n.agents.RunCommand(viewer, &heraldv1.RunCommandRequest{ServerId: "web-1", Command: "ls"}); code(err) != codes.PermissionDenied {
		t.Errorf("no permission: %v", err)
	}
	if _, err := n.agents.DockerAction(viewer, &heraldv1.DockerActionRequest{ServerId: "web-1", Action: "stop", ContainerId: "c"}); code(err) != codes.PermissionDenied {
		t.Errorf("docker stop with docker.logs only: %v", err)
	}
	for _, req := range []*heraldv1.RunCommandRequest{
		{ServerId: "", Command: "ls"},
		{ServerId: "web-1", Command: "  "},
		{ServerId: "web-1", Command: "ls", Timeout: durationpb.New(time.Hour)},
		{ServerId: "web-1", Command: "ls", Timeout: durationpb.New(-time.Second)},
	} {
		if _, err := n.agents.RunCommand(admin, req); code(err) != codes.InvalidArgument {
			t.Errorf("RunCommand(%v): %v, want InvalidArgument", req, err)
		}
	}
	if _, err := n.agents.DockerAction(admin, &heraldv1.DockerActionRequest{ServerId: "web-1", Action: "rm", ContainerId: "c"}); code(err) != codes.InvalidArgument {
		t.Errorf("bad action: %v", err)
	}

	// The agent never answers: DeadlineExceeded within the timeout plus the margin.
	start = time.Now()
	_, err = n.agents.RunCommand(admin, &heraldv1.RunCommandRequest{ServerId: "web-1", Command: "sleep 100",
		Timeout: durationpb.New(300 * time.Millisecond)})
	if code(err) != codes.DeadlineExceeded {
		t.Errorf("unanswered command: %v", err)
	}
	if d := time.Since(start); d < 300*time.Millisecond || d > 3*time.Second {
		t.Errorf("timeout after %s, want 300ms (+2s margin at most)", d)
	}
	if cmd := a.read(); cmd["type"] != "command" {
		t.Fatalf("agent saw %v", cmd)
	}

	// The agent refuses: FailedPrecondition with its message.
	done := make(chan error, 1)
	go func() {
		_, err := n.agents.RunCommand(admin, &heraldv1.RunCommandRequest{ServerId: "web-1", Command: "id"})
		done <- err
	}()
	cmd := a.read()
	a.send(map[string]any{"type": "error", "command_id": cmd["command_id"], "message": "commands are disabled on this agent", "code": "refused"})
	if err := <-done; code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "commands are disabled") {
		t.Errorf("refused: %v", err)
	}

	// The agent leaves while a command waits: Unavailable at once, not at the timeout.
	go func() {
		_, err := n.agents.RunCommand(admin, &heraldv1.RunCommandRequest{ServerId: "web-1", Command: "id", Timeout: durationpb.New(time.Minute)})
		done <- err
	}()
	a.read()
	start = time.Now()
	a.ws.Close()
	if err := <-done; code(err) != codes.Unavailable || time.Since(start) > 5*time.Second {
		t.Errorf("agent gone: %v after %s", err, time.Since(start))
	}
}

func TestDeadAgentGoesOffline(t *testing.T) {
	env := newAgentEnv(t)
	n := env.startIngest(ingest.Config{AgentPingInterval: 100 * time.Millisecond, AgentPongWait: 400 * time.Millisecond})
	connect(t, n, "hk_web1")
	env.waitEvent("agents", "online", "web-1")
	// From now on the agent reads nothing, so it answers no ping: it is as good as killed.
	start := time.Now()
	off := env.waitEvent("agents", "offline", "web-1")
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("offline after %s, bound is the 400ms pong wait", d)
	}
	if !strings.Contains(string(off.Object), "heartbeat timeout") {
		t.Errorf("offline object = %s", off.Object)
	}
	_, err := n.agents.RunCommand(env.callerCtx(t.Context(), "*.*.*"), &heraldv1.RunCommandRequest{ServerId: "web-1", Command: "ls"})
	if status.Code(err) != codes.Unavailable {
		t.Errorf("RunCommand to the dead agent: %v", err)
	}
}

func TestReplayedSamplesAreNotRepublished(t *testing.T) {
	env := newAgentEnv(t)
	n1 := env.startIngest(ingest.Config{})
	n2 := env.startIngest(ingest.Config{})
	metrics := env.natsSub(subject.Metrics("web-1"))
	base := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	at := func(i int) time.Time { return base.Add(time.Duration(i) * time.Second) }

	a := connect(t, n1, "hk_web1")
	for i := 1; i <= 3; i++ {
		a.send(docMetrics(float64(i), at(i), uint64(i)))
		if m := a.read(); m["seq"] != float64(i) {
			t.Fatalf("ack %d = %v", i, m)
		}
	}
	a.ws.Close()

	// Reconnected to the other ingest, the agent re-sends 2 and 3 (their acks were lost), then
	// the samples buffered while offline (4, 5), then a live one (6).
	b := connect(t, n2, "hk_web1")
	for _, i := range []int{2, 3, 4, 5, 6} {
		b.send(docMetrics(float64(i), at(i), uint64(10+i)))
		if m := b.read(); m["type"] != "metrics_received" || m["seq"] != float64(10+i) {
			t.Fatalf("ack of replayed %d = %v", i, m)
		}
	}
	for want := 1; want <= 6; want++ {
		got := receiveWithin(t, metrics)
		if got["cpu_percent"] != float64(want) {
			t.Fatalf("sample %d: got %v (a replay republished, or one lost)", want, got)
		}
	}
	// Nothing else was published in between: the next sample is the next live one.
	b.send(docMetrics(7, at(7), 17))
	b.read()
	if got := receiveWithin(t, metrics); got["cpu_percent"] != 7.0 {
		t.Fatalf("after the replay: %v", got)
	}
}

func TestAlertsRaiseOnceAndResolve(t *testing.T) {
	env := newAgentEnv(t)
	n := env.startIngest(ingest.Config{AlertCPU: 80, AlertMemory: -1, AlertDisk: -1, AlertSamples: 3})
	alerts := env.natsSub(subject.Alerts("web-1"))
	a := connect(t, n, "hk_web1")
	base := time.Now().Add(-time.Minute)
	values := []float64{93.2, 95, 10, 93.2, 94, 93.2, 99, 50}
	for i, v := range values {
		a.send(docMetrics(v, base.Add(time.Duration(i)*time.Second), uint64(i+1)))
		a.read()
	}
	// 93.2, 95 then 10: two samples over, no alert. 93.2, 94, 93.2: the third raises it;
	// 99 does not raise again; 50 resolves it.
	raised := receiveWithin(t, alerts)
	if raised["type"] != "cpu" || raised["severity"] != "warning" || raised["resolved"] != false ||
		raised["message"] != "CPU usage is 93.2%, which exceeds threshold of > 80.0%" ||
		raised["threshold"] != 80.0 || raised["current_value"] != 93.2 || raised["server_id"] != "web-1" ||
		raised["resolved_at"] != nil || raised["id"] == "" || raised["created_at"] == nil {
		t.Errorf("raised alert = %v", raised)
	}
	resolved := receiveWithin(t, alerts)
	if resolved["id"] != raised["id"] || resolved["resolved"] != true || resolved["resolved_at"] == nil {
		t.Errorf("resolved alert = %v", resolved)
	}
	ev := env.waitEvent("alerts", "raise", "web-1")
	if !strings.Contains(string(ev.Object), fmt.Sprint(raised["id"])) {
		t.Errorf("alerts.raise object = %s", ev.Object)
	}
	env.waitEvent("alerts", "resolve", "web-1")
	select {
	case m := <-alerts:
		t.Errorf("a third alert message: %s", m.Data)
	default:
	}
}

// TestShutdownClosesAgents checks Run's exit closes agent sockets with 1001.
func TestShutdownClosesAgents(t *testing.T) {
	env := newAgentEnv(t)
	nc := natstest.Connect(t, env.ns)
	svc, err := ingest.New(ingest.Config{}, ingest.Deps{NC: nc, APIKeys: nil})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- svc.Run(ctx) }()
	select {
	case <-svc.Ready():
	case <-time.After(waitFor):
		t.Fatal("ingest not ready")
	}
	mux := http.NewServeMux()
	svc.Register(mux)
	hs := httptest.NewServer(mux)
	defer hs.Close()
	a := connect(t, &ingestNode{wsURL: "ws" + strings.TrimPrefix(hs.URL, "http") + ingest.AgentSocketPath}, "hk_db1")
	cancel()
	a.expectClose(websocket.CloseGoingAway, "server shutting down")
	if err := <-runErr; err != nil {
		t.Errorf("Run: %v", err)
	}
}

func testLog(t *testing.T) *slog.Logger {
	if os.Getenv("INGEST_TEST_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// A revoked key ends the connection that uses it at once, with the protocol's error frame and
// 1008; the agent of another key stays.
func TestRevokedKeyClosesItsAgent(t *testing.T) {
	env := newAgentEnv(t)
	n := env.startIngest(ingest.Config{})
	other := connect(t, n, "hk_web2")
	a := connect(t, n, "hk_web1")
	nc := natstest.Connect(t, env.ns)
	if err := nc.Publish(authwire.SubjectAPIKeyRevoked("k1"), nil); err != nil {
		t.Fatal(err)
	}
	a.expectError("Invalid or inactive API key")
	a.expectClose(websocket.ClosePolicyViolation, "Invalid or inactive API key")
	env.waitEvent("agents", "offline", "web-1")
	other.alive()
}

// TestTelemetryNotStoredIsCounted: with the telemetry stream gone, a sample is acknowledged to
// the agent (the store has it) but cannot be stored in the stream: it is counted as lost, and
// nothing reaches the edges' subjects.
func TestTelemetryNotStoredIsCounted(t *testing.T) {
	env := newAgentEnv(t)
	n := env.startIngest(ingest.Config{})
	metrics := env.natsSub(subject.Metrics("web-1"))
	js, err := jetstream.New(natstest.Connect(t, env.ns))
	if err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteStream(t.Context(), subject.TelemetryStream); err != nil {
		t.Fatal(err)
	}
	a := connect(t, n, "hk_web1")
	a.send(docMetrics(12.5, time.Now(), 1))
	if m := a.read(); m["type"] != "metrics_received" {
		t.Fatalf("ack = %v", m)
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		if got := n.svc.TelemetryLost(); got != 1 {
			return fmt.Errorf("%d samples counted as not stored, want 1", got)
		}
		return nil
	})
	select {
	case m := <-metrics:
		t.Fatalf("a sample the stream did not store reached the edges' subject: %s", m.Data)
	default:
	}
}
