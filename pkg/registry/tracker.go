package registry

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/workqueue"
)

// Defaults of TrackerConfig.
const (
	DefaultTTL       = 30 * time.Second
	DefaultOpTimeout = time.Second
)

// Event actions of connection events (type "connections", key the principal).
const (
	EventType    = event.TypeConnections
	ActionCreate = "create"
	ActionDelete = "delete"
)

// queue bounds: registry writes and events waiting for their worker. A full queue drops (and
// counts); the refresh loop repairs dropped adds, the TTL dropped removes.
const (
	opQueue    = 8192
	eventQueue = 4096
)

// TrackerConfig is one instance's tracker settings.
type TrackerConfig struct {
	// Instance names this process in the fleet (required, unique).
	Instance string
	// TTL bounds how long the entries of a dead instance outlive it. Default 30s.
	TTL time.Duration
	// RefreshEvery is how often the tracker refreshes (and re-adds) its entries. Default TTL/3.
	RefreshEvery time.Duration
	// SweepEvery is how often it removes expired entries of any instance. Default TTL/3.
	SweepEvery time.Duration
	// OpTimeout bounds every registry call. Default 1s.
	OpTimeout time.Duration
	// Publish sends connection events (connections.create|delete.<principal>, Object the
	// Conn); nil sends none. It runs on the tracker's event worker, never on a request path.
	Publish func(ctx context.Context, ev *event.Event) error
	// NC, when set, is where the tracker takes kick requests for its connections
	// (KickSubject(Instance)) while it runs; nil: this instance's connections cannot be kicked.
	NC *nats.Conn
	// Log receives failures; nil discards.
	Log *slog.Logger
}

// Tracker is the lifecycle of one instance's connections, the one component every service that
// holds connections adds (edge for browsers and CLIs, ingest for agents): it records them in a
// Registry, announces them as connection events, and closes them on a kick from any instance.
// Track never waits for the registry: writes go through an ordered queue to one worker, each
// bounded by OpTimeout. While the registry is down the tracker keeps its own list, reports
// itself degraded (Check), and re-adds everything it holds as soon as a refresh succeeds again.
type Tracker struct {
	reg Registry
	cfg TrackerConfig
	log *slog.Logger

	ops    chan op
	events *workqueue.Queue[*event.Event] // nil without cfg.Publish

	mu    sync.Mutex
	held  map[string]*tracked // by ID
	retry map[string]struct{} // removes that failed (bounded by maxRetry); retried at refresh

	failures atomic.Uint64
	dropped  atomic.Uint64
	lastErr  atomic.Pointer[error] // nil: healthy
	degraded degradedClock
}

type tracked struct {
	conn Conn
	kick func(reason string)
}

type op struct {
	add  bool
	conn Conn
}

// NewTracker returns a tracker for cfg.Instance on reg. Run starts its workers.
func NewTracker(reg Registry, cfg TrackerConfig) (*Tracker, error) {
	if reg == nil || cfg.Instance == "" {
		return nil, errors.New("registry: tracker needs a registry and an instance id")
	}
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.RefreshEvery <= 0 {
		cfg.RefreshEvery = cfg.TTL / 3
	}
	if cfg.SweepEvery <= 0 {
		cfg.SweepEvery = cfg.TTL / 3
	}
	if cfg.OpTimeout <= 0 {
		cfg.OpTimeout = DefaultOpTimeout
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := &Tracker{
		reg: instrumented{reg}, cfg: cfg, log: log.With("component", "registry", "instance", cfg.Instance),
		ops:  make(chan op, opQueue),
		held: map[string]*tracked{}, retry: map[string]struct{}{},
	}
	if cfg.Publish != nil {
		t.events = workqueue.New("connection event", eventQueue, t.log, t.publish)
	}
	return t, nil
}

// NewInstanceID returns a random instance id with the given prefix ("edge", "ingest").
func NewInstanceID(prefix string) string { return prefix + "-" + randomID(6) }

func randomID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Instance is this tracker's instance id.
func (t *Tracker) Instance() string { return t.cfg.Instance }

// Registry is the fleet-wide registry the tracker writes to, for listings.
func (t *Tracker) Registry() Registry { return t.reg }

// Track records c (its ID, Instance and, when zero, CreateTime are filled in) and returns the
// function that removes it, safe to call more than once. kick, when not nil, closes the
// connection for Kick. WebSockets also get connections.create now and connections.delete on
// untrack; REST requests in flight are listed but announce nothing (one event pair per
// request would drown the event stream).
func (t *Tracker) Track(c Conn, kick func(reason string)) (Conn, func()) {
	c.ID = randomID(12)
	c.Instance = t.cfg.Instance
	if c.CreateTime.IsZero() {
		c.CreateTime = time.Now().UTC()
	}
	if c.Principal == "" {
		c.Principal = "unknown"
	}
	t.mu.Lock()
	t.held[c.ID] = &tracked{conn: c, kick: kick}
	t.mu.Unlock()
	t.enqueue(op{add: true, conn: c})
	if c.Websocket {
		t.emit(ActionCreate, c)
	}
	var once sync.Once
	return c, func() {
		once.Do(func() {
			t.mu.Lock()
			delete(t.held, c.ID)
			t.mu.Unlock()
			t.enqueue(op{conn: c})
			if c.Websocket {
				t.emit(ActionDelete, c)
			}
		})
	}
}

// Kick closes the connection id held here with reason; false when it is not held here or
// cannot be closed (a REST request).
func (t *Tracker) Kick(id, reason string) bool {
	t.mu.Lock()
	tr := t.held[id]
	t.mu.Unlock()
	if tr == nil || tr.kick == nil {
		return false
	}
	tr.kick(reason)
	return true
}

// Held returns the connections this instance holds.
func (t *Tracker) Held() []Conn {
	t.mu.Lock()
	out := make([]Conn, 0, len(t.held))
	for _, tr := range t.held {
		out = append(out, tr.conn)
	}
	t.mu.Unlock()
	sortConns(out)
	return out
}

// Check is a readiness check: it fails while the registry is unreachable (this instance still
// serves its connections, but the fleet-wide listing misses them).
func (t *Tracker) Check(context.Context) error {
	if p := t.lastErr.Load(); p != nil {
		return fmt.Errorf("connection registry degraded (%d failed calls): %w", t.failures.Load(), *p)
	}
	return nil
}

// Failures is the number of registry calls that failed, and Dropped the writes and events lost
// to full queues.
func (t *Tracker) Failures() uint64 { return t.failures.Load() }

// Dropped counts writes and events lost to full queues.
func (t *Tracker) Dropped() uint64 {
	n := t.dropped.Load()
	if t.events != nil {
		n += t.events.Dropped()
	}
	return n
}

func (t *Tracker) enqueue(o op) {
	select {
	case t.ops <- o:
	default:
		t.dropped.Add(1)
		t.log.Warn("registry write dropped: queue full", "id", o.conn.ID, "add", o.add)
	}
}

func (t *Tracker) emit(action string, c Conn) {
	if t.events == nil {
		return
	}
	obj, _ := json.Marshal(c)
	t.events.Offer(&event.Event{Type: EventType, Action: action, Key: c.Principal, Principal: c.Principal,
		Scope: event.ScopeGlobal, Object: obj, Time: time.Now()})
}

func (t *Tracker) fail(what string, err error) {
	t.failures.Add(1)
	if t.lastErr.Swap(&err) == nil {
		t.degraded.enter()
		t.log.Warn("connection registry unreachable: serving on, listing degraded", "op", what, "err", err)
	} else {
		t.log.Debug("registry call failed", "op", what, "err", err)
	}
}

// Start runs the tracker on a context of its own and returns the function that stops it and
// waits. A service stops it last, after its connections have closed, so that they leave the
// registry at once with a goodbye rather than expiring.
func (t *Tracker) Start() (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = t.Run(ctx) }()
	return func() { cancel(); <-done }
}

// Run serves kicks (with cfg.NC), writes to the registry, refreshes this instance's entries,
// sweeps expired ones and publishes events until ctx ends; then it removes what it still holds
// (a graceful goodbye, bounded by OpTimeout per call) and publishes the last events under one
// shared deadline.
func (t *Tracker) Run(ctx context.Context) error {
	evCtx, stopEvents := context.WithCancel(context.Background())
	evDone := make(chan struct{})
	go func() {
		defer close(evDone)
		if t.events != nil {
			t.events.Run(evCtx, eventTimeout)
		}
	}()
	defer func() { stopEvents(); <-evDone }()
	if t.cfg.NC != nil {
		kicks, err := ServeKicks(t.cfg.NC, t)
		if err != nil {
			t.log.Warn("kicks not served", "err", err) // NATS reconnects; the subscription is kept
		}
		if kicks != nil {
			defer func() { _ = kicks.Unsubscribe() }()
		}
	}
	refresh := time.NewTicker(t.cfg.RefreshEvery)
	defer refresh.Stop()
	sweep := time.NewTicker(t.cfg.SweepEvery)
	defer sweep.Stop()
	for {
		select {
		case o := <-t.ops:
			t.apply(o)
		case <-refresh.C:
			t.refresh()
		case <-sweep.C:
			t.sweep()
		case <-ctx.Done():
			t.goodbye()
			return nil
		}
	}
}

func (t *Tracker) call(f func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), t.cfg.OpTimeout)
	defer cancel()
	return f(ctx)
}

func (t *Tracker) apply(o op) {
	if o.add {
		// An add queued before its untrack must not resurrect the entry.
		t.mu.Lock()
		_, still := t.held[o.conn.ID]
		t.mu.Unlock()
		if !still {
			return
		}
		if err := t.call(func(ctx context.Context) error { return t.reg.Add(ctx, o.conn, t.cfg.TTL) }); err != nil {
			t.fail("add", err) // the next refresh reports it missing and adds it again
		}
		return
	}
	if err := t.call(func(ctx context.Context) error { return t.reg.Remove(ctx, o.conn.ID) }); err != nil {
		t.fail("remove", err)
		t.mu.Lock()
		// Past the bound the entry is left to expire and be swept: an outage must not grow
		// this set with every request it lasts.
		if len(t.retry) < maxRetry {
			t.retry[o.conn.ID] = struct{}{}
		}
		t.mu.Unlock()
	}
}

// maxRetry bounds the removes kept for retry while the registry is unreachable.
const maxRetry = 4096

// refresh extends this instance's entries and adds back those the registry lost (a Redis
// restart, an outage longer than the TTL). Success clears the degraded state.
func (t *Tracker) refresh() {
	t.mu.Lock()
	ids := make([]string, 0, len(t.held))
	for id := range t.held {
		ids = append(ids, id)
	}
	retry := make([]string, 0, len(t.retry))
	for id := range t.retry {
		retry = append(retry, id)
	}
	t.mu.Unlock()
	var missing []string
	err := t.call(func(ctx context.Context) (err error) {
		missing, err = t.reg.Refresh(ctx, ids, t.cfg.TTL)
		return err
	})
	if err != nil {
		t.fail("refresh", err)
		return
	}
	for _, id := range missing {
		t.mu.Lock()
		tr := t.held[id]
		t.mu.Unlock()
		if tr == nil {
			continue // untracked meanwhile; its remove is queued
		}
		if err := t.call(func(ctx context.Context) error { return t.reg.Add(ctx, tr.conn, t.cfg.TTL) }); err != nil {
			t.fail("re-add", err)
			return
		}
	}
	for _, id := range retry {
		if err := t.call(func(ctx context.Context) error { return t.reg.Remove(ctx, id) }); err != nil {
			t.fail("remove", err)
			return
		}
		t.mu.Lock()
		delete(t.retry, id)
		t.mu.Unlock()
	}
	if len(missing) > 0 {
		t.log.Info("connections registered again", "count", len(missing))
	}
	if len(ids)+len(retry) > 0 { // with nothing to refresh, no call was made: nothing learned
		t.reachable()
	}
}

// reachable clears the degraded state after a registry call succeeded.
func (t *Tracker) reachable() {
	if t.lastErr.Swap(nil) != nil {
		t.degraded.leave()
		t.log.Info("connection registry reachable again")
	}
}

// sweep removes expired entries of any instance (one that died without a goodbye) and
// announces their end. Each entry is swept by exactly one instance.
func (t *Tracker) sweep() {
	for range 10 { // bounded: at most 10*SweepLimit entries per tick
		var gone []Conn
		err := t.call(func(ctx context.Context) (err error) {
			gone, err = t.reg.Sweep(ctx)
			return err
		})
		if err != nil {
			t.fail("sweep", err)
			return
		}
		t.reachable()
		for _, c := range gone {
			t.mu.Lock()
			tr := t.held[c.ID]
			_, announced := t.retry[c.ID]
			delete(t.retry, c.ID)
			t.mu.Unlock()
			if tr != nil {
				continue // ours and alive: expired while we could not refresh; the refresh re-adds it
			}
			if announced {
				continue // ours, untracked while the registry was away: its delete went out then
			}
			if c.Websocket {
				t.emit(ActionDelete, c)
			}
		}
		if len(gone) > 0 {
			t.log.Info("expired connections swept", "count", len(gone))
		}
		if len(gone) < SweepLimit {
			return
		}
	}
}

// goodbye applies the queued writes, then removes everything still held.
func (t *Tracker) goodbye() {
	for {
		select {
		case o := <-t.ops:
			t.apply(o)
			continue
		default:
		}
		break
	}
	for _, c := range t.Held() {
		if err := t.call(func(ctx context.Context) error { return t.reg.Remove(ctx, c.ID) }); err != nil {
			t.fail("remove", err)
			return // unreachable: the entries expire and another instance sweeps them
		}
		t.mu.Lock()
		delete(t.held, c.ID)
		t.mu.Unlock()
		if c.Websocket {
			t.emit(ActionDelete, c)
		}
	}
}

// eventTimeout bounds one event publish, and all those still queued at shutdown together.
const eventTimeout = 2 * time.Second

func (t *Tracker) publish(ctx context.Context, ev *event.Event) {
	ctx, cancel := context.WithTimeout(ctx, eventTimeout)
	defer cancel()
	if err := t.cfg.Publish(ctx, ev); err != nil {
		t.log.Warn("connection event not published", "action", ev.Action, "key", ev.Key, "err", err)
	}
}
