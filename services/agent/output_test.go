package agent

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestCappedBufferKeepsPrefixAndMarksTruncation(t *testing.T) {
	c := newCappedBuffer(10)
	for _, s := range []string{"hello ", "world", "!!!"} {
		if n, err := c.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", s, n, err)
		}
	}
	out, cut := c.Result()
	if out != "hello worl" || !cut {
		t.Fatalf("Result() = %q, %v", out, cut)
	}

	c = newCappedBuffer(10)
	c.Write([]byte("exactly10!"))
	if out, cut := c.Result(); out != "exactly10!" || cut {
		t.Fatalf("at the limit: %q, %v", out, cut)
	}
}

func TestCappedBufferNeverSplitsACharacter(t *testing.T) {
	c := newCappedBuffer(5)
	c.Write([]byte("abcd€")) // € is 3 bytes: only its first fits
	out, cut := c.Result()
	if out != "abcd" || !cut || !utf8.ValidString(out) {
		t.Fatalf("Result() = %q, %v", out, cut)
	}
}

func TestCutLine(t *testing.T) {
	if s, cut := cutLine("short", 8); s != "short" || cut {
		t.Fatalf("short line changed: %q %v", s, cut)
	}
	long := strings.Repeat("é", 10) // 20 bytes
	s, cut := cutLine(long, 7)
	if !cut || s != "ééé" {
		t.Fatalf("cutLine = %q %v", s, cut)
	}
}

func TestGuessLevel(t *testing.T) {
	cases := map[string]string{
		"2024-01-01T00:00:00Z ERROR disk full":            "error",
		"level=warn msg=slow":                             "warning",
		"[DEBUG] cache miss":                              "debug",
		"panic: runtime error":                            "critical",
		"Jan  1 00:00:00 host sshd[1]: Accepted password": "info",
		"INFO retrying after error":                       "info",
		"":                                                "info",
		"kernel: CRIT temperature":                        "critical",
		"errors are not words we know":                    "info",
		strings.Repeat("x ", 200) + "ERROR":               "info", // beyond the scanned prefix
	}
	for line, want := range cases {
		if got := guessLevel(line); got != want {
			t.Errorf("guessLevel(%.40q) = %q, want %q", line, got, want)
		}
	}
}
