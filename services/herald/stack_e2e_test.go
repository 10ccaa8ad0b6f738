package herald_test

import (
	"bytes"
	"context"
	"encoding/json"
	"google.golang.org/grpc/metadata"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
)

// TestEndToEnd is the foundation's walking skeleton: log in over HTTP, open DRP's socket,
// register, publish over gRPC through ingest and NATS, and see the event on the socket.
func TestEndToEnd(t *testing.T) {
	s, _ := startStack(t)
	base := "http://" + s.HTTPAddr()

	// Log in as admin over the JSON API.
	body, _ := json.Marshal(map[string]string{"username": "admin", "password": "correct horse"})
	resp, err := http.Post(base+"/api/v1/auth/login", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var login struct{ Token string }
	_ = json.NewDecoder(resp.Body).Decode(&login)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || login.Token == "" {
		t.Fatalf("login: HTTP %d, token %q", resp.StatusCode, login.Token)
	}

	ws := dialDRP(t, s.HTTPAddr(), "token="+url.QueryEscape(login.Token))
	expectAck(t, ws, "register", "profiles.*.*")
	expectAck(t, ws, "register", "sentinel.*.*")

	cc, err := grpc.NewClient(s.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	events := heraldv1.NewEventServiceClient(cc)
	publish := func(typ, action, key string, obj map[string]any) {
		t.Helper()
		v, err := structpb.NewValue(obj)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := events.Publish(bearer(t.Context(), login.Token), &heraldv1.PublishRequest{Event: &heraldv1.Event{
			Type: typ, Action: action, Key: key, Object: v,
		}}); err != nil {
			t.Fatalf("publish %s.%s.%s: %v", typ, action, key, err)
		}
	}
	publish("profiles", "save", "global", map[string]any{"Name": "global"})
	publish("machines", "create", "m1", map[string]any{"Name": "m1"})
	publish("sentinel", "done", "1", nil)

	raw := readRaw(t, ws)
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(raw, &keys); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"Time", "Type", "Action", "Key", "Principal", "Object", "Original"} {
		if _, ok := keys[k]; !ok {
			t.Errorf("event frame lacks %s: %s", k, raw)
		}
	}
	if string(keys["Type"]) != `"profiles"` || string(keys["Key"]) != `"global"` || string(keys["Object"]) != `{"Name":"global"}` {
		t.Fatalf("first event %s, want profiles.save.global", raw)
	}
	if raw := readRaw(t, ws); !strings.Contains(string(raw), `"Type":"sentinel"`) {
		t.Fatalf("got %s, want the sentinel (machines.create.m1 must not arrive)", raw)
	}

	expectAck(t, ws, "deregister", "profiles.*.*")
	publish("profiles", "save", "global", nil)
	publish("sentinel", "done", "2", nil)
	if raw := readRaw(t, ws); !strings.Contains(string(raw), `"Key":"2"`) {
		t.Fatalf("got %s after deregister, want only the sentinel", raw)
	}

	// user:password in ?token= goes through auth over NATS.
	ws2 := dialDRP(t, s.HTTPAddr(), "token=admin:"+url.QueryEscape("correct horse"))
	expectAck(t, ws2, "register", "*.*.*")

	// Validation errors are InvalidArgument naming the field.
	_, err = events.Publish(bearer(t.Context(), login.Token), &heraldv1.PublishRequest{Event: &heraldv1.Event{Action: "x"}})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "type") {
		t.Fatalf("publish without type: %v, want InvalidArgument naming type", err)
	}
}

func dialDRP(t *testing.T, addr, query string) *websocket.Conn {
	t.Helper()
	ws, resp, err := websocket.DefaultDialer.Dial("ws://"+addr+"/api/v3/ws?"+query, nil)
	if err != nil {
		code := 0
		if resp != nil {
			code = resp.StatusCode
		}
		t.Fatalf("dial: %v (HTTP %d)", err, code)
	}
	t.Cleanup(func() { ws.Close() })
	return ws
}

func readRaw(t *testing.T, ws *websocket.Conn) []byte {
	t.Helper()
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, msg, err := ws.ReadMessage()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return msg
}

// expectAck sends a command and waits for its acknowledgement. Events that match the new
// registration may arrive just before the ack (DRP's client routes them by Type): skip them.
func expectAck(t *testing.T, ws *websocket.Conn, verb, pattern string) {
	t.Helper()
	if err := ws.WriteMessage(websocket.TextMessage, []byte(verb+" "+pattern)); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		var ack struct{ Type, Action, Key string }
		if err := json.Unmarshal(readRaw(t, ws), &ack); err != nil {
			t.Fatal(err)
		}
		if ack.Type != "websocket" {
			continue
		}
		if ack.Action != verb || ack.Key != pattern {
			t.Fatalf("%s %s: got %+v", verb, pattern, ack)
		}
		return
	}
	t.Fatalf("%s %s: no acknowledgement among 100 frames", verb, pattern)
}

// bearer is ctx carrying a token for Herald's gRPC services.
func bearer(ctx context.Context, tok string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
}
