package testutil

import (
	"bytes"
	"sync"
)

// maxBuffer bounds a Buffer: a chatty process cannot fill memory during a long test.
const maxBuffer = 8 << 20

// Buffer collects output written from one goroutine (a process's, a logger's) while the
// test reads it from another. It keeps the first 8 MiB and drops the rest.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write implements io.Writer; it never fails.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.b.Len() < maxBuffer {
		b.b.Write(p[:min(len(p), maxBuffer-b.b.Len())])
	}
	return len(p), nil
}

// String is what was written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
