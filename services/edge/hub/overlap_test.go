package hub

import "testing"

func TestFirstMatchChecksOnlyOverlappingFilters(t *testing.T) {
	t.Parallel()
	c := &Client{}
	c.subs.Store(newSubList([]string{"herald.evt.*.machines.*.*", "herald.evt.*.profiles.*.*", "herald.evt.*.*.create.*"}))
	l := c.subs.Load()
	if l.list[1].overlapsEarlier || !l.list[2].overlapsEarlier {
		t.Fatalf("overlap flags %+v", l.list)
	}
	// machines.create arrives through both the first and the third filter: only the first delivers.
	ev := "herald.evt.global.machines.create.m1"
	if !c.firstMatch("herald.evt.*.machines.*.*", ev) || c.firstMatch("herald.evt.*.*.create.*", ev) {
		t.Fatal("machines.create.m1 must be delivered through the first filter only")
	}
	if !c.firstMatch("herald.evt.*.*.create.*", "herald.evt.global.params.create.p") {
		t.Fatal("params.create arrives only through the third filter and must be delivered")
	}
	if c.firstMatch("herald.evt.*.gone.*.*", ev) {
		t.Fatal("a removed filter must not deliver")
	}
}
