package event

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ErrBadFilter is wrapped by every filter parse error; the message says what is wrong.
var ErrBadFilter = errors.New("bad filter")

// MaxAlternatives bounds the comma-separated alternatives in one field of a filter.
const MaxAlternatives = 32

// Filter selects events. Each field is either nil, which matches anything (a "*" in the
// pattern), or a list of exact alternatives. There is no prefix or glob matching: like DRP,
// "mach*" means the literal string.
type Filter struct {
	Scope, Type, Action, Key []string
}

// ParseFilter parses Digital Rebar's "type.action.key" register pattern, as DRP's server
// parses it: the pattern splits on the first two dots, so the key is everything after
// the second dot and may itself contain dots; "*" as a whole field matches anything; a field may
// be a comma list of alternatives, each trimmed, in which \1, \2 and \3 stand for ".", "," and
// "*". The scope is left open: DRP has none.
func ParseFilter(pattern string) (Filter, error) {
	parts := strings.SplitN(pattern, ".", 3)
	if len(parts) != 3 {
		return Filter{}, fmt.Errorf("%w: %q: want type.action.key (three fields separated by dots)", ErrBadFilter, pattern)
	}
	var f Filter
	for i, dst := range []*[]string{&f.Type, &f.Action, &f.Key} {
		alts, err := parseField(parts[i])
		if err != nil {
			return Filter{}, fmt.Errorf("%w: %q: %s field: %s", ErrBadFilter, pattern, fieldNames[i], err)
		}
		*dst = alts
	}
	return f, nil
}

var fieldNames = [...]string{"type", "action", "key"}

var unescaper = strings.NewReplacer(`\1`, ".", `\2`, ",", `\3`, "*")

func parseField(s string) ([]string, error) {
	if s == "*" {
		return nil, nil
	}
	raw := strings.Split(s, ",")
	if len(raw) > MaxAlternatives {
		return nil, fmt.Errorf("more than %d alternatives", MaxAlternatives)
	}
	alts := make([]string, 0, len(raw))
	for _, a := range raw {
		a = strings.TrimSpace(a)
		if a == "*" {
			// A bare "*" among alternatives can only mean "anything"; "\3" is the literal star.
			return nil, nil
		}
		a = unescaper.Replace(a)
		if !slices.Contains(alts, a) {
			alts = append(alts, a)
		}
	}
	return alts, nil
}

// String renders f in the pattern syntax ParseFilter reads, escaping where needed.
func (f Filter) String() string {
	return renderField(f.Type) + "." + renderField(f.Action) + "." + renderField(f.Key)
}

var escaper = strings.NewReplacer(".", `\1`, ",", `\2`, "*", `\3`)

func renderField(alts []string) string {
	if alts == nil {
		return "*"
	}
	out := make([]string, len(alts))
	for i, a := range alts {
		out[i] = escaper.Replace(a)
	}
	return strings.Join(out, ",")
}

// Matches reports whether e is selected by f.
func (f Filter) Matches(e *Event) bool {
	return fieldMatches(f.Scope, e.Scope) && fieldMatches(f.Type, e.Type) &&
		fieldMatches(f.Action, e.Action) && fieldMatches(f.Key, e.Key)
}

func fieldMatches(alts []string, v string) bool {
	return alts == nil || slices.Contains(alts, v)
}

// Intersect returns the filter that selects exactly the events both f and g select, and false
// when no event can match both.
func (f Filter) Intersect(g Filter) (Filter, bool) {
	var out Filter
	pairs := []struct {
		a, b []string
		dst  *[]string
	}{
		{f.Scope, g.Scope, &out.Scope}, {f.Type, g.Type, &out.Type},
		{f.Action, g.Action, &out.Action}, {f.Key, g.Key, &out.Key},
	}
	for _, p := range pairs {
		v, ok := intersectField(p.a, p.b)
		if !ok {
			return Filter{}, false
		}
		*p.dst = v
	}
	return out, true
}

func intersectField(a, b []string) ([]string, bool) {
	switch {
	case a == nil:
		return b, true
	case b == nil:
		return a, true
	}
	var out []string
	for _, v := range a {
		if slices.Contains(b, v) {
			out = append(out, v)
		}
	}
	return out, len(out) > 0
}

// ParsePermissions parses a token's permission list: each entry is a filter in pattern syntax
// naming events the holder may see ("*.*.*" is everything).
func ParsePermissions(perms []string) ([]Filter, error) {
	out := make([]Filter, 0, len(perms))
	for _, p := range perms {
		f, err := ParseFilter(p)
		if err != nil {
			return nil, fmt.Errorf("permission: %w", err)
		}
		out = append(out, f)
	}
	return out, nil
}

// Allowed narrows f to what perms permit: one filter per permission that overlaps f. An empty
// result means f asks only for events the holder may not see.
func Allowed(f Filter, perms []Filter) []Filter {
	var out []Filter
	for _, p := range perms {
		if g, ok := f.Intersect(p); ok {
			out = append(out, g)
		}
	}
	return out
}
