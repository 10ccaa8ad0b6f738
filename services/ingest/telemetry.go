package ingest

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/heraldhq/herald/pkg/agentwire"
	"github.com/heraldhq/herald/pkg/subject"
	"github.com/heraldhq/herald/pkg/workqueue"
)

// telemetryQueue bounds the frames (metrics, logs, facts) of one agent waiting for its worker.
// A frame is at most AgentMaxFrameBytes, so this also bounds the memory one agent can hold.
// Past it frames are dropped, counted and logged: the agent's read loop, and with it command
// replies and pings, never waits on a Redis write.
const telemetryQueue = 64

// telemetry is one agent connection's worker for what the agent reports. It runs on its own
// goroutine, in arrival order, so the store sees samples in the order the agent sent them.
type telemetry struct {
	c     *agentConn
	q     *workqueue.Queue[telemetryFrame]
	stopQ func()

	// Worker goroutine only.
	alerts       alertState
	alertsLoaded bool
}

type telemetryFrame struct {
	typ string
	msg []byte
	at  time.Time // arrival, the "now" of normalization
}

// startTelemetry starts c's worker; stop ends it after what is queued was handled, bounded by
// stateTimeout in all.
func (c *agentConn) startTelemetry() *telemetry {
	t := &telemetry{c: c}
	t.q = workqueue.New("agent telemetry frame", telemetryQueue, c.log, t.handle)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); t.q.Run(ctx, stateTimeout) }()
	t.stopQ = func() { cancel(); <-done }
	return t
}

// offer queues a frame; it never blocks.
func (t *telemetry) offer(typ string, msg []byte) {
	if !t.q.Offer(telemetryFrame{typ: typ, msg: msg, at: time.Now()}) {
		t.c.svc.telemetryDropped.Add(1)
	}
}

func (t *telemetry) stop() { t.stopQ() }

func (t *telemetry) handle(ctx context.Context, f telemetryFrame) {
	switch f.typ {
	case agentwire.TypeMetrics:
		t.metrics(ctx, f)
	case agentwire.TypeLog:
		t.log(f)
	case agentwire.TypeFacts:
		t.facts(ctx, f)
	}
}

func (t *telemetry) metrics(ctx context.Context, f telemetryFrame) {
	c, s := t.c, t.c.svc
	sid := c.info.ServerID
	sample, err := agentwire.NormalizeMetrics(f.msg, sid, f.at)
	if err != nil {
		c.invalid(err)
		return
	}
	observeSample()
	sctx, cancel := context.WithTimeout(ctx, stateTimeout)
	fresh, err := s.state.PutMetrics(sctx, sid, sample.Time, sample.JSON)
	cancel()
	if err != nil {
		// Live data beats deduplication while the store is down: publish anyway.
		c.log.Warn("latest sample not stored", "err", err)
		fresh = true
	}
	if fresh {
		s.publishTelemetry(subject.Metrics(sid), sample.JSON)
		t.checkAlerts(ctx, sample.Usage, f.at)
	}
	if sample.Nested || sample.Seq > 0 || agentwire.Shape(c.shape.Load()) == agentwire.ShapeChatops {
		c.sendJSON(agentwire.MetricsReceived{Type: agentwire.TypeMetricsReceived, Status: agentwire.StatusOK, Seq: sample.Seq})
	}
}

// checkAlerts runs the server's alert state machine on a fresh sample. The state comes from
// the store the first time (the agent may have been on another ingest a moment ago) and goes
// back to it after every change.
func (t *telemetry) checkAlerts(ctx context.Context, usage map[string]float64, now time.Time) {
	c, s := t.c, t.c.svc
	sid := c.info.ServerID
	if !t.alertsLoaded {
		t.alertsLoaded = true
		sctx, cancel := context.WithTimeout(ctx, stateTimeout)
		raw, ok, err := s.state.Alerts(sctx, sid)
		cancel()
		switch {
		case err != nil:
			c.log.Warn("alert state not loaded: starting afresh", "err", err)
		case ok:
			if err := json.Unmarshal(raw, &t.alerts); err != nil {
				c.log.Warn("alert state undecodable: starting afresh", "err", err)
				t.alerts = alertState{}
			}
		}
	}
	out, changed := s.alertRules.observe(&t.alerts, sid, usage, now)
	for _, a := range out {
		s.publishAlert(a)
	}
	if !changed {
		return
	}
	raw, err := json.Marshal(t.alerts)
	if err != nil {
		c.log.Error("alert state not encodable", "err", err)
		return
	}
	sctx, cancel := context.WithTimeout(ctx, stateTimeout)
	defer cancel()
	if err := s.state.PutAlerts(sctx, sid, raw, alertStateTTL); err != nil {
		c.log.Warn("alert state not stored", "err", err)
	}
}

// publishAlert sends an alert to the server's metrics viewers and as an event.
func (s *Service) publishAlert(a Alert) {
	b, err := json.Marshal(a)
	if err != nil {
		s.log.Error("alert not encodable", "err", err)
		return
	}
	s.publishTelemetry(subject.Alerts(a.ServerID), b)
	action := "raise"
	if a.Resolved {
		action = "resolve"
	}
	s.log.Info("alert", "action", action, "server_id", a.ServerID, "type", a.Type, "message", a.Message)
	s.emit("alerts", action, a.ServerID, "ingest", a)
}

func (t *telemetry) log(f telemetryFrame) {
	c := t.c
	entry, err := agentwire.NormalizeLog(f.msg, c.info.ServerID, f.at)
	if err != nil {
		c.invalid(err)
		return
	}
	c.svc.publishTelemetry(subject.Logs(c.info.ServerID), entry.JSON)
}

func (t *telemetry) facts(ctx context.Context, f telemetryFrame) {
	c := t.c
	fa, err := agentwire.Decode[struct {
		Data json.RawMessage `json:"data"`
	}](f.msg)
	if err == nil && (len(fa.Data) == 0 || fa.Data[0] != '{') {
		err = fmt.Errorf("%w: facts: data must be an object", agentwire.ErrInvalid)
	}
	if err != nil {
		c.invalid(err)
		return
	}
	sctx, cancel := context.WithTimeout(ctx, stateTimeout)
	defer cancel()
	if err := c.svc.state.PutFacts(sctx, c.info.ServerID, fa.Data); err != nil {
		c.log.Warn("facts not stored", "err", err)
	}
	c.svc.emit("agents", "facts", c.info.ServerID, "agent:"+c.info.KeyID, fa.Data)
}
