package subject_test

import (
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/subject"
)

func TestRepublishedRejectsOtherSubjects(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"", "herald.evt", "herald.evt.", "herald.evtx.a", "herald.rp.evt.a.b.c.d", "metrics.x"} {
		if got, err := subject.ToRepublished(s); err == nil {
			t.Errorf("ToRepublished(%q) = %q, want an error", s, got)
		}
	}
	for _, s := range []string{"", "herald.rp.evt", "herald.rp.evt.", "herald.evt.a.b.c.d"} {
		if got, err := subject.FromRepublished(s); err == nil {
			t.Errorf("FromRepublished(%q) = %q, want an error", s, got)
		}
	}
}

// FuzzRepublishedRoundTrip checks, for any event and any filter, that the republished subject
// is the one nats-server's own transform of the stream's RePublish setting produces, that it
// maps back to the event's subject, and that a republished filter selects exactly the
// republished events the original filter selects among the originals.
func FuzzRepublishedRoundTrip(f *testing.F) {
	f.Add("machines,profiles.create,save.*", "profiles", "save", "global", "global")
	f.Add("*.*.*", "a.b", "*", ">", "")
	f.Add("x.y.10.0.0.1:8092", "x", "y", "10.0.0.1:8092", "cluster:c")
	tr, err := server.NewSubjectTransform(subject.EventsWildcard, subject.RepublishedWildcard)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, pattern, typ, action, key, scope string) {
		ev := &event.Event{Scope: scope, Type: typ, Action: action, Key: key}
		evSubj := subject.ForEvent(ev)
		rp, err := subject.ToRepublished(evSubj)
		if err != nil {
			t.Fatal(err)
		}
		if want, err := tr.Match(evSubj); err != nil || rp != want {
			t.Fatalf("ToRepublished(%q) = %q, nats-server republishes on %q (%v)", evSubj, rp, want, err)
		}
		if !server.IsValidLiteralSubject(rp) {
			t.Fatalf("republished subject %q is not a valid literal subject", rp)
		}
		back, err := subject.FromRepublished(rp)
		if err != nil || back != evSubj {
			t.Fatalf("FromRepublished(%q) = %q, %v; want %q", rp, back, err, evSubj)
		}
		_, subjects, ok := filterSubjects(pattern)
		if !ok {
			return
		}
		for _, s := range subjects {
			rs, err := subject.ToRepublished(s)
			if err != nil {
				t.Fatal(err)
			}
			if !server.IsValidSubject(rs) {
				t.Fatalf("republished filter %q is not valid", rs)
			}
			if server.SubjectMatchesFilter(rp, rs) != server.SubjectMatchesFilter(evSubj, s) {
				t.Fatalf("filter %q on %q disagrees with %q on %q", rs, rp, s, evSubj)
			}
			if back, err := subject.FromRepublished(rs); err != nil || back != s {
				t.Fatalf("FromRepublished(%q) = %q, %v; want %q", rs, back, err, s)
			}
		}
	})
}

// TestTelemetryRepublished checks that a server's samples, alerts and log entries map onto the
// subjects nats-server's own transform of the telemetry stream's RePublish produces, for ids
// that need escaping too, and back; and that what the telemetry stream does not store has no
// republished subject.
func TestTelemetryRepublished(t *testing.T) {
	t.Parallel()
	tr, err := server.NewSubjectTransform(subject.TelemetryRepublishSource, subject.TelemetryRepublishDestination)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"srv-1", "host.example.com", "a b*>", ""} {
		for _, s := range []string{subject.Metrics(id), subject.Alerts(id), subject.Logs(id)} {
			if got := subject.StreamOf(s); got != subject.TelemetryStream {
				t.Fatalf("StreamOf(%q) = %q, want %s", s, got, subject.TelemetryStream)
			}
			rp, err := subject.ToRepublished(s)
			if err != nil {
				t.Fatal(err)
			}
			if want, err := tr.Match(s); err != nil || rp != want {
				t.Fatalf("ToRepublished(%q) = %q, nats-server republishes on %q (%v)", s, rp, want, err)
			}
			if back, err := subject.FromRepublished(rp); err != nil || back != s {
				t.Fatalf("FromRepublished(%q) = %q, %v; want %q", rp, back, err, s)
			}
		}
	}
	for _, s := range []string{"herald.metrics", "herald.metrics.", "herald.metrics.a.b", subject.AgentRPC("x"), "herald.auth.login"} {
		if got, err := subject.ToRepublished(s); err == nil {
			t.Errorf("ToRepublished(%q) = %q, want an error", s, got)
		}
	}
	for _, s := range []string{"herald.rp.metrics", "herald.rp.metrics.a.b", "herald.rp.auth.login"} {
		if got, err := subject.FromRepublished(s); err == nil {
			t.Errorf("FromRepublished(%q) = %q, want an error", s, got)
		}
	}
}
