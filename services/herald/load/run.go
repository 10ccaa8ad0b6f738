package load

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/eventpub"
	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
)

// Result is one run's measurements; its JSON is the tool's result line.
type Result struct {
	Clients        int     `json:"clients"`
	Connected      int     `json:"connected"`
	ConnectErrors  int     `json:"connect_errors"`
	ConnectPerSec  float64 `json:"connect_per_sec"`
	Closed         int     `json:"closed_early"` // sockets the server closed during the run
	Publish        string  `json:"publish"`
	Rate           float64 `json:"rate"`
	Published      int64   `json:"published"`
	PublishErrors  int64   `json:"publish_errors"`
	PublishPerSec  float64 `json:"publish_per_sec"`
	Expected       int64   `json:"expected"` // published × connected
	Delivered      int64   `json:"delivered"`
	DeliveredPerS  float64 `json:"delivered_per_sec"`
	Lost           int64   `json:"lost"`
	Duplicates     int64   `json:"duplicates"`
	P50Ms          float64 `json:"p50_ms"`
	P90Ms          float64 `json:"p90_ms"`
	P99Ms          float64 `json:"p99_ms"`
	P999Ms         float64 `json:"p999_ms"`
	MaxMs          float64 `json:"max_ms"`
	ServerRSSPerKB float64 `json:"server_rss_per_conn_kb,omitempty"` // RSS growth from connecting, per connection
	ServerCPUSec   float64 `json:"server_cpu_sec,omitempty"`         // during publishing and drain
	CPUUsPerMsg    float64 `json:"server_cpu_us_per_delivery,omitempty"`
	DeliveriesPerS float64 `json:"deliveries_per_cpu_sec,omitempty"`
	MachineBusyPct float64 `json:"machine_busy_pct"`
	Seconds        float64 `json:"seconds"` // publishing time
}

// client is one DRP socket and what it has received.
type client struct {
	ws        *websocket.Conn
	last      int64 // highest event seq seen
	seen      window
	delivered int64 // frames with a load event, repeats included
	dups      int64
	closed    atomic.Bool
	done      chan struct{} // closed when read returns
}

// payload is the Object of every load event: its sequence and when it was published.
type payload struct {
	Seq int64  `json:"seq"`
	TS  int64  `json:"ts"` // unix nanoseconds
	Pad string `json:"pad,omitempty"`
}

// Run connects the clients, publishes for cfg.Duration, waits for the last events and returns
// what was measured. Progress lines go to log. ctx ends the run early (the result is still
// computed).
func Run(ctx context.Context, cfg Config, log *slog.Logger) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if _, err := raiseFileLimit(); err != nil {
		log.Warn("cannot raise the open-file limit", "err", err)
	}
	if user, password, ok := strings.Cut(cfg.Token, ":"); ok {
		// Log in once: a password on every socket would measure bcrypt, not the edge, and
		// gRPC takes only tokens.
		base := strings.SplitN(cfg.Edges[0], "/", 4)[2] // the host:port of ws://host:port/...
		tok, err := Login("http://"+base, user, password)
		if err != nil {
			return nil, err
		}
		if cfg.GRPCToken == cfg.Token {
			cfg.GRPCToken = tok
		}
		cfg.Token = tok
	}
	pub, err := newPublisher(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer pub.close()

	before, procErr := sampleProc(cfg.Pids)
	if procErr != nil && len(cfg.Pids) > 0 {
		return nil, fmt.Errorf("load: /proc: %w", procErr)
	}
	lat := &latencies{}
	res := &Result{Clients: cfg.Clients, Publish: cfg.Publish, Rate: cfg.Rate}

	connStart := time.Now()
	clients, connErrs := connect(ctx, cfg, lat, log)
	connSecs := time.Since(connStart).Seconds()
	defer func() {
		for _, c := range clients {
			_ = c.ws.Close()
		}
	}()
	res.Connected, res.ConnectErrors = len(clients), connErrs
	res.ConnectPerSec = float64(len(clients)) / connSecs
	log.Info("connected", "clients", len(clients), "errors", connErrs, "seconds", round(connSecs, 2))
	if len(clients) == 0 {
		return res, errors.New("load: no client connected")
	}

	idle, _ := sampleProc(cfg.Pids)
	if len(cfg.Pids) > 0 {
		res.ServerRSSPerKB = round(float64(idle.rssBytes-before.rssBytes)/float64(len(clients))/1024, 2)
	}

	var sent, pubErrs atomic.Int64 // events numbered so far; those refused
	pubCtx, stopPub := context.WithTimeout(ctx, cfg.Duration)
	defer stopPub()
	progress := time.NewTicker(cfg.Report)
	defer progress.Stop()
	pubDone := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(pubDone)
		pace(pubCtx, cfg, pub, &sent, &pubErrs)
	}()
	report := func() {
		var got int64
		for _, c := range clients {
			got += atomic.LoadInt64(&c.delivered)
		}
		log.Info("progress", "elapsed_s", round(time.Since(start).Seconds(), 1), "published", sent.Load()-pubErrs.Load(),
			"publish_errors", pubErrs.Load(), "delivered", got, "p99_ms", ms(lat.quantile(0.99)))
	}
wait:
	for {
		select {
		case <-pubDone:
			break wait
		case <-progress.C:
			report()
		}
	}
	res.Seconds = round(time.Since(start).Seconds(), 3)
	res.Published, res.PublishErrors = sent.Load()-pubErrs.Load(), pubErrs.Load()

	// Drain: until every open client has every published event, or the drain time passes.
	deadline := time.Now().Add(cfg.Drain)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		behind := false
		for _, c := range clients {
			if !c.closed.Load() && atomic.LoadInt64(&c.delivered)-atomic.LoadInt64(&c.dups) < res.Published {
				behind = true
				break
			}
		}
		if !behind {
			break
		}
		select {
		case <-progress.C:
			report()
		case <-time.After(20 * time.Millisecond):
		}
	}
	after, _ := sampleProc(cfg.Pids)
	for _, c := range clients {
		_ = c.ws.Close() // readers stop; counters are final once they return
	}
	for _, c := range clients {
		<-c.done
	}
	for _, c := range clients {
		res.Delivered += c.delivered
		res.Duplicates += c.dups
		if c.closed.Load() {
			res.Closed++
		}
	}
	res.Expected = res.Published * int64(len(clients))
	res.Lost = max(res.Expected-(res.Delivered-res.Duplicates), 0)
	res.PublishPerSec = round(float64(res.Published)/res.Seconds, 1)
	res.DeliveredPerS = round(float64(res.Delivered)/res.Seconds, 1)
	res.P50Ms, res.P90Ms, res.P99Ms = ms(lat.quantile(0.5)), ms(lat.quantile(0.9)), ms(lat.quantile(0.99))
	res.P999Ms, res.MaxMs = ms(lat.quantile(0.999)), ms(lat.max())
	if after.total > idle.total {
		res.MachineBusyPct = round(100*float64(after.busy-idle.busy)/float64(after.total-idle.total), 1)
	}
	if len(cfg.Pids) > 0 {
		res.ServerCPUSec = round(after.cpuSec-idle.cpuSec, 2)
		if res.Delivered > 0 && res.ServerCPUSec > 0 {
			res.CPUUsPerMsg = round(res.ServerCPUSec*1e6/float64(res.Delivered), 3)
			res.DeliveriesPerS = round(float64(res.Delivered)/res.ServerCPUSec, 0)
		}
	}
	return res, nil
}

func ms(d time.Duration) float64 { return round(float64(d)/float64(time.Millisecond), 3) }

func round(v float64, digits int) float64 {
	p, _ := strconv.ParseFloat(strconv.FormatFloat(v, 'f', digits, 64), 64)
	return p
}

// connect opens the clients, spread round-robin over the edges and the source addresses,
// each registered for every load event before it counts as connected.
func connect(ctx context.Context, cfg Config, lat *latencies, log *slog.Logger) ([]*client, int) {
	var (
		mu      sync.Mutex
		clients []*client
		errs    int
		wg      sync.WaitGroup
	)
	// At most 64 handshakes at once: a burst of thousands of SYNs overflows the listen
	// backlog and turns a connect test into a retransmission test.
	sem := make(chan struct{}, 64)
	var tick <-chan time.Time
	if cfg.ConnectRate > 0 {
		t := time.NewTicker(time.Duration(float64(time.Second) / cfg.ConnectRate))
		defer t.Stop()
		tick = t.C
	}
	for i := 0; i < cfg.Clients && ctx.Err() == nil; i++ {
		if tick != nil {
			<-tick
		}
		sem <- struct{}{}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := dial(ctx, cfg, i)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if errs < 5 {
					log.Warn("connect failed", "client", i, "err", err)
				}
				errs++
				return
			}
			clients = append(clients, c)
			go c.read(lat.part(i))
		}(i)
	}
	wg.Wait()
	return clients, errs
}

func dial(ctx context.Context, cfg Config, i int) (*client, error) {
	edge := cfg.Edges[i%len(cfg.Edges)]
	u, err := url.Parse(edge)
	if err != nil {
		return nil, err
	}
	q := u.Query()
	q.Set("token", cfg.Token)
	u.RawQuery = q.Encode()
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second, ReadBufferSize: 4096, WriteBufferSize: 512}
	if cfg.Sources > 1 {
		src := netip4(2 + i%cfg.Sources)
		nd := net.Dialer{LocalAddr: &net.TCPAddr{IP: src}, Timeout: 10 * time.Second}
		d.NetDialContext = nd.DialContext
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	ws, resp, err := d.DialContext(ctx, u.String(), nil)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("%s: HTTP %d: %w", edge, resp.StatusCode, err)
		}
		return nil, err
	}
	pattern := cfg.Type + ".*.*"
	_ = ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if err := ws.WriteMessage(websocket.TextMessage, []byte("register "+pattern)); err != nil {
		_ = ws.Close()
		return nil, err
	}
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, ack, err := ws.ReadMessage()
	if err != nil {
		_ = ws.Close()
		return nil, fmt.Errorf("register: %w", err)
	}
	var a struct{ Type, Action string }
	if json.Unmarshal(ack, &a) != nil || a.Type != "websocket" || a.Action != "register" {
		_ = ws.Close()
		return nil, fmt.Errorf("register %s refused: %s", pattern, ack)
	}
	_ = ws.SetReadDeadline(time.Time{})
	return &client{ws: ws, done: make(chan struct{})}, nil
}

// readFrame reads the next data frame into buf (reset first) and returns its bytes, valid
// until the next call.
func readFrame(ws *websocket.Conn, buf *bytes.Buffer) ([]byte, error) {
	_, r, err := ws.NextReader()
	if err != nil {
		return nil, err
	}
	buf.Reset()
	if _, err := buf.ReadFrom(r); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func netip4(n int) net.IP { return net.IPv4(127, 0, 0, byte(n)) }

// read counts the client's events until its socket ends. Each text frame may carry one
// event; only the Object's seq and ts are decoded. Frames are read into one reused buffer:
// the tool shares the cores with the server, so what it allocates per frame is measured too.
func (c *client) read(lat *histogram) {
	defer close(c.done)
	var buf bytes.Buffer
	for {
		msg, err := readFrame(c.ws, &buf)
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				c.closed.Store(true)
			}
			return
		}
		now := time.Now().UnixNano()
		seq, ts, ok := parseLoad(msg)
		if !ok {
			continue
		}
		lat.add(time.Duration(now - ts))
		if c.seen.repeat(seq) {
			atomic.AddInt64(&c.dups, 1)
		}
		if seq > atomic.LoadInt64(&c.last) {
			atomic.StoreInt64(&c.last, seq)
		}
		atomic.AddInt64(&c.delivered, 1)
	}
}

// pace publishes cfg.Rate events per second until ctx ends, in ticks of 10 ms (or one event
// per tick at low rates), numbering them 1, 2, ...
func pace(ctx context.Context, cfg Config, pub publisher, sent, errs *atomic.Int64) {
	tick := max(10*time.Millisecond, min(time.Duration(float64(time.Second)/cfg.Rate), time.Second))
	t := time.NewTicker(tick)
	defer t.Stop()
	start := time.Now()
	var seq int64
	pad := strings.Repeat("x", max(cfg.Size-40, 0))
	for {
		select {
		case <-ctx.Done():
			pub.flush(errs)
			return
		case now := <-t.C:
			due := int64(now.Sub(start).Seconds() * cfg.Rate)
			for seq < due && ctx.Err() == nil {
				seq++
				if err := pub.publish(seq, pad); err != nil {
					errs.Add(1)
				}
				sent.Store(seq)
			}
		}
	}
}

// publisher sends numbered load events one way or another.
type publisher interface {
	publish(seq int64, pad string) error
	flush(errs *atomic.Int64)
	close()
}

func newPublisher(ctx context.Context, cfg Config) (publisher, error) {
	switch cfg.Publish {
	case PublishNATS:
		nc, err := nats.Connect(cfg.NATSURL, nats.Name("herald-load"))
		if err != nil {
			return nil, fmt.Errorf("load: nats: %w", err)
		}
		return &natsPublisher{nc: nc, typ: cfg.Type}, nil
	default:
		conn, err := grpc.NewClient(cfg.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return nil, fmt.Errorf("load: grpc: %w", err)
		}
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+cfg.GRPCToken)
		g := &grpcPublisher{conn: conn, client: heraldv1.NewEventServiceClient(conn), ctx: ctx, typ: cfg.Type}
		if cfg.Publish == PublishGRPCStream {
			return g, g.openStream()
		}
		g.work = make(chan *heraldv1.PublishRequest, cfg.Concurrency)
		for range cfg.Concurrency {
			g.wg.Add(1)
			go g.unaryWorker()
		}
		return g, nil
	}
}

func loadEvent(typ string, seq int64, pad string) *event.Event {
	obj, _ := json.Marshal(payload{Seq: seq, TS: time.Now().UnixNano(), Pad: pad})
	return &event.Event{Type: typ, Action: "tick", Key: "k", Object: obj}
}

type natsPublisher struct {
	nc  *nats.Conn
	typ string
}

func (p *natsPublisher) publish(seq int64, pad string) error {
	msg, _, err := eventpub.NewMsg(loadEvent(p.typ, seq, pad), "")
	if err != nil {
		return err
	}
	return p.nc.PublishMsg(msg)
}

func (p *natsPublisher) flush(*atomic.Int64) { _ = p.nc.FlushTimeout(5 * time.Second) }
func (p *natsPublisher) close()              { p.nc.Close() }

type grpcPublisher struct {
	conn   *grpc.ClientConn
	client heraldv1.EventServiceClient
	ctx    context.Context
	typ    string

	stream  grpc.BidiStreamingClient[heraldv1.PublishStreamRequest, heraldv1.PublishStreamResponse]
	answers chan int64 // refused events, counted by flush

	work    chan *heraldv1.PublishRequest
	wg      sync.WaitGroup
	refused atomic.Int64
}

func protoEvent(typ string, seq int64, pad string) *heraldv1.Event {
	obj, _ := structpb.NewValue(map[string]any{"seq": seq, "ts": time.Now().UnixNano(), "pad": pad})
	return &heraldv1.Event{Type: typ, Action: "tick", Key: "k", Object: obj}
}

func (g *grpcPublisher) openStream() error {
	s, err := g.client.PublishStream(g.ctx)
	if err != nil {
		return fmt.Errorf("load: PublishStream: %w", err)
	}
	g.stream = s
	g.answers = make(chan int64, 1)
	go func() {
		var refused int64
		for {
			r, err := s.Recv()
			if err != nil {
				if !errors.Is(err, io.EOF) {
					refused = -1
				}
				g.answers <- refused
				return
			}
			if r.GetError() != nil {
				refused++
			}
		}
	}()
	return nil
}

func (g *grpcPublisher) publish(seq int64, pad string) error {
	if g.stream != nil {
		return g.stream.Send(&heraldv1.PublishStreamRequest{Event: protoEvent(g.typ, seq, pad)})
	}
	select {
	case g.work <- &heraldv1.PublishRequest{Event: protoEvent(g.typ, seq, pad)}:
		return nil
	case <-g.ctx.Done():
		return g.ctx.Err()
	}
}

func (g *grpcPublisher) unaryWorker() {
	defer g.wg.Done()
	for req := range g.work {
		ctx, cancel := context.WithTimeout(g.ctx, 10*time.Second)
		if _, err := g.client.Publish(ctx, req); err != nil {
			g.refused.Add(1)
		}
		cancel()
	}
}

// flush waits for every answer and counts the refusals as publish errors.
func (g *grpcPublisher) flush(errs *atomic.Int64) {
	if g.stream != nil {
		_ = g.stream.CloseSend()
		select {
		case n := <-g.answers:
			if n > 0 {
				errs.Add(n)
			}
		case <-time.After(15 * time.Second):
		}
		return
	}
	close(g.work)
	g.wg.Wait()
	errs.Add(g.refused.Load())
}

func (g *grpcPublisher) close() { _ = g.conn.Close() }

// window remembers which of the last windowSize event numbers a client has seen, so a repeat
// is told from an event that merely arrived out of order (concurrent unary publishers).
type window struct {
	high int64
	bits [windowSize / 64]uint64
}

const windowSize = 4096

// repeat records seq and reports whether it was seen before; one older than the window
// counts as a repeat.
func (w *window) repeat(seq int64) bool {
	if seq > w.high {
		if seq-w.high >= windowSize {
			w.bits = [windowSize / 64]uint64{}
		} else {
			for s := w.high + 1; s <= seq; s++ {
				w.bits[(s%windowSize)/64] &^= 1 << (s % 64)
			}
		}
		w.high = seq
	} else if w.high-seq >= windowSize {
		return true
	}
	i, bit := (seq%windowSize)/64, uint64(1)<<(seq%64)
	if w.bits[i]&bit != 0 {
		return true
	}
	w.bits[i] |= bit
	return false
}

// parseLoad finds a load event's seq and ts in a frame without decoding all of it: the
// reader must not be what limits a run. Frames without both (acknowledgements) are not ok.
func parseLoad(msg []byte) (seq, ts int64, ok bool) {
	num := func(key string) (int64, bool) {
		i := bytes.Index(msg, []byte(key))
		if i < 0 {
			return 0, false
		}
		rest := msg[i+len(key):]
		var v int64
		j := 0
		for ; j < len(rest) && j < 19 && rest[j] >= '0' && rest[j] <= '9'; j++ {
			v = v*10 + int64(rest[j]-'0')
		}
		return v, j > 0
	}
	seq, ok1 := num(`"seq":`)
	ts, ok2 := num(`"ts":`)
	return seq, ts, ok1 && ok2 && seq > 0
}
