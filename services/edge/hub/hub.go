// Package hub is the edge's fan-out core, free of any transport: clients hold NATS subject
// filters, the hub keeps one NATS subscription per distinct filter however many clients share
// it, and hands each event's frame, encoded once per dialect, to every client's Sink.
//
// Matching happens in NATS. Go code looks at a client's own filters only when that client holds
// several and an event could arrive through more than one of them: the event is then delivered
// through the earliest of its filters that matches, so each event reaches a client at most once.
package hub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/heraldhq/herald/pkg/eventstream"
	"github.com/heraldhq/herald/pkg/metrics"
	"github.com/heraldhq/herald/pkg/subject"
	"github.com/heraldhq/herald/pkg/wsconn"
)

// The hub's counters, resolved once so the fan-out path pays no label lookup.
var (
	droppedByNATS = metrics.EdgeDropped.WithLabelValues("nats")
	droppedEncode = metrics.EdgeDropped.WithLabelValues("encode")
	// droppedInterrupted counts the clients closed because the edge lost its NATS connection.
	droppedInterrupted = metrics.EdgeDropped.WithLabelValues("interrupted")
)

// Sink is one client connection as the hub sees it.
type Sink interface {
	// Deliver queues a frame without blocking. The bytes are shared with every other client
	// and must not be changed. Seq is the event's stream sequence (0 for what is not an event
	// from the stream), so a sink can hold frames while the client catches up and drop those
	// it already sent. False means the sink is closed (a full queue closes it as slow).
	Deliver(frame []byte, seq uint64) bool
	// Close ends the connection with a WebSocket close code and reason; idempotent.
	Close(d wsconn.Disconnect)
}

// WriterSink is a Sink whose frames can wait for the end of the shard's burst and leave with
// the shard's writer: one pass over the burst's connections instead of a goroutine for each.
type WriterSink interface {
	Sink
	// DeliverVia is Deliver with the frame written at w's next Flush.
	DeliverVia(frame []byte, seq uint64, w *wsconn.Writer) bool
}

// Message is one NATS message as an Encoder sees it.
type Message struct {
	// Subject is the stored subject (subject.ForEvent for events, subject.Metrics and the
	// like for telemetry), whether it came live through the stream's republished copy or
	// from a replay; else the NATS subject.
	Subject string
	Data    []byte
	// Seq is the message's sequence in the stream that stored it (events in the event
	// stream, samples, alerts and log entries in the telemetry stream); 0 for what no stream
	// stored.
	Seq uint64
	// Position is "<epoch>:<seq>" (eventstream.FormatPosition), what a client sends back to
	// resume; "" when Seq is 0 or the stream's epoch is not known yet.
	Position string
}

// Encoder renders one message (an event, a metrics sample, a log entry) as one frame of a
// dialect. It must be comparable: the hub encodes each message once per distinct Encoder per
// filter and hands the same bytes to every client.
type Encoder interface {
	Encode(m *Message) ([]byte, error)
}

// ErrClosed is returned by Subscribe after the hub stopped.
var ErrClosed = errors.New("hub: closed")

// Config tunes the hub. The zero value of a field means its default.
type Config struct {
	// Inbound bounds the messages NATS may hand the edge before the dispatcher takes them
	// (default 65536). Past it NATS reports the edge as a slow consumer and drops.
	Inbound int
	// SubscribeTimeout bounds the wait for NATS to confirm a new subscription (default 5s).
	SubscribeTimeout time.Duration
	// Epoch returns the epoch of stream (subject.EventStream, subject.TelemetryStream) for
	// positions ("" while unknown: frames then carry no position). Nil: no positions.
	Epoch func(stream string) string
	// StreamReset is called (on the dispatcher goroutine; it must not block) when a sequence
	// lower than one already seen from stream arrives: the stream was created anew and its
	// epoch must be looked up again. Nil: nothing is called.
	StreamReset func(stream string)
	// Shards is how many goroutines hand messages to clients, each to a fixed share of them
	// (default GOMAXPROCS).
	Shards int
	// ShardQueue bounds the messages waiting for one shard (default 1024). A full shard holds
	// the dispatcher back, so the backlog then gathers in Inbound, where NATS drops and the
	// clients who missed events are closed: the edge's memory stays bounded under overload.
	ShardQueue int
}

// Hub routes events from NATS to clients.
type Hub struct {
	nc  *nats.Conn
	log *slog.Logger
	cfg Config
	in  chan *nats.Msg

	mu     sync.RWMutex
	topics map[string]*topic             // by the clients' filter subject; guarded by mu
	bySub  map[*nats.Subscription]*topic // the same topics by their NATS subscription; guarded by mu
	closed bool                          // guarded by mu
	conns  map[*Client]struct{}          // every live client; guarded by mu
	conned sync.WaitGroup                // one count per live client

	delivered, undecodable atomic.Uint64
	// lost counts deliveries that did not happen: a client closed because NATS dropped events
	// meant for it or the edge's NATS connection was lost counts the events it missed when
	// known, else one.
	lost atomic.Uint64

	lastSeq map[string]uint64 // the highest sequence dispatched, per stream; dispatcher only

	shards    []*shard
	nextShard atomic.Uint32 // spreads new clients over the shards in turn
}

// topic is one NATS subscription and the clients behind it.
type topic struct {
	subject string // the clients' filter: an event subject filter, a server's telemetry, or a core subject
	stream  bool   // subscribed to the stream's republished copy of subject (events, telemetry)
	sub     *nats.Subscription
	ready   chan struct{} // closed once NATS has confirmed the interest
	err     error         // set before ready closes

	seenDropped int // NATS drops already acted on; dispatcher only

	n int // members over all parts; guarded by Hub.mu
	// parts holds the members, one part per shard, made when the shard's first client joins
	// (under Hub.mu): a topic costs a pointer per shard, not a part, however many cores.
	parts []atomic.Pointer[part]
}

// part is the members of a topic that one shard serves.
type part struct {
	live atomic.Int32 // len(members), so the dispatcher skips a shard with none without locking

	mu      sync.RWMutex
	members []member        // guarded by mu; order is irrelevant
	index   map[*Client]int // position in members; guarded by mu

	// Each shard's RLock writes to its own part: padded, two parts never share a cache line
	// and two shards do not fight over one.
	_ [64]byte
}

// member is one client of a topic and the encoder its frames take there.
type member struct {
	c   *Client
	enc Encoder
}

// Client is one connection's registrations.
type Client struct {
	sink  Sink
	enc   Encoder
	shard int        // the shard that delivers to this client, for its whole life: one order
	via   WriterSink // sink, when it takes the shard's writer; else nil

	// subs is the client's filters in registration order, replaced whole on change so the
	// dispatcher reads it without a lock.
	subs atomic.Pointer[subList]

	mu   sync.Mutex     // serialises the client's own Subscribe/Unsubscribe calls
	refs map[string]int // how many registrations want each subject; guarded by mu
}

// New returns a hub reading from nc. Run starts it.
func New(nc *nats.Conn, cfg Config, log *slog.Logger) *Hub {
	if cfg.Inbound <= 0 {
		cfg.Inbound = 65536
	}
	if cfg.SubscribeTimeout <= 0 {
		cfg.SubscribeTimeout = 5 * time.Second
	}
	if cfg.Shards <= 0 {
		cfg.Shards = runtime.GOMAXPROCS(0)
	}
	if cfg.ShardQueue <= 0 {
		cfg.ShardQueue = 1024
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &Hub{nc: nc, cfg: cfg, log: log, in: make(chan *nats.Msg, cfg.Inbound),
		topics: map[string]*topic{}, bySub: map[*nats.Subscription]*topic{}, conns: map[*Client]struct{}{},
		lastSeq: map[string]uint64{}}
	for i := range cfg.Shards {
		h.shards = append(h.shards, &shard{i: i, jobs: make(chan *job, cfg.ShardQueue)})
	}
	return h
}

// Run dispatches events until ctx ends, then drops every NATS subscription. All subscriptions
// share one channel, read by this one goroutine, which hands each message in turn to the
// shards whose clients want it; a client belongs to one shard, so it sees events in the order
// NATS delivered them to the edge, whichever of its filters they came through.
func (h *Hub) Run(ctx context.Context) error {
	defer h.stop()
	var shards sync.WaitGroup
	defer shards.Wait()
	for _, s := range h.shards {
		shards.Go(func() { h.runShard(ctx, s) })
	}
	tick := time.NewTicker(dropCheckInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case m := <-h.in:
			h.dispatch(ctx, m)
		case <-tick.C:
			h.checkDrops()
		}
	}
}

// dropCheckInterval is how often the dispatcher looks for drops on topics that have gone
// quiet: a topic's drops are otherwise noticed only when its next message arrives.
const dropCheckInterval = 250 * time.Millisecond

// checkDrops closes the clients of every topic whose subscription dropped messages since the
// last look. Dispatcher goroutine only.
func (h *Hub) checkDrops() {
	h.mu.RLock()
	topics := make([]*topic, 0, len(h.topics))
	for _, t := range h.topics {
		topics = append(topics, t)
	}
	h.mu.RUnlock()
	for _, t := range topics {
		h.dropped(t, 0)
	}
}

func (h *Hub) stop() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for s, t := range h.topics {
		if t.sub != nil {
			_ = t.sub.Unsubscribe()
		}
		delete(h.topics, s)
		metrics.EdgeSubscriptions.Dec()
	}
	clear(h.bySub)
}

// NewClient returns a client with no registrations, or ErrClosed once the hub has stopped.
// enc is the encoder Subscribe uses; it may be nil for clients that only use SubscribeWith.
// Every client must be given back with Remove when its connection ends.
func (h *Hub) NewClient(sink Sink, enc Encoder) (*Client, error) {
	shard := int(h.nextShard.Add(1) % uint32(len(h.shards)))
	c := &Client{sink: sink, enc: enc, shard: shard, refs: map[string]int{}}
	c.via, _ = sink.(WriterSink)
	c.subs.Store(newSubList(nil))
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, ErrClosed
	}
	h.conns[c] = struct{}{}
	h.conned.Add(1)
	return c, nil
}

// Clients is the number of live clients.
func (h *Hub) Clients() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.conns)
}

// Shutdown refuses new clients, closes every live one with d at once, and waits until
// all of them have been removed or ctx ends.
func (h *Hub) Shutdown(ctx context.Context, d wsconn.Disconnect) error {
	return h.Drain(ctx, d, 0)
}

// drainTick is the pause between two batches of a drain.
const drainTick = 50 * time.Millisecond

// Drain refuses new clients and closes the live ones with d in equal batches spread over
// window (a batch every drainTick), so that thousands of clients told to reconnect do not all
// land on one neighbour in the same instant; then it waits until all of them have been removed
// or ctx ends. A window of zero closes everyone at once.
func (h *Hub) Drain(ctx context.Context, d wsconn.Disconnect, window time.Duration) error {
	h.mu.Lock()
	h.closed = true
	sinks := make([]Sink, 0, len(h.conns))
	for c := range h.conns {
		sinks = append(sinks, c.sink)
	}
	h.mu.Unlock()
	start := time.Now()
	batches := max(1, int(window/drainTick))
	per := (len(sinks) + batches - 1) / batches
	tick := time.NewTicker(drainTick)
	defer tick.Stop()
	for i := 0; i < len(sinks); i += per {
		if i > 0 {
			select {
			case <-tick.C:
			case <-ctx.Done():
				per = len(sinks) // out of time: close the rest now
			}
		}
		for _, s := range sinks[i:min(i+per, len(sinks))] {
			s.Close(d)
		}
	}
	if len(sinks) > 0 {
		metrics.EdgeDrainSeconds.Set(time.Since(start).Seconds())
		h.log.Info("closed every client", "clients", len(sinks), "code", d.Code, "took", time.Since(start))
	}
	done := make(chan struct{})
	go func() { h.conned.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("hub shutdown: %d clients still open: %w", h.Clients(), ctx.Err())
	}
}

// DisconnectInterrupted closes every client when the edge's NATS connection drops: whatever
// was published meanwhile never reaches this edge, so its clients must resume elsewhere or
// here once it is back.
var DisconnectInterrupted = wsconn.DisconnectSlow.WithReason("edge lost its NATS connection; resume from your last position")

// Interrupted closes every live client with DisconnectInterrupted. The edge calls it from its
// NATS connection's disconnect handler, which nats.go runs before the connection is back, so no
// event published after the gap reaches a client that missed the ones in it.
func (h *Hub) Interrupted() {
	h.mu.RLock()
	sinks := make([]Sink, 0, len(h.conns))
	for c := range h.conns {
		sinks = append(sinks, c.sink)
	}
	h.mu.RUnlock()
	if len(sinks) > 0 {
		h.log.Warn("NATS connection lost; closing every client so they resume", "clients", len(sinks))
	}
	h.lost.Add(uint64(len(sinks)))
	droppedInterrupted.Add(float64(len(sinks)))
	for _, s := range sinks {
		s.Close(DisconnectInterrupted)
	}
}

// Sink returns the connection the client was made for.
func (c *Client) Sink() Sink { return c.sink }

// Subscribe adds one registration's subjects to the client and returns once NATS has the
// interest, so an event published after Subscribe returns reaches the client. Frames take the
// client's own encoder.
func (h *Hub) Subscribe(ctx context.Context, c *Client, subjects []string) error {
	return h.SubscribeWith(ctx, c, c.enc, subjects)
}

// SubscribeWith is Subscribe with another encoder for these subjects, for a client that
// receives several kinds of frame. A subject the client already holds keeps its encoder.
func (h *Hub) SubscribeWith(ctx context.Context, c *Client, enc Encoder, subjects []string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var added []string
	for _, s := range subjects {
		c.refs[s]++
		if c.refs[s] == 1 {
			added = append(added, s)
		}
	}
	var waits []*topic
	for _, s := range added {
		t, err := h.join(c, enc, s)
		if err != nil {
			h.undo(c, subjects)
			return err
		}
		waits = append(waits, t)
	}
	if len(added) > 0 {
		c.subs.Store(newSubList(slices.Concat(c.subs.Load().subjects(), added)))
	}
	ctx, cancel := context.WithTimeout(ctx, h.cfg.SubscribeTimeout)
	defer cancel()
	for _, t := range waits {
		select {
		case <-t.ready:
			if t.err != nil {
				h.undo(c, subjects)
				return t.err
			}
		case <-ctx.Done():
			h.undo(c, subjects)
			return fmt.Errorf("subscribe %s: %w", t.subject, ctx.Err())
		}
	}
	return nil
}

// undo reverses a failed Subscribe; c.mu must be held.
func (h *Hub) undo(c *Client, subjects []string) {
	h.release(c, subjects)
}

// Unsubscribe removes one registration's subjects from the client.
func (h *Hub) Unsubscribe(c *Client, subjects []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	h.release(c, subjects)
}

// Remove drops every registration of the client; call it once when its connection ends.
func (h *Hub) Remove(c *Client) {
	c.mu.Lock()
	for s := range c.refs {
		h.leave(c, s)
	}
	clear(c.refs)
	c.subs.Store(newSubList(nil))
	c.mu.Unlock()
	h.mu.Lock()
	_, live := h.conns[c]
	delete(h.conns, c)
	h.mu.Unlock()
	if live {
		h.conned.Done()
	}
}

// release drops one reference per subject; c.mu must be held.
func (h *Hub) release(c *Client, subjects []string) {
	var gone []string
	for _, s := range subjects {
		switch c.refs[s] {
		case 0:
			continue
		case 1:
			delete(c.refs, s)
			gone = append(gone, s)
			h.leave(c, s)
		default:
			c.refs[s]--
		}
	}
	if len(gone) > 0 {
		next := slices.DeleteFunc(c.subs.Load().subjects(), func(s string) bool { return slices.Contains(gone, s) })
		c.subs.Store(newSubList(next))
	}
}

// join adds c to the topic for s, subscribing to NATS if c is the first.
func (h *Hub) join(c *Client, enc Encoder, s string) (*topic, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, ErrClosed
	}
	t := h.topics[s]
	if t == nil {
		t = &topic{subject: s, ready: make(chan struct{}), parts: make([]atomic.Pointer[part], len(h.shards))}
		// Events and telemetry come from their stream's republished copy, which carries each
		// one's sequence and arrives in the stream's order; anything else as published.
		natsSubj := s
		if rp, err := subject.ToRepublished(s); err == nil {
			natsSubj, t.stream = rp, true
		}
		// h.in is the only bound: nats.go drops a message it cannot put there and counts it
		// on the subscription, which dropped() and checkDrops() turn into closes. (Pending
		// limits do not apply to channel subscriptions.)
		sub, err := h.nc.ChanSubscribe(natsSubj, h.in)
		if err != nil {
			return nil, fmt.Errorf("subscribe %s: %w", natsSubj, err)
		}
		t.sub = sub
		h.topics[s] = t
		h.bySub[sub] = t
		metrics.EdgeSubscriptions.Inc()
		go h.confirm(t)
	}
	p := t.parts[c.shard].Load()
	if p == nil {
		p = &part{index: map[*Client]int{}}
		t.parts[c.shard].Store(p)
	}
	p.mu.Lock()
	p.index[c] = len(p.members)
	p.members = append(p.members, member{c, enc})
	p.live.Store(int32(len(p.members)))
	p.mu.Unlock()
	t.n++
	return t, nil
}

// confirm waits for the server to process the SUB (a PING/PONG round trip).
func (h *Hub) confirm(t *topic) {
	if err := h.nc.FlushTimeout(h.cfg.SubscribeTimeout); err != nil {
		t.err = fmt.Errorf("subscribe %s: %w", t.subject, err)
	}
	close(t.ready)
}

// leave removes c from the topic for s, unsubscribing from NATS if c was the last.
func (h *Hub) leave(c *Client, s string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	t := h.topics[s]
	if t == nil {
		return
	}
	p := t.parts[c.shard].Load()
	if p == nil {
		return // c never joined through its shard
	}
	p.mu.Lock()
	if i, ok := p.index[c]; ok {
		last := len(p.members) - 1
		p.members[i] = p.members[last]
		p.index[p.members[i].c] = i
		p.members[last] = member{}
		p.members = p.members[:last]
		p.live.Store(int32(len(p.members)))
		delete(p.index, c)
		t.n--
	}
	p.mu.Unlock()
	if t.n == 0 {
		_ = t.sub.Unsubscribe()
		delete(h.topics, s)
		delete(h.bySub, t.sub)
		metrics.EdgeSubscriptions.Dec()
	}
}

// Subscriptions is the number of NATS subscriptions the hub holds: one per distinct filter.
func (h *Hub) Subscriptions() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.topics)
}

// Delivered is the number of frames handed to sinks so far.
func (h *Hub) Delivered() uint64 { return h.delivered.Load() }

// Lost is the number of deliveries that did not happen and ended their client's connection:
// events NATS dropped on the way to the edge, times the clients that wanted them, and one per
// client closed because the edge lost its NATS connection.
func (h *Hub) Lost() uint64 { return h.lost.Load() }

// Undecodable is the number of messages that some encoder could not render, so some clients
// did not get them (each is also logged).
func (h *Hub) Undecodable() uint64 { return h.undecodable.Load() }

// frameCache holds one message's frame per encoder; almost always one or two entries. An
// encoder that failed is remembered too, so it is not retried for each of its clients.
type frameCache struct {
	encs   []Encoder
	frames [][]byte
	errs   []error
	failed []error
}

// reset empties the cache for the next message, keeping its room.
func (fc *frameCache) reset() {
	clear(fc.encs)
	clear(fc.frames)
	clear(fc.errs)
	clear(fc.failed)
	fc.encs, fc.frames, fc.errs, fc.failed = fc.encs[:0], fc.frames[:0], fc.errs[:0], fc.failed[:0]
}

func (fc *frameCache) frame(enc Encoder, m *Message) ([]byte, error) {
	if i := slices.Index(fc.encs, enc); i >= 0 {
		return fc.frames[i], fc.errs[i]
	}
	b, err := enc.Encode(m)
	fc.encs, fc.frames, fc.errs = append(fc.encs, enc), append(fc.frames, b), append(fc.errs, err)
	if err != nil {
		if !errors.Is(err, ErrSkip) {
			fc.failed = append(fc.failed, err)
		}
		return nil, err
	}
	return b, nil
}

// dispatch hands one NATS message to every shard that serves a client of its topic, in the
// order the messages came. It blocks while a shard's queue is full (see Config.ShardQueue).
func (h *Hub) dispatch(ctx context.Context, nm *nats.Msg) {
	h.mu.RLock()
	t := h.bySub[nm.Sub]
	h.mu.RUnlock()
	metrics.EdgeNATSMessages.Inc()
	if t == nil {
		return // unsubscribed while the message was queued (and maybe subscribed anew)
	}
	j := &job{t: t, m: Message{Subject: nm.Subject, Data: nm.Data}}
	if t.stream {
		if !h.streamMessage(nm, &j.m) {
			return
		}
	}
	if h.dropped(t, 1) { // the message in hand goes to no one either
		return
	}
	for _, s := range h.shards {
		if p := t.parts[s.i].Load(); p == nil || p.live.Load() == 0 {
			continue
		}
		select {
		case s.jobs <- j:
		case <-ctx.Done():
			return
		}
	}
}

// streamMessage fills in a stored message's subject, sequence and position from its stream's
// republished copy; false means the message is not one (it is logged and skipped). Each
// stream (events, telemetry) has its own sequences and epoch.
func (h *Hub) streamMessage(nm *nats.Msg, m *Message) bool {
	subj, err := subject.FromRepublished(nm.Subject)
	stream := subject.StreamOf(subj)
	if err == nil {
		m.Subject = subj
		m.Seq, err = eventstream.SequenceIn(nm.Header, stream)
	}
	if err != nil {
		h.undecodable.Add(1)
		h.log.Warn("not a message republished by its stream; skipped", "subject", nm.Subject, "err", err)
		return false
	}
	if m.Seq < h.lastSeq[stream] && h.cfg.StreamReset != nil {
		h.cfg.StreamReset(stream) // sequences start again: the stream is a new one
	}
	h.lastSeq[stream] = max(h.lastSeq[stream], m.Seq)
	if h.cfg.Epoch != nil {
		if epoch := h.cfg.Epoch(stream); epoch != "" {
			m.Position = eventstream.FormatPosition(epoch, m.Seq)
		}
	}
	return true
}

// dropped closes a topic's clients when NATS dropped messages on its way to the edge (the
// inbound channel was full): they have missed events and are told, not silently starved.
// Skipped is how many messages the caller holds and will not deliver because of it; they are
// lost too. Only the dispatcher goroutine touches t.seenDropped.
func (h *Hub) dropped(t *topic, skipped int) bool {
	d, err := t.sub.Dropped()
	if err != nil || d <= t.seenDropped {
		return false
	}
	missed := d - t.seenDropped + skipped
	reason := fmt.Sprintf("edge overloaded: %d events dropped; resume from your last position", missed)
	droppedByNATS.Add(float64(d - t.seenDropped))
	h.log.Warn("NATS dropped events for a filter; closing its clients", "subject", t.subject, "dropped", d)
	members := 0
	for i := range t.parts {
		p := t.parts[i].Load()
		if p == nil {
			continue
		}
		p.mu.RLock()
		members += len(p.members)
		for _, mb := range p.members {
			// The slow-consumer code: to the client the effect is the same, it missed events.
			mb.c.sink.Close(wsconn.DisconnectSlow.WithReason(reason))
		}
		p.mu.RUnlock()
	}
	h.lost.Add(uint64(missed) * uint64(members))
	t.seenDropped = d
	return true
}

// firstMatch reports whether an event on subj, arriving through filter via, should be
// delivered through via: true unless an earlier filter of the client also matches it. Only
// filters that can overlap an earlier one pay for the check.
func (c *Client) firstMatch(via, subj string) bool {
	l := c.subs.Load()
	if len(l.list) == 1 { // the common case: no map lookup on the fan-out path
		return l.list[0].subject == via
	}
	i, ok := l.index[via]
	if !ok {
		return false // via was removed while the message was queued
	}
	if !l.list[i].overlapsEarlier {
		return true
	}
	for _, e := range l.list[:i] {
		if subject.Match(e.subject, subj) {
			return false
		}
	}
	return true
}

// subList is a client's filter subjects in registration order, immutable once stored.
type subList struct {
	list  []subEntry
	index map[string]int
}

type subEntry struct {
	subject         string
	overlapsEarlier bool // some earlier subject could match the same event
}

func newSubList(subjects []string) *subList {
	l := &subList{list: make([]subEntry, len(subjects)), index: make(map[string]int, len(subjects))}
	for i, s := range subjects {
		l.list[i].subject = s
		l.index[s] = i
		for _, earlier := range subjects[:i] {
			if subject.Overlap(earlier, s) {
				l.list[i].overlapsEarlier = true
				break
			}
		}
	}
	return l
}

func (l *subList) subjects() []string {
	out := make([]string, len(l.list))
	for i, e := range l.list {
		out[i] = e.subject
	}
	return out
}
