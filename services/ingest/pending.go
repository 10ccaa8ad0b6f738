package ingest

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/heraldhq/herald/pkg/agentwire"
)

// Why pendingCalls.add refuses a request.
var (
	errCallsClosed    = errors.New("agent disconnected")
	errCallsFull      = errors.New("too many requests in flight")
	errCallsDuplicate = errors.New("duplicate request id")
)

// pendingCalls correlates the requests sent to one agent with the agent's answers (by
// command_id / request_id). It is bounded (max waiting at once), every wait ends (answer,
// timeout, or close), and exactly one of answer and timeout wins for each request. inflight,
// when set, counts the requests added and not yet finished, so a shutdown can wait for their
// replies; it is incremented under the lock that close takes, so no request starts after
// close returned.
type pendingCalls struct {
	max      int
	inflight *sync.WaitGroup

	mu     sync.Mutex
	calls  map[string]chan agentwire.RPCReply // guarded by mu
	closed bool                               // guarded by mu
}

func newPendingCalls(max int, inflight *sync.WaitGroup) *pendingCalls {
	return &pendingCalls{max: max, inflight: inflight, calls: make(map[string]chan agentwire.RPCReply)}
}

// add registers request id. The caller must end it with wait or drop.
func (p *pendingCalls) add(id string) (chan agentwire.RPCReply, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.closed:
		return nil, errCallsClosed
	case len(p.calls) >= p.max:
		return nil, fmt.Errorf("%w: the agent has %d", errCallsFull, p.max)
	case p.calls[id] != nil:
		return nil, errCallsDuplicate
	}
	ch := make(chan agentwire.RPCReply, 1) // one sender: whoever takes ch out of calls
	p.calls[id] = ch
	if p.inflight != nil {
		p.inflight.Add(1)
	}
	return ch, nil
}

// take removes id's channel if it is still ch's (nil ch: whichever it is).
func (p *pendingCalls) take(id string, ch chan agentwire.RPCReply) chan agentwire.RPCReply {
	p.mu.Lock()
	defer p.mu.Unlock()
	cur := p.calls[id]
	if cur == nil || (ch != nil && cur != ch) {
		return nil
	}
	delete(p.calls, id)
	return cur
}

// resolve hands the agent's answer to the request waiting for id; false when none waits (an
// unknown id, or one that timed out).
func (p *pendingCalls) resolve(id string, r agentwire.RPCReply) bool {
	ch := p.take(id, nil)
	if ch == nil {
		return false
	}
	ch <- r
	return true
}

// wait returns the answer to id, or answered=false once timeout passed without one. An answer
// that arrives in the same instant as the timeout wins.
func (p *pendingCalls) wait(id string, ch chan agentwire.RPCReply, timeout time.Duration) (r agentwire.RPCReply, answered bool) {
	defer p.done()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case r = <-ch:
		return r, true
	case <-t.C:
	}
	if p.take(id, ch) != nil {
		return agentwire.RPCReply{}, false
	}
	return <-ch, true // resolve or close took it first and is sending
}

// drop ends a request that was never sent (the socket was closing).
func (p *pendingCalls) drop(id string, ch chan agentwire.RPCReply) {
	p.take(id, ch)
	p.done()
}

func (p *pendingCalls) done() {
	if p.inflight != nil {
		p.inflight.Done()
	}
}

// close answers every waiting request with r and refuses new ones.
func (p *pendingCalls) close(r agentwire.RPCReply) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for id, ch := range p.calls {
		ch <- r
		delete(p.calls, id)
	}
}
