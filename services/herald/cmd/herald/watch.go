package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gorilla/websocket"
	"github.com/spf13/cobra"

	"github.com/heraldhq/herald/pkg/drpwatch"
)

// Paths of the edge's sockets this CLI opens.
const (
	drpPath     = "/api/v3/ws"
	metricsPath = "/api/v1/ws/metrics/"
	logsPath    = "/api/v1/ws/logs/"
)

func (c *cli) watchCmd() *cobra.Command {
	var since string
	var count int
	var edges []string
	cmd := &cobra.Command{
		Use:   "watch [PATTERN...]",
		Short: "Stream Digital Rebar events matching type.action.key patterns (default *.*.*), losing none",
		Long: `watch opens the edge's Digital Rebar socket (/api/v3/ws) and registers each pattern, like
'drpcli events watch'. A pattern is type.action.key: '*' is a whole field, a field may be a
comma list (machines,profiles.save.*). With -o json every event is printed as the edge sent
it; the table shows one line per event, its stream position last.

It never loses an event: when the socket ends it reconnects with jittered backoff, to the
next of --edges in turn, and resumes after the last event's position; --since starts from a
position printed earlier. What is not an event (resumed, too old, disconnected) goes to
stderr. The token travels as DRP's ?token= query parameter, the one way that dialect takes it
on every edge.

It runs until Ctrl-C or --count events arrived (exit 0), the credentials are refused (3), or
the edge refuses a pattern (2, or 4 outside the user's permissions).`,
		Example: `  herald watch 'profiles.*.*'
  herald watch 'machines.create,save.*' 'agents.*.*' -o json
  herald watch 'jobs.ret.*' --count 1                # wait for the next command result
  herald watch 'profiles.*.*' --since 1733100000:42  # from a position printed earlier
  herald watch --edges http://edge-2:8080,http://edge-3:8080 'machines.*.*'`,
		RunE: func(cmd *cobra.Command, patterns []string) error {
			t, err := c.target()
			if err != nil {
				return err
			}
			if err := t.needCred(); err != nil {
				return err
			}
			var urls []string
			for _, e := range append([]string{t.server}, edges...) {
				u, err := socketURL(strings.TrimRight(e, "/"), drpPath)
				if err != nil {
					return err
				}
				urls = append(urls, u.String())
			}
			ctx, stop := context.WithCancel(cmd.Context())
			defer stop()
			seen := 0
			var refused error
			err = drpwatch.Watch(ctx, drpwatch.Options{URLs: urls, Token: t.cred, Patterns: patterns, Since: since,
				Dialer: &websocket.Dialer{HandshakeTimeout: 15 * time.Second, Proxy: http.ProxyFromEnvironment, TLSClientConfig: t.tlsConfig()}},
				func(ev drpwatch.Event) {
					if c.json() {
						fmt.Fprintln(c.stdout, string(ev.Raw))
					} else {
						fmt.Fprintf(c.stdout, "%s  %s.%s.%s  %s  %s  %s\n", ev.Time.Format(time.RFC3339Nano), ev.Type, ev.Action, ev.Key,
							ev.Principal, ev.Object, ev.Position)
					}
					if seen++; count > 0 && seen >= count {
						stop()
					}
				},
				func(s drpwatch.Signal) {
					fmt.Fprintf(c.stderr, "herald: %s: %s\n", s.Kind, s.Detail)
					if s.Kind == "error" { // a refused registration: retrying the same cannot help
						code := exitUsage
						if strings.HasPrefix(s.Detail, "403") {
							code = exitDenied
						}
						refused = withCode(code, fmt.Errorf("the edge refused: %s", s.Detail))
						stop()
					}
				})
			switch {
			case refused != nil:
				return refused
			case errors.Is(err, drpwatch.ErrUnauthorized):
				return withCode(exitAuth, err)
			case ctx.Err() != nil:
				return nil // Ctrl-C or --count; Watch may report the socket it closed on the way
			}
			return err
		},
	}
	cmd.Flags().StringVar(&since, "since", "", "resume from this stream position (<epoch>:<seq>, printed with each event)")
	cmd.Flags().IntVar(&count, "count", 0, "exit after this many events (0: run until stopped)")
	cmd.Flags().StringSliceVar(&edges, "edges", nil, "more edges (URLs, comma-separated) to fail over to after --edge")
	return cmd
}

func (c *cli) metricsCmd() *cobra.Command {
	return c.monitorCmd("metrics", metricsPath, `  herald metrics dev-server
  herald metrics dev-server -o json --count 3`,
		"Stream a server's metrics samples and alerts")
}

func (c *cli) logsCmd() *cobra.Command {
	return c.monitorCmd("logs", logsPath, `  herald logs dev-server
  herald logs dev-server -o json | jq -r .data.message`,
		"Stream a server's log lines")
}

// monitorCmd is metrics and logs: the monitoring sockets take the token in the first message.
func (c *cli) monitorCmd(name, path, example, short string) *cobra.Command {
	var count int
	cmd := &cobra.Command{
		Use:   name + " SERVER",
		Short: short,
		Long: short + ` from the edge's monitoring socket (` + path + `SERVER). The token goes
in the first message, not the URL. With -o json each frame is printed as sent; the table
shows one line each. It ends like watch: Ctrl-C or --count (exit 0), closed by the server (7).`,
		Example: example,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := c.target()
			if err != nil {
				return err
			}
			tok, err := bearerToken(cmd.Context(), t)
			if err != nil {
				return err
			}
			ws, err := dialWS(cmd.Context(), t, path+url.PathEscape(args[0]), nil, nil)
			if err != nil {
				return err
			}
			if err := ws.WriteJSON(map[string]string{"type": "auth", "token": tok}); err != nil {
				ws.Close()
				return withCode(exitUnavailable, err)
			}
			return c.stream(cmd.Context(), ws, count, c.printMonitor)
		},
	}
	cmd.Flags().IntVar(&count, "count", 0, "exit after this many samples or lines (0: run until stopped)")
	return cmd
}

// printMonitor prints one frame of a monitoring socket and reports whether it was data.
func (c *cli) printMonitor(raw []byte) (bool, error) {
	var f struct {
		Type    string
		Message string
		Data    struct {
			Timestamp     string  `json:"timestamp"`
			CPUPercent    float64 `json:"cpu_percent"`
			MemoryPercent float64 `json:"memory_percent"`
			Level         string  `json:"level"`
			Message       string  `json:"message"`
			Severity      string  `json:"severity"`
			Resolved      bool    `json:"resolved"`
		}
	}
	if err := json.Unmarshal(raw, &f); err != nil {
		return false, fmt.Errorf("unreadable frame %q: %w", raw, err)
	}
	switch f.Type {
	case "error":
		return false, withCode(exitAuth, errors.New(f.Message))
	case "auth_success", "pong":
		return false, nil
	}
	if c.json() {
		fmt.Fprintln(c.stdout, string(raw))
		return true, nil
	}
	d := f.Data
	switch f.Type {
	case "metrics":
		fmt.Fprintf(c.stdout, "%s  cpu %5.1f%%  memory %5.1f%%\n", d.Timestamp, d.CPUPercent, d.MemoryPercent)
	case "log":
		fmt.Fprintf(c.stdout, "%s  %-5s  %s\n", d.Timestamp, d.Level, d.Message)
	case "alert":
		state := "raised"
		if d.Resolved {
			state = "resolved"
		}
		fmt.Fprintf(c.stdout, "ALERT %s %s: %s\n", d.Severity, state, d.Message)
	default:
		fmt.Fprintln(c.stdout, string(raw))
	}
	return true, nil
}

// stream prints frames until ctx ends, count data frames arrived, print fails, or the
// server closes the socket.
func (c *cli) stream(ctx context.Context, ws *websocket.Conn, count int, print func([]byte) (bool, error)) error {
	defer ws.Close()
	stop := context.AfterFunc(ctx, func() {
		msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye")
		_ = ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
		_ = ws.SetReadDeadline(time.Now().Add(2 * time.Second)) // the server's close answers
	})
	defer stop()
	seen := 0
	for {
		_, msg, err := ws.ReadMessage()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if ce, ok := errors.AsType[*websocket.CloseError](err); ok {
				return withCode(exitClosed, fmt.Errorf("closed by the server: %d %s", ce.Code, ce.Text))
			}
			return withCode(exitClosed, fmt.Errorf("socket ended: %w", err))
		}
		data, err := print(msg)
		if err != nil {
			return err
		}
		if data {
			if seen++; count > 0 && seen >= count {
				return nil
			}
		}
	}
}
