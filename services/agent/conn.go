package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gorilla/websocket"

	"github.com/heraldhq/herald/pkg/agentwire"
)

// Connection limits.
const (
	writeTimeout  = 10 * time.Second
	maxFrameBytes = 1 << 20 // server frames are commands: small
)

// authError is the server's refusal of the API key: an error frame or a
// close 1008 in answer to auth.
type authError struct{ reason string }

func (e *authError) Error() string { return "API key rejected by the server: " + e.reason }

// stayConnected connects, serves the connection until it fails, and
// reconnects after a backoff, until ctx is done.
func (a *Agent) stayConnected(ctx context.Context) {
	bo := newBackoff(a.cfg.BackoffBase, a.cfg.BackoffCap)
	for {
		lived, err := a.connectOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		if lived > a.cfg.HealthyAfter {
			bo.Reset()
		}
		delay := bo.Next()
		var authErr *authError
		if errors.As(err, &authErr) {
			a.log.Error("authentication failed: check -api-key / HERALD_API_KEY; retrying",
				"reason", authErr.reason, "retry_in", delay.Round(time.Millisecond))
		} else if lived == 0 {
			a.log.Warn("cannot connect; retrying", "err", err,
				"retry_in", delay.Round(time.Millisecond), "buffered_samples", a.buf.Len())
		} else {
			a.log.Warn("disconnected; reconnecting", "err", err, "connected_for", lived.Round(time.Millisecond),
				"retry_in", delay.Round(time.Millisecond), "buffered_samples", a.buf.Len())
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// connectOnce dials, authenticates and serves one connection. It returns
// how long the connection was up after authentication, and why it ended.
func (a *Agent) connectOnce(ctx context.Context) (time.Duration, error) {
	conn, serverID, err := a.dial(ctx)
	if err != nil {
		return 0, err
	}
	up := time.Now()
	a.log.Info("connected", "server_id", serverID, "buffered_samples", a.buf.Len())
	s := &session{a: a, conn: conn, serverID: serverID, replies: make(chan any, defaultReplyQueue)}
	err = s.serve(ctx)
	return time.Since(up), err
}

// dial opens the socket and performs the auth exchange, within the
// handshake timeout.
func (a *Agent) dial(ctx context.Context) (*websocket.Conn, string, error) {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.HandshakeTimeout)
	defer cancel()
	d := websocket.Dialer{Proxy: http.ProxyFromEnvironment, HandshakeTimeout: a.cfg.HandshakeTimeout}
	conn, resp, err := d.DialContext(ctx, a.cfg.URL, nil)
	if err != nil {
		if resp != nil {
			return nil, "", fmt.Errorf("dial %s: %w (HTTP %s)", a.cfg.URL, err, resp.Status)
		}
		return nil, "", fmt.Errorf("dial %s: %w", a.cfg.URL, err)
	}
	conn.SetReadLimit(maxFrameBytes)
	serverID, err := authenticate(ctx, conn, a.cfg.APIKey)
	if err != nil {
		conn.Close()
		return nil, "", err
	}
	return conn, serverID, nil
}

// authenticate sends the auth message and reads the answer.
func authenticate(ctx context.Context, conn *websocket.Conn, apiKey string) (string, error) {
	deadline, _ := ctx.Deadline()
	conn.SetWriteDeadline(deadline)
	if err := conn.WriteJSON(agentwire.Auth{Type: agentwire.TypeAuth, APIKey: apiKey}); err != nil {
		return "", fmt.Errorf("send auth: %w", err)
	}
	conn.SetReadDeadline(deadline)
	_, frame, err := conn.ReadMessage()
	if err != nil {
		var ce *websocket.CloseError
		if errors.As(err, &ce) && ce.Code == websocket.ClosePolicyViolation {
			return "", &authError{reason: ce.Text}
		}
		return "", fmt.Errorf("read auth answer: %w", err)
	}
	env, err := agentwire.Peek(frame)
	if err != nil {
		return "", fmt.Errorf("auth answer: %w", err)
	}
	switch env.Type {
	case agentwire.TypeAuthSuccess:
		ok, err := agentwire.Decode[agentwire.AuthSuccess](frame)
		if err != nil {
			return "", fmt.Errorf("auth answer: %w", err)
		}
		return ok.ServerID, nil
	case agentwire.TypeError:
		e, _ := agentwire.Decode[agentwire.Error](frame)
		return "", &authError{reason: e.Message}
	}
	return "", fmt.Errorf("auth answer: unexpected message type %q", env.Type)
}

// session is one authenticated connection. Its reader goroutine reads
// frames; serve, the writer, is the only one that writes data frames
// (gorilla allows one writer; control frames may be written concurrently).
type session struct {
	a        *Agent
	conn     *websocket.Conn
	serverID string
	// replies queues command and Docker results and error frames for the
	// writer. Its size and the command limit bound what waits here.
	replies chan any
	// done is closed when the writer has stopped; later results are dropped.
	done chan struct{}
	// readErr is why the reader stopped; set before readDone closes.
	readErr error
}

// errShutdown ends a session because the agent stops.
var errShutdown = errors.New("agent shutting down")

// serve runs the session until the connection fails or ctx is done, and
// returns why it ended. Commands it started keep running (bounded by their
// timeouts); their results are dropped if the connection is gone by then.
func (s *session) serve(ctx context.Context) error {
	s.done = make(chan struct{})
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		s.readErr = s.read(ctx)
	}()
	err := s.write(ctx, readDone)
	close(s.done)
	if errors.Is(err, errShutdown) {
		s.conn.WriteControl(websocket.CloseMessage,
			websocket.FormatCloseMessage(websocket.CloseGoingAway, "agent shutting down"),
			time.Now().Add(time.Second))
	}
	s.conn.Close() // ends the reader if it is still reading
	<-readDone
	for {
		select {
		case r := <-s.replies:
			s.a.log.Warn("result not delivered: connection closed", "reply", describe(r))
		default:
			if err == nil {
				err = s.readErr
			}
			return err
		}
	}
}

// dead is the read deadline from now: two heartbeat periods. Every frame
// from the server (pong, ack, ping) moves it, so only real silence trips it.
func (s *session) dead() time.Time { return time.Now().Add(2 * s.a.cfg.PingInterval) }

// write is the writer loop. It sends the facts first (they also tell the
// ingest that this agent speaks the doc shape, before any ping could
// suggest otherwise), then every unacknowledged sample in order, then new
// samples, log lines, replies and pings as they come. It returns nil when
// the reader stopped first.
func (s *session) write(ctx context.Context, readDone <-chan struct{}) error {
	a := s.a
	facts, err := a.collector.Facts(ctx)
	if err != nil {
		a.log.Warn("host facts incomplete", "err", err)
	}
	if err := s.send(agentwire.Facts{Type: agentwire.TypeFacts, Data: facts}); err != nil {
		return err
	}
	// Samples above lastSent have not been sent on this connection. Every
	// connection starts from 0: whatever is still buffered was not acked.
	var lastSent uint64
	sendSamples := func() error {
		for _, it := range a.buf.After(lastSent) {
			m := it.v
			m.Seq, m.ServerID = it.seq, s.serverID
			if err := s.send(m); err != nil {
				return err
			}
			lastSent = it.seq
		}
		return nil
	}
	if err := sendSamples(); err != nil {
		return err
	}
	ping := time.NewTicker(a.cfg.PingInterval)
	defer ping.Stop()
	for {
		var err error
		select {
		case <-ctx.Done():
			return errShutdown
		case <-readDone:
			return nil
		case <-a.buf.notify:
			err = sendSamples()
		case l := <-a.logs:
			err = s.send(l)
		case r := <-s.replies:
			err = s.send(r)
		case <-ping.C:
			err = s.send(agentwire.Ping{Type: agentwire.TypePing})
		}
		if err != nil {
			return err
		}
	}
}

// send writes one message within the write timeout.
func (s *session) send(v any) error {
	s.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	if err := s.conn.WriteJSON(v); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

// reply queues a message for the writer, or drops it (logged) once the
// session has ended.
func (s *session) reply(v any) {
	select {
	case s.replies <- v:
	case <-s.done:
		s.a.log.Warn("result not delivered: connection closed", "reply", describe(v))
	}
}

// describe names a reply in logs without its output.
func describe(v any) string {
	switch r := v.(type) {
	case agentwire.CommandResponse:
		return "command_response " + r.CommandID
	case agentwire.DockerResponse:
		return "docker_response " + r.CommandID
	case agentwire.Error:
		return "error " + r.CommandID
	}
	return fmt.Sprintf("%T", v)
}
