package ingest

import (
	"log/slog"
	"sync"
	"time"

	"github.com/heraldhq/herald/pkg/wsconn"
)

// agentSet tracks this ingest's agent connections so Run can close them on shutdown.
type agentSet struct {
	mu      sync.Mutex
	conns   map[*agentConn]struct{} // guarded by mu
	closing bool                    // guarded by mu
	wg      sync.WaitGroup          // one per connection being served
	rpcs    sync.WaitGroup          // one per RPC waiting for an agent
}

func (a *agentSet) init() { a.conns = make(map[*agentConn]struct{}) }

// begin reserves a slot for a new connection; false once shutdown started.
func (a *agentSet) begin() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closing {
		return false
	}
	a.wg.Add(1)
	return true
}

// track registers c for shutdown; a connection arriving during shutdown is closed at once.
func (a *agentSet) track(c *agentConn) {
	a.mu.Lock()
	closing := a.closing
	if !closing {
		a.conns[c] = struct{}{}
	}
	a.mu.Unlock()
	if closing {
		c.conn.Close(wsconn.DisconnectShutdown)
	}
}

// end releases the slot of begin (c nil: the upgrade failed).
func (a *agentSet) end(c *agentConn) {
	if c != nil {
		a.mu.Lock()
		delete(a.conns, c)
		a.mu.Unlock()
	}
	a.wg.Done()
}

func (a *agentSet) stopping() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.closing
}

// shutdownWait bounds how long shutdown waits for connections to end (their close handshakes
// take up to a second) and for RPC waits to be answered.
const shutdownWait = 5 * time.Second

// shutdown closes every connection with 1001 and waits (bounded) for them and for the RPCs
// they were serving.
func (a *agentSet) shutdown(log *slog.Logger) {
	a.mu.Lock()
	a.closing = true
	conns := make([]*agentConn, 0, len(a.conns))
	for c := range a.conns {
		conns = append(conns, c)
	}
	a.mu.Unlock()
	for _, c := range conns {
		c.conn.Close(wsconn.DisconnectShutdown)
	}
	done := make(chan struct{})
	go func() {
		a.wg.Wait()
		a.rpcs.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(shutdownWait):
		log.Warn("agent connections still open after shutdown wait", "wait", shutdownWait)
	}
}
