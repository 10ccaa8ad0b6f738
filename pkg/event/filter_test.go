package event

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
)

func TestParseFilter(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pattern string
		want    Filter
		matches []Event
		misses  []Event
	}{
		{
			pattern: "*.*.*",
			want:    Filter{},
			matches: []Event{{Type: "machines", Action: "create", Key: "m1"}},
		},
		{
			pattern: "profiles.*.*",
			want:    Filter{Type: []string{"profiles"}},
			matches: []Event{{Type: "profiles", Action: "save", Key: "global"}},
			misses:  []Event{{Type: "machines", Action: "create", Key: "m1"}, {Type: "profile", Action: "save", Key: "global"}},
		},
		{
			// The key is everything after the second dot.
			pattern: "machines.update.10.0.0.1:8092",
			want:    Filter{Type: []string{"machines"}, Action: []string{"update"}, Key: []string{"10.0.0.1:8092"}},
			matches: []Event{{Type: "machines", Action: "update", Key: "10.0.0.1:8092"}},
			misses:  []Event{{Type: "machines", Action: "update", Key: "10.0.0.1"}},
		},
		{
			// DRP v4 comma lists: machines or profiles, create or save, any key.
			pattern: "machines,profiles.create,save.*",
			want:    Filter{Type: []string{"machines", "profiles"}, Action: []string{"create", "save"}},
			matches: []Event{{Type: "machines", Action: "create", Key: "a"}, {Type: "profiles", Action: "save", Key: "b"}, {Type: "machines", Action: "save"}},
			misses:  []Event{{Type: "machines", Action: "update", Key: "a"}, {Type: "params", Action: "create", Key: "b"}},
		},
		{
			// Alternatives are trimmed; \1 \2 \3 stand for . , *
			pattern: "a\\1b , c.x\\2y.\\3",
			want:    Filter{Type: []string{"a.b", "c"}, Action: []string{"x,y"}, Key: []string{"*"}},
			matches: []Event{{Type: "a.b", Action: "x,y", Key: "*"}},
			misses:  []Event{{Type: "a.b", Action: "x,y", Key: "anything"}},
		},
		{
			// No glob: mach* is literal.
			pattern: "mach*.*.*",
			want:    Filter{Type: []string{"mach*"}},
			matches: []Event{{Type: "mach*", Action: "x"}},
			misses:  []Event{{Type: "machines", Action: "x"}},
		},
		{
			// A bare * among alternatives means anything.
			pattern: "machines,*.create.k",
			want:    Filter{Action: []string{"create"}, Key: []string{"k"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.pattern, func(t *testing.T) {
			t.Parallel()
			got, err := ParseFilter(tc.pattern)
			if err != nil {
				t.Fatalf("ParseFilter: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %#v, want %#v", got, tc.want)
			}
			for _, e := range tc.matches {
				if !got.Matches(&e) {
					t.Errorf("%q does not match %+v", tc.pattern, e)
				}
			}
			for _, e := range tc.misses {
				if got.Matches(&e) {
					t.Errorf("%q matches %+v", tc.pattern, e)
				}
			}
			again, err := ParseFilter(got.String())
			if err != nil || !reflect.DeepEqual(again, got) {
				t.Errorf("String() %q does not parse back: %#v, %v", got.String(), again, err)
			}
		})
	}
}

func TestParseFilterErrors(t *testing.T) {
	t.Parallel()
	for _, p := range []string{"", "*", "machines", "machines.*", "a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q,r,s,t,u,v,w,x,y,z,aa,bb,cc,dd,ee,ff,gg.*.*"} {
		if _, err := ParseFilter(p); !errors.Is(err, ErrBadFilter) {
			t.Errorf("ParseFilter(%q) = %v, want ErrBadFilter", p, err)
		}
	}
}

func TestAllowed(t *testing.T) {
	t.Parallel()
	perms, err := ParsePermissions([]string{"machines.*.*", "profiles.save.global"})
	if err != nil {
		t.Fatal(err)
	}
	all, _ := ParseFilter("*.*.*")
	got := Allowed(all, perms)
	if len(got) != 2 || !reflect.DeepEqual(got[0], perms[0]) || !reflect.DeepEqual(got[1], perms[1]) {
		t.Fatalf("Allowed(*.*.*) = %#v", got)
	}
	params, _ := ParseFilter("params.*.*")
	if got := Allowed(params, perms); len(got) != 0 {
		t.Fatalf("Allowed(params.*.*) = %#v, want none", got)
	}
	narrow, _ := ParseFilter("machines,params.create.m1")
	got = Allowed(narrow, perms)
	want := Filter{Type: []string{"machines"}, Action: []string{"create"}, Key: []string{"m1"}}
	if len(got) != 1 || !reflect.DeepEqual(got[0], want) {
		t.Fatalf("Allowed(machines,params.create.m1) = %#v, want %#v", got, want)
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	ok := Event{Type: "machines", Action: "create", Key: "a.b *>", Object: []byte(`{"a":1}`)}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid event: %v", err)
	}
	for name, e := range map[string]Event{
		"type: must not be empty":   {Action: "x"},
		"action: must not be empty": {Type: "x"},
		"key: not valid UTF-8":      {Type: "x", Action: "y", Key: "\xff"},
		"object: not valid JSON":    {Type: "x", Action: "y", Object: []byte("{")},
	} {
		err := e.Validate()
		if !errors.Is(err, ErrInvalid) || err.Error() != "invalid event: "+name {
			t.Errorf("Validate(%+v) = %v, want %q", e, err, name)
		}
	}
}

func FuzzParseFilter(f *testing.F) {
	for _, s := range []string{"*.*.*", "machines,profiles.create,save.*", "a\\1b.c\\2.\\3", "x.y.10.0.0.1", "..", ".,.,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseFilter(s)
		if err != nil {
			return
		}
		// Whatever parses renders to a pattern that parses to the same filter.
		again, err := ParseFilter(got.String())
		if err != nil || !reflect.DeepEqual(again, got) {
			t.Fatalf("%q: String() %q parses to %#v, %v; want %#v", s, got.String(), again, err, got)
		}
	})
}

func TestObjectFields(t *testing.T) {
	t.Parallel()
	for obj, want := range map[string]string{
		`{"a":1}`: `{"a":1}`, `[1,2]`: `{"value":[1,2]}`, `"s"`: `{"value":"s"}`, ``: `{}`, `null`: `{}`,
	} {
		e := Event{Object: []byte(obj)}
		got, err := e.ObjectFields()
		b, _ := json.Marshal(got)
		if err != nil || string(b) != want {
			t.Errorf("ObjectFields(%s) = %s, %v; want %s", obj, b, err, want)
		}
	}
	if _, err := (&Event{Object: []byte(`{"a":`)}).ObjectFields(); err == nil {
		t.Error("a broken object was accepted")
	}
}
