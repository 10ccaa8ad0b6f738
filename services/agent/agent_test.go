package agent

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/heraldhq/herald/pkg/agentwire"
	"github.com/heraldhq/herald/pkg/testutil"
)

func TestConfigFlagsAndValidate(t *testing.T) {
	var c Config
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	c.RegisterFlags(fs)
	if err := fs.Parse([]string{"-api-key", "k", "-log-files", " /a.log, ,/b.log", "-enable-commands"}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.LogFiles, []string{"/a.log", "/b.log"}) || !c.EnableCommands || c.Interval != 5*time.Second ||
		c.Buffer != 720 || c.OutputCap != 64<<10 || c.CommandTimeout != 30*time.Second || c.URL != DefaultURL {
		t.Fatalf("parsed %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	bad := c
	bad.URL, bad.APIKey, bad.Interval = "http://x/", "", 0
	err := bad.Validate()
	for _, want := range []string{"url:", "api-key:", "interval:"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("Validate() = %v, want it to name %q", err, want)
		}
	}
}

func TestAgentSendsFactsFirstThenAckedSamples(t *testing.T) {
	p := newIngestPeer(t)
	a := startAgent(t, testConfig(p))

	facts := p.next(t, agentwire.TypeFacts)
	if f := decodeFrame[agentwire.Facts](t, facts); f.Data.Hostname != "test-host" || f.Data.CPUCount != 2 {
		t.Fatalf("facts %s", facts.raw)
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		if s := p.snapshot(); len(s) < 5 {
			return errorsOf(s)
		}
		return nil
	})
	got := p.snapshot()
	for i, s := range got[:5] {
		if s.seq != uint64(i+1) || s.conn != 1 {
			t.Fatalf("sample %d: %+v", i, s)
		}
	}
	// Acked samples leave the buffer: it holds at most the few in flight.
	testutil.Eventually(t, 5*time.Second, func() error {
		if n := a.buf.Len(); n > 2 {
			return fmt.Errorf("%d samples still buffered while online", n)
		}
		return nil
	})
}

func TestAgentStreamsTailedLogLines(t *testing.T) {
	p := newIngestPeer(t)
	path := filepath.Join(t.TempDir(), "app.log")
	if err := os.WriteFile(path, []byte("before start\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(p)
	cfg.LogFiles = []string{path}
	startAgent(t, cfg)
	p.next(t, agentwire.TypeFacts) // connected, and the tailer has had its chance to open the file
	// The tailer opened the file at its end before the agent connected?
	// Not necessarily: so append until a line arrives, and check that the
	// line from before the start never does.
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; ; i++ {
		appendTo(t, path, fmt.Sprintf("ERROR line %d\n", i))
		select {
		case f := <-p.frames:
			if f.typ != agentwire.TypeLog {
				continue
			}
			l := decodeFrame[agentwire.Log](t, f)
			if l.Data.Message == "before start" || !strings.HasPrefix(l.Data.Message, "ERROR line ") ||
				l.Data.Level != "error" || l.Data.Source != path {
				t.Fatalf("log frame %s", f.raw)
			}
			return
		case <-time.After(50 * time.Millisecond):
			if time.Now().After(deadline) {
				t.Fatal("no log frame within 10s")
			}
		}
	}
}

func sendCommand(t *testing.T, c *peerConn, id, command string, timeoutMs int64) {
	t.Helper()
	if err := c.send(agentwire.Command{Type: agentwire.TypeCommand, CommandID: id, Command: command, TimeoutMs: timeoutMs}); err != nil {
		t.Fatal(err)
	}
}

func TestAgentRunsCommandsWhenEnabled(t *testing.T) {
	p := newIngestPeer(t)
	cfg := testConfig(p)
	cfg.EnableCommands = true
	startAgent(t, cfg)
	p.next(t, agentwire.TypeFacts)
	c := p.conn(1)

	sendCommand(t, c, "c-echo", "echo hi", 0)
	r := decodeFrame[agentwire.CommandResponse](t, p.next(t, agentwire.TypeCommandResponse))
	if r.CommandID != "c-echo" || r.Output != "hi\n" || r.ExitCode != 0 || r.DurationMs < 0 || r.Truncated {
		t.Fatalf("echo hi: %+v", r)
	}
	sendCommand(t, c, "c-exit", "exit 3", 0)
	if r := decodeFrame[agentwire.CommandResponse](t, p.next(t, agentwire.TypeCommandResponse)); r.CommandID != "c-exit" || r.ExitCode != 3 {
		t.Fatalf("exit 3: %+v", r)
	}
	// The server's timeout_ms bounds the command.
	start := time.Now()
	sendCommand(t, c, "c-slow", "sleep 60", 100)
	r = decodeFrame[agentwire.CommandResponse](t, p.next(t, agentwire.TypeCommandResponse))
	if r.CommandID != "c-slow" || r.ExitCode != exitTimedOut || time.Since(start) > 5*time.Second {
		t.Fatalf("sleep 60 with timeout_ms 100: %+v after %s", r, time.Since(start))
	}
	// No Docker socket here: a clear failure, not an error frame or silence.
	if err := c.send(agentwire.DockerCommand{Type: agentwire.TypeDockerCommand, CommandID: "d1", Action: "restart", ContainerID: "web"}); err != nil {
		t.Fatal(err)
	}
	d := decodeFrame[agentwire.DockerResponse](t, p.next(t, agentwire.TypeDockerResponse))
	if d.CommandID != "d1" || d.Success || !strings.HasPrefix(d.Message, "Docker not available: ") {
		t.Fatalf("docker without a socket: %+v", d)
	}
	// A malformed command gets an error frame carrying its id.
	if err := c.send(map[string]any{"type": "command", "command_id": "c-bad", "command": 42}); err != nil {
		t.Fatal(err)
	}
	if e := decodeFrame[agentwire.Error](t, p.next(t, agentwire.TypeError)); e.CommandID != "c-bad" || e.Code != agentwire.CodeAgentError {
		t.Fatalf("malformed command: %+v", e)
	}
}

func TestAgentRefusesCommandsUnlessEnabled(t *testing.T) {
	p := newIngestPeer(t)
	startAgent(t, testConfig(p))
	p.next(t, agentwire.TypeFacts)
	c := p.conn(1)
	sendCommand(t, c, "c1", "touch /tmp/should-not-exist", 0)
	e := decodeFrame[agentwire.Error](t, p.next(t, agentwire.TypeError))
	if e.CommandID != "c1" || e.Code != agentwire.CodeRefused || !strings.Contains(e.Message, "-enable-commands") {
		t.Fatalf("refusal %+v", e)
	}
	if err := c.send(agentwire.DockerCommand{Type: agentwire.TypeDockerCommand, CommandID: "d1", Action: "stop", ContainerID: "web"}); err != nil {
		t.Fatal(err)
	}
	if e := decodeFrame[agentwire.Error](t, p.next(t, agentwire.TypeError)); e.CommandID != "d1" || e.Code != agentwire.CodeRefused {
		t.Fatalf("docker refusal %+v", e)
	}
}

func TestAgentKeepsRetryingARejectedKey(t *testing.T) {
	p := newIngestPeer(t)
	cfg := testConfig(p)
	cfg.APIKey = "hk_wrong"
	startAgent(t, cfg)
	testutil.Eventually(t, 10*time.Second, func() error {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.attempts < 3 {
			return fmt.Errorf("%d auth attempts", p.attempts)
		}
		return nil
	})
	if n := p.connCount(); n != 0 {
		t.Fatalf("%d connections accepted with a wrong key", n)
	}
}

func TestAuthenticateReportsRejection(t *testing.T) {
	p := newIngestPeer(t)
	cfg := testConfig(p)
	cfg.APIKey = "hk_wrong"
	a, err := New(cfg, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = a.dial(t.Context())
	var ae *authError
	if !errors.As(err, &ae) || ae.reason != agentwire.MessageInvalidKey {
		t.Fatalf("dial with a wrong key: %v", err)
	}
}

func TestAgentDetectsASilentServer(t *testing.T) {
	p := newIngestPeer(t)
	p.silent = true
	cfg := testConfig(p)
	cfg.PingInterval = 100 * time.Millisecond
	startAgent(t, cfg)
	// No pong, no ack: after two ping periods the agent gives up on the
	// connection and dials again.
	testutil.Eventually(t, 5*time.Second, func() error {
		if n := p.connCount(); n < 2 {
			return fmt.Errorf("%d connections", n)
		}
		return nil
	})
}

// TestAgentReplaysBufferedSamplesAfterReconnect is the offline story: the
// ingest drops the connection and refuses reconnects for a while; the
// samples taken meanwhile arrive afterwards, in order, with the timestamps
// they were taken at, none lost and none that was acknowledged sent twice.
func TestAgentReplaysBufferedSamplesAfterReconnect(t *testing.T) {
	p := newIngestPeer(t)
	a := startAgent(t, testConfig(p))
	testutil.Eventually(t, 5*time.Second, func() error {
		if s := p.snapshot(); len(s) < 5 {
			return errorsOf(s)
		}
		return nil
	})

	p.down.Store(true)
	p.conn(1).closeWith(websocket.CloseGoingAway, "ingest restarting")
	testutil.Eventually(t, 10*time.Second, func() error {
		if n := a.buf.Len(); n < 15 {
			return fmt.Errorf("%d samples buffered", n)
		}
		return nil
	})
	backAt := time.Now().UTC()
	buffered := a.buf.After(0)
	p.down.Store(false)

	lastBuffered := buffered[len(buffered)-1].seq
	testutil.Eventually(t, 10*time.Second, func() error {
		for _, s := range p.snapshot() {
			if s.conn >= 2 && s.seq > lastBuffered+3 {
				return nil
			}
		}
		return errorsOf(p.snapshot())
	})

	got := p.snapshot()
	p.mu.Lock()
	doubles := slices.Clone(p.doubles)
	p.mu.Unlock()
	if len(doubles) > 0 {
		t.Fatalf("acknowledged samples sent again: %v", doubles)
	}
	// Every seq from 1 to the highest arrived, each always with the same
	// timestamp, and timestamps grow with seq.
	first := map[uint64]gotSample{}
	var maxSeq uint64
	for _, s := range got {
		if prev, ok := first[s.seq]; ok {
			if prev.ts != s.ts || prev.cpu != s.cpu {
				t.Fatalf("seq %d re-sent changed: %+v then %+v", s.seq, prev, s)
			}
			continue
		}
		first[s.seq] = s
		maxSeq = max(maxSeq, s.seq)
	}
	var prevTS time.Time
	for seq := uint64(1); seq <= maxSeq; seq++ {
		s, ok := first[seq]
		if !ok {
			t.Fatalf("seq %d lost; %v", seq, errorsOf(got))
		}
		ts, err := time.Parse(time.RFC3339Nano, s.ts)
		if err != nil || !ts.After(prevTS) || s.cpu != float64(seq) {
			t.Fatalf("seq %d: ts %q after %s, cpu %v: %v", seq, s.ts, prevTS, s.cpu, err)
		}
		prevTS = ts
	}
	// The buffered samples came on the new connection, in order, stamped
	// before it existed: their original timestamps, not the resend time.
	var second []gotSample
	for _, s := range got {
		if s.conn >= 2 {
			second = append(second, s)
		}
	}
	for i, b := range buffered {
		if i >= len(second) || second[i].seq != b.seq {
			t.Fatalf("new connection did not start with the buffer in order: buffered %v, got %v", seqs(buffered), errorsOf(second))
		}
		if ts, _ := time.Parse(time.RFC3339Nano, second[i].ts); !ts.Before(backAt) {
			t.Fatalf("buffered seq %d stamped %s, not before the reconnect at %s", b.seq, second[i].ts, backAt)
		}
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		if n := a.buf.Len(); n > 2 {
			return fmt.Errorf("%d samples still buffered after the replay", n)
		}
		return nil
	})
}

// TestAgentSurvivesAnAbruptDrop: a connection that dies without a close
// frame (the network, not the ingest) is redialled and nothing is lost.
func TestAgentSurvivesAnAbruptDrop(t *testing.T) {
	p := newIngestPeer(t)
	startAgent(t, testConfig(p))
	testutil.Eventually(t, 5*time.Second, func() error {
		if s := p.snapshot(); len(s) < 3 {
			return errorsOf(s)
		}
		return nil
	})
	p.conn(1).ws.Close()
	testutil.Eventually(t, 10*time.Second, func() error {
		got := p.snapshot()
		seen := map[uint64]bool{}
		var maxSeq uint64
		for _, s := range got {
			seen[s.seq] = true
			if s.conn >= 2 {
				maxSeq = max(maxSeq, s.seq)
			}
		}
		if maxSeq == 0 {
			return errors.New("nothing on a second connection yet")
		}
		for seq := uint64(1); seq <= maxSeq; seq++ {
			if !seen[seq] {
				return fmt.Errorf("seq %d missing; %v", seq, errorsOf(got))
			}
		}
		return nil
	})
}

func TestAgentBufferDropsOldestWhileOffline(t *testing.T) {
	p := newIngestPeer(t)
	p.down.Store(true)
	cfg := testConfig(p)
	cfg.Buffer = 5
	a := startAgent(t, cfg)
	testutil.Eventually(t, 10*time.Second, func() error {
		if d := a.buf.Dropped(); d < 3 {
			return fmt.Errorf("%d dropped", d)
		}
		return nil
	})
	p.down.Store(false)
	testutil.Eventually(t, 10*time.Second, func() error {
		if s := p.snapshot(); len(s) < 7 {
			return errorsOf(s)
		}
		return nil
	})
	// The oldest went: the first sample to arrive is not seq 1, and the
	// rest follow without gaps.
	got := p.snapshot()
	if got[0].seq == 1 {
		t.Fatalf("seq 1 survived a buffer of 5 after %d drops", a.buf.Dropped())
	}
	for i := 1; i < len(got); i++ {
		if got[i].seq != got[i-1].seq+1 {
			t.Fatalf("gap after the replay: %v", errorsOf(got))
		}
	}
}
