package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"

	"github.com/heraldhq/herald/pkg/subject"
)

// KickReason is the close reason a kicked client sees.
func KickReason(by string) string { return "kicked by " + by }

// KickSubject is the NATS subject on which an instance takes kick requests for the
// connections it holds.
func KickSubject(instance string) string { return subject.Kick(instance) }

// ErrNotHeld means no instance answered for the connection: it ended, or its instance is gone.
var ErrNotHeld = errors.New("registry: connection not held by a live instance")

// ErrNotKickable means the connection is a REST request, which cannot be closed.
var ErrNotKickable = errors.New("registry: connection cannot be kicked")

type kickRequest struct {
	ID string `json:"id"`
	By string `json:"by"`
}

type kickReply struct {
	Closed bool   `json:"closed"`
	Error  string `json:"error,omitempty"`
}

// ServeKicks answers kick requests for t's connections until the returned subscription is
// unsubscribed.
func ServeKicks(nc *nats.Conn, t *Tracker) (*nats.Subscription, error) {
	sub, err := nc.Subscribe(KickSubject(t.Instance()), func(m *nats.Msg) {
		var req kickRequest
		var rep kickReply
		switch {
		case json.Unmarshal(m.Data, &req) != nil || req.ID == "":
			rep.Error = "bad request"
		case t.Kick(req.ID, KickReason(req.By)):
			rep.Closed = true
			t.log.Info("connection kicked", "id", req.ID, "by", req.By)
		default:
			rep.Error = "not held or not kickable"
		}
		b, _ := json.Marshal(rep)
		_ = m.Respond(b)
	})
	if err != nil {
		return nil, fmt.Errorf("registry: serve kicks: %w", err)
	}
	return sub, nc.Flush()
}

// Kick asks the instance holding c to close it with code 4003 (wsconn.DisconnectKicked) and KickReason(by).
func Kick(ctx context.Context, nc *nats.Conn, c Conn, by string) error {
	if !c.Websocket {
		return ErrNotKickable
	}
	b, _ := json.Marshal(kickRequest{ID: c.ID, By: by})
	m, err := nc.RequestWithContext(ctx, KickSubject(c.Instance), b)
	if errors.Is(err, nats.ErrNoResponders) {
		return ErrNotHeld
	}
	if err != nil {
		return fmt.Errorf("registry: kick %s on %s: %w", c.ID, c.Instance, err)
	}
	var rep kickReply
	if err := json.Unmarshal(m.Data, &rep); err != nil {
		return fmt.Errorf("registry: kick reply: %w", err)
	}
	if !rep.Closed {
		return ErrNotHeld
	}
	return nil
}
