// Package drpwatch is a client of Herald's DRP event socket that does not lose events: it keeps
// the position of the last event it got, and whenever its socket ends it reconnects, with
// jittered exponential backoff, to the next of several edges and resumes from that position.
// `herald watch` uses it; any Go program watching Herald may.
package drpwatch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gorilla/websocket"
)

// Options says what to watch and where.
type Options struct {
	// URLs are the edges' DRP sockets (ws://host:port/api/v3/ws or wss://...), tried in turn.
	URLs []string
	// Token is a Herald token, or user:password.
	Token string
	// Patterns are DRP registrations ("machines.*.*"); none means "*.*.*".
	Patterns []string
	// Since is the position to resume from ("<epoch>:<seq>"); "" starts with live events.
	Since string
	// MaxBackoff caps the wait between reconnects (0: 5s); the first is up to 100ms.
	MaxBackoff time.Duration
	// Dialer opens the sockets (nil: websocket.DefaultDialer).
	Dialer *websocket.Dialer
}

// Event is one event as the edge sent it, with the fields a watcher usually needs.
type Event struct {
	Raw               json.RawMessage `json:"-"` // the whole frame, DRP's models.Event JSON
	Type, Action, Key string
	Position          string // where to resume from after this event
	Object            json.RawMessage
	Principal         string
	Time              time.Time
}

// Signal is something the watcher should know besides events.
type Signal struct {
	// Kind: "resumed" (caught up from the position), "too-old" (the position is gone: list
	// afresh; live events follow), "disconnected" (the socket ended; reconnecting), "error"
	// (the edge refused a command).
	Kind   string
	Detail string
}

// ErrUnauthorized ends Watch: the credentials were refused, retrying cannot help.
var ErrUnauthorized = errors.New("drpwatch: credentials refused")

// Watch runs until ctx ends (then it returns nil) or the credentials are refused. onEvent gets
// every event once, in the stream's order; onSignal (may be nil) the rest.
func Watch(ctx context.Context, o Options, onEvent func(Event), onSignal func(Signal)) error {
	if len(o.URLs) == 0 {
		return errors.New("drpwatch: no edge URL")
	}
	if len(o.Patterns) == 0 {
		o.Patterns = []string{"*.*.*"}
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 5 * time.Second
	}
	if o.Dialer == nil {
		o.Dialer = websocket.DefaultDialer
	}
	if onSignal == nil {
		onSignal = func(Signal) {}
	}
	pos := o.Since
	backoff := 100 * time.Millisecond
	for i := 0; ctx.Err() == nil; i++ {
		got, err := session(ctx, o, o.URLs[i%len(o.URLs)], &pos, onEvent, onSignal)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, ErrUnauthorized) {
			return err
		}
		if got {
			backoff = 100 * time.Millisecond // it worked for a while: start over
		}
		onSignal(Signal{Kind: "disconnected", Detail: err.Error()})
		// Full jitter: a fleet of watchers that lost the same edge spreads its reconnects.
		wait := time.Duration(rand.Int64N(int64(backoff) + 1))
		backoff = min(backoff*2, o.MaxBackoff)
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
	return nil
}

// session runs one socket; got reports that at least one event arrived.
func session(ctx context.Context, o Options, base string, pos *string, onEvent func(Event), onSignal func(Signal)) (got bool, err error) {
	u, err := url.Parse(base)
	if err != nil {
		return false, fmt.Errorf("%w: bad URL %q: %w", ErrUnauthorized, base, err)
	}
	q := u.Query()
	q.Set("token", o.Token)
	if *pos != "" {
		q.Set("since", *pos)
	}
	u.RawQuery = q.Encode()
	ws, resp, err := o.Dialer.DialContext(ctx, u.String(), nil)
	if err != nil {
		if resp != nil && (resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden) {
			return false, fmt.Errorf("%w: %s", ErrUnauthorized, resp.Status)
		}
		return false, fmt.Errorf("dial %s: %w", u.Host, err)
	}
	defer ws.Close()
	stop := context.AfterFunc(ctx, func() {
		_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye"), time.Now().Add(time.Second))
		_ = ws.Close()
	})
	defer stop()
	for _, p := range o.Patterns {
		if err := ws.WriteMessage(websocket.TextMessage, []byte("register "+p)); err != nil {
			return false, err
		}
	}
	if *pos != "" {
		// Catch up now for every registration just sent, rather than after the edge's pause.
		if err := ws.WriteMessage(websocket.TextMessage, []byte("resume")); err != nil {
			return false, err
		}
	}
	for {
		_, msg, err := ws.ReadMessage()
		if err != nil {
			return got, err
		}
		var ev Event
		if err := json.Unmarshal(msg, &ev); err != nil {
			continue
		}
		ev.Raw = msg
		if ev.Type == "websocket" {
			signal(ev, onSignal)
			continue
		}
		got = true
		if ev.Position != "" {
			*pos = ev.Position
		}
		onEvent(ev)
	}
}

// signal turns the edge's websocket frames (acks, resume results, errors) into Signals.
func signal(ev Event, onSignal func(Signal)) {
	var obj struct {
		Error    string
		Code     int
		Replayed int
		Position string
	}
	_ = json.Unmarshal(ev.Object, &obj)
	switch {
	case ev.Action == "resume":
		onSignal(Signal{Kind: "resumed", Detail: fmt.Sprintf("%d events replayed from %s", obj.Replayed, ev.Key)})
	case ev.Action == "error" && obj.Code == http.StatusGone:
		onSignal(Signal{Kind: "too-old", Detail: obj.Error})
	case ev.Action == "error":
		onSignal(Signal{Kind: "error", Detail: strings.TrimSpace(fmt.Sprintf("%d %s", obj.Code, obj.Error))})
	}
}
