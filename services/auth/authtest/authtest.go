// Package authtest holds the contract suite every auth.Store passes.
package authtest

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

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
}

func equalUser(a, b auth.User) bool {
	return a.Name == b.Name && bytes.Equal(a.PasswordHash, b.PasswordHash) && slices.Equal(a.Permissions, b.Permissions)
}
