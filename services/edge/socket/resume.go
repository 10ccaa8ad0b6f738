package socket

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/pkg/eventstream"
	"github.com/heraldhq/herald/pkg/subject"
	"github.com/heraldhq/herald/pkg/wsconn"
	"github.com/heraldhq/herald/services/edge/hub"
)

// Resume: a client that lost its edge reconnects (to any edge) with the position of the last
// event it got, and the socket replays from the event stream exactly the stored events after
// it that its subscriptions and permissions select, in stream order, then goes live with no
// duplicate and no gap at the seam:
//
//	Hold      live frames for the socket are held from here (call it before Subscribe)
//	Subscribe the hub delivers live events, held
//	Resume    on its own goroutine: reads the stream from the position, sends each event, then
//	          calls done (the dialect says "caught up" or "too old" in its own frame) and
//	          releases the held frames whose sequence is after the last one replayed
//
// Live delivery is in stream order too (the hub reads the stream's republished copy), so a
// client sees one sequence, increasing. A replay is paced by the socket's own send queue and
// bounded in events and time: it costs the client's own socket and a JetStream consumer,
// never the hub's dispatcher.

// Replay bounds, for Runtime fields left zero.
const (
	DefaultMaxReplay     = 200_000
	DefaultReplayTimeout = 2 * time.Minute
	// maxHeld bounds the live frames held while a socket catches up; past it the socket is
	// closed as slow, and resumes again from where it got.
	maxHeld = 16384
	// replayBacklog is the send-queue depth above which a replay waits for the client.
	replayBacklog = 256
	// apiTimeout bounds each JetStream request of a replay.
	apiTimeout = 5 * time.Second
)

// ErrBadPosition is what Resume reports for a position that does not parse; the text says why.
var ErrBadPosition = eventstream.ErrBadPosition

// DisconnectReplayFailed closes a socket whose replay could not run: it must reconnect and
// resume again.
var DisconnectReplayFailed = wsconn.DisconnectInternal.WithReason("cannot replay now: reconnect and resume from your last position")

// Resumed is how a resume ended.
type Resumed struct {
	From     string // the position asked for
	To       string // the position of the last event replayed; "" when none was
	Replayed int    // events sent from the stream
	// TooOld: the position is before the stream's first stored event, from another stream
	// (its epoch differs), or further behind than a replay may go. Nothing was replayed: the
	// client must relist; live events follow.
	TooOld bool
}

// heldFrame is a live frame that came while the socket was catching up.
type heldFrame struct {
	frame []byte
	seq   uint64
}

// Deliver implements hub.Sink: a live frame goes out now, or is held while the socket catches
// up; an event already sent by the replay is not sent again.
func (s *Socket) Deliver(frame []byte, seq uint64) bool { return s.DeliverVia(frame, seq, nil) }

// DeliverVia implements hub.WriterSink: Deliver, with the frame written at the hub shard's
// next w.Flush (nil: by the connection itself).
func (s *Socket) DeliverVia(frame []byte, seq uint64, w *wsconn.Writer) bool {
	if s.holding.Load() {
		s.heldMu.Lock()
		if s.holding.Load() {
			defer s.heldMu.Unlock()
			if len(s.held) >= maxHeld {
				s.Close(wsconn.DisconnectSlow.WithReason("slow consumer: too many events while catching up; resume from your last position"))
				return false
			}
			s.held = append(s.held, heldFrame{frame, seq})
			return true
		}
		s.heldMu.Unlock()
	}
	return s.send(frame, seq, w)
}

// send writes a frame, skipping stream events at or before the last one sent (the seam between
// a replay and live delivery). Only one goroutine sends events at a time: the client's hub shard
// while live, the replay while holding.
func (s *Socket) send(frame []byte, seq uint64, w *wsconn.Writer) bool {
	if seq != 0 {
		if seq <= s.lastSeq.Load() {
			return true
		}
		s.lastSeq.Store(seq)
	}
	return s.conn.SendVia(frame, w)
}

// Hold makes the socket hold live frames until a Resume releases them. Call it before
// subscribing the subjects that Resume will replay.
func (s *Socket) Hold() { s.holding.Store(true) }

// release sends the held frames not already replayed and lets live frames through again.
func (s *Socket) release() {
	s.heldMu.Lock()
	defer s.heldMu.Unlock()
	for _, h := range s.held {
		s.send(h.frame, h.seq, nil)
	}
	s.held = nil
	s.holding.Store(false)
}

// Resume replays, on its own goroutine, the stored events after pos on the event subjects
// (filters from subject.ForFilters, already narrowed to the session's permissions) through enc,
// then calls done with the outcome and releases the held live frames. Hold must have been
// called. A bad position is refused at once (the error wraps ErrBadPosition) and nothing
// starts: the caller says so and calls Release. If the stream cannot be read, done is not
// called: the socket is closed with DisconnectReplayFailed.
func (s *Socket) Resume(enc hub.Encoder, subjects []string, pos string, done func(Resumed)) error {
	return s.ResumeStream(subject.EventStream, enc, subjects, pos, done)
}

// ResumeStream is Resume from another of Herald's streams (subject.TelemetryStream for the
// metrics and logs viewers): subjects are subjects that stream stores, and pos a position in
// it. A socket resumes from one stream only: its held and sent sequences are that stream's.
func (s *Socket) ResumeStream(stream string, enc hub.Encoder, subjects []string, pos string, done func(Resumed)) error {
	p, err := eventstream.ParsePosition(pos)
	if err != nil {
		return err
	}
	go func() {
		r, err := s.replay(stream, enc, subjects, p)
		if err != nil && !errors.Is(err, errGone) {
			s.log.Warn("socket: replay failed", "from", pos, "err", err)
		}
		switch {
		case errors.Is(err, errGone):
		case err != nil:
			// No "caught up" for a replay that failed: the close says reconnect and resume.
			s.Close(DisconnectReplayFailed)
		default:
			r.From = pos
			done(r)
			s.release()
		}
	}()
	return nil
}

// Release stops holding without a replay (a refused position, a client that asked for none).
func (s *Socket) Release() { s.release() }

// errGone ends a replay whose socket closed.
var errGone = errors.New("socket closed")

func (s *Socket) replay(stream string, enc hub.Encoder, subjects []string, p eventstream.Position) (Resumed, error) {
	var r Resumed
	js := s.rt.JS
	if js == nil {
		return r, errors.New("no event stream configured")
	}
	timeout := s.rt.ReplayTimeout
	if timeout <= 0 {
		timeout = DefaultReplayTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	go func() {
		select {
		case <-s.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	// Each request to JetStream is bounded on its own: a stream between leaders (a node just
	// died) must fail the replay soon, so the client retries, rather than hold it for the
	// whole ReplayTimeout.
	rctx, rcancel := context.WithTimeout(ctx, apiTimeout)
	defer rcancel()
	st, err := js.Stream(rctx, stream)
	if err != nil {
		return r, fmt.Errorf("replay: stream: %w", err)
	}
	info, err := st.Info(rctx)
	if err != nil {
		return r, fmt.Errorf("replay: stream info: %w", err)
	}
	limit := s.rt.MaxReplay
	if limit <= 0 {
		limit = DefaultMaxReplay
	}
	epoch, state := eventstream.EpochOf(info), info.State
	if p.Epoch != epoch || p.Seq+1 < state.FirstSeq || p.Seq > state.LastSeq ||
		state.LastSeq-p.Seq > uint64(limit) {
		r.TooOld = true
		return r, nil
	}
	if p.Seq == state.LastSeq || len(subjects) == 0 {
		return r, nil // nothing stored after it
	}
	// JetStream refuses overlapping filter subjects in one consumer: a socket whose filters
	// overlap reads the whole stream (no filter) and keeps what any filter matches.
	filters, local := subjects, false
	for i, a := range subjects {
		for _, b := range subjects[:i] {
			if subject.Overlap(a, b) {
				filters, local = nil, true
			}
		}
	}
	// An ephemeral consumer that acknowledges nothing and lives in memory: created to read
	// what is stored, deleted after (and gone by itself if this edge dies meanwhile).
	cfg := jetstream.ConsumerConfig{
		FilterSubjects: filters, DeliverPolicy: jetstream.DeliverByStartSequencePolicy,
		OptStartSeq: p.Seq + 1, AckPolicy: jetstream.AckNonePolicy, MemoryStorage: true,
		InactiveThreshold: 30 * time.Second,
	}
	var cons jetstream.Consumer
	for try := 1; ; try++ {
		if cons, err = st.CreateConsumer(rctx, cfg); err != nil {
			return r, fmt.Errorf("replay: consumer: %w", err)
		}
		host := cons.CachedInfo().Cluster
		if host == nil || complete(info.Cluster, host.Leader) {
			break
		}
		deleteConsumer(st, cons)
		if try == placementTries {
			return r, fmt.Errorf("replay: consumer placed %d times on a node still catching up (%s)", try, host.Leader)
		}
	}
	defer deleteConsumer(st, cons)
	// The consumer knows how many stored events it selects; each batch asks for no more than
	// remain, so a fetch returns as soon as they are there.
	pending := cons.CachedInfo().NumPending
	var delivered uint64 // the stream sequence of the last event the consumer handed over
	// fetch reads one batch of at most n and sends what it selects; it returns how many came.
	fetch := func(n int, wait time.Duration) (int, error) {
		batch, err := cons.Fetch(n, jetstream.FetchMaxWait(wait))
		if err != nil {
			return 0, s.goneOr(fmt.Errorf("replay: fetch: %w", err))
		}
		got := 0
		for msg := range batch.Messages() {
			got++
			meta, err := msg.Metadata()
			if err != nil {
				return got, fmt.Errorf("replay: metadata: %w", err)
			}
			pending, delivered = meta.NumPending, meta.Sequence.Stream
			if local && !matchesAny(subjects, msg.Subject()) {
				continue
			}
			m := hub.Message{Subject: msg.Subject(), Data: msg.Data(), Seq: delivered,
				Position: eventstream.FormatPosition(epoch, delivered)}
			frame, err := enc.Encode(&m)
			if err != nil {
				continue // an event this dialect cannot render (or leaves out) is skipped, as live
			}
			if err := s.pace(ctx); err != nil {
				return got, err
			}
			if m.Seq > s.lastSeq.Load() {
				if !s.send(frame, m.Seq, nil) {
					return got, errGone
				}
				r.Replayed++
				r.To = m.Position
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, nats.ErrTimeout) {
			return got, s.goneOr(fmt.Errorf("replay: fetch: %w", err))
		}
		return got, nil
	}
	for scanned := 0; pending > 0; {
		if scanned >= limit {
			return Resumed{TooOld: true}, nil // further behind than a replay may go: relist
		}
		n, err := fetch(int(min(pending, 256)), 5*time.Second)
		if err != nil {
			return r, err
		}
		if n == 0 {
			return r, s.goneOr(errors.New("replay: the stream sent nothing while events were pending"))
		}
		scanned += n
	}
	return r, s.seam(ctx, fetch, &delivered)
}

// placementTries bounds how often a replay makes its consumer again because JetStream placed
// it on a node that is still catching up.
const placementTries = 5

// complete reports whether the node named host holds every event of the stream whose cluster
// state is c: its leader, or a replica the leader reports current. JetStream places a replay's
// one-replica consumer on any node of the stream, including one that has just come back and is
// still catching up: that node already has the newest events but not all those stored while it
// was away, and a consumer there hands over what the node has, skipping the rest without a
// word (clients resuming then lost a run of events in the kill -9 fleet test).
func complete(c *jetstream.ClusterInfo, host string) bool {
	if c == nil || len(c.Replicas) == 0 || host == c.Leader {
		return true // one node, or the leader
	}
	for _, r := range c.Replicas {
		if r.Name == host {
			return r.Current
		}
	}
	return false
}

func deleteConsumer(st jetstream.Stream, cons jetstream.Consumer) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = st.DeleteConsumer(ctx, cons.CachedInfo().Name)
}

// seamGrace is how long a caught-up replay keeps reading when no live event has come.
const seamGrace = 250 * time.Millisecond

// seam closes the gap between the replay and live delivery. NATS spreads a new subscription's
// interest across a cluster asynchronously, so the stream's leader may republish an event
// stored just after the replay's last fetch before it knows of this edge's interest: that
// event would be neither replayed nor delivered live. So the replay goes on reading, as the
// consumer is handed new events, until it reaches the first live event held (everything before
// it has then been sent), or for seamGrace at most, far longer than interest takes to spread.
func (s *Socket) seam(ctx context.Context, fetch func(int, time.Duration) (int, error), delivered *uint64) error {
	deadline := time.Now().Add(seamGrace)
	for {
		// A held event may also come from a subject this replay does not read (a DRP
		// registration made during the catch-up): the grace bounds the wait then too.
		if first := s.firstHeld(); (first != 0 && *delivered+1 >= first) || time.Now().After(deadline) {
			return nil
		}
		if _, err := fetch(64, 50*time.Millisecond); err != nil {
			return err
		}
		if ctx.Err() != nil {
			return s.goneOr(fmt.Errorf("replay: %w", ctx.Err()))
		}
	}
}

// firstHeld is the sequence of the first held stream event, 0 for none.
func (s *Socket) firstHeld() uint64 {
	s.heldMu.Lock()
	defer s.heldMu.Unlock()
	for _, h := range s.held {
		if h.seq != 0 {
			return h.seq
		}
	}
	return 0
}

// pace waits while the client has more than replayBacklog frames unread.
func (s *Socket) pace(ctx context.Context) error {
	if s.conn.Backlog() <= replayBacklog {
		return nil
	}
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for s.conn.Backlog() > replayBacklog {
		select {
		case <-ctx.Done():
			return s.goneOr(fmt.Errorf("replay: client too slow: %w", ctx.Err()))
		case <-t.C:
		}
	}
	return nil
}

// goneOr is errGone when the socket has closed, else err.
func (s *Socket) goneOr(err error) error {
	select {
	case <-s.Done():
		return errGone
	default:
		return err
	}
}

func matchesAny(filters []string, subj string) bool {
	for _, f := range filters {
		if subject.Match(f, subj) {
			return true
		}
	}
	return false
}
