package agent

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"time"

	"github.com/heraldhq/herald/pkg/agentwire"
)

// Tail limits.
const (
	// maxLogLine bounds one log message; a longer line is cut there and the
	// rest of it skipped.
	maxLogLine = 8 << 10
	// DefaultTailPoll is how often a tailed file is checked for new lines.
	DefaultTailPoll = 500 * time.Millisecond
	// tailChunk is the read size; a poll reads until the end of the file.
	tailChunk = 32 << 10
)

// tailer follows one log file like `tail -F`: it starts at the end, sends
// each appended line, starts again from the top when the file is truncated,
// and moves to the new file when the path is rotated (renamed or removed and
// recreated). It polls instead of using inotify: one stat per interval per
// file is cheap, and it works on every file system.
//
// Lines go to out; when out is full the tailer waits, and the lines stay in
// the file meanwhile, so a burst (or an offline agent) costs a bounded
// queue, not memory.
type tailer struct {
	path string
	poll time.Duration
	out  chan<- agentwire.Log
	log  *slog.Logger
	now  func() time.Time

	f       *os.File
	offset  int64
	partial []byte // bytes after the last newline
	skip    bool   // inside a line already cut at maxLogLine
	lastErr string // the last error logged, so a lasting one is logged once
}

// run follows the file until ctx is done.
func (t *tailer) run(ctx context.Context) {
	t.start()
	t.follow(ctx)
}

// start opens the file at its end. Only a file that exists when the agent
// starts is skipped to its end: one that appears later is new, and all of
// it is news.
func (t *tailer) start() {
	if err := t.open(true); err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.report(err)
	}
}

// follow polls the file until ctx is done.
func (t *tailer) follow(ctx context.Context) {
	defer t.closeFile()
	tick := time.NewTicker(t.poll)
	defer tick.Stop()
	for {
		err := t.step(ctx)
		if ctx.Err() != nil {
			return
		}
		t.report(err)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// open opens t.path, at its end if atEnd, else at its start.
func (t *tailer) open(atEnd bool) error {
	f, err := os.Open(t.path)
	if err != nil {
		return err
	}
	var off int64
	if atEnd {
		if off, err = f.Seek(0, io.SeekEnd); err != nil {
			f.Close()
			return err
		}
	}
	t.closeFile()
	t.f, t.offset, t.partial, t.skip = f, off, nil, false
	return nil
}

// report logs err when it differs from the last one logged; nil clears it.
func (t *tailer) report(err error) {
	switch {
	case err == nil:
		t.lastErr = ""
	case err.Error() != t.lastErr:
		t.lastErr = err.Error()
		t.log.Warn("cannot tail log file", "file", t.path, "err", err)
	}
}

func (t *tailer) closeFile() {
	if t.f != nil {
		t.f.Close()
		t.f = nil
	}
}

// step reads what was appended since the last step, then follows a
// rotation if the path now names another file.
func (t *tailer) step(ctx context.Context) error {
	if t.f != nil {
		if err := t.drain(ctx); err != nil {
			return err
		}
	}
	cur, err := os.Stat(t.path)
	if err != nil {
		// Removed or renamed away and not yet recreated: keep the old
		// file, a writer may still append to it.
		return nil
	}
	if t.f != nil {
		if old, err := t.f.Stat(); err == nil && os.SameFile(old, cur) {
			return nil
		}
		// Rotated: the old file was read to its end above; its unfinished
		// last line is a line too.
		if err := t.flushPartial(ctx); err != nil {
			return err
		}
	}
	if err := t.open(false); err != nil {
		return err
	}
	return t.drain(ctx)
}

// drain reads the open file to its end and sends the complete lines.
func (t *tailer) drain(ctx context.Context) error {
	info, err := t.f.Stat()
	if err != nil {
		return err
	}
	if info.Size() < t.offset {
		// Truncated in place (copytruncate, `> file`): start over.
		if _, err := t.f.Seek(0, io.SeekStart); err != nil {
			return err
		}
		t.offset, t.partial, t.skip = 0, nil, false
	}
	buf := make([]byte, tailChunk)
	for {
		n, err := t.f.Read(buf)
		if n > 0 {
			t.offset += int64(n)
			if err := t.consume(ctx, buf[:n]); err != nil {
				return err
			}
		}
		if errors.Is(err, io.EOF) || (err == nil && n == 0) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// consume splits b into lines, joining the partial line of the last read.
func (t *tailer) consume(ctx context.Context, b []byte) error {
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			if !t.skip {
				t.partial = append(t.partial, b...)
				if len(t.partial) > maxLogLine {
					// A line longer than the limit: send its start now and
					// skip the rest, so memory stays bounded.
					if err := t.emit(ctx, t.partial); err != nil {
						return err
					}
					t.partial, t.skip = nil, true
				}
			}
			return nil
		}
		if !t.skip {
			line := append(t.partial, b[:i]...)
			if err := t.emit(ctx, line); err != nil {
				return err
			}
		}
		t.partial, t.skip = nil, false
		b = b[i+1:]
	}
	return nil
}

func (t *tailer) flushPartial(ctx context.Context) error {
	p := t.partial
	t.partial, t.skip = nil, false
	if len(p) == 0 {
		return nil
	}
	return t.emit(ctx, p)
}

// emit sends one line as a log message, waiting while the queue is full.
func (t *tailer) emit(ctx context.Context, line []byte) error {
	line = bytes.TrimSuffix(line, []byte{'\r'})
	if len(bytes.TrimSpace(line)) == 0 {
		return nil
	}
	msg, _ := cutLine(string(line), maxLogLine)
	entry := agentwire.Log{Type: agentwire.TypeLog, Data: agentwire.LogEntry{
		Level:     guessLevel(msg),
		Message:   msg,
		Timestamp: t.now().UTC().Format(time.RFC3339Nano),
		Source:    t.path,
		File:      t.path,
	}}
	select {
	case t.out <- entry:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
