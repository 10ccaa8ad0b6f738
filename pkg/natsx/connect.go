package natsx

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/heraldhq/herald/pkg/metrics"
)

// DefaultURL is where a standalone service looks for NATS unless told.
const DefaultURL = "nats://127.0.0.1:4222"

// Config is how a standalone service reaches a NATS cluster.
type Config struct {
	// URL is one NATS URL or a comma-separated list of them.
	URL string
}

// RegisterFlags registers nats.url on fs.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.URL, "nats.url", DefaultURL, "NATS server URL, or a comma-separated list of URLs")
}

// Validate reports a missing or unparsable URL.
func (c Config) Validate() error {
	if strings.TrimSpace(c.URL) == "" {
		return errors.New("nats.url: must not be empty")
	}
	for u := range strings.SplitSeq(c.URL, ",") {
		p, err := url.Parse(strings.TrimSpace(u))
		if err != nil {
			return fmt.Errorf("nats.url: %w", err)
		}
		if p.Host == "" {
			return fmt.Errorf("nats.url: %q has no host", u)
		}
	}
	return nil
}

// Connection defaults: reconnect forever (a service outlives NATS
// restarts) to whichever node of the cluster answers, each attempt after a
// wait plus a random jitter so that the clients of a lost node do not all
// land on the next one at the same instant; ping often enough that a node
// that vanished without closing its sockets is noticed within seconds, not
// the client's default minutes; buffer a little while disconnected; and
// bound the final drain.
const (
	reconnectWait   = 500 * time.Millisecond
	reconnectJitter = 500 * time.Millisecond
	pingInterval    = 5 * time.Second
	maxPingsOut     = 2
	drainTimeout    = 10 * time.Second
	maxConnectWait  = 2 * time.Second
)

// Connect dials url (one URL or a comma-separated list: the nodes of a
// cluster, tried in random order; the servers the cluster announces are
// added to the list) as name, and once connected keeps reconnecting
// forever, to any node, when its node goes. The first connection is
// retried with a jittered backoff until it succeeds or ctx is done, so a
// service may start before NATS does; pass a ctx with a deadline to bound
// that. Disconnects, reconnects and asynchronous errors (slow consumers
// included) are logged on log.
func Connect(ctx context.Context, url, name string, log *slog.Logger, opts ...nats.Option) (*nats.Conn, error) {
	all := append(handlers(log, name),
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(reconnectWait),
		nats.ReconnectJitter(reconnectJitter, reconnectJitter),
		nats.PingInterval(pingInterval),
		nats.MaxPingsOutstanding(maxPingsOut),
		nats.DrainTimeout(drainTimeout),
	)
	all = append(all, opts...)
	wait := 50 * time.Millisecond
	for {
		nc, err := nats.Connect(url, all...)
		if err == nil {
			return nc, nil
		}
		retryIn := wait + rand.N(wait/2)
		log.Warn("nats connect failed; retrying", "url", url, "err", err, "retry_in", retryIn)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("connect to nats %s as %s: %w (last error: %w)", url, name, ctx.Err(), err)
		case <-time.After(retryIn):
		}
		wait = min(wait*2, maxConnectWait)
	}
}

// Connect dials c.URL; see the package function Connect.
func (c Config) Connect(ctx context.Context, name string, log *slog.Logger, opts ...nats.Option) (*nats.Conn, error) {
	return Connect(ctx, c.URL, name, log, opts...)
}

// Drain drains nc (subscriptions first, then pending publishes) and waits,
// at most timeout (zero means 10s), until it is closed; it closes nc
// regardless on timeout. It replaces nc's closed handler.
func Drain(nc *nats.Conn, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = drainTimeout
	}
	if nc.IsClosed() {
		return nil
	}
	closed := make(chan struct{})
	nc.SetClosedHandler(func(nc *nats.Conn) { markClosed(nc); close(closed) })
	if err := nc.Drain(); err != nil {
		nc.Close()
		if errors.Is(err, nats.ErrConnectionClosed) {
			return nil
		}
		return fmt.Errorf("drain nats: %w", err)
	}
	select {
	case <-closed:
		return nil
	case <-time.After(timeout):
		nc.Close()
		return fmt.Errorf("drain nats: not closed within %s", timeout)
	}
}

// markClosed records that a connection is gone for good.
func markClosed(nc *nats.Conn) { metrics.NATSConnected.WithLabelValues(nc.Opts.Name).Set(0) }

// handlers logs connection state changes and keeps the connection's metrics (connected,
// reconnects, disconnects; labelled with name, one per service). A slow consumer means this
// process dropped messages: it is logged as an error with the subject.
func handlers(log *slog.Logger, name string) []nats.Option {
	log = log.With("component", "nats", "conn", name)
	connected := metrics.NATSConnected.WithLabelValues(name)
	return []nats.Option{
		nats.ConnectHandler(func(*nats.Conn) { connected.Set(1) }),
		nats.ClosedHandler(markClosed),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			connected.Set(0)
			metrics.NATSDisconnects.WithLabelValues(name).Inc()
			if err != nil {
				log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			connected.Set(1)
			metrics.NATSReconnects.WithLabelValues(name).Inc()
			log.Info("nats reconnected", "url", nc.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			attrs := []any{"err", err}
			if sub != nil {
				attrs = append(attrs, "subject", sub.Subject)
				if errors.Is(err, nats.ErrSlowConsumer) {
					if n, _, perr := sub.Pending(); perr == nil {
						attrs = append(attrs, "pending", n)
					}
				}
			}
			log.Error("nats async error", attrs...)
		}),
	}
}
