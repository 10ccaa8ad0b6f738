// Package wsconn is Herald's server-side WebSocket connection: gorilla/websocket with the rules
// every dialect needs. Reads are limited (close 1009), pings keep idle connections alive and
// reap dead ones, the send queue is bounded in messages and bytes, and a client that cannot keep
// up is closed with a code and a reason, never silently starved and never slowing anyone else.
//
// The write path is built for fan-out: Send never blocks and does no I/O. The first Send into
// an empty queue starts a flusher goroutine that writes everything queued, in one write(2) per
// batch, and exits when the queue is empty. A producer that feeds many connections (a hub
// shard) uses SendVia and a Writer instead: it writes every connection of its burst itself,
// without waiting on any socket. Reads are event-driven on Linux (read.go), so an idle
// connection costs no goroutine at all, no write buffer and no read buffer beyond gorilla's
// smallest.
package wsconn

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/heraldhq/herald/pkg/metrics"
)

// disconnectAbnormal (1006) is never sent: it marks a write side already broken, so Close
// skips the close frame.
var disconnectAbnormal = Disconnect{websocket.CloseAbnormalClosure, ""}

// Config holds the per-connection limits. The zero value of a field means its default.
type Config struct {
	MaxMessageBytes int64         // largest frame read from the client (default 4096); more closes 1009
	SendQueue       int           // messages queued for the client before it counts as slow (default 1024)
	SendQueueBytes  int           // bytes queued before it counts as slow (default 4 MiB)
	PingInterval    time.Duration // WebSocket ping period (default 54s, as DRP/melody)
	PongWait        time.Duration // silence after which the peer is dead (default 60s)
	WriteTimeout    time.Duration // bound on one batch write (default 10s)
	// GoroutineReads reads every connection on a goroutine of its own, as on systems without
	// epoll, instead of event-driven; for comparing the two, or falling back.
	GoroutineReads bool
}

// RegisterFlags binds the limits to flags named prefix+"max-frame-bytes" and so on.
// The flags' defaults are the values in force, so -print-config and -h show them.
func (c *Config) RegisterFlags(fs *flag.FlagSet, prefix string) {
	d := Config{}.withDefaults()
	fs.Int64Var(&c.MaxMessageBytes, prefix+"max-frame-bytes", d.MaxMessageBytes, "largest WebSocket frame accepted from a client")
	fs.IntVar(&c.SendQueue, prefix+"send-queue", d.SendQueue, "messages queued per client before it is closed as slow")
	fs.IntVar(&c.SendQueueBytes, prefix+"send-queue-bytes", d.SendQueueBytes, "bytes queued per client before it is closed as slow")
	fs.DurationVar(&c.PingInterval, prefix+"ping-interval", d.PingInterval, "WebSocket ping period")
	fs.DurationVar(&c.PongWait, prefix+"pong-wait", d.PongWait, "silence after which a client is dead")
	fs.DurationVar(&c.WriteTimeout, prefix+"write-timeout", d.WriteTimeout, "bound on one write to a client")
	fs.BoolVar(&c.GoroutineReads, prefix+"goroutine-reads", false, "read each connection on a goroutine of its own instead of event-driven (epoll)")
}

// Validate reports settings that cannot work.
func (c Config) Validate() error {
	d := c.withDefaults()
	if d.MaxMessageBytes < 0 || d.SendQueue < 0 || d.SendQueueBytes < 0 {
		return errors.New("wsconn: limits must not be negative")
	}
	if d.PingInterval >= d.PongWait {
		return fmt.Errorf("wsconn: ping interval %s must be shorter than pong wait %s", d.PingInterval, d.PongWait)
	}
	return nil
}

func (c Config) withDefaults() Config {
	def := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	if c.MaxMessageBytes == 0 {
		c.MaxMessageBytes = 4096
	}
	if c.SendQueue == 0 {
		c.SendQueue = 1024
	}
	if c.SendQueueBytes == 0 {
		c.SendQueueBytes = 4 << 20
	}
	def(&c.PingInterval, 54*time.Second)
	def(&c.PongWait, 60*time.Second)
	def(&c.WriteTimeout, 10*time.Second)
	return c
}

// closeGrace is how long a closing connection waits for the peer's close frame.
const closeGrace = time.Second

// writeBufferPool lends gorilla a write buffer only while it frames something (data frames
// never go through it: batchConn.writeFrames frames them).
var writeBufferPool = &sync.Pool{}

// Upgrader upgrades HTTP requests into Conns with one set of limits.
type Upgrader struct {
	cfg Config
	ws  websocket.Upgrader
}

// NewUpgrader returns an Upgrader. checkOrigin decides cross-origin requests (nil: any origin).
// Pass a real check wherever a browser's cookies authenticate the request.
func NewUpgrader(cfg Config, checkOrigin func(*http.Request) bool) *Upgrader {
	if checkOrigin == nil {
		checkOrigin = func(*http.Request) bool { return true }
	}
	return &Upgrader{cfg: cfg.withDefaults(), ws: websocket.Upgrader{
		// The smallest gorilla takes (a control frame's payload): client frames are few and
		// small, and an idle connection keeps this buffer.
		ReadBufferSize:  maxControlPayload,
		WriteBufferSize: 4096,
		WriteBufferPool: writeBufferPool,
		CheckOrigin:     checkOrigin,
	}}
}

// Upgrade completes the handshake. On failure gorilla has already answered the request.
// The caller should call Start and return from its HTTP handler, so that net/http releases
// its per-request buffers.
func (u *Upgrader) Upgrade(w http.ResponseWriter, r *http.Request, log *slog.Logger) (*Conn, error) {
	hw := &hijackWriter{ResponseWriter: w}
	ws, err := u.ws.Upgrade(hw, r, nil)
	if err != nil {
		return nil, fmt.Errorf("websocket upgrade: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	hw.conn.mu.Lock()
	hw.conn.upgraded = true // gorilla has written its answer: only frames from here on
	hw.conn.mu.Unlock()
	c := &Conn{ws: ws, bc: hw.conn, cfg: u.cfg, log: log, done: make(chan struct{})}
	ws.SetReadLimit(u.cfg.MaxMessageBytes)
	if g, ok := hw.conn.Conn.(*frameGate); ok {
		if u.cfg.GoroutineReads {
			g.pass = true
		} else {
			c.events = newEventReader(c, g)
		}
	}
	c.seen()
	c.nextPing.Store(int64(sinceEpoch() + u.cfg.PingInterval))
	c.pinger = time.AfterFunc(u.cfg.PingInterval, c.tick)
	return c, nil
}

// Conn is one server-side WebSocket. Send and Close may be called from any goroutine.
type Conn struct {
	ws     *websocket.Conn
	bc     *batchConn
	cfg    Config
	log    *slog.Logger
	pinger *time.Timer
	done   chan struct{}
	events *eventReader // nil: reads on a goroutine (readLoop)

	lastSeen atomic.Int64 // sinceEpoch when the peer last sent anything
	nextPing atomic.Int64 // sinceEpoch when the pinger sends the next ping
	reaped   atomic.Bool  // the pinger ended the connection: the peer fell silent

	mu          sync.Mutex
	queue       [][]byte      // guarded by mu
	queuedBytes int           // guarded by mu
	flushing    bool          // a flusher goroutine owns the write side; guarded by mu
	closed      bool          // no more Sends; guarded by mu
	sentCode    int           // the close code Close sent first; guarded by mu
	drained     chan struct{} // closed by the flusher once a closing conn's queue is written; guarded by mu
}

// Send queues one text frame. It never blocks and never copies: frame must not change
// afterwards (the hub hands the same bytes to every subscriber). It returns false when the
// connection is closed or was just closed as a slow consumer.
func (c *Conn) Send(frame []byte) bool { return c.SendVia(frame, nil) }

// SendVia is Send for a producer with a Writer: the frame is written at the producer's next
// w.Flush rather than by a goroutine of the connection's own. With w nil it is Send.
func (c *Conn) SendVia(frame []byte, w *Writer) bool {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return false
	}
	if len(c.queue) >= c.cfg.SendQueue || c.queuedBytes+len(frame) > c.cfg.SendQueueBytes {
		n, size, log := len(c.queue), c.queuedBytes, c.log
		c.mu.Unlock()
		metrics.WSSlowCloses.Inc()
		log.Warn("closing slow consumer", "remote", c.RemoteAddr(), "backlog_messages", n, "backlog_bytes", size)
		c.Close(DisconnectSlow.WithReason(fmt.Sprintf("slow consumer: %d messages not yet read", n)))
		return false
	}
	c.queue = append(c.queue, frame)
	c.queuedBytes += len(frame)
	start := !c.flushing
	c.flushing = true
	c.mu.Unlock()
	switch {
	case !start:
	case w != nil:
		w.dirty = append(w.dirty, c)
	default:
		go c.flush()
	}
	return true
}

// Batch bounds: the flusher writes at most this much per write(2), so a backlog is framed a
// slice at a time and never copied whole into a private buffer.
const (
	maxBatchFrames = 64
	maxBatchBytes  = 64 << 10
)

// flush writes batches until the queue is empty. Only one flusher runs at a time.
func (c *Conn) flush() {
	var done [][]byte
	for {
		batch, ok := c.nextBatch(done)
		if !ok {
			return
		}
		if err := c.writeBatch(batch); err != nil {
			c.writeFailed(err, len(batch))
			return
		}
		clear(batch)
		done = batch
	}
}

// maxKeptQueue is the largest queue array an empty queue keeps for the next frames; a larger one
// (after a burst) is let go, so an idle connection does not hold it.
const maxKeptQueue = 64

// nextBatch takes the next batch off the queue, or hands the write side back and reports false
// when the queue is empty. Done is the batch last written (nil: none), whose array an empty
// queue takes up again instead of growing a new one.
func (c *Conn) nextBatch(done [][]byte) ([][]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.queue) == 0 {
		c.queue = nil
		if cap(done) <= maxKeptQueue {
			c.queue = done[:0]
		}
		c.stopFlushing()
		return nil, false
	}
	k, size := 0, 0
	for k < len(c.queue) && k < maxBatchFrames && (k == 0 || size+len(c.queue[k]) <= maxBatchBytes) {
		size += len(c.queue[k])
		k++
	}
	// One sample per batch write keeps the histogram off the per-message path.
	metrics.WSSendQueue.Observe(float64(len(c.queue)))
	batch := c.queue[:k] // its capacity reaches back over the whole array, for reuse
	c.queue = c.queue[k:]
	c.queuedBytes -= size
	return batch, true
}

// writeFailed ends a connection whose write failed, unsent frames and all; lost is how many
// frames were being written.
func (c *Conn) writeFailed(err error, lost int) {
	c.mu.Lock()
	c.stopFlushing()
	backlog, log, closing := len(c.queue)+lost, c.log, c.closed
	c.mu.Unlock()
	if errors.Is(err, os.ErrDeadlineExceeded) && !closing {
		// A reader that stopped reading: its TCP window is full, so no close frame can
		// reach it either. Say so where an operator looks.
		metrics.WSSlowCloses.Inc()
		log.Warn("closing stalled client: write timed out", "remote", c.RemoteAddr(), "backlog_messages", backlog, "err", err)
	} else {
		log.Debug("websocket write failed", "err", err)
	}
	c.Close(disconnectAbnormal)
}

// stopFlushing hands the write side back and wakes a Close waiting for the queue to drain;
// mu must be held.
func (c *Conn) stopFlushing() {
	c.flushing = false
	if c.drained != nil {
		close(c.drained)
		c.drained = nil
	}
}

func (c *Conn) writeBatch(batch [][]byte) error {
	n, err := c.bc.writeFrames(batch, c.cfg.WriteTimeout)
	metrics.WSFramesWritten.Add(float64(len(batch)))
	metrics.WSBytesWritten.Add(float64(n))
	return err
}

// Close sends a close frame with code and reason (cut to the 123 bytes a close frame holds)
// and closes the connection once the peer answers or closeGrace passes. Frames queued before
// Close go out first (an error frame, then the close that explains it), bounded by the write
// timeout; a slow consumer's backlog is dropped instead. It never blocks the caller and only the
// first call counts. Code 1006 (abnormal) sends no frame: the write side is already broken.
func (c *Conn) Close(d Disconnect) {
	code, reason := d.Code, d.Reason
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.sentCode = code
	var drained chan struct{}
	if code == DisconnectSlow.Code || code == websocket.CloseAbnormalClosure {
		c.queue = nil
	} else if c.flushing {
		drained = make(chan struct{})
		c.drained = drained
	}
	c.mu.Unlock()
	c.pinger.Stop()
	go func() {
		if drained != nil {
			select {
			case <-drained:
			case <-time.After(c.cfg.WriteTimeout):
			}
		}
		if code != websocket.CloseAbnormalClosure {
			if len(reason) > 123 {
				reason = reason[:123]
			}
			msg := websocket.FormatCloseMessage(code, reason)
			_ = c.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(closeGrace))
		}
		// The reader sees the peer's close frame and ends the connection; if the peer never
		// answers, the deadline ends a read under way and abort the rest.
		_ = c.bc.SetReadDeadline(time.Now().Add(closeGrace))
		select {
		case <-c.done:
		case <-time.After(closeGrace):
		}
		c.abort(errCloseUnanswered)
	}()
}

// SetPrincipal names who is on the other end, for the connection's own log lines (a slow
// consumer's close is logged at warn with it).
func (c *Conn) SetPrincipal(principal string) {
	c.mu.Lock()
	c.log = slog.New(&principalHandler{Handler: c.log.Handler(), principal: principal})
	c.mu.Unlock()
}

// Backlog is the number of frames queued and not yet written, so a producer that could fill
// the queue faster than the client reads (a replay) can pace itself instead of overflowing it.
func (c *Conn) Backlog() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.queue)
}

// ClosedWith is the close code that ended the connection, given the error Start's ended got:
// the code Close sent, else the peer's own close code, else 1006 (the connection broke).
func (c *Conn) ClosedWith(readErr error) int {
	c.mu.Lock()
	code := c.sentCode
	c.mu.Unlock()
	var ce *websocket.CloseError
	switch {
	case code != 0:
		return code
	case errors.As(readErr, &ce):
		return ce.Code
	default:
		return websocket.CloseAbnormalClosure
	}
}

// Done is closed when the read side has ended and the socket is closed: the connection is gone.
func (c *Conn) Done() <-chan struct{} { return c.done }

// RemoteAddr is the peer's address as ip:port.
func (c *Conn) RemoteAddr() string { return c.bc.RemoteAddr().String() }
