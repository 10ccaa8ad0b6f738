// Command herald-watch prints what an edge streams, one JSON object per line.
//
//	herald-watch -token admin:PASSWORD 'profiles.*.*' 'machines.create.*'   # DRP events
//	herald-watch -token admin:PASSWORD -metrics dev-server                   # a server's metrics and alerts
//	herald-watch -token admin:PASSWORD -logs dev-server                      # a server's logs
//
// Event mode registers the patterns given (default *.*.*) on Digital Rebar's socket, like
// `drpcli events watch`, and never loses an event: when the socket ends it reconnects, with
// jittered backoff, to the next of the -addr edges (a comma list) and resumes from the last
// event's position (pkg/drpwatch). -since starts from a position printed earlier. What is not
// an event (resumed, too old, disconnected) goes to stderr. A -token of user:password is
// exchanged for a token at the edge's login endpoint where the socket needs one. The viewer
// modes exit non-zero when the socket ends for any reason other than Ctrl-C, printing the
// close code and reason, so a script notices.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/gorilla/websocket"

	"github.com/heraldhq/herald/pkg/drpwatch"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "herald-watch:", err)
		os.Exit(1)
	}
}

func run() error {
	addr := flag.String("addr", "127.0.0.1:8080", "the edge's host:port; for events, a comma list of edges to fail over across")
	since := flag.String("since", "", "events: resume from this position (<epoch>:<seq>, an event's Position)")
	tok := flag.String("token", os.Getenv("HERALD_TOKEN"), "a Herald token, or user:password (default $HERALD_TOKEN)")
	metrics := flag.String("metrics", "", "watch this server's metrics and alerts instead of events")
	logs := flag.String("logs", "", "watch this server's logs instead of events")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if *metrics == "" && *logs == "" {
		return events(ctx, *addr, *tok, *since, flag.Args())
	}
	ws, err := monitor(ctx, *addr, *tok, *metrics, *logs)
	if err != nil {
		return err
	}
	defer ws.Close()
	go func() {
		<-ctx.Done()
		msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye")
		_ = ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
	}()
	for {
		_, msg, err := ws.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) && ce.Code == websocket.CloseNormalClosure && ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("socket ended: %w", err)
		}
		fmt.Println(string(msg))
	}
}

// events watches DRP's socket (where user:password works as it is) until Ctrl-C.
func events(ctx context.Context, addrs, tok, since string, patterns []string) error {
	var urls []string
	for a := range strings.SplitSeq(addrs, ",") {
		if a = strings.TrimSpace(a); a != "" {
			urls = append(urls, "ws://"+a+"/api/v3/ws")
		}
	}
	return drpwatch.Watch(ctx, drpwatch.Options{URLs: urls, Token: tok, Patterns: patterns, Since: since},
		func(ev drpwatch.Event) { fmt.Println(string(ev.Raw)) },
		func(s drpwatch.Signal) { fmt.Fprintf(os.Stderr, "herald-watch: %s: %s\n", s.Kind, s.Detail) })
}

// monitor opens a metrics or logs socket, which wants a token in its first message.
func monitor(ctx context.Context, addr, tok, metrics, logs string) (*websocket.Conn, error) {
	if user, pass, ok := strings.Cut(tok, ":"); ok {
		var err error
		if tok, err = login(ctx, addr, user, pass); err != nil {
			return nil, err
		}
	}
	path := "/api/v1/ws/metrics/" + url.PathEscape(metrics)
	if logs != "" {
		path = "/api/v1/ws/logs/" + url.PathEscape(logs)
	}
	ws, err := dial(ctx, "ws://"+addr+path)
	if err != nil {
		return nil, err
	}
	return ws, ws.WriteJSON(map[string]string{"type": "auth", "token": tok})
}

func dial(ctx context.Context, u string) (*websocket.Conn, error) {
	ws, resp, err := websocket.DefaultDialer.DialContext(ctx, u, nil)
	if err != nil && resp != nil {
		return nil, fmt.Errorf("dial %s: %w (HTTP %s)", u, err, resp.Status)
	}
	return ws, err
}

func login(ctx context.Context, addr, user, pass string) (string, error) {
	body, _ := json.Marshal(map[string]string{"username": user, "password": pass})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/api/v1/auth/login", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("login: %w", err)
	}
	defer resp.Body.Close()
	var out struct{ Token, Error string }
	_ = json.NewDecoder(resp.Body).Decode(&out)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("login: %s: %s", resp.Status, out.Error)
	}
	return out.Token, nil
}
