package wsconn

import (
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"syscall"
)

// frameGate is the socket as gorilla's reader sees it when reads are event-driven. It parses
// each client frame's header as it passes and never hands gorilla a byte past the end of the
// current frame, so gorilla's read buffer is empty at every frame boundary: whatever the
// client sent next is still in the kernel, where epoll sees it. Client frames are few and
// small, so the extra small reads this costs do not matter.
//
// Between messages the read goroutine calls poll, which reads only what has arrived, handles
// pings and pongs itself and stops at the header of any other frame for gorilla to read. gorilla
// must not see a ping or pong there: having handled one it reads on for the next frame, and
// would park its goroutine until the client sends one.
//
// With pass set (reads on a goroutine of their own) the gate is a plain net.Conn.
type frameGate struct {
	net.Conn
	pass bool

	hdr     [maxFrameHeader]byte // the current frame's header, as far as it has arrived
	nhdr    uint8                // header bytes read
	off     uint8                // header bytes handed to gorilla
	inFrame bool                 // the header is complete; remain counts its payload
	remain  int64                // payload bytes of the current frame not yet handed on
	ctl     *[maxControlPayload]byte
	nctl    uint8 // control payload bytes read into ctl
}

const (
	maxFrameHeader    = 14  // RFC 6455 §5.2: 2 bytes, 8 of extended length, 4 of mask key
	maxControlPayload = 125 // RFC 6455 §5.5
	// maxControlPerPoll bounds how many pings and pongs one poll handles before the read
	// goroutine hands back (the socket, still readable, wakes it again at once).
	maxControlPerPoll = 16
)

const (
	opPing = 0x9
	opPong = 0xA
)

// ctlBufs lends a buffer to a ping's payload while it is read; an idle gate holds none.
var ctlBufs = sync.Pool{New: func() any { return new([maxControlPayload]byte) }}

// SyscallConn is the socket's own, so the writes that never wait (batchConn) find it through
// the gate.
func (g *frameGate) SyscallConn() (syscall.RawConn, error) {
	sc, ok := g.Conn.(syscall.Conn)
	if !ok {
		return nil, errors.New("wsconn: the socket has no raw connection")
	}
	return sc.SyscallConn()
}

// headerLen is the length of the frame header that starts with b, as far as b tells: 2 until
// the second byte has arrived.
func headerLen(b []byte) int {
	if len(b) < 2 {
		return 2
	}
	n := 2
	switch b[1] & 0x7f {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if b[1]&0x80 != 0 {
		n += 4
	}
	return n
}

// payloadLen is the payload length a complete header announces.
func payloadLen(h []byte) int64 {
	switch l := h[1] & 0x7f; l {
	case 126:
		return int64(binary.BigEndian.Uint16(h[2:4]))
	case 127:
		// gorilla refuses a length over its read limit before reading any of it; the cap only
		// keeps the count from overflowing.
		return int64(min(binary.BigEndian.Uint64(h[2:10]), 1<<62))
	default:
		return int64(l)
	}
}

// fill reads the rest of the current header with read. With wait false, read returning
// (0, nil) means nothing more has arrived; fill then reports false and keeps what it has.
func (g *frameGate) fill(read func([]byte) (int, error), wait bool) (bool, error) {
	for !g.inFrame {
		need := headerLen(g.hdr[:g.nhdr])
		if int(g.nhdr) == need {
			g.inFrame, g.off, g.remain = true, 0, payloadLen(g.hdr[:need])
			break
		}
		n, err := read(g.hdr[g.nhdr:need])
		g.nhdr += uint8(n)
		if err != nil {
			return false, err
		}
		if n == 0 && !wait {
			return false, nil
		}
	}
	return true, nil
}

// Read is gorilla's read: the current frame's header, then its payload, never more. At a
// boundary it waits for the next header (gorilla asks only while inside a message).
func (g *frameGate) Read(p []byte) (int, error) {
	if g.pass || len(p) == 0 {
		return g.Conn.Read(p)
	}
	if _, err := g.fill(g.Conn.Read, true); err != nil {
		return 0, err
	}
	if g.off < g.nhdr {
		n := copy(p, g.hdr[g.off:g.nhdr])
		g.off += uint8(n)
		g.endOfFrame()
		return n, nil
	}
	if int64(len(p)) > g.remain {
		p = p[:g.remain]
	}
	n, err := g.Conn.Read(p)
	g.remain -= int64(n)
	g.endOfFrame()
	return n, err
}

// endOfFrame resets the gate once every byte of the current frame has been handed on.
func (g *frameGate) endOfFrame() {
	if g.inFrame && g.off == g.nhdr && g.remain == 0 {
		g.inFrame, g.nhdr, g.off = false, 0, 0
	}
}

// ownControl reports whether the complete header is a ping or pong the gate handles itself:
// final, no reserved bits, masked as a client's must be, payload within the control limit.
// Anything else, valid or not, goes to gorilla, which checks it and closes with the right code.
func (g *frameGate) ownControl() bool {
	h := g.hdr
	return (h[0] == 0x80|opPing || h[0] == 0x80|opPong) && h[1]&0x80 != 0 && h[1]&0x7f <= maxControlPayload
}

// poll reads, with readNow (which returns (0, nil) when nothing more has arrived), what there
// is of the next frames. Pings and pongs it hands to control with their unmasked payload; at
// the header of any other frame it stops and reports true: gorilla reads that message next.
// It reports false when what has arrived ends inside a header or a control frame, or after
// maxControlPerPoll control frames; nothing is then left to gorilla's buffer.
func (g *frameGate) poll(readNow func([]byte) (int, error), control func(op byte, payload []byte)) (bool, error) {
	for range maxControlPerPoll {
		if ok, err := g.fill(readNow, false); !ok {
			return false, err
		}
		if g.off > 0 || !g.ownControl() {
			return true, nil
		}
		n := uint8(g.remain)
		var payload []byte
		if n > 0 {
			if g.ctl == nil {
				g.ctl = ctlBufs.Get().(*[maxControlPayload]byte)
			}
			for g.nctl < n {
				k, err := readNow(g.ctl[g.nctl:n])
				g.nctl += uint8(k)
				if err != nil || k == 0 {
					return false, err
				}
			}
			payload = g.ctl[:n]
			key := g.hdr[2:6]
			for i := range payload {
				payload[i] ^= key[i&3]
			}
		}
		control(g.hdr[0]&0x0f, payload)
		if g.ctl != nil {
			ctlBufs.Put(g.ctl)
			g.ctl = nil
		}
		g.inFrame, g.nhdr, g.off, g.remain, g.nctl = false, 0, 0, 0, 0
	}
	return false, nil
}
