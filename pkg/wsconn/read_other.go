//go:build !linux

package wsconn

import "net"

// Without epoll every connection reads on its own goroutine (readLoop).

func newReadGate(c net.Conn) net.Conn { return c }

type eventReader struct{}

func newEventReader(*Conn, *frameGate) *eventReader { return nil }

func (*eventReader) abort(error) {}

func (c *Conn) startEvents(func(msg []byte), func(err error)) bool { return false }
