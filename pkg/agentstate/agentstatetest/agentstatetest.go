// Package agentstatetest is the contract every agentstate.Store must meet; each
// implementation's tests call Run with a constructor that returns an empty store.
package agentstatetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/pkg/agentstate"
	"github.com/heraldhq/herald/pkg/testutil"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// Run runs the contract suite; newStore must return an empty, independent Store per call.
func Run(t *testing.T, newStore func(t *testing.T) agentstate.Store) {
	t.Run("EmptyStore", func(t *testing.T) {
		s := newStore(t)
		if _, ok, err := s.LatestMetrics(t.Context(), "srv"); ok || err != nil {
			t.Errorf("LatestMetrics on empty store = %v, %v", ok, err)
		}
		if _, ok, err := s.Facts(t.Context(), "srv"); ok || err != nil {
			t.Errorf("Facts on empty store = %v, %v", ok, err)
		}
		all, err := s.ListFacts(t.Context())
		if err != nil || all == nil || len(all) != 0 {
			t.Errorf("ListFacts on empty store = %v, %v (want an empty, non-nil map)", all, err)
		}
	})

	t.Run("MetricsFreshness", func(t *testing.T) {
		s := newStore(t)
		ctx := t.Context()
		put := func(ts time.Time, v int, want bool) {
			t.Helper()
			fresh, err := s.PutMetrics(ctx, "srv", ts, sample(v))
			if err != nil || fresh != want {
				t.Fatalf("PutMetrics(%v, %d) = %v, %v; want fresh %v", ts, v, fresh, err, want)
			}
		}
		wantLatest := func(v int) {
			t.Helper()
			got, ok, err := s.LatestMetrics(ctx, "srv")
			if err != nil || !ok || !sameJSON(got, sample(v)) {
				t.Fatalf("LatestMetrics = %s, %v, %v; want %s", got, ok, err, sample(v))
			}
		}
		put(t0, 1, true)
		wantLatest(1)
		put(t0, 2, false) // duplicate
		wantLatest(1)
		put(t0.Add(-time.Hour), 3, false) // old replay
		wantLatest(1)
		put(t0.Add(time.Nanosecond), 4, true) // nanoseconds count
		wantLatest(4)
		put(t0.Add(5*time.Second).In(time.FixedZone("x", 3600)), 5, true) // zones do not matter
		wantLatest(5)
		put(t0.Add(5*time.Second), 6, false)
		wantLatest(5)
	})

	t.Run("ServersAreIndependent", func(t *testing.T) {
		s := newStore(t)
		ctx := t.Context()
		ids := []string{"a", "a:b", "x.y z", "ünïcode"}
		for i, id := range ids {
			if fresh, err := s.PutMetrics(ctx, id, t0.Add(-time.Duration(i)*time.Minute), sample(i)); !fresh || err != nil {
				t.Fatalf("PutMetrics(%q) = %v, %v", id, fresh, err)
			}
		}
		for i, id := range ids {
			got, ok, err := s.LatestMetrics(ctx, id)
			if err != nil || !ok || !sameJSON(got, sample(i)) {
				t.Errorf("LatestMetrics(%q) = %s, %v, %v", id, got, ok, err)
			}
		}
	})

	t.Run("ConcurrentPutsKeepTheLatest", func(t *testing.T) {
		s := newStore(t)
		const n = 20
		var wg sync.WaitGroup
		var mu sync.Mutex
		freshCount := 0
		errs := make(chan error, n)
		for i := range n {
			wg.Go(func() {
				fresh, err := s.PutMetrics(t.Context(), "srv", t0.Add(time.Duration(i)*time.Second), sample(i))
				if err != nil {
					errs <- err
					return
				}
				if fresh {
					mu.Lock()
					freshCount++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if freshCount < 1 || freshCount > n {
			t.Errorf("%d fresh puts", freshCount)
		}
		got, _, err := s.LatestMetrics(t.Context(), "srv")
		if err != nil || !sameJSON(got, sample(n-1)) {
			t.Errorf("LatestMetrics = %s, %v; want the newest %s", got, err, sample(n-1))
		}
		// Every sample has now been seen: replaying them all yields nothing fresh.
		for i := range n {
			if fresh, err := s.PutMetrics(t.Context(), "srv", t0.Add(time.Duration(i)*time.Second), sample(i)); fresh || err != nil {
				t.Fatalf("replay %d: fresh=%v err=%v", i, fresh, err)
			}
		}
	})

	t.Run("Facts", func(t *testing.T) {
		s := newStore(t)
		ctx := t.Context()
		f1 := json.RawMessage(`{"hostname":"h1","cpu_count":4}`)
		f2 := json.RawMessage(`{"hostname":"h2","os":"linux"}`)
		if err := s.PutFacts(ctx, "s1", f1); err != nil {
			t.Fatal(err)
		}
		if err := s.PutFacts(ctx, "s2", f1); err != nil {
			t.Fatal(err)
		}
		if err := s.PutFacts(ctx, "s2", f2); err != nil { // replaces
			t.Fatal(err)
		}
		if got, ok, err := s.Facts(ctx, "s2"); err != nil || !ok || !sameJSON(got, f2) {
			t.Errorf("Facts(s2) = %s, %v, %v", got, ok, err)
		}
		all, err := s.ListFacts(ctx)
		if err != nil || len(all) != 2 || !sameJSON(all["s1"], f1) || !sameJSON(all["s2"], f2) {
			t.Errorf("ListFacts = %v, %v", all, err)
		}
	})

	t.Run("AlertsSurviveAndArePruned", func(t *testing.T) {
		s := newStore(t)
		ctx := t.Context()
		if _, ok, err := s.Alerts(ctx, "srv"); ok || err != nil {
			t.Fatalf("Alerts on empty store = %v, %v", ok, err)
		}
		a1 := json.RawMessage(`{"over":{"cpu":2}}`)
		a2 := json.RawMessage(`{"active":{"cpu":{"id":"x"}}}`)
		if err := s.PutAlerts(ctx, "srv", a1, time.Hour); err != nil {
			t.Fatal(err)
		}
		if err := s.PutAlerts(ctx, "other", a1, time.Hour); err != nil {
			t.Fatal(err)
		}
		if err := s.PutAlerts(ctx, "srv", a2, time.Hour); err != nil { // replaces
			t.Fatal(err)
		}
		if got, ok, err := s.Alerts(ctx, "srv"); err != nil || !ok || !sameJSON(got, a2) {
			t.Fatalf("Alerts(srv) = %s, %v, %v; want %s", got, ok, err, a2)
		}
		if got, ok, err := s.Alerts(ctx, "other"); err != nil || !ok || !sameJSON(got, a1) {
			t.Fatalf("Alerts(other) = %s, %v, %v; want %s", got, ok, err, a1)
		}
		// A state not put again within its ttl is pruned.
		if err := s.PutAlerts(ctx, "brief", a1, 20*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, 5*time.Second, func() error {
			if _, ok, err := s.Alerts(ctx, "brief"); ok || err != nil {
				return fmt.Errorf("Alerts(brief) after its ttl = %v, %v; want pruned", ok, err)
			}
			return nil
		})
		if _, ok, _ := s.Alerts(ctx, "srv"); !ok {
			t.Fatal("pruning took a state whose ttl has not passed")
		}
		if err := s.PutAlerts(ctx, "srv", a1, 0); !errors.Is(err, agentstate.ErrInvalid) {
			t.Errorf("zero ttl: %v", err)
		}
		if err := s.PutAlerts(ctx, "", a1, time.Hour); !errors.Is(err, agentstate.ErrInvalid) {
			t.Errorf("empty server id: %v", err)
		}
		if err := s.PutAlerts(ctx, "srv", json.RawMessage(`{`), time.Hour); !errors.Is(err, agentstate.ErrInvalid) {
			t.Errorf("bad JSON: %v", err)
		}
	})

	t.Run("InvalidArguments", func(t *testing.T) {
		s := newStore(t)
		ctx := t.Context()
		if _, err := s.PutMetrics(ctx, "", t0, sample(1)); !errors.Is(err, agentstate.ErrInvalid) {
			t.Errorf("empty server id: %v", err)
		}
		if _, err := s.PutMetrics(ctx, "srv", t0, json.RawMessage(`{`)); !errors.Is(err, agentstate.ErrInvalid) {
			t.Errorf("bad JSON: %v", err)
		}
		if err := s.PutFacts(ctx, "srv", json.RawMessage(`nope`)); !errors.Is(err, agentstate.ErrInvalid) {
			t.Errorf("bad facts JSON: %v", err)
		}
		if _, ok, _ := s.LatestMetrics(ctx, "srv"); ok {
			t.Error("an invalid put stored something")
		}
	})

	t.Run("ReturnedValuesAreCopies", func(t *testing.T) {
		s := newStore(t)
		ctx := t.Context()
		in := sample(7)
		if _, err := s.PutMetrics(ctx, "srv", t0, in); err != nil {
			t.Fatal(err)
		}
		in[0] = ' ' // the caller reuses its buffer
		got, _, _ := s.LatestMetrics(ctx, "srv")
		if !sameJSON(got, sample(7)) {
			t.Fatalf("stored sample changed with the caller's buffer: %s", got)
		}
	})
}

func sample(v int) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{"cpu_percent":%d,"timestamp":"x"}`, v))
}

// sameJSON compares two JSON documents by value.
func sameJSON(a, b json.RawMessage) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	xb, _ := json.Marshal(x)
	yb, _ := json.Marshal(y)
	return string(xb) == string(yb)
}
