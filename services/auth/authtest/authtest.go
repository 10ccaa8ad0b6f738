// Package authtest holds the contract suite every auth.Store passes.
package authtest

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/services/auth"
)

// RunStore runs the Store contract against stores made by newStore, which
// must return an empty store for each call.
func RunStore(t *testing.T, newStore func(t *testing.T) auth.Store) {
	t.Run("missing user", func(t *testing.T) {
		st := newStore(t)
		_, err := st.GetUser(t.Context(), "nobody")
		if !errors.Is(err, auth.ErrUserNotFound) {
			t.Fatalf("GetUser(nobody) error = %v, want ErrUserNotFound", err)
		}
	})
	t.Run("put get replace", func(t *testing.T) {
		st := newStore(t)
		u := auth.User{Name: "alice", PasswordHash: []byte("hash1"), Permissions: []string{"profiles.*.*"}}
		if err := st.PutUser(t.Context(), u); err != nil {
			t.Fatal(err)
		}
		got, err := st.GetUser(t.Context(), "alice")
		if err != nil {
			t.Fatal(err)
		}
		if !equalUser(got, u) {
			t.Fatalf("GetUser = %+v, want %+v", got, u)
		}
		u2 := auth.User{Name: "alice", PasswordHash: []byte("hash2"), Permissions: []string{"*.*.*", "machines.create.m1"}}
		if err := st.PutUser(t.Context(), u2); err != nil {
			t.Fatal(err)
		}
		if got, _ := st.GetUser(t.Context(), "alice"); !equalUser(got, u2) {
			t.Fatalf("after replace GetUser = %+v, want %+v", got, u2)
		}
	})
	t.Run("copies", func(t *testing.T) {
		st := newStore(t)
		u := auth.User{Name: "bob", PasswordHash: []byte("hash"), Permissions: []string{"a.b.c"}}
		if err := st.PutUser(t.Context(), u); err != nil {
			t.Fatal(err)
		}
		u.Permissions[0] = "*.*.*" // Changing the caller's slice must not change the store.
		got, _ := st.GetUser(t.Context(), "bob")
		got.PasswordHash[0] = 'X'
		again, _ := st.GetUser(t.Context(), "bob")
		if again.Permissions[0] != "a.b.c" || string(again.PasswordHash) != "hash" {
			t.Fatalf("store shares memory with callers: %+v", again)
		}
	})
	t.Run("empty name refused", func(t *testing.T) {
		if err := newStore(t).PutUser(t.Context(), auth.User{PasswordHash: []byte("h")}); err == nil {
			t.Fatal("PutUser accepted an empty name")
		}
	})
	t.Run("concurrent", func(t *testing.T) {
		st := newStore(t)
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		for i := range 8 {
			wg.Go(func() {
				name := fmt.Sprintf("u%d", i)
				if err := st.PutUser(t.Context(), auth.User{Name: name, PasswordHash: []byte(name)}); err != nil {
					errs <- err
					return
				}
				if got, err := st.GetUser(t.Context(), name); err != nil || string(got.PasswordHash) != name {
					errs <- fmt.Errorf("GetUser(%s) = %+v, %v", name, got, err)
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})
	runAPIKeys(t, newStore)
}

// runAPIKeys is the API-key half of the contract.
func runAPIKeys(t *testing.T, newStore func(t *testing.T) auth.Store) {
	base := time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)
	key := func(id, server string, at time.Duration) auth.APIKey {
		return auth.APIKey{
			ID: id, Hash: fmt.Sprintf("%064x", len(id)*1000+int(at)) + id, ServerID: server,
			Name: "key " + id, CreatedAt: base.Add(at),
		}
	}
	t.Run("api key missing", func(t *testing.T) {
		st := newStore(t)
		if _, err := st.APIKeyByHash(t.Context(), strings.Repeat("ab", 32)); !errors.Is(err, auth.ErrAPIKeyNotFound) {
			t.Fatalf("APIKeyByHash(unknown) error = %v, want ErrAPIKeyNotFound", err)
		}
		if err := st.RevokeAPIKey(t.Context(), "nope"); !errors.Is(err, auth.ErrAPIKeyNotFound) {
			t.Fatalf("RevokeAPIKey(unknown) error = %v, want ErrAPIKeyNotFound", err)
		}
		keys, err := st.ListAPIKeys(t.Context(), "")
		if err != nil || len(keys) != 0 {
			t.Fatalf("ListAPIKeys on empty store = %v, %v", keys, err)
		}
	})
	t.Run("api key put get", func(t *testing.T) {
		st := newStore(t)
		k := key("k1", "web-1", 0)
		if err := st.PutAPIKey(t.Context(), k); err != nil {
			t.Fatal(err)
		}
		got, err := st.APIKeyByHash(t.Context(), k.Hash)
		if err != nil {
			t.Fatal(err)
		}
		if !equalKey(got, k) {
			t.Fatalf("APIKeyByHash = %+v, want %+v", got, k)
		}
	})
	t.Run("api key duplicates refused", func(t *testing.T) {
		st := newStore(t)
		k := key("k1", "web-1", 0)
		if err := st.PutAPIKey(t.Context(), k); err != nil {
			t.Fatal(err)
		}
		sameID := key("k1", "web-2", time.Second)
		if err := st.PutAPIKey(t.Context(), sameID); !errors.Is(err, auth.ErrAPIKeyExists) {
			t.Fatalf("PutAPIKey(same id) error = %v, want ErrAPIKeyExists", err)
		}
		sameHash := key("k2", "web-2", time.Second)
		sameHash.Hash = k.Hash
		if err := st.PutAPIKey(t.Context(), sameHash); !errors.Is(err, auth.ErrAPIKeyExists) {
			t.Fatalf("PutAPIKey(same hash) error = %v, want ErrAPIKeyExists", err)
		}
		// Nothing of the refused keys was written.
		if _, err := st.APIKeyByHash(t.Context(), sameID.Hash); !errors.Is(err, auth.ErrAPIKeyNotFound) {
			t.Fatalf("refused key readable by hash: %v", err)
		}
		if err := st.RevokeAPIKey(t.Context(), "k2"); !errors.Is(err, auth.ErrAPIKeyNotFound) {
			t.Fatalf("refused key revocable by id: %v", err)
		}
		if got, _ := st.APIKeyByHash(t.Context(), k.Hash); !equalKey(got, k) {
			t.Fatalf("original changed to %+v", got)
		}
		if keys, _ := st.ListAPIKeys(t.Context(), ""); len(keys) != 1 {
			t.Fatalf("ListAPIKeys = %+v, want only the original", keys)
		}
	})
	t.Run("api key invalid refused", func(t *testing.T) {
		st := newStore(t)
		for _, k := range []auth.APIKey{
			{Hash: "h", ServerID: "s"}, {ID: "i", ServerID: "s"}, {ID: "i", Hash: "h"},
		} {
			if err := st.PutAPIKey(t.Context(), k); err == nil {
				t.Errorf("PutAPIKey(%+v) accepted", k)
			}
		}
	})
	t.Run("api key list", func(t *testing.T) {
		st := newStore(t)
		// Written out of order; b and a share a creation time, so the id
		// breaks the tie.
		in := []auth.APIKey{key("c", "web-1", 2*time.Second), key("b", "web-2", time.Second),
			key("a", "web-1", time.Second), key("d", "web-2", 0)}
		for _, k := range in {
			if err := st.PutAPIKey(t.Context(), k); err != nil {
				t.Fatal(err)
			}
		}
		if err := st.RevokeAPIKey(t.Context(), "c"); err != nil {
			t.Fatal(err)
		}
		all, err := st.ListAPIKeys(t.Context(), "")
		if err != nil {
			t.Fatal(err)
		}
		if ids := keyIDs(all); !slices.Equal(ids, []string{"d", "a", "b", "c"}) {
			t.Fatalf("ListAPIKeys(all) ids = %v, want [d a b c]", ids)
		}
		web1, err := st.ListAPIKeys(t.Context(), "web-1")
		if err != nil {
			t.Fatal(err)
		}
		revoked := in[0]
		revoked.Revoked = true
		if len(web1) != 2 || !equalKey(web1[0], in[2]) || !equalKey(web1[1], revoked) {
			t.Fatalf("ListAPIKeys(web-1) = %+v", web1)
		}
		if none, err := st.ListAPIKeys(t.Context(), "web-3"); err != nil || len(none) != 0 {
			t.Fatalf("ListAPIKeys(web-3) = %+v, %v", none, err)
		}
	})
	t.Run("api key revoke", func(t *testing.T) {
		st := newStore(t)
		k1, k2 := key("k1", "web-1", 0), key("k2", "web-1", time.Second)
		for _, k := range []auth.APIKey{k1, k2} {
			if err := st.PutAPIKey(t.Context(), k); err != nil {
				t.Fatal(err)
			}
		}
		for range 2 { // Revoking twice is fine.
			if err := st.RevokeAPIKey(t.Context(), "k1"); err != nil {
				t.Fatal(err)
			}
		}
		got, err := st.APIKeyByHash(t.Context(), k1.Hash)
		if err != nil {
			t.Fatal(err)
		}
		k1.Revoked = true
		if !equalKey(got, k1) {
			t.Fatalf("after revoke APIKeyByHash = %+v, want %+v", got, k1)
		}
		if got, _ := st.APIKeyByHash(t.Context(), k2.Hash); got.Revoked {
			t.Fatal("revoking k1 revoked k2")
		}
	})
	t.Run("api key concurrent", func(t *testing.T) {
		st := newStore(t)
		const n = 8
		var wg sync.WaitGroup
		errs := make(chan error, 2*n)
		for i := range n {
			wg.Go(func() {
				k := key(fmt.Sprintf("k%d", i), "web-1", time.Duration(i))
				if err := st.PutAPIKey(t.Context(), k); err != nil {
					errs <- err
					return
				}
				if err := st.RevokeAPIKey(t.Context(), k.ID); err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		keys, err := st.ListAPIKeys(t.Context(), "web-1")
		if err != nil || len(keys) != n {
			t.Fatalf("ListAPIKeys = %d keys, %v; want %d", len(keys), err, n)
		}
		for _, k := range keys {
			if !k.Revoked {
				t.Errorf("key %s not revoked", k.ID)
			}
		}
	})
}

func equalKey(a, b auth.APIKey) bool {
	return a.ID == b.ID && a.Hash == b.Hash && a.ServerID == b.ServerID && a.Name == b.Name &&
		a.CreatedAt.Equal(b.CreatedAt) && a.Revoked == b.Revoked
}

func keyIDs(keys []auth.APIKey) []string {
	ids := make([]string, len(keys))
	for i, k := range keys {
		ids[i] = k.ID
	}
	return ids
}

func equalUser(a, b auth.User) bool {
	return a.Name == b.Name && bytes.Equal(a.PasswordHash, b.PasswordHash) && slices.Equal(a.Permissions, b.Permissions)
}
