package drp

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/heraldhq/herald/services/edge/socket"
)

// Resume, Herald's addition to DRP's socket. A client that kept the Position of the last event
// it got reconnects, to any edge, with it:
//
//	GET /api/v3/ws?token=...&since=<epoch>:<seq>
//	register machines.*.*        (as many as it had, sent together)
//
// Live events are held from the connection on; the registrations sent within resumeDelay of
// each other are then caught up together: every stored event after the position that they
// select, in stream order, then the held live events, with none twice and none missing. The
// client is told how it went, after the replayed events and before the live ones:
//
//	{"Type":"websocket","Action":"resume","Key":<position>,"Object":{"Replayed":N,"Position":<last replayed>}}
//	{"Type":"websocket","Action":"error","Key":<position>,"Object":{"Error":"too old ...","Command":"resume","Code":410}}
//
// 410 (Gone, as Kubernetes watches say it) means the position is before the oldest stored
// event or from a stream since created anew: the client must list afresh; live events follow.
// A `resume <position>` command does the same at once for the registrations made so far (or,
// sent before any, sets the position as ?since= does). Registrations made after the catch-up
// began are live only, as in DRP.
//
// A client that reconnects without a position gets live events only, as DRP's do.

// resumeDelay is how long after a registration the catch-up waits for more registrations.
const resumeDelay = 250 * time.Millisecond

// sinceOf reads the resume position from ?since= (also Since).
func sinceOf(r *http.Request) string {
	q := r.URL.Query()
	if v := q.Get("since"); v != "" {
		return v
	}
	return q.Get("Since")
}

// registered starts, or moves back, the catch-up's timer after a registration.
func (c *session) registered(s *socket.Socket) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.since == "" || c.resumed {
		return
	}
	if c.timer != nil {
		c.timer.Stop()
	}
	c.timer = time.AfterFunc(resumeDelay, func() { c.catchUp(s, "") })
}

// resume runs the resume command.
func (c *session) resume(s *socket.Socket, pos string) {
	c.mu.Lock()
	switch {
	case c.resumed:
		c.mu.Unlock()
		fail(s, "resume", pos, http.StatusConflict, "already resumed: a connection resumes once")
		return
	case pos == "" && c.since == "":
		c.mu.Unlock()
		fail(s, "resume", pos, http.StatusBadRequest, "resume needs a position: resume <epoch>:<seq>")
		return
	case len(c.regs) == 0 && c.since == "":
		// Before any registration: like ?since=, the registrations to come are caught up.
		c.since = pos
		c.mu.Unlock()
		s.Hold()
		return
	case c.since == "":
		c.mu.Unlock()
		fail(s, "resume", pos, http.StatusConflict,
			"resume must come before the first registration (or connect with ?since=): events may already have been sent")
		return
	}
	c.mu.Unlock()
	c.catchUp(s, pos)
}

// catchUp replays, once, for the registrations made so far. pos overrides the ?since position.
func (c *session) catchUp(s *socket.Socket, pos string) {
	c.mu.Lock()
	if c.resumed {
		c.mu.Unlock()
		return
	}
	c.resumed = true
	if c.timer != nil {
		c.timer.Stop()
	}
	if pos == "" {
		pos = c.since
	}
	var subjects []string
	for _, r := range c.regs {
		subjects = append(subjects, r.subjects...)
	}
	c.mu.Unlock()
	slices.Sort(subjects)
	subjects = slices.Compact(subjects)
	err := s.Resume(Encoder{}, subjects, pos, func(r socket.Resumed) {
		if r.TooOld {
			fail(s, "resume", pos, http.StatusGone,
				fmt.Sprintf("position %s is too old: it is before the oldest stored event or from another stream; list afresh", pos))
			return
		}
		obj := fmt.Appendf(nil, `{"Replayed":%d,"Position":%q}`, r.Replayed, r.To)
		send(s, Frame{Time: s.Now(), Type: "websocket", Action: "resume", Key: pos, Object: obj})
	})
	if errors.Is(err, socket.ErrBadPosition) {
		fail(s, "resume", pos, http.StatusBadRequest, err.Error())
		s.Release()
	}
}
