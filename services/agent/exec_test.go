package agent

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/pkg/agentwire"
)

func runCmd(t *testing.T, e *executor, command string, timeoutMs int64) agentwire.CommandResponse {
	t.Helper()
	if r := e.acquire(); r != nil {
		t.Fatalf("acquire: %v", r)
	}
	defer e.release()
	return e.run(t.Context(), agentwire.Command{Type: agentwire.TypeCommand, CommandID: "c1", Command: command, TimeoutMs: timeoutMs})
}

func TestExecutorRefusesUnlessEnabled(t *testing.T) {
	e := newExecutor(false, time.Minute, 1024, 4)
	r := e.acquire()
	if r == nil || r.code != agentwire.CodeRefused || !strings.Contains(r.message, "-enable-commands") {
		t.Fatalf("acquire on a disabled executor = %+v, want a refusal naming -enable-commands", r)
	}
}

func TestExecutorEchoAndExitCodes(t *testing.T) {
	e := newExecutor(true, time.Minute, 1024, 4)
	resp := runCmd(t, e, "echo hi", 0)
	if resp.Output != "hi\n" || resp.ExitCode != 0 || resp.Truncated || resp.CommandID != "c1" ||
		resp.Type != agentwire.TypeCommandResponse || resp.DurationMs < 0 {
		t.Fatalf("echo hi: %+v", resp)
	}
	resp = runCmd(t, e, "echo oops >&2; exit 3", 0)
	if resp.ExitCode != 3 || resp.Output != "oops\n" {
		t.Fatalf("exit 3: %+v (stderr must be in the output)", resp)
	}
	resp = runCmd(t, e, "sleep 0.05", 0)
	if resp.DurationMs < 50 {
		t.Fatalf("sleep 0.05 took %dms by the response", resp.DurationMs)
	}
}

func TestExecutorTimeoutKillsProcessGroup(t *testing.T) {
	e := newExecutor(true, time.Minute, 1024, 4)
	// The background sleep keeps the output pipe open: unless the whole
	// group dies, Wait would hang until waitDelay (2s) and beyond.
	start := time.Now()
	resp := runCmd(t, e, "echo started; (sleep 60; echo late) & sleep 60", 200)
	took := time.Since(start)
	if took > 1500*time.Millisecond {
		t.Fatalf("timed-out command returned after %s; the process group was not killed", took)
	}
	if resp.ExitCode != exitTimedOut || !strings.HasPrefix(resp.Output, "started\n") ||
		!strings.Contains(resp.Output, "timed out after 200ms") || strings.Contains(resp.Output, "late") {
		t.Fatalf("timeout response: %+v", resp)
	}
	if resp.DurationMs < 200 {
		t.Fatalf("duration %dms shorter than the timeout", resp.DurationMs)
	}
}

func TestExecutorOwnTimeoutBoundsTheServers(t *testing.T) {
	e := newExecutor(true, 150*time.Millisecond, 1024, 4)
	if d := e.effectiveTimeout(60_000); d != 150*time.Millisecond {
		t.Fatalf("a larger server timeout won: %s", d)
	}
	if d := e.effectiveTimeout(20); d != 20*time.Millisecond {
		t.Fatalf("a smaller server timeout lost: %s", d)
	}
	if d := e.effectiveTimeout(0); d != 150*time.Millisecond {
		t.Fatalf("no server timeout: %s", d)
	}
	resp := runCmd(t, e, "sleep 60", 60_000)
	if resp.ExitCode != exitTimedOut {
		t.Fatalf("sleep 60 under a 150ms agent bound: %+v", resp)
	}
}

func TestExecutorOutputCap(t *testing.T) {
	e := newExecutor(true, time.Minute, 1000, 4)
	resp := runCmd(t, e, "head -c 100000 /dev/zero | tr '\\0' a", 0)
	if len(resp.Output) != 1000 || !resp.Truncated || resp.ExitCode != 0 || strings.Trim(resp.Output, "a") != "" {
		t.Fatalf("capped output: len %d truncated %v exit %d", len(resp.Output), resp.Truncated, resp.ExitCode)
	}
}

func TestExecutorBoundsConcurrency(t *testing.T) {
	e := newExecutor(true, time.Minute, 1024, 2)
	for i := range 2 {
		if r := e.acquire(); r != nil {
			t.Fatalf("slot %d refused: %v", i, r)
		}
	}
	r := e.acquire()
	if r == nil || r.code != agentwire.CodeAgentError || !strings.Contains(r.message, "busy") {
		t.Fatalf("third command = %+v, want busy", r)
	}
	e.release()
	if r := e.acquire(); r != nil {
		t.Fatalf("after a release: %v", r)
	}
}

func TestExecutorStopsWithItsContext(t *testing.T) {
	e := newExecutor(true, time.Minute, 1024, 1)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan agentwire.CommandResponse)
	go func() { done <- e.run(ctx, agentwire.Command{CommandID: "x", Command: "sleep 60"}) }()
	cancel()
	select {
	case resp := <-done:
		if resp.ExitCode == 0 {
			t.Fatalf("a killed command reported success: %+v", resp)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("command outlived its context")
	}
}
