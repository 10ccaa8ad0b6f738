package resumeclient

import (
	"errors"
	"fmt"
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
	var missing []string
	for _, a := range want {
		if !seen[a.Seq] {
			missing = append(missing, fmt.Sprint(a.Seq))
		}
	}
	if len(missing) > 0 {
		problems = append(problems, fmt.Sprintf("%d lost: seq %s", len(missing), abbrev(missing)))
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
	var errs []error
	for _, c := range clients {
		if err := Check(c, want); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 10 {
		errs = append(errs[:10], fmt.Errorf("and %d more clients", len(errs)-10))
	}
	return errors.Join(errs...)
}

// Complete reports the first client that does not yet have n events, for
// testutil.Eventually while deliveries finish.
func Complete(clients []*Client, n int) error {
	for _, c := range clients {
		if got := len(c.Received()); got < n {
			return fmt.Errorf("%s has %d of %d events", c, got, n)
		}
	}
	return nil
}

// Away is how long each client that lost a session after since was without one: from the
// loss to the next session's hello, one figure per reconnect.
func Away(clients []*Client, since time.Time) []time.Duration {
	var out []time.Duration
	for _, c := range clients {
		for _, s := range c.Sessions() {
			if !s.Lost.IsZero() && s.Lost.After(since) {
				out = append(out, s.Open.Sub(s.Lost))
			}
		}
	}
	return out
}

// abbrev joins at most ten items.
func abbrev(items []string) string {
	if len(items) > 10 {
		return strings.Join(items[:10], ", ") + fmt.Sprintf(" and %d more", len(items)-10)
	}
	return strings.Join(items, ", ")
}
