package agent

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"time"

	"github.com/heraldhq/herald/pkg/agentwire"
)

// exitTimedOut is the exit code reported for a command killed by its
// timeout, as timeout(1) does.
const exitTimedOut = 124

// executor runs shell commands for the server, within the operator's
// limits: nothing unless enabled, at most a few at once, each bounded in
// time and in output.
type executor struct {
	enabled bool
	timeout time.Duration // upper bound; a smaller per-command timeout_ms wins
	capB    int           // output bytes kept
	slots   chan struct{} // one token per command allowed to run at once
	// waitDelay bounds how long Wait keeps reading output after the process
	// group was killed, in case something outside the group holds the pipe.
	waitDelay time.Duration
}

func newExecutor(enabled bool, timeout time.Duration, outputCap, concurrency int) *executor {
	return &executor{
		enabled:   enabled,
		timeout:   timeout,
		capB:      outputCap,
		slots:     make(chan struct{}, max(concurrency, 1)),
		waitDelay: 2 * time.Second,
	}
}

// refusal is a request the agent will not run; it becomes an error frame.
type refusal struct {
	code, message string
}

func (r *refusal) Error() string { return r.message }

// acquire reserves a slot for one command, or says why it cannot run. The
// caller releases the slot with release once the command has finished.
func (e *executor) acquire() *refusal {
	if !e.enabled {
		return &refusal{agentwire.CodeRefused, "commands and Docker actions are disabled on this agent (start it with -enable-commands)"}
	}
	select {
	case e.slots <- struct{}{}:
		return nil
	default:
		return &refusal{agentwire.CodeAgentError, fmt.Sprintf("agent busy: %d commands already running", cap(e.slots))}
	}
}

func (e *executor) release() { <-e.slots }

// effectiveTimeout is the agent's own bound, or the server's per-command
// timeout when that is smaller.
func (e *executor) effectiveTimeout(timeoutMs int64) time.Duration {
	d := e.timeout
	if req := time.Duration(timeoutMs) * time.Millisecond; timeoutMs > 0 && req < d {
		d = req
	}
	return d
}

// run executes cmd.Command with `sh -c` in a process group of its own, so
// that the timeout kills the whole tree (a shell's children included), and
// returns the doc-shape response. The caller must hold a slot (acquire).
func (e *executor) run(ctx context.Context, cmd agentwire.Command) agentwire.CommandResponse {
	timeout := e.effectiveTimeout(cmd.TimeoutMs)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	out := newCappedBuffer(e.capB)
	c := exec.CommandContext(ctx, "sh", "-c", cmd.Command)
	c.Stdout, c.Stderr = out, out // the same writer: combined, in order
	c.WaitDelay = e.waitDelay
	startInOwnGroup(c)

	start := time.Now()
	err := c.Run()
	dur := time.Since(start)

	resp := agentwire.CommandResponse{
		Type:       agentwire.TypeCommandResponse,
		CommandID:  cmd.CommandID,
		DurationMs: dur.Milliseconds(),
	}
	resp.Output, resp.Truncated = out.Result()
	var exitErr *exec.ExitError
	switch {
	case err == nil:
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		// The note is added after the cap so that it always shows.
		resp.ExitCode = exitTimedOut
		resp.Output += fmt.Sprintf("\n[herald-agent: timed out after %s; process group killed]\n", timeout)
	case errors.As(err, &exitErr):
		resp.ExitCode = exitErr.ExitCode() // -1 when killed by a signal
	case errors.Is(err, exec.ErrWaitDelay):
		// It exited, but left a process holding its output open.
		resp.ExitCode = c.ProcessState.ExitCode()
	default:
		resp.ExitCode = -1
		resp.Output += fmt.Sprintf("[herald-agent: cannot run command: %v]\n", err)
	}
	return resp
}
