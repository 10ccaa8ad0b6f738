package herald_test

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/heraldhq/herald/pkg/subject"
	"github.com/heraldhq/herald/pkg/testutil"
	"github.com/heraldhq/herald/pkg/testutil/natstest"
	"github.com/heraldhq/herald/pkg/testutil/redistest"
	"github.com/heraldhq/herald/pkg/token"
)

// launchAgent runs the real agent binary with key against url and extra flags until the test
// ends or it is killed, and returns it with its output.
func launchAgent(t *testing.T, url, key string, flags ...string) (*exec.Cmd, *testutil.Buffer) {
	t.Helper()
	cmd := exec.Command(agentBinary(t), append([]string{"-url", url}, flags...)...)
	cmd.Env = append(os.Environ(), "HERALD_API_KEY="+key)
	out := &testutil.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("agent output:\n%s", out.String())
		}
	})
	return cmd, out
}

// TestTwoRealAgentsOnOneKey runs two real agents with the same API key against two ingests.
// Without a bound they would replace each other every few seconds forever; with it there are
// at most two takeovers, the second agent is told clearly why it is refused, and the first
// keeps its connection and its metrics flowing.
func TestTwoRealAgentsOnOneKey(t *testing.T) {
	priv, err := token.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	f := &fleet{t: t, ns: natstest.RunServer(t), redis: redistest.Start(t), issuer: token.NewIssuer(priv, time.Hour)}
	i1, i2 := f.startIngest("ingest-1"), f.startIngest("ingest-2")
	const server = "web-9"
	watch := natstest.Connect(t, f.ns)
	announced := make(chan *nats.Msg, 64)
	if _, err := watch.ChanSubscribe(subject.AgentTakeover(server), announced); err != nil {
		t.Fatal(err)
	}
	metrics := make(chan *nats.Msg, 1024)
	if _, err := watch.ChanSubscribe(subject.Metrics(server), metrics); err != nil {
		t.Fatal(err)
	}
	if err := watch.Flush(); err != nil {
		t.Fatal(err)
	}
	count := 0
	next := func(within time.Duration) bool {
		select {
		case <-announced:
			count++
			return true
		case <-time.After(within):
			return false
		}
	}

	_, outA := launchAgent(t, wsURL(i1.url, "/api/v1/agents/ws"), "key-"+server, "-interval", "200ms")
	if !next(30 * time.Second) {
		t.Fatal("the first agent never connected")
	}
	_, outB := launchAgent(t, wsURL(i2.url, "/api/v1/agents/ws"), "key-"+server, "-interval", "200ms")
	testutil.Eventually(t, 30*time.Second, func() error {
		for len(announced) > 0 {
			<-announced
			count++
		}
		for _, out := range []*testutil.Buffer{outA, outB} {
			if strings.Contains(out.String(), "another agent is probably using the same API key") {
				return nil
			}
		}
		return fmt.Errorf("no agent was refused yet (%d connections announced)", count)
	})
	// From now on nobody takes over: the refused agent retries and is refused again.
	for next(3 * time.Second) {
		if count > 3 {
			break
		}
	}
	if count > 3 {
		t.Fatalf("%d connections announced, want at most 3 (one connect, two takeovers)", count)
	}
	t.Logf("%d connections announced (one connect plus takeovers)", count)
	for len(metrics) > 0 { // what was sent before; the holder's next sample must still come
		<-metrics
	}
	select {
	case <-metrics:
	case <-time.After(10 * time.Second):
		t.Fatal("the holding agent's metrics stopped")
	}
}
