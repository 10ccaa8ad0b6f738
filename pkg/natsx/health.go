package natsx

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"

	"github.com/heraldhq/herald/pkg/subject"
)

// HealthProbe is a process's own NATS echo: it answers requests on a subject only this
// process listens on, and Check sends one, so readiness fails when this process cannot reach
// NATS and back even though its socket still looks open.
type HealthProbe struct {
	nc      *nats.Conn
	subject string
	sub     *nats.Subscription
}

// ServeHealth subscribes nc to a fresh subject.Health(name + unique id) and answers every
// request on it with an empty reply. NATS re-subscribes it after a reconnect.
func ServeHealth(nc *nats.Conn, name string) (*HealthProbe, error) {
	p := &HealthProbe{nc: nc, subject: subject.Health(name + "-" + nuid.Next())}
	sub, err := nc.Subscribe(p.subject, func(m *nats.Msg) { _ = m.Respond(nil) })
	if err != nil {
		return nil, fmt.Errorf("nats health subject: %w", err)
	}
	p.sub = sub
	return p, nil
}

// Check is a readiness check: one request to the probe's own subject within ctx.
func (p *HealthProbe) Check(ctx context.Context) error {
	if !p.nc.IsConnected() {
		return fmt.Errorf("nats %s", p.nc.Status())
	}
	if _, err := p.nc.RequestWithContext(ctx, p.subject, nil); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return errors.New("nats round trip timed out")
		}
		return fmt.Errorf("nats round trip: %w", err)
	}
	return nil
}

// Close stops answering.
func (p *HealthProbe) Close() error { return p.sub.Unsubscribe() }
