package redisx_test

import (
	"testing"

	"github.com/heraldhq/herald/pkg/redisx"
	"github.com/heraldhq/herald/pkg/testutil/redistest"
)

func TestOpen(t *testing.T) {
	srv := redistest.Start(t)
	rdb, err := redisx.Open(t.Context(), srv.URL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	if err := rdb.Set(t.Context(), "k", "v", 0).Err(); err != nil {
		t.Fatalf("set through the opened client: %v", err)
	}
	if _, err := redisx.Open(t.Context(), "http://nope", nil); err == nil {
		t.Fatal("a malformed URL was accepted")
	}
	srv.Stop()
	// Redis down at start is not fatal.
	rdb2, err := redisx.Open(t.Context(), srv.URL(), nil)
	if err != nil {
		t.Fatalf("Open with Redis down: %v", err)
	}
	rdb2.Close()
}
