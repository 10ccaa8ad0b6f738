package wsconn

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"testing"
)

// genFrame is one frame of a generated client stream.
type genFrame struct {
	raw     []byte
	op      byte
	owned   bool   // a ping or pong the gate must handle itself
	payload []byte // unmasked
}

// genStream turns fuzz bytes into frames, two bytes a frame: the first picks opcode, FIN and
// masking, the second the length and its encoding (including the non-minimal ones).
func genStream(spec []byte) []genFrame {
	ops := []byte{0x1, 0x2, 0x0, opPing, opPong, 0x8, 0x3}
	var frames []genFrame
	for i := 0; i+1 < len(spec) && len(frames) < 64; i += 2 {
		a, b := spec[i], spec[i+1]
		op, fin, masked := ops[int(a)%len(ops)], a&0x10 == 0, a&0x20 == 0
		n := int(b % 130)
		payload := make([]byte, n)
		for j := range payload {
			payload[j] = byte(j*7 + i)
		}
		h := []byte{op}
		if fin {
			h[0] |= 0x80
		}
		var m byte
		if masked {
			m = 0x80
		}
		switch {
		case b >= 250: // 16-bit length, whatever the size
			h = append(h, m|126)
			h = binary.BigEndian.AppendUint16(h, uint16(n))
		case b >= 240: // 64-bit length
			h = append(h, m|127)
			h = binary.BigEndian.AppendUint64(h, uint64(n))
		default:
			h = append(h, m|byte(min(n, 125)))
			payload = payload[:min(n, 125)]
		}
		raw := h
		key := []byte{byte(a), 0x5c, byte(b), 0xe1}
		if masked {
			raw = append(raw, key...)
		}
		for j, c := range payload {
			if masked {
				c ^= key[j&3]
			}
			raw = append(raw, c)
		}
		owned := (op == opPing || op == opPong) && fin && masked && raw[1]&0x7f <= 125
		frames = append(frames, genFrame{raw: raw, op: op, owned: owned, payload: payload})
	}
	return frames
}

// arrivalConn is a byte stream that arrives in chunks: readNow sees only what has arrived,
// Read waits (makes the next chunk arrive) as a socket read would.
type arrivalConn struct {
	net.Conn
	data          []byte
	arrived, read int
	cuts          []byte
	k             int
}

func (a *arrivalConn) arrive() {
	step := 1
	if len(a.cuts) > 0 {
		step += int(a.cuts[a.k%len(a.cuts)]) % 40
		a.k++
	}
	a.arrived = min(a.arrived+step, len(a.data))
}

func (a *arrivalConn) readNow(p []byte) (int, error) {
	n := copy(p, a.data[a.read:a.arrived])
	a.read += n
	return n, nil
}

func (a *arrivalConn) Read(p []byte) (int, error) {
	if a.read == len(a.data) {
		return 0, io.EOF
	}
	if a.read == a.arrived {
		a.arrive()
	}
	return a.readNow(p)
}

// The gate hands gorilla each frame exactly, never a byte of the next, handles the pings and
// pongs it owns with the right payload, and loses nothing, however the stream is cut.
func FuzzFrameGate(f *testing.F) {
	f.Add([]byte{0, 5, 3, 0, 4, 2, 1, 251, 0, 245, 0x10, 3, 2, 4}, []byte{0, 1, 2, 39})
	f.Add([]byte{3, 125, 3, 126, 4, 0, 0x23, 4}, []byte{})
	f.Add([]byte{0, 80, 1, 84, 2, 251, 0, 120}, []byte{39, 39, 39, 39})
	f.Fuzz(func(t *testing.T, spec, cuts []byte) {
		frames := genStream(spec)
		var data []byte
		for _, fr := range frames {
			data = append(data, fr.raw...)
		}
		src := &arrivalConn{data: data, cuts: cuts}
		g := &frameGate{Conn: src}
		next := 0
		control := func(op byte, payload []byte) {
			if next >= len(frames) || !frames[next].owned {
				t.Fatalf("frame %d handled as a control frame", next)
			}
			if op != frames[next].op || !bytes.Equal(payload, frames[next].payload) {
				t.Fatalf("frame %d: control %x %q, want %x %q", next, op, payload, frames[next].op, frames[next].payload)
			}
			next++
		}
		buf := make([]byte, 64)
		for step := 0; next < len(frames); step++ {
			if step > 100*len(data)+100 {
				t.Fatalf("no progress at frame %d of %d", next, len(frames))
			}
			ready, err := g.poll(src.readNow, control)
			if err != nil {
				t.Fatal(err)
			}
			if !ready {
				src.arrive()
				continue
			}
			if next >= len(frames) {
				t.Fatal("poll reported a frame past the end")
			}
			if frames[next].owned {
				t.Fatalf("frame %d, an owned control frame, left to gorilla", next)
			}
			var got []byte
			for g.inFrame {
				n, err := g.Read(buf[:1+len(got)%len(buf)])
				if err != nil {
					t.Fatalf("frame %d: %v", next, err)
				}
				got = append(got, buf[:n]...)
				if len(got) > len(frames[next].raw) {
					t.Fatalf("frame %d: gorilla got %d bytes of a %d-byte frame", next, len(got), len(frames[next].raw))
				}
			}
			if !bytes.Equal(got, frames[next].raw) {
				t.Fatalf("frame %d: gorilla got %x, want %x", next, got, frames[next].raw)
			}
			next++
		}
		if src.read != len(data) {
			t.Fatalf("read %d of %d bytes", src.read, len(data))
		}
	})
}
