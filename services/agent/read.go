package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/gorilla/websocket"

	"github.com/heraldhq/herald/pkg/agentwire"
)

// read is the session's reader loop: it handles the server's frames until
// the connection fails or stays silent for two heartbeat periods.
func (s *session) read(ctx context.Context) error {
	s.conn.SetReadDeadline(s.dead())
	s.conn.SetPingHandler(func(data string) error {
		s.conn.SetReadDeadline(s.dead())
		err := s.conn.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(writeTimeout))
		var ne net.Error
		if err == nil || errors.Is(err, websocket.ErrCloseSent) || errors.As(err, &ne) {
			return nil // a failing connection shows up on the next read
		}
		return err
	})
	s.conn.SetPongHandler(func(string) error {
		s.conn.SetReadDeadline(s.dead())
		return nil
	})
	for {
		_, frame, err := s.conn.ReadMessage()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return fmt.Errorf("no traffic from the server for %s: connection dead", 2*s.a.cfg.PingInterval)
			}
			return fmt.Errorf("read: %w", err)
		}
		s.conn.SetReadDeadline(s.dead())
		s.handle(ctx, frame)
	}
}

// handle acts on one frame from the server.
func (s *session) handle(ctx context.Context, frame []byte) {
	log := s.a.log
	env, err := agentwire.Peek(frame)
	if err != nil {
		log.Warn("unreadable frame from the server", "err", err)
		return
	}
	switch env.Type {
	case agentwire.TypeMetricsReceived:
		ack, err := agentwire.Decode[agentwire.MetricsReceived](frame)
		if err == nil && ack.Seq > 0 {
			s.a.buf.Ack(ack.Seq)
		}
	case agentwire.TypePong:
	case agentwire.TypePing:
		s.reply(agentwire.Ping{Type: agentwire.TypePong})
	case agentwire.TypeCommand:
		s.command(ctx, frame, env.ID)
	case agentwire.TypeDockerCommand:
		s.dockerCommand(ctx, frame, env.ID)
	case agentwire.TypeError:
		e, _ := agentwire.Decode[agentwire.Error](frame)
		log.Warn("the server reported an error", "message", e.Message)
	default:
		log.Debug("ignoring message", "type", env.Type)
	}
}

// refuse answers a request the agent will not run.
func (s *session) refuse(id, code, message string) {
	s.a.log.Warn("request refused", "command_id", id, "reason", message)
	s.reply(agentwire.Error{Type: agentwire.TypeError, Message: message, CommandID: id, Code: code})
}

// command starts a shell command, if allowed, and replies when it ends.
// It runs under the agent's context, not the connection's: a network blip
// does not kill it, its timeout does.
func (s *session) command(ctx context.Context, frame []byte, id string) {
	a := s.a
	cmd, err := agentwire.Decode[agentwire.Command](frame)
	if err != nil || cmd.CommandID == "" || strings.TrimSpace(cmd.Command) == "" {
		s.refuse(id, agentwire.CodeAgentError, "Invalid command")
		return
	}
	if r := a.exec.acquire(); r != nil {
		s.refuse(cmd.CommandID, r.code, r.message)
		return
	}
	a.log.Info("running command", "command_id", cmd.CommandID, "command", cmd.Command,
		"timeout", a.exec.effectiveTimeout(cmd.TimeoutMs))
	a.tasks.Go(func() {
		defer a.exec.release()
		resp := a.exec.run(ctx, cmd)
		a.log.Info("command finished", "command_id", cmd.CommandID, "exit_code", resp.ExitCode,
			"duration_ms", resp.DurationMs, "truncated", resp.Truncated)
		s.reply(resp)
	})
}

// dockerCommand performs a Docker action, if allowed. Docker actions count
// as commands: controlling containers needs -enable-commands too, and they
// share the command slots and timeout.
func (s *session) dockerCommand(ctx context.Context, frame []byte, id string) {
	a := s.a
	cmd, err := agentwire.Decode[agentwire.DockerCommand](frame)
	if err != nil || cmd.CommandID == "" {
		s.refuse(id, agentwire.CodeAgentError, "Invalid docker command")
		return
	}
	if r := a.exec.acquire(); r != nil {
		s.refuse(cmd.CommandID, r.code, r.message)
		return
	}
	a.log.Info("docker action", "command_id", cmd.CommandID, "action", cmd.Action, "container", cmd.ContainerID)
	a.tasks.Go(func() {
		defer a.exec.release()
		ctx, cancel := context.WithTimeout(ctx, a.cfg.CommandTimeout)
		defer cancel()
		resp := a.docker.handle(ctx, cmd)
		a.log.Info("docker action finished", "command_id", cmd.CommandID, "success", resp.Success, "message", resp.Message)
		s.reply(resp)
	})
}
