package access

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestLoginCacheSharesAndExpires(t *testing.T) {
	t.Parallel()
	c := newLoginCache()
	now := time.Now()
	var clock sync.Mutex
	c.now = func() time.Time { clock.Lock(); defer clock.Unlock(); return now }
	var fetches atomic.Int32
	release := make(chan struct{})
	fetch := func(context.Context) (string, error) {
		fetches.Add(1)
		<-release
		return "tok", nil
	}
	valid := true
	var validMu sync.Mutex
	isValid := func(string) bool { validMu.Lock(); defer validMu.Unlock(); return valid }

	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			if raw, err := c.login(t.Context(), "alice", "pw", fetch, isValid); err != nil || raw != "tok" {
				t.Errorf("login = %q, %v", raw, err)
			}
		})
	}
	// Whenever the fetch returns, every other caller has joined it or finds its result cached.
	close(release)
	wg.Wait()
	if n := fetches.Load(); n != 1 {
		t.Fatalf("50 concurrent logins made %d fetches, want 1", n)
	}
	// Cached: no fetch.
	if _, err := c.login(t.Context(), "alice", "pw", fetch, isValid); err != nil || fetches.Load() != 1 {
		t.Fatalf("cached login fetched again (%d) or failed: %v", fetches.Load(), err)
	}
	// Other credentials are another entry.
	if _, err := c.login(t.Context(), "alice", "other", fetch, isValid); err != nil || fetches.Load() != 2 {
		t.Fatalf("other password shared the entry: %d fetches", fetches.Load())
	}
	// A revoked token is not used again.
	validMu.Lock()
	valid = false
	validMu.Unlock()
	if _, err := c.login(t.Context(), "alice", "pw", fetch, isValid); err != nil || fetches.Load() != 3 {
		t.Fatalf("revoked cached token used: %d fetches", fetches.Load())
	}
	validMu.Lock()
	valid = true
	validMu.Unlock()
	// Expired after passwordCacheTTL.
	clock.Lock()
	now = now.Add(passwordCacheTTL)
	clock.Unlock()
	if _, err := c.login(t.Context(), "alice", "pw", fetch, isValid); err != nil || fetches.Load() != 4 {
		t.Fatalf("expired entry used: %d fetches", fetches.Load())
	}
	// Failures are not remembered.
	bad := errors.New("unauthorized")
	fail := func(context.Context) (string, error) { fetches.Add(1); return "", bad }
	for range 2 {
		if _, err := c.login(t.Context(), "bob", "x", fail, isValid); !errors.Is(err, bad) {
			t.Fatal(err)
		}
	}
	if n := fetches.Load(); n != 6 {
		t.Fatalf("failed login cached: %d fetches, want 6", n)
	}
}
