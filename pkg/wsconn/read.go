package wsconn

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/gorilla/websocket"
)

// The read side. Start hands a connection's inbound frames to a callback and says once, through
// another, that the connection has ended. On Linux an idle connection has no goroutine: one
// epoll instance watches every socket and a goroutine runs only while a frame is being read
// (read_linux.go). Elsewhere, and for a connection whose socket epoll cannot watch (TLS),
// a goroutine per connection blocks in gorilla's ReadMessage as before (readLoop).
//
// Dead peers are reaped by the pinger's timer, not by a read deadline: a deadline only bounds
// a read that is under way, and an idle event-driven connection has none.

// epoch is the origin of lastSeen: monotonic, so a clock step never reaps anyone.
var epoch = time.Now()

func sinceEpoch() time.Duration { return time.Since(epoch) }

// errCloseUnanswered ends a connection whose peer did not answer a close within closeGrace.
var errCloseUnanswered = errors.New("websocket peer did not answer the close")

// errDeadPeer ends a connection that sent nothing, not even a pong, for PongWait.
var errDeadPeer = fmt.Errorf("websocket peer silent: %w", os.ErrDeadlineExceeded)

// Start begins reading: handle gets each text or binary frame, one at a time, never two at
// once; ended gets the reason the connection ended, exactly once, after the last handle has
// returned, when the socket is closed and Done is closed. Both run on whatever goroutine read
// the frame or ended the connection (a read, the pinger, a Close), so they must not block for
// long; handle may call Send and Close. Start must be called exactly once per Conn.
func (c *Conn) Start(handle func(msg []byte), ended func(err error)) {
	if c.startEvents(handle, ended) {
		return
	}
	go func() { ended(c.readLoop(handle)) }()
}

// readLoop reads on its own goroutine until the connection ends and returns the reason.
func (c *Conn) readLoop(handle func(msg []byte)) error {
	defer close(c.done)
	defer func() { _ = c.bc.Close() }()
	defer c.closeQuietly()
	c.ws.SetPongHandler(func(string) error { c.seen(); return nil })
	for {
		typ, msg, err := c.ws.ReadMessage()
		if err != nil {
			return c.readError(err)
		}
		c.seen()
		if typ == websocket.TextMessage || typ == websocket.BinaryMessage {
			handle(msg)
		}
	}
}

// readError says why a read ended the connection.
func (c *Conn) readError(err error) error {
	if errors.Is(err, websocket.ErrReadLimit) {
		// gorilla has already sent close 1009.
		return fmt.Errorf("frame larger than %d bytes: %w", c.cfg.MaxMessageBytes, err)
	}
	if c.reaped.Load() {
		return errDeadPeer
	}
	return err
}

// seen records that the peer is alive: it sent a frame or a pong.
func (c *Conn) seen() { c.lastSeen.Store(int64(sinceEpoch())) }

// tick is the pinger's timer: it reaps a peer silent for PongWait, sends a ping every
// PingInterval, and sleeps until whichever comes next. Reads only store lastSeen, so they
// never touch the timer.
func (c *Conn) tick() {
	c.mu.Lock()
	closed, log := c.closed, c.log
	c.mu.Unlock()
	if closed {
		return
	}
	now := sinceEpoch()
	dead := time.Duration(c.lastSeen.Load()) + c.cfg.PongWait
	if now >= dead {
		c.reaped.Store(true)
		log.Debug("websocket peer silent, dropping it", "remote", c.RemoteAddr(), "pong_wait", c.cfg.PongWait)
		c.abort(errDeadPeer)
		return
	}
	next := time.Duration(c.nextPing.Load())
	if now >= next {
		if err := c.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(c.cfg.WriteTimeout)); err != nil {
			c.Close(disconnectAbnormal)
			return
		}
		next = now + c.cfg.PingInterval
		c.nextPing.Store(int64(next))
	}
	c.pinger.Reset(min(next, dead) - now)
}

// abort ends the read side now: the peer is dead, or it did not answer a close in time.
func (c *Conn) abort(cause error) {
	if c.events != nil {
		c.events.abort(cause)
		return
	}
	// The blocked ReadMessage fails and readLoop cleans up.
	_ = c.bc.Close()
}

// closeQuietly marks the conn closed without a close frame: the read side has ended.
func (c *Conn) closeQuietly() {
	c.mu.Lock()
	c.closed = true
	c.queue = nil
	if c.drained != nil && !c.flushing {
		close(c.drained)
		c.drained = nil
	}
	c.mu.Unlock()
	c.pinger.Stop()
}
