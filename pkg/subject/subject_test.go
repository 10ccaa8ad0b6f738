package subject_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/subject"
)

// awkward are strings NATS forbids or misreads inside a token, and keys seen in the seeds.
var awkward = []string{
	"", "global", "10.0.0.1:8092", "runner:3f2a9c1e-8d7b-4b1a-9f0e-2c4d6e8fa0b1", "a b", "*", ">",
	"a.b", "..", "%", "%41", "tab\there", "line\nbreak", "nul\x00", "\xff\xfe", "\uFFFD",
	"ünïcödé ☃", "日本語", "\u00a0nbsp", "a*b>c", "$SYS", "-_:@/+=", "\x7f",
}

func TestTokenRoundTrip(t *testing.T) {
	t.Parallel()
	seen := map[string]string{}
	for _, s := range awkward {
		tok := subject.EncodeToken(s)
		if !server.IsValidLiteralSubject("x." + tok) {
			t.Errorf("EncodeToken(%q) = %q: not a valid literal NATS token", s, tok)
		}
		back, err := subject.DecodeToken(tok)
		if err != nil || back != s {
			t.Errorf("DecodeToken(EncodeToken(%q)) = %q, %v", s, back, err)
		}
		if prev, dup := seen[tok]; dup {
			t.Errorf("%q and %q both encode to %q", prev, s, tok)
		}
		seen[tok] = s
	}
	// Readable stays readable.
	for _, s := range []string{"global", "10:8092", "ünïcödé", "runner:3f2a"} {
		if got := subject.EncodeToken(s); got != s {
			t.Errorf("EncodeToken(%q) = %q, want it unchanged", s, got)
		}
	}
}

func TestDecodeTokenErrors(t *testing.T) {
	t.Parallel()
	for _, tok := range []string{"", "%4", "%zz", "a%", "%4g", "%ab"} {
		if _, err := subject.DecodeToken(tok); err == nil {
			t.Errorf("DecodeToken(%q) succeeded", tok)
		}
	}
}

func TestForEventParseEvent(t *testing.T) {
	t.Parallel()
	e := &event.Event{Scope: "cluster:c-1", Type: "machines", Action: "update", Key: "10.0.0.1:8092"}
	subj := subject.ForEvent(e)
	if want := "herald.evt.cluster:c-1.machines.update.10%2E0%2E0%2E1:8092"; subj != want {
		t.Fatalf("ForEvent = %q, want %q", subj, want)
	}
	scope, typ, action, key, err := subject.ParseEvent(subj)
	if err != nil || scope != e.Scope || typ != e.Type || action != e.Action || key != e.Key {
		t.Fatalf("ParseEvent = %q %q %q %q %v", scope, typ, action, key, err)
	}
	for _, bad := range []string{"herald.evt.a.b.c", "other.evt.a.b.c.d", "herald.evt.a.b.c.d.e", "herald.evt.a.b.c.%z"} {
		if _, _, _, _, err := subject.ParseEvent(bad); err == nil {
			t.Errorf("ParseEvent(%q) succeeded", bad)
		}
	}
}

func TestForFilter(t *testing.T) {
	t.Parallel()
	f, err := event.ParseFilter("machines,profiles.create,save.*")
	if err != nil {
		t.Fatal(err)
	}
	got, err := subject.ForFilter(f)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"herald.evt.*.machines.create.*", "herald.evt.*.machines.save.*",
		"herald.evt.*.profiles.create.*", "herald.evt.*.profiles.save.*",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("ForFilter = %q, want %q", got, want)
	}
	all, _ := subject.ForFilter(event.Filter{})
	if !slices.Equal(all, []string{"herald.evt.*.*.*.*"}) {
		t.Fatalf("ForFilter(*.*.*) = %q", all)
	}
	wide, _ := event.ParseFilter("a,b,c,d,e.a,b,c,d,e.a,b,c")
	if _, err := subject.ForFilter(wide); err == nil {
		t.Fatal("75 subjects accepted")
	}
}

func TestMatch(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		filter, subj string
		want         bool
	}{
		{"a.*.c", "a.b.c", true}, {"a.*.c", "a.b.d", false}, {"a.>", "a.b.c", true},
		{"a.*", "a.b.c", false}, {"a.b.c", "a.b", false}, {"*.*.*", "a.b.c", true}, {">", "a", true},
	} {
		if got := subject.Match(tc.filter, tc.subj); got != tc.want {
			t.Errorf("Match(%q, %q) = %v", tc.filter, tc.subj, got)
		}
		if got := server.SubjectMatchesFilter(tc.subj, tc.filter); got != tc.want {
			t.Errorf("the test table disagrees with NATS on (%q, %q)", tc.filter, tc.subj)
		}
	}
}

func FuzzTokenRoundTrip(f *testing.F) {
	for _, s := range awkward {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tok := subject.EncodeToken(s)
		if !server.IsValidLiteralSubject("herald." + tok) {
			t.Fatalf("EncodeToken(%q) = %q is not a valid NATS token", s, tok)
		}
		if strings.ContainsAny(tok, ".*> \t\r\n") {
			t.Fatalf("EncodeToken(%q) = %q holds a NATS metacharacter", s, tok)
		}
		back, err := subject.DecodeToken(tok)
		if err != nil || back != s {
			t.Fatalf("round trip %q -> %q -> %q, %v", s, tok, back, err)
		}
	})
}

func FuzzDecodeToken(f *testing.F) {
	for _, s := range []string{"%", "%41", "a%2Eb", "%zz", "plain"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		s, err := subject.DecodeToken(tok)
		if err != nil {
			return
		}
		// Anything that decodes re-encodes to a token that decodes to the same string.
		if back, err := subject.DecodeToken(subject.EncodeToken(s)); err != nil || back != s {
			t.Fatalf("%q decodes to %q which does not survive a round trip", tok, s)
		}
	})
}

// filterSubjects parses a fuzzed filter pattern and maps it to subjects; ok is false for a
// pattern that is not a filter or expands too far.
func filterSubjects(pattern string) (flt event.Filter, subjects []string, ok bool) {
	flt, err := event.ParseFilter(pattern)
	if err != nil {
		return flt, nil, false
	}
	subjects, err = subject.ForFilter(flt)
	return flt, subjects, err == nil
}

// FuzzFilterAgreesWithNATS checks that NATS's own matching of the mapped filter subjects gives
// the same answer as the filter's meaning, for any event and any pattern.
func FuzzFilterAgreesWithNATS(f *testing.F) {
	f.Add("machines,profiles.create,save.*", "profiles", "save", "global", "global")
	f.Add("*.*.*", "a.b", "*", ">", "")
	f.Add("x.y.10.0.0.1:8092", "x", "y", "10.0.0.1:8092", "cluster:c")
	f.Add("a\\1b.\\3.\\2", "a.b", "*", ",", "")
	f.Add("*.*. ", "t", "a", "", "")
	f.Fuzz(func(t *testing.T, pattern, typ, action, key, scope string) {
		flt, subjects, ok := filterSubjects(pattern)
		if !ok {
			return
		}
		ev := &event.Event{Scope: scope, Type: typ, Action: action, Key: key}
		evSubj := subject.ForEvent(ev)
		if !server.IsValidLiteralSubject(evSubj) {
			t.Fatalf("event subject %q is not a valid literal subject", evSubj)
		}
		natsSays := 0
		for _, s := range subjects {
			if !server.IsValidSubject(s) {
				t.Fatalf("filter subject %q is not valid", s)
			}
			if server.SubjectMatchesFilter(evSubj, s) {
				natsSays++
			}
			if server.SubjectMatchesFilter(evSubj, s) != subject.Match(s, evSubj) {
				t.Fatalf("Match(%q, %q) disagrees with NATS", s, evSubj)
			}
		}
		if natsSays > 1 {
			t.Fatalf("%q: event %q arrives through %d subjects", pattern, evSubj, natsSays)
		}
		if want := flt.Matches(ev); (natsSays == 1) != want {
			t.Fatalf("%q on %+v: NATS says %v, filter says %v (subjects %q, event %q)", pattern, ev, natsSays == 1, want, subjects, evSubj)
		}
	})
}

func TestAgentSubjects(t *testing.T) {
	t.Parallel()
	for _, id := range []string{"3f2a-uuid", "host.example.com", "", "a b"} {
		for _, s := range []string{subject.Metrics(id), subject.Logs(id), subject.Alerts(id), subject.AgentRPC(id), subject.AgentTakeover(id)} {
			if !server.IsValidLiteralSubject(s) || strings.Count(s, ".") != strings.Count(subject.Metrics("x"), ".")+boolInt(strings.HasPrefix(s, "herald.agent.")) {
				t.Errorf("%q: not one literal token per field", s)
			}
		}
	}
	if subject.Metrics("host.example.com") != "herald.metrics.host%2Eexample%2Ecom" {
		t.Fatalf("Metrics = %q", subject.Metrics("host.example.com"))
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestForFilters(t *testing.T) {
	t.Parallel()
	machines, _ := event.ParseFilter("machines.*.*")
	both, _ := event.ParseFilter("machines,profiles.*.*")
	got, err := subject.ForFilters([]event.Filter{machines, both})
	if want := []string{"herald.evt.*.machines.*.*", "herald.evt.*.profiles.*.*"}; err != nil || !slices.Equal(got, want) {
		t.Fatalf("ForFilters = %q, %v; want %q", got, err, want)
	}
	wide, _ := event.ParseFilter("a,b,c,d,e,f,g,h.a,b,c,d,e,f,g,h.*") // 64, at the limit
	other, _ := event.ParseFilter("x.y.z")
	if _, err := subject.ForFilters([]event.Filter{wide, other}); !errors.Is(err, subject.ErrTooManySubjects) {
		t.Fatalf("65 subjects in all: %v, want ErrTooManySubjects", err)
	}
}

func TestOverlap(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"herald.evt.*.machines.*.*", "herald.evt.*.*.create.*", true},
		{"herald.evt.*.machines.*.*", "herald.evt.*.profiles.*.*", false},
		{"herald.evt.*.a.b.c", "herald.evt.*.a.b.c", true},
		{"herald.evt.*.a.b", "herald.evt.*.a.b.c", false},
		{"herald.metrics.x", "herald.metrics.y", false},
	} {
		if got := subject.Overlap(tc.a, tc.b); got != tc.want {
			t.Errorf("Overlap(%q, %q) = %v", tc.a, tc.b, got)
		}
		if got := subject.Overlap(tc.b, tc.a); got != tc.want {
			t.Errorf("Overlap(%q, %q) = %v (reversed)", tc.b, tc.a, got)
		}
	}
}
