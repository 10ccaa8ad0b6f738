package edge_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/heraldhq/herald/pkg/agentstate"
	"github.com/heraldhq/herald/pkg/subject"
	"github.com/heraldhq/herald/pkg/testutil"
	"github.com/heraldhq/herald/pkg/token"
	"github.com/heraldhq/herald/services/edge"
	"github.com/heraldhq/herald/services/edge/monitor"
)

func withLatest(l monitor.Latest) rigOption {
	return func(_ *edge.Config, d *edge.Deps) { d.Latest = l }
}

type monFrame struct {
	Type     string          `json:"type"`
	Message  string          `json:"message"`
	ServerID string          `json:"server_id"`
	Data     json.RawMessage `json:"data"`
}

func (r *rig) dialMonitor(kind, serverID string) *websocket.Conn {
	r.t.Helper()
	u := "ws" + strings.TrimPrefix(r.srv.URL, "http") + "/api/v1/ws/" + kind + "/" + serverID
	ws, _, err := websocket.DefaultDialer.Dial(u, nil)
	if err != nil {
		r.t.Fatalf("dial %s: %v", u, err)
	}
	r.t.Cleanup(func() { ws.Close() })
	return ws
}

func readMon(t testing.TB, ws *websocket.Conn) monFrame {
	t.Helper()
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, msg, err := ws.ReadMessage()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	var f monFrame
	if err := json.Unmarshal(msg, &f); err != nil {
		t.Fatalf("frame %q: %v", msg, err)
	}
	return f
}

func sendJSON(t testing.TB, ws *websocket.Conn, v any) {
	t.Helper()
	if err := ws.WriteJSON(v); err != nil {
		t.Fatal(err)
	}
}

func (r *rig) publishRaw(subj, payload string) {
	r.t.Helper()
	if err := r.nc.Publish(subj, []byte(payload)); err != nil {
		r.t.Fatal(err)
	}
	if err := r.nc.Flush(); err != nil {
		r.t.Fatal(err)
	}
}

func TestMetricsSocket(t *testing.T) {
	t.Parallel()
	latest := agentstate.NewMemory()
	if _, err := latest.PutMetrics(t.Context(), "srv-1", time.Now(), json.RawMessage(`{"server_id":"srv-1","cpu_percent":12.5}`)); err != nil {
		t.Fatal(err)
	}
	r := newRig(t, withLatest(latest))
	ws := r.dialMonitor("metrics", "srv-1")
	sendJSON(t, ws, map[string]string{"type": "auth", "token": r.token("metrics.read.srv-1")})
	if f := readMon(t, ws); f.Type != "auth_success" || f.ServerID != "srv-1" {
		t.Fatalf("got %+v, want auth_success", f)
	}
	if f := readMon(t, ws); f.Type != "metrics" || !strings.Contains(string(f.Data), `"cpu_percent":12.5`) {
		t.Fatalf("got %+v, want the latest sample at once", f)
	}
	// The latest sample published live just after (ingest stores before it publishes): the
	// viewer must not get it twice.
	r.publishRaw(subject.Metrics("srv-1"), `{"server_id":"srv-1","cpu_percent":12.5}`)
	r.publishRaw(subject.Metrics("srv-2"), `{"server_id":"srv-2","cpu_percent":99}`)
	r.publishRaw(subject.Logs("srv-1"), `{"server_id":"srv-1","message":"not on the metrics socket"}`)
	r.publishRaw(subject.Metrics("srv-1"), `{"server_id":"srv-1","cpu_percent":50}`)
	r.publishRaw(subject.Alerts("srv-1"), `{"server_id":"srv-1","type":"cpu","severity":"warning"}`)
	if f := readMon(t, ws); f.Type != "metrics" || !strings.Contains(string(f.Data), `"cpu_percent":50`) {
		t.Fatalf("got %+v, want srv-1's live sample only", f)
	}
	if f := readMon(t, ws); f.Type != "alert" || !strings.Contains(string(f.Data), `"severity":"warning"`) {
		t.Fatalf("got %+v, want the alert", f)
	}
	sendJSON(t, ws, map[string]string{"type": "ping"})
	if f := readMon(t, ws); f.Type != "pong" {
		t.Fatalf("got %+v, want pong", f)
	}
}

func TestLogsSocketCarriesLogsOnly(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	ws := r.dialMonitor("logs", "srv-1")
	sendJSON(t, ws, map[string]string{"type": "auth", "token": r.token("logs.read.*")})
	if f := readMon(t, ws); f.Type != "auth_success" {
		t.Fatalf("got %+v", f)
	}
	r.publishRaw(subject.Metrics("srv-1"), `{"cpu_percent":1}`)
	r.publishRaw(subject.Logs("srv-1"), `{"level":"info","message":"hello"}`)
	if f := readMon(t, ws); f.Type != "log" || !strings.Contains(string(f.Data), "hello") {
		t.Fatalf("got %+v, want only the log entry", f)
	}
}

func TestMonitorSocketRefusals(t *testing.T) {
	t.Parallel()
	r := newRig(t, func(c *edge.Config, _ *edge.Deps) { c.AuthTimeout = 300 * time.Millisecond })
	other, _ := token.GenerateKey()
	foreign, _, _ := token.NewIssuer(other, time.Hour).Issue("x", []string{"*.*.*"})
	for _, tc := range []struct {
		name, kind string
		first      any
		reason     string
	}{
		{"no permission for the server", "metrics", map[string]string{"type": "auth", "token": r.token("metrics.read.srv-2")}, "Server not found or access denied"},
		{"logs permission is not metrics", "metrics", map[string]string{"type": "auth", "token": r.token("logs.read.srv-1")}, "Server not found or access denied"},
		{"other key", "logs", map[string]string{"type": "auth", "token": foreign}, "Invalid token: token signature invalid"},
		{"garbage token", "logs", map[string]string{"type": "auth", "token": "nope"}, "Invalid token: token malformed"},
		{"expired", "metrics", map[string]string{"type": "auth", "token": r.expiredToken()}, "Invalid token: token expired"},
		{"message before auth", "metrics", map[string]string{"type": "metrics"}, "Authentication required"},
		{"bad JSON first", "metrics", "not json", "Authentication required"},
		{"nothing sent", "metrics", nil, "Authentication required"},
	} {
		ws := r.dialMonitor(tc.kind, "srv-1")
		switch v := tc.first.(type) {
		case string:
			_ = ws.WriteMessage(websocket.TextMessage, []byte(v))
		case nil:
		default:
			sendJSON(t, ws, v)
		}
		f := readMon(t, ws)
		if f.Type != "error" || !strings.HasPrefix(f.Message, tc.reason) {
			t.Errorf("%s: got %+v, want error %q", tc.name, f, tc.reason)
			continue
		}
		c := &client{t: t, ws: ws}
		if code, reason := c.closeCode(5 * time.Second); code != 1008 || !strings.HasPrefix(reason, tc.reason) {
			t.Errorf("%s: closed %d %q, want 1008 %q", tc.name, code, reason, tc.reason)
		}
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		if n := r.edge.Hub().Clients(); n != 0 {
			return fmt.Errorf("%d clients held after refusals", n)
		}
		return nil
	})
}

func TestMonitorSocketClosesWhenTokenExpires(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	raw, _, err := token.NewIssuer(r.issuerKey(), 2*time.Second).Issue("alice", []string{"*.*.*"})
	if err != nil {
		t.Fatal(err)
	}
	ws := r.dialMonitor("metrics", "srv-1")
	sendJSON(t, ws, map[string]string{"type": "auth", "token": raw})
	if f := readMon(t, ws); f.Type != "auth_success" {
		t.Fatalf("got %+v", f)
	}
	if f := readMon(t, ws); f.Type != "error" || f.Message != "Token expired" {
		t.Fatalf("got %+v, want the Token expired error", f)
	}
	c := &client{t: t, ws: ws}
	if code, reason := c.closeCode(5 * time.Second); code != 1008 || reason != "Token expired" {
		t.Fatalf("closed %d %q, want 1008 Token expired", code, reason)
	}
}
