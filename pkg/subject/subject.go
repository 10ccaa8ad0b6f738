// Package subject maps Herald's event addresses onto NATS subjects, so that NATS, not a loop over
// clients, decides who receives an event.
//
// An event travels on
//
//	herald.evt.<scope>.<type>.<action>.<key>
//
// with each field one token. NATS forbids some things inside a token (a dot splits it, "*" and
// ">" are wildcards when alone, white space ends the subject on the wire, an empty token is
// invalid, and the server rejects NUL and U+FFFD), so every field is escaped reversibly:
// each byte of a forbidden or ambiguous rune becomes %XX (upper-case hex), "%" itself included,
// and the empty string becomes a lone "%". Everything else, most of Unicode included, stays
// readable, so `nats sub 'herald.evt.>'` is still useful to a person.
package subject

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/heraldhq/herald/pkg/event"
)

// EventsPrefix is the first two tokens of every event subject.
const EventsPrefix = "herald.evt"

// EventsWildcard matches every event subject (the JetStream stream's subject).
const EventsWildcard = EventsPrefix + ".>"

// MaxSubjects bounds how many NATS subjects one filter may expand to (the product of the
// alternatives in its fields), so one register command cannot create unbounded interest.
const MaxSubjects = 64

// ErrBadToken is returned by DecodeToken for a string EncodeToken cannot have produced.
var ErrBadToken = errors.New("subject: bad token")

// ErrTooManySubjects is returned by ForFilter when a filter expands beyond MaxSubjects.
var ErrTooManySubjects = errors.New("subject: filter expands to too many subjects")

const (
	escapeChar = '%'
	emptyToken = "%"
	hexDigits  = "0123456789ABCDEF"
)

// EncodeToken escapes s into one valid NATS subject token. It is injective: DecodeToken
// reverses it for every string, valid UTF-8 or not.
func EncodeToken(s string) string {
	if s == "" {
		return emptyToken
	}
	if !needsEscape(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if escapeRune(r) {
			for j := i; j < i+size; j++ {
				b.WriteByte(escapeChar)
				b.WriteByte(hexDigits[s[j]>>4])
				b.WriteByte(hexDigits[s[j]&0xF])
			}
		} else {
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

func needsEscape(s string) bool {
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if escapeRune(r) {
			return true
		}
		i += size
	}
	return false
}

// escapeRune reports whether a rune must be escaped. An invalid byte decodes as RuneError; a
// real U+FFFD is escaped too, because nats-server takes it for corruption.
func escapeRune(r rune) bool {
	switch {
	case r == utf8.RuneError:
		return true
	case r < 0x80:
		return r <= ' ' || r == 0x7f || r == '.' || r == '*' || r == '>' || r == escapeChar
	default:
		return unicode.IsSpace(r) || unicode.IsControl(r)
	}
}

// DecodeToken reverses EncodeToken.
func DecodeToken(tok string) (string, error) {
	if tok == emptyToken {
		return "", nil
	}
	if tok == "" {
		return "", fmt.Errorf("%w: empty", ErrBadToken)
	}
	if strings.IndexByte(tok, escapeChar) < 0 {
		return tok, nil
	}
	b := make([]byte, 0, len(tok))
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		if c != escapeChar {
			b = append(b, c)
			continue
		}
		if i+2 >= len(tok) {
			return "", fmt.Errorf("%w: %q: truncated escape", ErrBadToken, tok)
		}
		hi, lo := unhex(tok[i+1]), unhex(tok[i+2])
		if hi < 0 || lo < 0 {
			return "", fmt.Errorf("%w: %q: bad escape", ErrBadToken, tok)
		}
		b = append(b, byte(hi<<4|lo))
		i += 2
	}
	return string(b), nil
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'A' <= c && c <= 'F':
		return int(c - 'A' + 10)
	}
	return -1
}

// ForEvent returns the subject e is published on. e should be normalized (a non-empty scope).
func ForEvent(e *event.Event) string {
	return EventsPrefix + "." + EncodeToken(e.Scope) + "." + EncodeToken(e.Type) + "." +
		EncodeToken(e.Action) + "." + EncodeToken(e.Key)
}

// ParseEvent splits an event subject back into its fields.
func ParseEvent(subj string) (scope, typ, action, key string, err error) {
	rest, ok := strings.CutPrefix(subj, EventsPrefix+".")
	toks := strings.Split(rest, ".")
	if !ok || len(toks) != 4 {
		return "", "", "", "", fmt.Errorf("%w: %q is not an event subject", ErrBadToken, subj)
	}
	var out [4]string
	for i, t := range toks {
		if out[i], err = DecodeToken(t); err != nil {
			return "", "", "", "", err
		}
	}
	return out[0], out[1], out[2], out[3], nil
}

// ForFilter returns the NATS subjects that together select exactly the events f matches: a
// wildcard field becomes "*", and a field with alternatives multiplies the subjects. The
// subjects are distinct and disjoint, so no event arrives twice through one filter.
func ForFilter(f event.Filter) ([]string, error) {
	fields := [4][]string{f.Scope, f.Type, f.Action, f.Key}
	n := 1
	for _, alts := range fields {
		if alts != nil {
			n *= len(alts)
			if n == 0 {
				return nil, nil
			}
			if n > MaxSubjects {
				return nil, fmt.Errorf("%w: more than %d", ErrTooManySubjects, MaxSubjects)
			}
		}
	}
	subjects := []string{EventsPrefix}
	for _, alts := range fields {
		toks := []string{"*"}
		if alts != nil {
			toks = make([]string, len(alts))
			for i, a := range alts {
				toks[i] = EncodeToken(a)
			}
		}
		next := make([]string, 0, len(subjects)*len(toks))
		for _, s := range subjects {
			for _, t := range toks {
				next = append(next, s+"."+t)
			}
		}
		subjects = next
	}
	return subjects, nil
}

// Match reports whether subject (a literal) is selected by filter, token by token, with "*"
// matching one token and a trailing ">" the rest. It is NATS's rule, used where the edge must
// know which of one client's filters an event came through.
func Match(filter, subject string) bool {
	for {
		ft, frest, fmore := strings.Cut(filter, ".")
		st, srest, smore := strings.Cut(subject, ".")
		if ft == ">" {
			return true
		}
		if ft != "*" && ft != st {
			return false
		}
		if !fmore || !smore {
			return fmore == smore
		}
		filter, subject = frest, srest
	}
}

// ForFilters returns the distinct NATS subjects that together select what any of filters
// matches (a filter narrowed to a token's permissions is usually several), bounded by
// MaxSubjects in all. Subjects of different filters may overlap; the edge delivers each event
// once per client regardless.
func ForFilters(filters []event.Filter) ([]string, error) {
	var out []string
	for _, f := range filters {
		subs, err := ForFilter(f)
		if err != nil {
			return nil, err
		}
		for _, s := range subs {
			if !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
		if len(out) > MaxSubjects {
			return nil, fmt.Errorf("%w: more than %d in all", ErrTooManySubjects, MaxSubjects)
		}
	}
	return out, nil
}

// Overlap reports whether two filter subjects (tokens or "*", no ">") can match one subject.
func Overlap(a, b string) bool {
	for {
		at, arest, amore := strings.Cut(a, ".")
		bt, brest, bmore := strings.Cut(b, ".")
		if at != bt && at != "*" && bt != "*" {
			return false
		}
		if !amore || !bmore {
			return amore == bmore
		}
		a, b = arest, brest
	}
}
