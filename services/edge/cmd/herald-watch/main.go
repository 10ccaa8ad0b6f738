// Command herald-watch opens Digital Rebar's event socket on an edge, registers the patterns
// given as arguments (default *.*.*) and prints every frame, one JSON object per line, the way
// `drpcli events watch` does. It exits non-zero when the socket ends for any reason other than
// Ctrl-C, printing the close code and reason, so a script notices a dropped watch.
//
//	herald-watch -token admin:PASSWORD 'profiles.*.*' 'machines.create.*'
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"time"

	"github.com/gorilla/websocket"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "herald-watch:", err)
		os.Exit(1)
	}
}

func run() error {
	addr := flag.String("url", "ws://127.0.0.1:8080/api/v3/ws", "the edge's DRP event socket")
	tok := flag.String("token", os.Getenv("HERALD_TOKEN"), "a Herald token, or user:password (default $HERALD_TOKEN)")
	flag.Parse()
	patterns := flag.Args()
	if len(patterns) == 0 {
		patterns = []string{"*.*.*"}
	}
	u, err := url.Parse(*addr)
	if err != nil {
		return err
	}
	q := u.Query()
	q.Set("token", *tok)
	u.RawQuery = q.Encode()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	ws, resp, err := websocket.DefaultDialer.DialContext(ctx, u.String(), nil)
	if err != nil {
		if resp != nil {
			return fmt.Errorf("dial %s: %w (HTTP %s)", *addr, err, resp.Status)
		}
		return fmt.Errorf("dial %s: %w", *addr, err)
	}
	defer ws.Close()
	for _, p := range patterns {
		if err := ws.WriteMessage(websocket.TextMessage, []byte("register "+p)); err != nil {
			return err
		}
	}
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
