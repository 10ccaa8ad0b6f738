// Package resumeclient is the client side of Herald's resume, for tests: clients of every
// dialect that do what the README tells Herald's users to do (keep the position of the last
// event; on any loss of the socket reconnect with jittered backoff to one of several edges and
// resume from it), a publisher that records every event the stream acknowledged, and the check
// that every client got exactly those, once each, in the stream's order.
package resumeclient

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/heraldhq/herald/pkg/eventstream"
)

// maxSessions bounds a client's reconnects: a client that cannot stay connected fails the
// check instead of spinning for ever.
const maxSessions = 1000

// Client is one resuming client. Set the exported fields, then Run it.
type Client struct {
	Kind  Kind
	Edges []string // ws://host:port of every edge
	Home  int      // the edge it starts on; after a loss it tries the next one, in turn
	Token string
	// Since is the position of the first session; every later one resumes after the last
	// event received.
	Since string
	// Name is how failure messages call the client; Run sets "<kind> client of edge-<Home+1>"
	// when it is empty.
	Name string

	mu       sync.Mutex
	got      []Received
	pos      string
	sessions []Session
	tooOld   bool
	replayed int // reported by the edge when a later session resumed
}

// Received is one event a client got.
type Received struct {
	Seq     uint64
	Key     string
	Session int // index into Sessions
}

// Session is one connection of a client.
type Session struct {
	Edge int
	// Lost is when the previous session ended (zero for the first), Open when this one was
	// dialled and said hello: Open-Lost is how long the client was away.
	Lost, Open time.Time
	// Why is how the previous session ended (its close frame or read error).
	Why string
}

// Run keeps the client connected until ctx ends.
func (c *Client) Run(ctx context.Context) {
	c.mu.Lock()
	if c.Name == "" {
		c.Name = fmt.Sprintf("%s client of edge-%d", c.Kind.Name(), c.Home+1)
	}
	c.pos = c.Since
	c.mu.Unlock()
	next := c.Home
	var lost time.Time
	var why string
	for range maxSessions {
		if ctx.Err() != nil {
			return
		}
		if err := c.session(ctx, next%len(c.Edges), lost, why); err != nil {
			lost, why = time.Now(), ending(err)
		}
		next++
		backoff := time.Duration(20+rand.IntN(80)) * time.Millisecond // full jitter, bounded
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
	}
}

// session runs one connection to edge i; the error says how it ended, nil if none opened.
func (c *Client) session(ctx context.Context, i int, lost time.Time, why string) error {
	c.mu.Lock()
	u, hdr := c.Kind.Dial(c.Edges[i], c.Token, c.pos)
	hello := c.Kind.Hello(c.Token, c.pos)
	c.mu.Unlock()
	d := websocket.Dialer{HandshakeTimeout: 2 * time.Second}
	ws, resp, err := d.DialContext(ctx, u, hdr)
	if err != nil {
		return nil
	}
	resp.Body.Close()
	defer ws.Close()
	stop := context.AfterFunc(ctx, func() { ws.Close() })
	defer stop()
	for _, m := range hello {
		if err := ws.WriteMessage(websocket.TextMessage, m); err != nil {
			return err
		}
	}
	c.mu.Lock()
	n := len(c.sessions)
	c.sessions = append(c.sessions, Session{Edge: i, Lost: lost, Open: time.Now(), Why: why})
	c.mu.Unlock()
	for {
		_, msg, err := ws.ReadMessage()
		if err != nil {
			return err
		}
		f := c.Kind.Parse(msg)
		c.mu.Lock()
		c.tooOld = c.tooOld || f.TooOld
		if f.Resumed && n > 0 {
			c.replayed += f.Replayed
		}
		if f.Position != "" {
			p, err := eventstream.ParsePosition(f.Position)
			if err != nil {
				// Kept as sequence 0, which no event has: the check reports it.
				p.Seq = 0
			}
			c.got = append(c.got, Received{Seq: p.Seq, Key: f.Key, Session: n})
			c.pos = f.Position
		}
		c.mu.Unlock()
	}
}

// Received is every event the client got, in order.
func (c *Client) Received() []Received {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Received(nil), c.got...)
}

// Sessions is every connection the client opened, in order.
func (c *Client) Sessions() []Session {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Session(nil), c.sessions...)
}

// Replayed is how many stored events the edges said they replayed to the client's later
// sessions (the first one's catch-up is not counted).
func (c *Client) Replayed() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.replayed
}

// TooOld reports whether an edge ever refused the client's position as too old.
func (c *Client) TooOld() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tooOld
}

// String describes the client's state for failure messages.
func (c *Client) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	last := -1
	if len(c.sessions) > 0 {
		last = c.sessions[len(c.sessions)-1].Edge
	}
	return fmt.Sprintf("%s (%d events, position %s, %d sessions, last on edge-%d)", c.Name, len(c.got), c.pos, len(c.sessions), last+1)
}

// Spread makes perEdge clients for each edge, their kinds taken in turn from kinds, all
// starting after position since.
func Spread(kinds []Kind, edges []string, perEdge int, token, since string) []*Client {
	var out []*Client
	for i := range len(edges) * perEdge {
		k := kinds[i%len(kinds)]
		out = append(out, &Client{Kind: k, Edges: edges, Home: i / perEdge, Token: token, Since: since,
			Name: fmt.Sprintf("client %d (%s, edge-%d)", i, k.Name(), i/perEdge+1)})
	}
	return out
}

// RunAll runs every client until ctx ends; the returned func waits for them to stop.
func RunAll(ctx context.Context, clients []*Client) (wait func()) {
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Go(func() { c.Run(ctx) })
	}
	return wg.Wait
}

// ending is how a session ended, without the addresses: "close <code> <reason>" when the edge
// sent a close frame, else what the socket reported ("connection reset by peer").
func ending(err error) string {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		return fmt.Sprintf("close %d %s", ce.Code, ce.Text)
	}
	msg := err.Error()
	return msg[strings.LastIndex(msg, ": ")+1:]
}
