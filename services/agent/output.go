package agent

import (
	"sync"
	"unicode/utf8"
)

// cappedBuffer is an io.Writer that keeps the first limit bytes written to
// it and discards the rest, remembering that it did. A command's stdout and
// stderr share one cappedBuffer, so a chatty command costs the agent at most
// limit bytes, however much it prints.
type cappedBuffer struct {
	mu        sync.Mutex
	limit     int
	buf       []byte
	truncated bool
}

func newCappedBuffer(limit int) *cappedBuffer { return &cappedBuffer{limit: limit} }

// Write never fails: discarding output must not make the command fail on
// EPIPE, it only sets the truncated mark.
func (c *cappedBuffer) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	room := c.limit - len(c.buf)
	if len(p) > room {
		c.truncated = true
		c.buf = append(c.buf, p[:max(room, 0)]...)
	} else {
		c.buf = append(c.buf, p...)
	}
	return len(p), nil
}

// Result returns the kept output as a string and whether anything was cut.
// A multi-byte character split by the cut is dropped whole, so the cut
// never produces an invalid UTF-8 tail.
func (c *cappedBuffer) Result() (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.buf
	if c.truncated {
		b = trimPartialRune(b)
	}
	return string(b), c.truncated
}

// trimPartialRune removes an incomplete UTF-8 sequence from the end of b.
func trimPartialRune(b []byte) []byte {
	// A rune is at most utf8.UTFMax bytes, so only the last few can start it.
	for i := 1; i <= utf8.UTFMax && i <= len(b); i++ {
		if utf8.RuneStart(b[len(b)-i]) {
			if !utf8.FullRune(b[len(b)-i:]) {
				return b[:len(b)-i]
			}
			return b
		}
	}
	return b
}

// cutLine shortens s to at most limit bytes (at a character boundary) and
// reports whether it did.
func cutLine(s string, limit int) (string, bool) {
	if len(s) <= limit {
		return s, false
	}
	return string(trimPartialRune([]byte(s[:limit]))), true
}
