package workqueue_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/pkg/workqueue"
)

func TestOrderAndOverflow(t *testing.T) {
	release, started := make(chan struct{}), make(chan struct{})
	var mu sync.Mutex
	var got []int
	q := workqueue.New("test item", 3, nil, func(_ context.Context, n int) {
		if n == 0 {
			close(started)
			<-release // the worker is busy: the queue fills behind it
		}
		mu.Lock()
		got = append(got, n)
		mu.Unlock()
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- q.Run(ctx, time.Second) }()

	if !q.Offer(0) {
		t.Fatal("first Offer refused")
	}
	select { // the worker holds item 0 and the queue is empty
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("worker did not take the first item")
	}
	for i := 1; i <= 3; i++ {
		if !q.Offer(i) {
			t.Fatalf("Offer(%d) refused with room left", i)
		}
	}
	start := time.Now()
	if q.Offer(4) || q.Offer(5) {
		t.Fatal("Offer accepted beyond the bound")
	}
	if time.Since(start) > 100*time.Millisecond {
		t.Fatal("Offer waited on a full queue")
	}
	if q.Dropped() != 2 {
		t.Fatalf("Dropped = %d, want 2", q.Dropped())
	}
	close(release)
	cancel()
	if n := <-done; n != 0 {
		t.Fatalf("abandoned %d, want 0", n)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []int{0, 1, 2, 3}
	if len(got) != len(want) {
		t.Fatalf("handled %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("handled %v, want %v (in order)", got, want)
		}
	}
}

// TestDrainSharesOneDeadline: at shutdown the queued items get one deadline together, and each
// handler sees it in its context.
func TestDrainSharesOneDeadline(t *testing.T) {
	var handled int
	q := workqueue.New("slow item", 100, nil, func(ctx context.Context, _ int) {
		handled++
		<-ctx.Done() // every item would take forever without the shared deadline
	})
	for i := range 100 {
		q.Offer(i)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	abandoned := q.Run(ctx, 50*time.Millisecond)
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("drain took %s, want about one deadline", el)
	}
	if handled < 1 || abandoned != 100-handled {
		t.Fatalf("handled %d, abandoned %d; want handled+abandoned = 100, handled >= 1", handled, abandoned)
	}
}
