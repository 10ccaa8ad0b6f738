// Package registrytest is the contract every registry.Registry passes: run it against each
// implementation with a fresh, empty registry per subtest.
package registrytest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/pkg/registry"
)

// Run runs the contract suite; newRegistry returns an empty registry, isolated from the
// others it returns.
func Run(t *testing.T, newRegistry func(t *testing.T) registry.Registry) {
	t.Run("AddListGet", func(t *testing.T) { testAddListGet(t, newRegistry(t)) })
	t.Run("Query", func(t *testing.T) { testQuery(t, newRegistry(t)) })
	t.Run("Remove", func(t *testing.T) { testRemove(t, newRegistry(t)) })
	t.Run("AddressNewestWins", func(t *testing.T) { testAddress(t, newRegistry(t)) })
	t.Run("RefreshKeepsAndReportsMissing", func(t *testing.T) { testRefresh(t, newRegistry(t)) })
	t.Run("ExpiredEntriesSweptOnce", func(t *testing.T) { testSweep(t, newRegistry(t)) })
	t.Run("Invalid", func(t *testing.T) { testInvalid(t, newRegistry(t)) })
}

const long = time.Minute

var ctx = context.Background()

// Conn returns a connection for tests.
func Conn(id, instance, addr string) registry.Conn {
	return registry.Conn{ID: id, RemoteAddr: addr, Principal: "user:" + id, Instance: instance,
		CreateTime: time.Date(2024, 5, 1, 10, 0, 0, 123456789, time.UTC), Websocket: true, Endpoint: "drp"}
}

func mustAdd(t *testing.T, r registry.Registry, c registry.Conn, ttl time.Duration) {
	t.Helper()
	if err := r.Add(ctx, c, ttl); err != nil {
		t.Fatalf("Add %s: %v", c.ID, err)
	}
}

func ids(cs []registry.Conn) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.ID
	}
	return out
}

func list(t *testing.T, r registry.Registry, q registry.Query) []string {
	t.Helper()
	cs, err := r.List(ctx, q)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	return ids(cs)
}

func testAddListGet(t *testing.T, r registry.Registry) {
	a := Conn("a", "i1", "10.0.0.1:5000")
	a.ServerID, a.Endpoint, a.Principal = "web-1", "agent", "agent:k1"
	b := Conn("b", "i2", "10.0.0.2:5000")
	b.CreateTime = a.CreateTime.Add(time.Second)
	b.Websocket = false
	mustAdd(t, r, b, long)
	mustAdd(t, r, a, long)
	cs, err := r.List(ctx, registry.Query{})
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 2 || cs[0].ID != "a" || cs[1].ID != "b" {
		t.Fatalf("List = %v, want [a b] (oldest first)", ids(cs))
	}
	if got := cs[0]; !got.CreateTime.Equal(a.CreateTime) || got.RemoteAddr != a.RemoteAddr ||
		got.Principal != a.Principal || got.Instance != a.Instance || got.Endpoint != a.Endpoint ||
		got.ServerID != a.ServerID || !got.Websocket {
		t.Errorf("List[0] = %+v, want %+v", got, a)
	}
	if cs[1].Websocket {
		t.Errorf("b.Websocket = true, want false")
	}
	got, err := r.Get(ctx, "10.0.0.2:5000")
	if err != nil || got.ID != "b" {
		t.Errorf("Get(b's addr) = %+v, %v", got, err)
	}
	if _, err := r.Get(ctx, "10.9.9.9:1"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("Get(unknown) err = %v, want ErrNotFound", err)
	}
}

func testQuery(t *testing.T, r registry.Registry) {
	a := Conn("a", "i1", "1.1.1.1:1")
	a.ServerID, a.Endpoint = "s1", "agent"
	b := Conn("b", "i1", "1.1.1.1:2")
	c := Conn("c", "i2", "1.1.1.1:3")
	c.Principal = a.Principal
	for _, x := range []registry.Conn{a, b, c} {
		mustAdd(t, r, x, long)
	}
	for _, tc := range []struct {
		q    registry.Query
		want string
	}{
		{registry.Query{Instance: "i1"}, "[a b]"},
		{registry.Query{ServerID: "s1"}, "[a]"},
		{registry.Query{Principal: a.Principal}, "[a c]"},
		{registry.Query{Endpoint: "drp"}, "[b c]"},
		{registry.Query{Instance: "i2", Principal: "user:b"}, "[]"},
	} {
		if got := fmt.Sprint(list(t, r, tc.q)); got != tc.want {
			t.Errorf("List(%+v) = %s, want %s", tc.q, got, tc.want)
		}
	}
}

func testRemove(t *testing.T, r registry.Registry) {
	mustAdd(t, r, Conn("a", "i1", "1.1.1.1:1"), long)
	mustAdd(t, r, Conn("b", "i1", "1.1.1.1:2"), long)
	if err := r.Remove(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if err := r.Remove(ctx, "never"); err != nil {
		t.Errorf("Remove(unknown) = %v, want nil", err)
	}
	if got := fmt.Sprint(list(t, r, registry.Query{})); got != "[b]" {
		t.Errorf("List after Remove = %s, want [b]", got)
	}
	if _, err := r.Get(ctx, "1.1.1.1:1"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("Get(removed) err = %v, want ErrNotFound", err)
	}
	if gone, _ := r.Sweep(ctx); len(gone) != 0 {
		t.Errorf("Sweep after Remove = %v, want nothing", ids(gone))
	}
}

func testAddress(t *testing.T, r registry.Registry) {
	mustAdd(t, r, Conn("old", "i1", "1.1.1.1:1"), long)
	mustAdd(t, r, Conn("new", "i2", "1.1.1.1:1"), long)
	if got, err := r.Get(ctx, "1.1.1.1:1"); err != nil || got.ID != "new" {
		t.Fatalf("Get = %+v, %v; want the newest entry", got, err)
	}
	if err := r.Remove(ctx, "old"); err != nil {
		t.Fatal(err)
	}
	if got, err := r.Get(ctx, "1.1.1.1:1"); err != nil || got.ID != "new" {
		t.Errorf("Get after removing the older = %+v, %v; want new", got, err)
	}
}

func testRefresh(t *testing.T, r registry.Registry) {
	short := 300 * time.Millisecond
	mustAdd(t, r, Conn("kept", "i1", "1.1.1.1:1"), short)
	mustAdd(t, r, Conn("control", "i1", "1.1.1.1:2"), short)
	missing, err := r.Refresh(ctx, []string{"kept", "ghost"}, long)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(missing) != "[ghost]" {
		t.Errorf("Refresh missing = %v, want [ghost]", missing)
	}
	eventually(t, 5*time.Second, func() error {
		if _, err := r.Get(ctx, "1.1.1.1:2"); !errors.Is(err, registry.ErrNotFound) {
			return fmt.Errorf("control not expired yet (%v)", err)
		}
		return nil
	})
	if got := fmt.Sprint(list(t, r, registry.Query{})); got != "[kept]" {
		t.Errorf("List after control expired = %s, want [kept]", got)
	}
	// An expired entry counts as missing, so its holder adds it again.
	missing, err = r.Refresh(ctx, []string{"kept", "control"}, long)
	if err != nil || fmt.Sprint(missing) != "[control]" {
		t.Errorf("Refresh = %v, %v; want [control]", missing, err)
	}
}

func testSweep(t *testing.T, r registry.Registry) {
	const n = 60
	for i := range n {
		mustAdd(t, r, Conn(fmt.Sprintf("dead-%02d", i), "dead", fmt.Sprintf("1.1.1.1:%d", i)), 100*time.Millisecond)
	}
	mustAdd(t, r, Conn("alive", "live", "2.2.2.2:1"), long)
	eventually(t, 5*time.Second, func() error {
		if got := list(t, r, registry.Query{}); len(got) != 1 {
			return fmt.Errorf("listed %d, want only alive", len(got))
		}
		return nil
	})
	var mu sync.Mutex
	seen := map[string]int{}
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			gone, err := r.Sweep(ctx)
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			defer mu.Unlock()
			for _, c := range gone {
				seen[c.ID]++
				if c.Instance != "dead" || c.Principal != "user:"+c.ID {
					t.Errorf("swept %+v: fields lost", c)
				}
			}
		}()
	}
	wg.Wait()
	if len(seen) != n {
		t.Errorf("swept %d distinct entries, want %d", len(seen), n)
	}
	for id, k := range seen {
		if k != 1 {
			t.Errorf("%s swept %d times, want once", id, k)
		}
	}
	if gone, _ := r.Sweep(ctx); len(gone) != 0 {
		t.Errorf("second sweep = %v, want nothing", ids(gone))
	}
	if got := fmt.Sprint(list(t, r, registry.Query{})); got != "[alive]" {
		t.Errorf("List = %s, want [alive]", got)
	}
}

func testInvalid(t *testing.T, r registry.Registry) {
	if err := r.Add(ctx, registry.Conn{Instance: "i"}, long); !errors.Is(err, registry.ErrInvalid) {
		t.Errorf("Add without ID: %v, want ErrInvalid", err)
	}
	if err := r.Add(ctx, registry.Conn{ID: "x"}, long); !errors.Is(err, registry.ErrInvalid) {
		t.Errorf("Add without Instance: %v, want ErrInvalid", err)
	}
}

// eventually polls f every 20ms until it returns nil, failing t after timeout. (pkg/testutil
// is for _test.go files only, and this suite is imported by them.)
func eventually(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		select {
		case <-deadline:
			t.Fatalf("not within %s: %v", timeout, err)
		case <-tick.C:
		}
	}
}
