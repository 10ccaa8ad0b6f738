package agent

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/pkg/agentwire"
)

// startTailer opens path at its end, as the agent does, then follows it.
func startTailer(t *testing.T, path string) <-chan agentwire.Log {
	t.Helper()
	out := make(chan agentwire.Log, 16)
	tl := &tailer{path: path, poll: 5 * time.Millisecond, out: out, log: slog.New(slog.DiscardHandler), now: time.Now}
	tl.start()
	done := make(chan struct{})
	ctx := t.Context()
	go func() { defer close(done); tl.follow(ctx) }()
	t.Cleanup(func() { <-done })
	return out
}

func nextLine(t *testing.T, out <-chan agentwire.Log) agentwire.LogEntry {
	t.Helper()
	select {
	case l := <-out:
		return l.Data
	case <-time.After(5 * time.Second):
		t.Fatal("no log line within 5s")
		return agentwire.LogEntry{}
	}
}

func appendTo(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

func TestTailerStartsAtEndAndFollows(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.log")
	appendTo(t, path, "old line before the agent\n")
	out := startTailer(t, path)
	appendTo(t, path, "ERROR first new\r\npartial")
	got := nextLine(t, out)
	if got.Message != "ERROR first new" || got.Level != "error" || got.Source != path {
		t.Fatalf("first line %+v", got)
	}
	if _, err := time.Parse(time.RFC3339Nano, got.Timestamp); err != nil || !strings.HasSuffix(got.Timestamp, "Z") {
		t.Fatalf("timestamp %q: %v", got.Timestamp, err)
	}
	appendTo(t, path, " line completed\n\n")
	if got := nextLine(t, out); got.Message != "partial line completed" || got.Level != "info" {
		t.Fatalf("joined line %+v", got)
	}
}

func TestTailerTruncationAndRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	appendTo(t, path, "")
	out := startTailer(t, path)
	appendTo(t, path, "a fairly long line number one\n")
	if got := nextLine(t, out); got.Message != "a fairly long line number one" {
		t.Fatalf("before truncation: %+v", got)
	}
	// Truncated in place, then shorter content than was read.
	if err := os.WriteFile(path, []byte("after truncate\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := nextLine(t, out); got.Message != "after truncate" {
		t.Fatalf("after truncation: %+v", got)
	}
	// Rotated: renamed away, the old writer finishes a line, a new file appears.
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	appendTo(t, path+".1", "last words of the old file\nunterminated")
	appendTo(t, path, "first line of the new file\n")
	for _, want := range []string{"last words of the old file", "unterminated", "first line of the new file"} {
		if got := nextLine(t, out); got.Message != want {
			t.Fatalf("around rotation: got %q, want %q", got.Message, want)
		}
	}
}

func TestTailerFileCreatedLaterIsReadFromStart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "later.log")
	out := startTailer(t, path)
	appendTo(t, path, "WARN born after the agent\n")
	if got := nextLine(t, out); got.Message != "WARN born after the agent" || got.Level != "warning" {
		t.Fatalf("%+v", got)
	}
}

func TestTailerCutsLongLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "long.log")
	appendTo(t, path, "")
	out := startTailer(t, path)
	appendTo(t, path, strings.Repeat("x", 3*maxLogLine)+"\nshort\n")
	if got := nextLine(t, out); len(got.Message) != maxLogLine || strings.Trim(got.Message, "x") != "" {
		t.Fatalf("long line: %d bytes", len(got.Message))
	}
	if got := nextLine(t, out); got.Message != "short" {
		t.Fatalf("after the long line: %q (the rest of the long line leaked?)", got.Message)
	}
}
