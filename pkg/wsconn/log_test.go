package wsconn

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/heraldhq/herald/pkg/testutil"
)

// The principal set on a connection is on every line it logs, as With would have put it.
func TestPrincipalOnLogLines(t *testing.T) {
	var out testutil.Buffer
	c := &Conn{log: slog.New(slog.NewTextHandler(&out, nil)).With("endpoint", "drp")}
	c.SetPrincipal("user:alice")
	c.log.Warn("closing slow consumer", "backlog_messages", 3)
	c.log.WithGroup("g").Info("grouped", "k", "v")
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("log lines: %q", lines)
	}
	for _, want := range []string{"endpoint=drp", "backlog_messages=3", "principal=user:alice"} {
		if !strings.Contains(lines[0], want) {
			t.Fatalf("line %q lacks %s", lines[0], want)
		}
	}
	if !strings.Contains(lines[1], "principal=user:alice g.k=v") {
		t.Fatalf("grouped line %q", lines[1])
	}
}
