package ingest

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/pkg/agentwire"
)

func TestPendingCallsAnswerAndTimeout(t *testing.T) {
	t.Parallel()
	var inflight sync.WaitGroup
	p := newPendingCalls(2, &inflight)

	ch, err := p.add("a")
	if err != nil {
		t.Fatal(err)
	}
	if !p.resolve("a", agentwire.RPCReply{Output: "up"}) {
		t.Fatal("resolve of a waiting request = false")
	}
	if r, ok := p.wait("a", ch, time.Minute); !ok || r.Output != "up" {
		t.Fatalf("wait = %+v, %v; want the answer", r, ok)
	}
	if p.resolve("a", agentwire.RPCReply{}) {
		t.Fatal("a second answer to the same id was delivered")
	}

	ch, _ = p.add("b")
	if _, ok := p.wait("b", ch, time.Millisecond); ok {
		t.Fatal("wait without an answer reported one")
	}
	if p.resolve("b", agentwire.RPCReply{Output: "late"}) {
		t.Fatal("an answer after the timeout was delivered")
	}
	inflight.Wait() // every add was ended: this returns
}

func TestPendingCallsBoundsAndDuplicates(t *testing.T) {
	t.Parallel()
	p := newPendingCalls(2, nil)
	a, _ := p.add("a")
	if _, err := p.add("a"); !errors.Is(err, errCallsDuplicate) {
		t.Fatalf("duplicate add = %v", err)
	}
	b, _ := p.add("b")
	if _, err := p.add("c"); !errors.Is(err, errCallsFull) {
		t.Fatalf("add beyond the bound = %v", err)
	}
	p.drop("b", b) // a send failed: the slot is free again
	if _, err := p.add("c"); err != nil {
		t.Fatalf("add after drop = %v", err)
	}
	_ = a
}

func TestPendingCallsCloseAnswersEveryWaiter(t *testing.T) {
	t.Parallel()
	var inflight sync.WaitGroup
	p := newPendingCalls(8, &inflight)
	results := make(chan agentwire.RPCReply, 3)
	for _, id := range []string{"x", "y", "z"} {
		ch, err := p.add(id)
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			r, _ := p.wait(id, ch, time.Minute)
			results <- r
		}()
	}
	p.close(agentwire.RPCReply{Code: agentwire.CodeGone})
	for range 3 {
		select {
		case r := <-results:
			if r.Code != agentwire.CodeGone {
				t.Fatalf("waiter got %+v, want gone", r)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a waiter was not answered by close")
		}
	}
	if _, err := p.add("later"); !errors.Is(err, errCallsClosed) {
		t.Fatalf("add after close = %v", err)
	}
	inflight.Wait()
}

// TestPendingCallsRaceAnswerTimeout: answer and timeout racing each other deliver exactly one
// result, and never block.
func TestPendingCallsRaceAnswerTimeout(t *testing.T) {
	t.Parallel()
	p := newPendingCalls(1, nil)
	for i := range 200 {
		ch, err := p.add("r")
		if err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		go p.resolve("r", agentwire.RPCReply{Output: "ok"})
		r, ok := p.wait("r", ch, time.Duration(i%3)*time.Microsecond)
		if ok && r.Output != "ok" {
			t.Fatalf("round %d: answered with %+v", i, r)
		}
		// Whether or not it was answered, the id is free for the next round.
	}
}
