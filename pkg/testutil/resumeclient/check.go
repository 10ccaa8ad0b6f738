package resumeclient

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Check compares what the client received with want (the acknowledged events it should get,
// in the stream's order): nothing lost, nothing twice, nothing that was never acknowledged,
// in order. The error names the client and the sequences at fault.
func Check(c *Client, want []Acked) error {
	got := c.Received()
	wantKey := make(map[uint64]string, len(want))
	for _, a := range want {
		wantKey[a.Seq] = a.Key
	}
	var problems []string
	seen := make(map[uint64]bool, len(got))
	var last uint64
	for j, r := range got {
		switch k, ok := wantKey[r.Seq]; {
		case seen[r.Seq]:
			problems = append(problems, fmt.Sprintf("seq %d received twice (again as event %d)", r.Seq, j))
		case !ok:
			problems = append(problems, fmt.Sprintf("seq %d (key %q) received but never acknowledged", r.Seq, r.Key))
		case k != r.Key:
			problems = append(problems, fmt.Sprintf("seq %d has key %q, the stream acknowledged %q", r.Seq, r.Key, k))
		case r.Seq < last:
			problems = append(problems, fmt.Sprintf("seq %d after seq %d: out of order", r.Seq, last))
		}
		seen[r.Seq] = true
		last = max(last, r.Seq)
	}
	// Lost events as runs of consecutive acknowledged ones: "1753-1895" says a gap, a list of
	// single sequences says scattered drops.
	var missing []string
	lost := 0
	for i := 0; i < len(want); i++ {
		if seen[want[i].Seq] {
			continue
		}
		j := i
		for j+1 < len(want) && !seen[want[j+1].Seq] {
			j++
		}
		lost += j - i + 1
		if j == i {
			missing = append(missing, fmt.Sprint(want[i].Seq))
		} else {
			missing = append(missing, fmt.Sprintf("%d-%d", want[i].Seq, want[j].Seq))
		}
		i = j
	}
	if lost > 0 {
		problems = append(problems, fmt.Sprintf("%d lost: seq %s", lost, abbrev(missing)))
	}
	if c.TooOld() {
		problems = append(problems, "told its position is too old")
	}
	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("%s: %s", c, abbrev(problems))
}

// CheckAll checks every client against want and joins the failures.
func CheckAll(clients []*Client, want []Acked) error {
	return Expected{Events: want}.Check(clients)
}

// Complete reports the clients that do not yet have n events (how many, and the first with
// its sessions), for testutil.Eventually while deliveries finish.
func Complete(clients []*Client, n int) error {
	return complete(clients, func(*Client) int { return n })
}

func complete(clients []*Client, want func(*Client) int) error {
	var short []*Client
	for _, c := range clients {
		if len(c.Received()) < want(c) {
			short = append(short, c)
		}
	}
	if len(short) == 0 {
		return nil
	}
	c := short[0]
	var sessions []string
	for _, s := range c.Sessions() {
		sessions = append(sessions, fmt.Sprintf("edge-%d at %s after %q", s.Edge+1, s.Open.Format("15:04:05.000"), s.Why))
	}
	return fmt.Errorf("%d clients have fewer than they should; %s has %d of %d; its sessions: %s",
		len(short), c, len(c.Received()), want(c), abbrev(sessions))
}

// Expected is what every client of a mixed fleet must end with: the acknowledged events for
// the event dialects, and for each Viewer what the telemetry stream stored of its server.
type Expected struct {
	Events  []Acked
	Samples map[string][]Acked // by server (Telemetry.Stored)
}

func (e Expected) of(c *Client) []Acked {
	if v, ok := c.Kind.(Viewer); ok {
		return e.Samples[v.Server]
	}
	return e.Events
}

// Complete reports the clients that do not have everything they should yet.
func (e Expected) Complete(clients []*Client) error {
	return complete(clients, func(c *Client) int { return len(e.of(c)) })
}

// Check checks every client against what it should have and joins the failures.
func (e Expected) Check(clients []*Client) error {
	var errs []error
	for _, c := range clients {
		if err := Check(c, e.of(c)); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 10 {
		errs = append(errs[:10], fmt.Errorf("and %d more clients", len(errs)-10))
	}
	return errors.Join(errs...)
}

// Reconnect is one session a client lost after a given time, and the next one it opened.
type Reconnect struct {
	Client *Client
	Away   time.Duration // from the loss to the next session's hello
	Why    string        // how the lost session ended
}

// Reconnects lists every reconnect of clients whose lost session ended after since.
func Reconnects(clients []*Client, since time.Time) []Reconnect {
	var out []Reconnect
	for _, c := range clients {
		for _, s := range c.Sessions() {
			if !s.Lost.IsZero() && s.Lost.After(since) {
				out = append(out, Reconnect{Client: c, Away: s.Open.Sub(s.Lost), Why: strings.TrimSpace(s.Why)})
			}
		}
	}
	return out
}

// Summary is the count of rs, the p50 and largest time away, and how many sessions ended
// each way.
func Summary(rs []Reconnect) string {
	if len(rs) == 0 {
		return "no reconnects"
	}
	away := make([]time.Duration, 0, len(rs))
	why := map[string]int{}
	for _, r := range rs {
		away = append(away, r.Away)
		why[r.Why]++
	}
	slices.Sort(away)
	var ends []string
	for w, n := range why {
		ends = append(ends, fmt.Sprintf("%d %q", n, w))
	}
	slices.Sort(ends)
	return fmt.Sprintf("%d reconnects, away p50 %s max %s, sessions ended: %s", len(rs),
		away[(len(away)-1)/2].Round(time.Millisecond), away[len(away)-1].Round(time.Millisecond), strings.Join(ends, ", "))
}

// abbrev joins at most ten items.
func abbrev(items []string) string {
	if len(items) > 10 {
		return strings.Join(items[:10], ", ") + fmt.Sprintf(" and %d more", len(items)-10)
	}
	return strings.Join(items, ", ")
}
