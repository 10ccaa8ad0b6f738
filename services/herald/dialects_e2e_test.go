package herald_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/heraldhq/herald/pkg/testutil"
	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
	"github.com/heraldhq/herald/services/edge"
	"github.com/heraldhq/herald/services/herald"
)

// TestSaltFormattedEventsOnALateEdge: an agent connects and a command runs; then a second
// edge starts, without the agent state store, and its formatted_events shows the minion
// with its grains and the job with its return, rebuilt from the event stream.
func TestSaltFormattedEventsOnALateEdge(t *testing.T) {
	s := startAgentStack(t)
	tok := adminToken(t, s)
	const server = herald.DevServerID
	events := dialDRP(t, s.HTTPAddr(), "token="+tok)
	expectAck(t, events, "register", "agents.*."+server)
	startAgent(t, "ws://"+s.HTTPAddr()+"/api/v1/agents/ws", s.DevAPIKey())
	waitEvent(t, events, "agents", "facts", 15*time.Second)

	cc, err := grpc.NewClient(s.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+tok)
	res, err := heraldv1.NewAgentServiceClient(cc).RunCommand(ctx, &heraldv1.RunCommandRequest{
		ServerId: server, Command: "echo salted", Timeout: durationpb.New(10 * time.Second)})
	if err != nil || res.GetOutput() != "salted\n" {
		t.Fatalf("RunCommand: %+v, %v", res, err)
	}

	// The late edge: its own NATS connection, no agent state store.
	nc, err := nats.Connect("", nats.InProcessServer(s.NATSServer()))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	late, err := edge.New(edge.Config{}, edge.Deps{NC: nc, Verifier: s.Auth().Verifier()})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- late.Run(runCtx) }()
	defer func() { stop(); <-done }()
	<-late.Ready()
	mux := http.NewServeMux()
	late.Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http")+"/formatted_events/"+tok, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if err := ws.WriteMessage(websocket.TextMessage, []byte("websocket client ready")); err != nil {
		t.Fatal(err)
	}
	var minions map[string]struct {
		ID     string         `json:"id"`
		Grains map[string]any `json:"grains"`
	}
	var jobs map[string]struct {
		Fun     string `json:"fun"`
		State   string `json:"state"`
		Minions map[string]struct {
			Return  any  `json:"return"`
			Retcode int  `json:"retcode"`
			Success bool `json:"success"`
		} `json:"minions"`
	}
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; i < 100 && (minions == nil || jobs == nil); i++ {
		_ = ws.SetReadDeadline(deadline)
		_, msg, err := ws.ReadMessage()
		if err != nil {
			t.Fatalf("formatted_events: %v (minions %v, jobs %v)", err, minions, jobs)
		}
		if !strings.HasSuffix(string(msg), "\n\n") {
			t.Fatalf("frame %q does not end with two newlines, as Salt's do", msg)
		}
		var frame map[string]json.RawMessage
		if err := json.Unmarshal(msg, &frame); err != nil {
			t.Fatal(err)
		}
		if raw, ok := frame["minions"]; ok {
			_ = json.Unmarshal(raw, &minions)
		}
		if raw, ok := frame["jobs"]; ok {
			_ = json.Unmarshal(raw, &jobs)
		}
	}
	if m, ok := minions[server]; !ok || m.Grains["hostname"] == nil || m.Grains["kernel"] == nil {
		t.Fatalf("minions %+v: want %s with its grains (hostname, kernel)", minions, server)
	}
	found := false
	for _, j := range jobs {
		if r, ok := j.Minions[server]; ok && j.Fun == "cmd.run" && r.Return == "salted\n" && r.Retcode == 0 && r.Success && j.State == "complete" {
			found = true
		}
	}
	if !found {
		t.Fatalf("jobs %+v: want the cmd.run job with its return", jobs)
	}
}

// saltPython is the Python example of seed 003 with only what Python 3 needs: the URL (the
// point), print as a function, and the loop condition the seed leaves undefined.
const saltPython = `# Note, you must be authenticated!
from websocket import create_connection
# Get the Websocket connection to Salt
ws = create_connection('%s')
# Get Salt's "real time" event stream.
ws.send('websocket client ready')
# Simple listener to print results of Salt's "real time" event stream.
# Look at https://pypi.python.org/pypi/websocket-client/ for more examples.
listening_to_events = True
while listening_to_events:
    print(ws.recv(), flush=True) # Salt's "real time" event data as serialized JSON.
# Terminates websocket connection and Salt's "real time" event stream on the server.
ws.close()
`

// TestSaltPythonExample runs Salt's documented websocket-client example against Herald.
// .ci/run installs Debian's python3-websocket; a machine without it fails here, never skips.
func TestSaltPythonExample(t *testing.T) {
	const python = "/usr/bin/python3"
	if out, err := exec.Command(python, "-c", "import websocket").CombinedOutput(); err != nil {
		t.Fatalf("%s cannot import websocket (apt-get install python3-websocket): %v\n%s", python, err, out)
	}
	s, _ := startStack(t)
	tok := adminToken(t, s)
	script := filepath.Join(t.TempDir(), "salt_events.py")
	if err := os.WriteFile(script, []byte(fmt.Sprintf(saltPython, "ws://"+s.HTTPAddr()+"/all_events/"+tok)), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(python, script)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()

	// The script subscribes some time after it starts: publish until it prints an event.
	cc, err := grpc.NewClient(s.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	pub := heraldv1.NewEventServiceClient(cc)
	// Every line the script prints must be Salt's {tag, data} with _stamp; among them, the
	// event published here (its own connections.create event may come first).
	type saltFrame struct {
		Tag  string         `json:"tag"`
		Data map[string]any `json:"data"`
	}
	testutil.Eventually(t, 15*time.Second, func() error {
		if _, err := pub.Publish(bearer(t.Context(), tok), &heraldv1.PublishRequest{Event: &heraldv1.Event{
			Type: "profiles", Action: "save", Key: "global"}}); err != nil {
			return err
		}
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					return fmt.Errorf("the script ended: %s", stderr.String())
				}
				var f saltFrame
				if err := json.Unmarshal([]byte(l), &f); err != nil || f.Tag == "" || f.Data["_stamp"] == nil {
					t.Fatalf("the script printed %q, want Salt's {tag, data} with _stamp", l)
				}
				if f.Tag == "herald/profiles/save/global" {
					return nil
				}
			case <-time.After(200 * time.Millisecond):
				return fmt.Errorf("no profiles event printed yet (stderr: %s)", stderr.String())
			}
		}
	})
}

// TestRancherClusterSocket: through the stack, a cluster-level norman socket authenticated by
// Bearer gets its cluster's events, published over gRPC with a scope, and not another's.
func TestRancherClusterSocket(t *testing.T) {
	s, _ := startStack(t)
	tok := adminToken(t, s)
	hdr := http.Header{"Authorization": {"Bearer " + tok}}
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+s.HTTPAddr()+"/v3/clusters/c-a/subscribe?sockId=1", hdr)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	cc, err := grpc.NewClient(s.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	pub := heraldv1.NewEventServiceClient(cc)
	publish := func(scope, key string) {
		t.Helper()
		if _, err := pub.Publish(bearer(t.Context(), tok), &heraldv1.PublishRequest{Event: &heraldv1.Event{
			Scope: scope, Type: "node", Action: "update", Key: key}}); err != nil {
			t.Fatal(err)
		}
	}
	// Norman sends pings every 5 s; the socket subscribes after it is served, so publish B then
	// A until A's change arrives, and B's must never come. One reader goroutine: a gorilla
	// connection whose read timed out is unusable, so the wait must not use read deadlines.
	type frame struct {
		Name string         `json:"name"`
		Data map[string]any `json:"data"`
	}
	frames := make(chan frame, 64)
	go func() {
		defer close(frames)
		for {
			var f frame
			if err := ws.ReadJSON(&f); err != nil {
				return
			}
			frames <- f
		}
	}()
	var got frame
	testutil.Eventually(t, 15*time.Second, func() error {
		publish("cluster:c-b", "c-b:m-1")
		publish("cluster:c-a", "c-a:m-1")
		for {
			select {
			case f, ok := <-frames:
				if !ok {
					t.Fatal("socket closed before a resource.change")
				}
				if f.Name == "resource.change" {
					got = f
					return nil
				}
			case <-time.After(300 * time.Millisecond):
				return errors.New("no resource.change yet")
			}
		}
	})
	if got.Data["id"] != "c-a:m-1" || got.Data["type"] != "node" {
		t.Fatalf("cluster c-a socket got %+v, want node c-a:m-1 (never c-b's)", got)
	}
}
