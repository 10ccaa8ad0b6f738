package resumeclient

import (
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	want := []Acked{{Seq: 5, Key: "0"}, {Seq: 6, Key: "1"}, {Seq: 8, Key: "2"}}
	for _, tc := range []struct {
		name string
		got  []Received
		err  string // "" for none
	}{
		{"exact", []Received{{Seq: 5, Key: "0"}, {Seq: 6, Key: "1"}, {Seq: 8, Key: "2"}}, ""},
		{"lost", []Received{{Seq: 5, Key: "0"}, {Seq: 8, Key: "2"}}, "1 lost: seq 6"},
		{"gap", []Received{{Seq: 5, Key: "0"}}, "2 lost: seq 6-8"},
		{"twice", []Received{{Seq: 5, Key: "0"}, {Seq: 6, Key: "1"}, {Seq: 6, Key: "1"}, {Seq: 8, Key: "2"}}, "seq 6 received twice"},
		{"order", []Received{{Seq: 6, Key: "1"}, {Seq: 5, Key: "0"}, {Seq: 8, Key: "2"}}, "seq 5 after seq 6: out of order"},
		{"unacknowledged", []Received{{Seq: 5, Key: "0"}, {Seq: 6, Key: "1"}, {Seq: 7, Key: "x"}, {Seq: 8, Key: "2"}}, "seq 7 (key \"x\") received but never acknowledged"},
		{"wrong key", []Received{{Seq: 5, Key: "0"}, {Seq: 6, Key: "9"}, {Seq: 8, Key: "2"}}, "seq 6 has key \"9\""},
	} {
		c := &Client{Kind: DRP{"fleet"}, Name: "c1", got: tc.got}
		err := Check(c, want)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), "c1")):
			t.Errorf("%s: error %v, want one naming c1 and saying %q", tc.name, err, tc.err)
		}
	}
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		kind Kind
		msg  string
		want Frame
	}{
		{DRP{"fleet"}, `{"Type":"fleet","Action":"tick","Key":"3","Position":"e:9"}`, Frame{Key: "3", Position: "e:9"}},
		{DRP{"fleet"}, `{"Type":"websocket","Action":"resume","Key":"e:1","Object":{"Replayed":4,"Position":"e:5"}}`, Frame{Resumed: true, Replayed: 4}},
		{DRP{"fleet"}, `{"Type":"websocket","Action":"error","Object":{"Code":410}}`, Frame{TooOld: true}},
		{Rancher{"fleet"}, `{"name":"resource.change","data":{"id":"3"},"position":"e:9"}`, Frame{Key: "3", Position: "e:9"}},
		{Rancher{"fleet"}, `{"name":"resource.resumed","data":{"replayed":2}}`, Frame{Resumed: true, Replayed: 2}},
		{Rancher{"fleet"}, `{"name":"resource.error","data":{"message":"too old: x"}}`, Frame{TooOld: true}},
		{Salt{"fleet"}, `{"tag":"herald/fleet/tick/3","data":{"_position":"e:9"}}`, Frame{Key: "3", Position: "e:9"}},
		{Salt{"fleet"}, `{"tag":"herald/resume/done","data":{"replayed":7}}`, Frame{Resumed: true, Replayed: 7}},
		{Salt{"fleet"}, `{"tag":"herald/resume/error","data":{}}`, Frame{TooOld: true}},
		{Salt{"fleet"}, `not json`, Frame{}},
	} {
		if got := tc.kind.Parse([]byte(tc.msg)); got != tc.want {
			t.Errorf("%s %s: %+v, want %+v", tc.kind.Name(), tc.msg, got, tc.want)
		}
	}
}

// TestViewerFrames: a viewer reads samples (key and position), the resumed report, and only
// the 410 error as too old.
func TestViewerFrames(t *testing.T) {
	v := Viewer{Server: "srv-1"}
	for _, tc := range []struct {
		msg  string
		want Frame
	}{
		{`{"type":"metrics","data":{"server_id":"srv-1","key":"7"},"position":"e:9"}`, Frame{Key: "7", Position: "e:9"}},
		{`{"type":"resumed","position":"e:9","replayed":3}`, Frame{Resumed: true, Replayed: 3}},
		{`{"type":"error","code":410,"message":"too old: e:1"}`, Frame{TooOld: true}},
		{`{"type":"error","code":400,"message":"bad position"}`, Frame{}},
		{`{"type":"auth_success","server_id":"srv-1"}`, Frame{}},
		{`not json`, Frame{}},
	} {
		if got := v.Parse([]byte(tc.msg)); got != tc.want {
			t.Errorf("Parse(%s) = %+v, want %+v", tc.msg, got, tc.want)
		}
	}
	if hello := string(v.Hello("tok", "e:9")[0]); hello != `{"since":"e:9","token":"tok","type":"auth"}` {
		t.Errorf("hello = %s", hello)
	}
	if hello := string(v.Hello("tok", "")[0]); strings.Contains(hello, "since") {
		t.Errorf("hello without a position = %s", hello)
	}
}
