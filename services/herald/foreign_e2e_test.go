package herald_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/heraldhq/herald/pkg/testutil"
	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
	"github.com/heraldhq/herald/services/herald"
)

// foreignFrame is a Rancher frame ({name, data}) or a Salt one ({tag, data}).
type foreignFrame struct {
	Name string          `json:"name"`
	Tag  string          `json:"tag"`
	Data json.RawMessage `json:"data"`
}

// foreignSocket reads a dialect socket on one goroutine (a gorilla connection whose read
// timed out is unusable, so waits use channels, not read deadlines).
type foreignSocket struct {
	ws     *websocket.Conn
	frames chan foreignFrame
}

func openForeign(t *testing.T, url string, hdr http.Header, ready bool) *foreignSocket {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial(url, hdr)
	if err != nil {
		t.Fatalf("%s: %v", url, err)
	}
	t.Cleanup(func() { ws.Close() })
	if ready {
		if err := ws.WriteMessage(websocket.TextMessage, []byte("websocket client ready")); err != nil {
			t.Fatal(err)
		}
	}
	s := &foreignSocket{ws: ws, frames: make(chan foreignFrame, 256)}
	go func() {
		defer close(s.frames)
		for {
			var f foreignFrame
			if err := ws.ReadJSON(&f); err != nil {
				return
			}
			s.frames <- f
		}
	}()
	return s
}

// until reads frames until match accepts one, failing on a frame bad rejects or after d.
func (s *foreignSocket) until(t *testing.T, d time.Duration, bad, match func(foreignFrame) bool) foreignFrame {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case f, ok := <-s.frames:
			if !ok {
				t.Fatal("socket closed")
			}
			if bad(f) {
				t.Fatalf("unwanted frame %s %s %s", f.Name, f.Tag, f.Data)
			}
			if match(f) {
				return f
			}
		case <-deadline:
			t.Fatalf("no matching frame within %s", d)
		}
	}
}

func isConnections(f foreignFrame) bool {
	return strings.HasPrefix(f.Tag, "herald/connections/") || strings.Contains(string(f.Data), `"type":"connections"`)
}

// TestForeignDialectsLeaveOutHeraldEvents: Rancher and Salt sockets get no connections events
// unless they ask for them (resourceTypes=connections, tag=herald/connections), those that
// ask get other sockets' and never their own, and a remove without an object is norman's
// object-only frame.
func TestForeignDialectsLeaveOutHeraldEvents(t *testing.T) {
	s, _ := startStack(t)
	tok := adminToken(t, s)
	base := "ws://" + s.HTTPAddr()
	bearerHdr := http.Header{"Authorization": {"Bearer " + tok}}
	rancherPlain := openForeign(t, base+"/v3/subscribe", bearerHdr, false)
	rancherConns := openForeign(t, base+"/v3/subscribe?resourceTypes=connections&resourceTypes=node", bearerHdr, false)
	saltPlain := openForeign(t, base+"/all_events/"+tok, nil, true)
	saltConns := openForeign(t, base+"/all_events/"+tok+"?tag=herald/connections&tag=herald/node/", nil, true)
	all := []*foreignSocket{rancherPlain, rancherConns, saltPlain, saltConns}

	cc, err := grpc.NewClient(s.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	pub := heraldv1.NewEventServiceClient(cc)
	publish := func(action, key string) {
		t.Helper()
		ev := &heraldv1.Event{Type: "node", Action: action, Key: key}
		if _, err := pub.Publish(bearer(t.Context(), tok), &heraldv1.PublishRequest{Event: ev}); err != nil {
			t.Fatal(err)
		}
	}
	isNode := func(key string) func(foreignFrame) bool {
		return func(f foreignFrame) bool {
			return f.Tag == "herald/node/update/"+key || (f.Name == "resource.change" && strings.Contains(string(f.Data), `"id":"`+key+`"`))
		}
	}
	own := func(sock *foreignSocket) func(foreignFrame) bool {
		addr := sock.ws.LocalAddr().String()
		return func(f foreignFrame) bool { return isConnections(f) && strings.Contains(string(f.Data), addr) }
	}
	// Every socket subscribes once served: publish until each has seen a node event.
	for i, sock := range all {
		bad := isConnections
		if sock == rancherConns || sock == saltConns {
			bad = own(sock)
		}
		testutil.Eventually(t, 15*time.Second, func() error {
			key := fmt.Sprintf("warm-%d-%d", i, time.Now().UnixNano())
			publish("update", key)
			wait := time.After(300 * time.Millisecond)
			for {
				select {
				case f, ok := <-sock.frames:
					if !ok {
						t.Fatal("socket closed")
					}
					if bad(f) {
						t.Fatalf("socket %d got %s %s %s", i, f.Name, f.Tag, f.Data)
					}
					if isNode(key)(f) {
						return nil
					}
				case <-wait:
					return fmt.Errorf("socket %d: no node event yet", i)
				}
			}
		})
	}

	// Another socket opens: those that asked see its connections.create, the others nothing.
	other := openForeign(t, base+"/v3/subscribe", bearerHdr, false)
	otherAddr := other.ws.LocalAddr().String()
	isOther := func(f foreignFrame) bool { return isConnections(f) && strings.Contains(string(f.Data), otherAddr) }
	rancherConns.until(t, 15*time.Second, own(rancherConns), isOther)
	saltConns.until(t, 15*time.Second, own(saltConns), isOther)
	publish("update", "marker")
	rancherPlain.until(t, 15*time.Second, isConnections, isNode("marker"))
	saltPlain.until(t, 15*time.Second, isConnections, isNode("marker"))

	// A remove with no object: the object's identity only, no "value".
	publish("remove", "n-9")
	f := rancherPlain.until(t, 15*time.Second, isConnections, func(f foreignFrame) bool { return f.Name == "resource.remove" })
	var data map[string]any
	if err := json.Unmarshal(f.Data, &data); err != nil || len(data) != 2 || data["id"] != "n-9" || data["type"] != "node" {
		t.Fatalf("resource.remove data = %s, want {\"id\":\"n-9\",\"type\":\"node\"}", f.Data)
	}
}

// TestSaltMinionWithoutFacts: an agent that authenticated but sent no facts is a minion of
// formatted_events, with empty grains.
func TestSaltMinionWithoutFacts(t *testing.T) {
	s, _ := startStack(t)
	tok := adminToken(t, s)
	agent, _, err := websocket.DefaultDialer.Dial("ws://"+s.HTTPAddr()+"/api/v1/agents/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer agent.Close()
	if err := agent.WriteJSON(map[string]string{"type": "auth", "api_key": s.DevAPIKey()}); err != nil {
		t.Fatal(err)
	}
	var ok struct{ Type string }
	if err := agent.ReadJSON(&ok); err != nil || ok.Type != "auth_success" {
		t.Fatalf("agent auth = %+v, %v", ok, err)
	}
	go func() { // answer nothing, but keep reading so pings are handled
		for {
			if _, _, err := agent.ReadMessage(); err != nil {
				return
			}
		}
	}()
	testutil.Eventually(t, 15*time.Second, func() error {
		ws, _, err := websocket.DefaultDialer.Dial("ws://"+s.HTTPAddr()+"/formatted_events/"+tok, nil)
		if err != nil {
			return err
		}
		defer ws.Close()
		if err := ws.WriteMessage(websocket.TextMessage, []byte("websocket client ready")); err != nil {
			return err
		}
		_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		for range 4 {
			_, msg, err := ws.ReadMessage()
			if err != nil {
				return err
			}
			var snap struct {
				Minions map[string]struct {
					ID     string          `json:"id"`
					Grains json.RawMessage `json:"grains"`
				} `json:"minions"`
			}
			if json.Unmarshal([]byte(strings.TrimSpace(string(msg))), &snap) != nil || snap.Minions == nil {
				continue
			}
			if m, ok := snap.Minions[herald.DevServerID]; ok && m.ID == herald.DevServerID && string(m.Grains) == "{}" {
				return nil
			}
			return fmt.Errorf("minions %s", msg)
		}
		return fmt.Errorf("no minions snapshot")
	})
}
