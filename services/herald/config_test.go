package herald_test

import (
	"flag"
	"path/filepath"
	"strings"
	"testing"

	"github.com/heraldhq/herald/pkg/config"
	"github.com/heraldhq/herald/services/herald"
)

// TestPrintConfigShowsValuesInForce: -print-config shows each edge default as the value in
// force (not a 0 meaning "the default"), and the JetStream store is an absolute path.
func TestPrintConfigShowsValuesInForce(t *testing.T) {
	var cfg herald.Config
	fs := flag.NewFlagSet("herald", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	var out strings.Builder
	config.Print(&out, fs)
	seen := 0
	for line := range strings.SplitSeq(out.String(), "\n") {
		name, value, _ := strings.Cut(line, "=")
		if strings.HasPrefix(name, "edge.") && name != "edge.allowed-origins" {
			seen++
			if value == "0" || value == "0s" || value == "" {
				t.Errorf("%s", line)
			}
		}
		if name == "nats.store-dir" && !filepath.IsAbs(value) {
			t.Errorf("%s: not an absolute path", line)
		}
	}
	if seen < 10 {
		t.Fatalf("only %d edge settings printed:\n%s", seen, out.String())
	}
}
