// Package salt speaks Salt's rest_tornado event WebSockets (salt-api's documented event API):
// GET /all_events/{token} and GET /formatted_events/{token}.
//
// The token in the path is a Herald token (what POST /login returns as "token"); Salt's
// hex-only path pattern is not enforced, since Herald's tokens are JWTs. A token that does not
// verify is refused with 401 before the upgrade, as Salt does. After the upgrade the server sends
// nothing until the client sends exactly "websocket client ready" (compared byte for byte, no
// trimming); every other message, and a second ready, is ignored.
//
// /all_events sends one frame per event the token may see, json {"tag":...,"data":{...}} with
// "_stamp" (ISO-8601, microseconds, no zone) in data. Tags:
//
//	jobs.new.<jid>        salt/job/<jid>/new          data: jid, tgt, tgt_type, fun, arg, minions, user, ...
//	jobs.ret.<jid>        salt/job/<jid>/ret/<id>     data: jid, id, fun, return, retcode, success, ...
//	<type>.<action>.<key> herald/<type>/<action>/<key> data: the event's Object (a non-object
//	                                                  Object is {"value":<object>})
//
// /formatted_events keeps Salt's per-connection view and sends it as snapshots, each frame
// json.dumps({key: value}) followed by "\n\n": {"minions":{<server id>:{"id","grains"}}} from
// the host facts agents report (agentstate at ready, then agents.facts.<id> events) and
// {"jobs":{<jid>:{"jid","start_time","fun","tgt","tgt_type","state","minions":{<id>:{"return",
// "retcode","success"}}}}} from the jobs events. At ready the job view is rebuilt from the
// HERALD_EVENTS stream (the last ReplayWindow, at most MaxJobs jobs; facts events of that window
// too, overridden by the stored facts), so an edge started after a job began still shows it;
// live events follow. Both dicts are re-sent whole when they change,
// as Salt does; bursts are coalesced into one snapshot.
//
// Where Herald differs from Salt: permissions apply (a token sees only the events, jobs and
// minions its filters allow); the socket closes with 4001 "token expired" when the token does;
// a job's state is "complete" once every targeted minion has returned, whether or not it
// succeeded (Salt leaves a job with a failed minion "running" forever); the job view is bounded.
package salt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/pkg/access"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/subject"
	"github.com/heraldhq/herald/pkg/wsconn"
	"github.com/heraldhq/herald/services/edge/hub"
	"github.com/heraldhq/herald/services/edge/socket"
)

// Paths the handlers serve, for http.ServeMux patterns.
const (
	AllEventsPath       = "/all_events/{token}"
	FormattedEventsPath = "/formatted_events/{token}"
)

// Endpoints name salt sockets in the connection registry.
const (
	EndpointAllEvents       = "salt-all-events"
	EndpointFormattedEvents = "salt-formatted-events"
)

// ReadyMessage is what a client must send before it receives anything.
const ReadyMessage = "websocket client ready"

// Defaults for the zero values of Handler fields.
const (
	DefaultStream       = subject.EventStream
	DefaultReplayWindow = time.Hour
	DefaultMaxJobs      = 200
)

// maxReplay bounds the stream messages one connection reads at ready.
const maxReplay = 100_000

// Kind is which endpoint a Handler serves.
type Kind int

// The two endpoints.
const (
	AllEvents Kind = iota
	FormattedEvents
)

// FactsLister lists every server's host facts; agentstate.Store provides it.
type FactsLister interface {
	ListFacts(ctx context.Context) (map[string]json.RawMessage, error)
}

// Handler serves one of the two endpoints on the edge's socket runtime.
type Handler struct {
	Kind    Kind
	Runtime *socket.Runtime

	// For FormattedEvents only.
	JS           jetstream.JetStream // replays recent jobs events at ready; nil: live events only
	Stream       string              // the events stream (default DefaultStream)
	Facts        FactsLister         // host facts at ready; nil: only facts that arrive live
	ReplayWindow time.Duration       // how far back jobs are replayed (default DefaultReplayWindow)
	MaxJobs      int                 // jobs kept per connection, oldest dropped (default DefaultMaxJobs)
}

// ServeHTTP runs one socket.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	endpoint := EndpointAllEvents
	if h.Kind == FormattedEvents {
		endpoint = EndpointFormattedEvents
	}
	h.Runtime.Serve(w, r, endpoint, h)
}

// Accept verifies the path's token. No Origin check: the token is in the URL, never in a
// cookie, so a foreign page gains nothing from a browser's ambient credentials.
func (h *Handler) Accept(r *http.Request) (socket.Handler, *access.Session, error) {
	sess, err := h.Runtime.Auth.Token(r.Context(), r.PathValue("token"))
	if err != nil {
		return nil, nil, err
	}
	prefixes := r.URL.Query()[TagQuery]
	if len(prefixes) > MaxTagPrefixes {
		return nil, nil, errTooManyPrefixes
	}
	return &conn{h: h, sess: sess, since: r.URL.Query().Get("since"), prefixes: prefixes}, &sess, nil
}

// Refuse answers like saltnado's 401 (writeError), or 400 for too many tag prefixes.
func (h *Handler) Refuse(w http.ResponseWriter, err error) {
	if errors.Is(err, errTooManyPrefixes) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(map[string]any{"status": "400 Bad Request", "return": err.Error()})
		return
	}
	writeError(w, err)
}

var errTooManyPrefixes = fmt.Errorf("at most %d %s prefixes", MaxTagPrefixes, TagQuery)

// writeError answers like saltnado's 401, with the reason added.
func writeError(w http.ResponseWriter, err error) {
	code, msg := http.StatusUnauthorized, "Please log in: "+err.Error()
	if errors.Is(err, access.ErrUnavailable) {
		code, msg = http.StatusServiceUnavailable, "authentication is unavailable, try again"
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]any{"status": fmt.Sprintf("%d %s", code, http.StatusText(code)), "return": msg})
}

// conn is one connection.
type conn struct {
	h        *Handler
	sess     access.Session
	ws       *socket.Socket // set by Open
	started  bool           // the ready message came
	since    string         // all_events: the position to resume from (?since=); "" none
	prefixes []string       // all_events: the tag prefixes asked for (?tag=)
}

// Open waits: nothing is sent before the ready message.
func (c *conn) Open(s *socket.Socket) error {
	c.ws = s
	return nil
}

// Frame acts on the first exact ready message only.
func (c *conn) Frame(_ *socket.Socket, msg []byte) error {
	if c.started || string(msg) != ReadyMessage {
		return nil
	}
	c.started = true
	if c.h.Kind == FormattedEvents {
		return c.startFormatted()
	}
	return c.startAll()
}

// subjects is the NATS subjects for what want selects within the token's permissions; empty
// when the token may see none of it.
func (c *conn) subjects(want event.Filter) ([]string, error) {
	return subject.ForFilters(event.Allowed(want, c.sess.Filters))
}

func (c *conn) subscribe(client *hub.Client, subjects []string) error {
	if len(subjects) == 0 {
		return nil
	}
	return c.ws.Subscribe(client, nil, subjects)
}

func (c *conn) startAll() error {
	subjects, err := c.subjects(event.Filter{})
	if err != nil {
		return err
	}
	client, err := c.ws.Client(AllEventsEncoderFor(c.prefixes, c.ws.ConnID()))
	if err != nil {
		return err
	}
	if c.since != "" {
		c.ws.Hold()
	}
	if err := c.subscribe(client, subjects); err != nil {
		return err
	}
	if c.since != "" {
		if err := c.ws.Resume(AllEventsEncoderFor(c.prefixes, c.ws.ConnID()), subjects, c.since, c.sendResumed); err != nil {
			c.sendTag("herald/resume/error", map[string]any{"message": err.Error(), "code": http.StatusBadRequest})
			c.ws.Release()
		}
	}
	return nil
}

// sendResumed tells an all_events client that resumed with ?since= how it went, between the
// replayed events and the live ones: herald/resume/done, or herald/resume/error with code 410
// when the position is too old (list afresh; live events follow).
func (c *conn) sendResumed(r socket.Resumed) {
	if r.TooOld {
		c.sendTag("herald/resume/error", map[string]any{"code": http.StatusGone,
			"message": "too old: position " + r.From + " is before the oldest stored event or from another stream"})
		return
	}
	c.sendTag("herald/resume/done", map[string]any{"from": r.From, "position": r.To, "replayed": r.Replayed})
}

// sendTag sends one {tag, data} frame of Herald's own, with Salt's _stamp.
func (c *conn) sendTag(tag string, data map[string]any) {
	data["_stamp"] = Stamp(c.ws.Now())
	b, err := json.Marshal(map[string]any{"tag": tag, "data": data})
	if err == nil {
		c.ws.Send(b)
	}
}

// Stamp formats t as Salt's _stamp: ISO-8601 with microseconds and no zone, in UTC.
func Stamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000000") }

// AllEventsEncoder renders events as all_events frames. It is comparable, so the hub encodes
// each event once for every all_events socket on a filter. The zero value sends every tag but
// Herald's own types; see AllEventsEncoderFor.
type AllEventsEncoder struct {
	prefixes string // the tag prefixes asked for, each followed by "\n"; empty: all
	internal bool   // Herald's own types were asked for
	self     string // the socket's connection id, whose own connection event is left out
}

// Encode implements hub.Encoder: payload is an event as ingest publishes it.
func (e AllEventsEncoder) Encode(m *hub.Message) ([]byte, error) {
	var ev event.Event
	if err := json.Unmarshal(m.Data, &ev); err != nil {
		return nil, fmt.Errorf("salt: decode event: %w", err)
	}
	data, err := ev.ObjectFields()
	if err != nil {
		return nil, fmt.Errorf("salt: %w", err)
	}
	tag := Tag(&ev, data)
	if e.skips(&ev, tag) {
		return nil, hub.ErrSkip
	}
	stamp, _ := json.Marshal(Stamp(ev.Time))
	data["_stamp"] = stamp
	if m.Position != "" {
		// Herald's, beside Salt's _stamp: the event's position in the stream, for ?since=.
		data["_position"], _ = json.Marshal(m.Position)
	}
	return json.Marshal(struct {
		Tag  string                     `json:"tag"`
		Data map[string]json.RawMessage `json:"data"`
	}{tag, data})
}

// Tag is the Salt tag of an event: Salt's own job tags for jobs events, else
// herald/<type>/<action>/<key>.
func Tag(ev *event.Event, data map[string]json.RawMessage) string {
	if ev.Type == "jobs" {
		switch ev.Action {
		case "new":
			return "salt/job/" + ev.Key + "/new"
		case "ret":
			var id string
			_ = json.Unmarshal(data["id"], &id)
			return "salt/job/" + ev.Key + "/ret/" + id
		}
	}
	return "herald/" + ev.Type + "/" + ev.Action + "/" + ev.Key
}

// rawEncoder hands the event payload through unchanged: formatted_events sockets decode it
// themselves to update their view.
type rawEncoder struct{}

func (rawEncoder) Encode(m *hub.Message) ([]byte, error) { return m.Data, nil }

// feedQueue bounds the events waiting for one formatted_events socket's view.
const feedQueue = 1024

// feed is the hub's sink for a formatted_events socket: events go to the socket's own
// goroutine, never blocking the hub; a socket that falls feedQueue behind is closed as slow.
type feed struct {
	ws *socket.Socket
	ch chan []byte
}

func (f *feed) Deliver(b []byte, _ uint64) bool {
	select {
	case f.ch <- b:
		return true
	default:
		f.ws.Close(wsconn.DisconnectSlow.WithReason(fmt.Sprintf("slow consumer: more than %d events behind", feedQueue)))
		return false
	}
}

func (f *feed) Close(d wsconn.Disconnect) { f.ws.Close(d) }

func (c *conn) startFormatted() error {
	jobs, err := c.subjects(event.Filter{Type: []string{"jobs"}})
	if err != nil {
		return err
	}
	facts, err := c.subjects(event.Filter{Type: []string{"agents"}, Action: []string{"facts", "online"}})
	if err != nil {
		return err
	}
	fd := &feed{ws: c.ws, ch: make(chan []byte, feedQueue)}
	client, err := c.ws.ClientFor(fd, rawEncoder{})
	if err != nil {
		return err
	}
	// Live events are queued from here on; the replay below may see some of them too, which
	// is harmless: applying an event twice leaves the view as applying it once.
	if err := c.subscribe(client, slices.Concat(jobs, facts)); err != nil {
		return err
	}
	go c.follow(fd)
	return nil
}

// follow builds the view from stored state and then keeps it current, until the socket ends.
func (c *conn) follow(fd *feed) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-c.ws.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	maxJobs := c.h.MaxJobs
	if maxJobs <= 0 {
		maxJobs = DefaultMaxJobs
	}
	v := newView(maxJobs)
	// Live events keep coming while the stream is read: they are taken off the feed between
	// batches, so it cannot overflow, and applied after the replay, in the order they came.
	var live [][]byte
	drain := func() error {
		for len(fd.ch) > 0 {
			if len(live) >= maxReplay {
				return wsconn.DisconnectSlow.WithReason(fmt.Sprintf("slow consumer: more than %d events arrived during the replay", maxReplay))
			}
			live = append(live, <-fd.ch)
		}
		return nil
	}
	err := c.replay(ctx, v, drain)
	if err == nil {
		err = drain()
	}
	var d wsconn.Disconnect
	if errors.As(err, &d) {
		c.ws.Close(d)
		return
	} else if err != nil {
		c.ws.Log().Warn("salt: events not replayed", "err", err)
	}
	for _, b := range live {
		c.apply(v, b)
	}
	// After the replay: the store holds each server's latest facts, which win over replayed ones.
	c.loadFacts(ctx, v)
	c.loadOnline(ctx, v)
	c.sendView(v, true, true)
	for {
		select {
		case <-ctx.Done():
			return
		case b := <-fd.ch:
			minions, jobs := c.apply(v, b)
			// Coalesce a burst into one snapshot of each dict.
			for i := 0; i < feedQueue; i++ {
				select {
				case b := <-fd.ch:
					m, j := c.apply(v, b)
					minions, jobs = minions || m, jobs || j
					continue
				default:
				}
				break
			}
			c.sendView(v, minions, jobs)
		}
	}
}

func (c *conn) apply(v *view, payload []byte) (minions, jobs bool) {
	var ev event.Event
	if err := json.Unmarshal(payload, &ev); err != nil {
		return false, false
	}
	return v.apply(&ev)
}

// loadFacts puts the permitted servers' stored facts into the view.
func (c *conn) loadFacts(ctx context.Context, v *view) {
	if c.h.Facts == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	all, err := c.h.Facts.ListFacts(ctx)
	if err != nil {
		c.ws.Log().Warn("salt: facts not loaded", "err", err)
		return
	}
	for id, facts := range all {
		ev := event.Event{Scope: event.ScopeGlobal, Type: "agents", Action: "facts", Key: id, Object: facts}
		if c.sess.Permitted(&ev) {
			v.apply(&ev)
		}
	}
}

// replay applies the permitted jobs and agents.facts events of the last ReplayWindow from the
// events stream, through a short-lived ephemeral consumer that reads what is stored and stops.
// Replayed facts let an edge without an agent state store still show recently seen minions.
func (c *conn) replay(ctx context.Context, v *view, drain func() error) error {
	if c.h.JS == nil {
		return nil
	}
	stream := c.h.Stream
	if stream == "" {
		stream = DefaultStream
	}
	window := c.h.ReplayWindow
	if window <= 0 {
		window = DefaultReplayWindow
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	start := c.ws.Now().Add(-window)
	cons, err := c.h.JS.CreateConsumer(ctx, stream, jetstream.ConsumerConfig{
		FilterSubjects: []string{
			subject.EventsPrefix + ".*." + subject.EncodeToken("jobs") + ".>",
			subject.EventsPrefix + ".*." + subject.EncodeToken("agents") + "." + subject.EncodeToken("facts") + ".>",
		},
		DeliverPolicy:     jetstream.DeliverByStartTimePolicy,
		OptStartTime:      &start,
		AckPolicy:         jetstream.AckNonePolicy,
		MemoryStorage:     true,
		InactiveThreshold: 30 * time.Second,
	})
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil // nothing was ever published
	}
	if err != nil {
		return fmt.Errorf("replay consumer on %s: %w", stream, err)
	}
	name := cons.CachedInfo().Name
	defer func() {
		dctx, dcancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer dcancel()
		_ = c.h.JS.DeleteConsumer(dctx, stream, name)
	}()
	pending := cons.CachedInfo().NumPending
	var got uint64
	for got < pending && got < maxReplay {
		batch, err := cons.FetchNoWait(256)
		if err != nil {
			return fmt.Errorf("replay fetch: %w", err)
		}
		n := 0
		for msg := range batch.Messages() {
			n++
			var ev event.Event
			if json.Unmarshal(msg.Data(), &ev) == nil && c.sess.Permitted(&ev) {
				v.apply(&ev)
			}
		}
		if err := batch.Error(); err != nil {
			return fmt.Errorf("replay fetch: %w", err)
		}
		if err := drain(); err != nil {
			return err
		}
		if n == 0 {
			break
		}
		got += uint64(n)
	}
	return nil
}

// sendView sends the changed dicts as Salt's snapshot frames.
func (c *conn) sendView(v *view, minions, jobs bool) {
	send := func(key string, value any) {
		b, err := json.Marshal(map[string]any{key: value})
		if err != nil {
			c.ws.Log().Warn("salt: snapshot not encodable", "key", key, "err", err)
			return
		}
		c.ws.Send(append(b, '\n', '\n'))
	}
	if minions {
		send("minions", v.minions)
	}
	if jobs {
		send("jobs", v.jobs)
	}
}

// view is one connection's picture of minions and jobs, as Salt's event_processor keeps it.
// Only the connection's follow goroutine uses it.
type view struct {
	maxJobs int
	minions map[string]minion
	jobs    map[string]*job
	order   []string // jids oldest first, for eviction
}

type minion struct {
	ID     string          `json:"id"`
	Grains json.RawMessage `json:"grains"`
}

type job struct {
	JID       string                `json:"jid"`
	StartTime string                `json:"start_time"`
	Fun       string                `json:"fun"`
	Tgt       string                `json:"tgt"`
	TgtType   string                `json:"tgt_type"`
	State     string                `json:"state"`
	Minions   map[string]*jobMinion `json:"minions"`
}

// jobMinion is {"success": false} until the minion returns, then return, retcode and success.
type jobMinion struct {
	Return   json.RawMessage `json:"return,omitempty"`
	Retcode  *int            `json:"retcode,omitempty"`
	Success  bool            `json:"success"`
	returned bool
}

func newView(maxJobs int) *view {
	return &view{maxJobs: maxJobs, minions: map[string]minion{}, jobs: map[string]*job{}}
}

// apply folds one event into the view and reports which dicts changed. Applying an event a
// second time changes nothing, so replayed and live copies of an event may overlap.
func (v *view) apply(ev *event.Event) (minions, jobs bool) {
	switch {
	case ev.Type == "agents" && ev.Action == "facts":
		grains := ev.Object
		if len(grains) == 0 {
			grains = json.RawMessage("{}")
		}
		v.minions[ev.Key] = minion{ID: ev.Key, Grains: grains}
		return true, false
	case ev.Type == "agents" && ev.Action == "online":
		return v.online(ev.Key), false
	case ev.Type == "jobs" && ev.Action == "new":
		var n struct {
			Tgt       string   `json:"tgt"`
			TgtType   string   `json:"tgt_type"`
			Fun       string   `json:"fun"`
			Minions   []string `json:"minions"`
			StartTime string   `json:"start_time"`
		}
		if json.Unmarshal(ev.Object, &n) != nil {
			return false, false
		}
		j := v.job(ev.Key, ev.Time)
		j.Tgt, j.TgtType, j.Fun = n.Tgt, n.TgtType, n.Fun
		if t, err := time.Parse(time.RFC3339Nano, n.StartTime); err == nil {
			j.StartTime = Stamp(t)
		}
		for _, id := range n.Minions {
			if j.Minions[id] == nil {
				j.Minions[id] = &jobMinion{}
			}
		}
		j.settle()
		return false, true
	case ev.Type == "jobs" && ev.Action == "ret":
		var r struct {
			ID      string          `json:"id"`
			Fun     string          `json:"fun"`
			Return  json.RawMessage `json:"return"`
			Retcode int             `json:"retcode"`
			Success bool            `json:"success"`
		}
		if json.Unmarshal(ev.Object, &r) != nil || r.ID == "" {
			return false, false
		}
		j := v.job(ev.Key, ev.Time)
		if j.Fun == "" {
			j.Fun = r.Fun
		}
		ret := r.Return
		if len(ret) == 0 {
			ret = json.RawMessage("null")
		}
		j.Minions[r.ID] = &jobMinion{Return: ret, Retcode: &r.Retcode, Success: r.Success, returned: true}
		j.settle()
		return false, true
	}
	return false, false
}

// job returns the job jid, creating it (and dropping the oldest beyond maxJobs) if new.
func (v *view) job(jid string, seen time.Time) *job {
	if j := v.jobs[jid]; j != nil {
		return j
	}
	j := &job{JID: jid, StartTime: Stamp(seen), Minions: map[string]*jobMinion{}}
	v.jobs[jid] = j
	v.order = append(v.order, jid)
	for len(v.order) > v.maxJobs {
		delete(v.jobs, v.order[0])
		v.order = v.order[1:]
	}
	return j
}

// settle sets the job's state: complete once every targeted minion has returned.
func (j *job) settle() {
	j.State = "complete"
	for _, m := range j.Minions {
		if !m.returned {
			j.State = "running"
			return
		}
	}
	if len(j.Minions) == 0 {
		j.State = "running"
	}
}
