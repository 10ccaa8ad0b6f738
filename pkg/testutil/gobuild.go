package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

var builds struct {
	mu   sync.Mutex
	bins map[string]*built
}

type built struct {
	once sync.Once
	path string
	err  error
}

// GoBuild builds the main package pkg (a path relative to dir, e.g. "./cmd/herald-agent")
// once per test binary and returns the executable's path: tests that start real binaries
// (the agent) share one build.
func GoBuild(tb testing.TB, dir, pkg string) string {
	tb.Helper()
	abs, err := filepath.Abs(filepath.Join(dir, pkg))
	if err != nil {
		tb.Fatal(err)
	}
	builds.mu.Lock()
	if builds.bins == nil {
		builds.bins = map[string]*built{}
	}
	b := builds.bins[abs]
	if b == nil {
		b = &built{}
		builds.bins[abs] = b
	}
	builds.mu.Unlock()
	b.once.Do(func() {
		out, err := os.MkdirTemp("", "herald-test-bin")
		if err != nil {
			b.err = err
			return
		}
		b.path = filepath.Join(out, filepath.Base(abs))
		cmd := exec.Command("go", "build", "-o", b.path, pkg)
		cmd.Dir = dir
		if msg, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build %s: %w\n%s", pkg, err, msg)
		}
	})
	if b.err != nil {
		tb.Fatal(b.err)
	}
	return b.path
}
