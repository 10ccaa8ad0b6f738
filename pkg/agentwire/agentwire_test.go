package agentwire

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

var now = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// Frames of the documented protocol and of chatops' agent, reused as fuzz seeds.
var seedFrames = []string{
	`{"type":"auth","api_key":"hk_abc"}`,
	`{"type":"metrics","server_id":"uuid","cpu_percent":45.2,"memory_percent":62.5,"disk_usage":[{"mountpoint":"/","usage_percent":71.5}],"network":[],"timestamp":"2024-01-01T00:00:00Z"}`,
	`{"type":"metrics","server_id":"s","cpu_percent":1,"memory_percent":2,"disk_usage":[],"network":[],"timestamp":"2024-01-01T00:00:00Z","seq":7}`,
	`{"type":"metrics","data":{"server_id":"x","timestamp":"2025-01-01T00:00:00Z","cpu":{"usage_percent":45.2,"cores":8},"memory":{"usage_percent":62.5},"disk":{"total_gb":457,"usage_percent":26.3},"network":{"bytes_sent":1},"containers":[],"processes":[{"pid":1}]}}`,
	`{"type":"command_response","command_id":"c1","output":"hi\n","exit_code":0,"duration_ms":150}`,
	`{"type":"docker_response","command_id":"c2","success":true,"message":"Container started"}`,
	`{"type":"command_result","data":{"output":"x","exit_code":2},"request_id":"r1"}`,
	`{"type":"container_logs","data":{"container_id":"c","logs":["a","b"]},"request_id":"r2"}`,
	`{"type":"error","message":"Invalid command","request_id":"r3"}`,
	`{"type":"log","data":{"level":"INFO","message":"Log message","timestamp":"2024-01-01T00:00:00Z"}}`,
	`{"type":"facts","data":{"hostname":"h","os":"linux","cpu_count":4}}`,
	`{"type":"ping"}`,
	`not json`, `[]`, `null`, `{"type":1}`, `{}`, `{"type":"metrics","cpu_percent":"high"}`,
}

func TestPeek(t *testing.T) {
	t.Parallel()
	cases := []struct {
		frame string
		want  Envelope
		err   bool
	}{
		{`{"type":"auth","api_key":"k"}`, Envelope{Type: "auth"}, false},
		{` {"type":"command_response","command_id":"c"} `, Envelope{Type: "command_response", ID: "c"}, false},
		{`{"type":"command_result","request_id":"r","data":{}}`, Envelope{Type: "command_result", ID: "r", NestedData: true}, false},
		{`{"type":"metrics","data":null}`, Envelope{Type: "metrics"}, false},
		{`not json`, Envelope{}, true},
		{`[1]`, Envelope{}, true},
		{`null`, Envelope{}, true},
		{`{}`, Envelope{}, true},
		{`{"type":5}`, Envelope{}, true},
		{`{"type":"x","command_id":5}`, Envelope{}, true},
		{`{"type":"x"} trailing`, Envelope{}, true},
	}
	for _, tc := range cases {
		got, err := Peek([]byte(tc.frame))
		if (err != nil) != tc.err {
			t.Errorf("Peek(%s) error = %v, want error %v", tc.frame, err, tc.err)
			continue
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("Peek(%s) error %v does not wrap ErrInvalid", tc.frame, err)
		}
		if got != tc.want {
			t.Errorf("Peek(%s) = %+v, want %+v", tc.frame, got, tc.want)
		}
	}
}

func TestShapeOf(t *testing.T) {
	t.Parallel()
	cases := map[string]Shape{
		`{"type":"metrics","cpu_percent":1}`:            ShapeDoc,
		`{"type":"metrics","data":{"cpu":{}}}`:          ShapeChatops,
		`{"type":"ping"}`:                               ShapeChatops,
		`{"type":"command_result","request_id":"r"}`:    ShapeChatops,
		`{"type":"container_started","request_id":"r"}`: ShapeChatops,
		`{"type":"command_response","command_id":"c"}`:  ShapeDoc,
		`{"type":"facts","data":{}}`:                    ShapeDoc,
		`{"type":"log","data":{}}`:                      ShapeDoc,
		`{"type":"auth"}`:                               ShapeUnknown,
		`{"type":"pong"}`:                               ShapeUnknown,
		`{"type":"error","message":"x"}`:                ShapeUnknown,
	}
	for frame, want := range cases {
		env, err := Peek([]byte(frame))
		if err != nil {
			t.Fatalf("Peek(%s): %v", frame, err)
		}
		if got := ShapeOf(env); got != want {
			t.Errorf("ShapeOf(%s) = %v, want %v", frame, got, want)
		}
	}
}

func decodeObject(t *testing.T, raw json.RawMessage) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("output %s is not an object: %v", raw, err)
	}
	return m
}

func TestNormalizeMetricsDoc(t *testing.T) {
	t.Parallel()
	s, err := NormalizeMetrics([]byte(`{"type":"metrics","server_id":"spoofed","cpu_percent":45.2,"memory_percent":62.5,
		"disk_usage":[{"mountpoint":"/","usage_percent":71.5},{"mountpoint":"/data","used_percent":80}],
		"network":[{"interface":"eth0"}],"timestamp":"2024-01-01T01:00:00+01:00","seq":9,"extra":true}`), "srv-1", now)
	if err != nil {
		t.Fatal(err)
	}
	if s.Nested || s.Seq != 9 || !s.Time.Equal(time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("sample = %+v", s)
	}
	wantUsage := map[string]float64{UsageCPU: 45.2, UsageMemory: 62.5, UsageDisk: 80}
	if !reflect.DeepEqual(s.Usage, wantUsage) {
		t.Errorf("usage = %v, want %v", s.Usage, wantUsage)
	}
	m := decodeObject(t, s.JSON)
	if m["server_id"] != "srv-1" || m["timestamp"] != "2024-01-01T00:00:00Z" || m["extra"] != true {
		t.Errorf("json = %s", s.JSON)
	}
	if _, ok := m["type"]; ok {
		t.Errorf("type kept in %s", s.JSON)
	}
	if m["seq"] != float64(9) {
		t.Errorf("seq not kept for viewers in %s", s.JSON)
	}
}

func TestNormalizeMetricsChatops(t *testing.T) {
	t.Parallel()
	s, err := NormalizeMetrics([]byte(seedFrames[3]), "srv-2", now)
	if err != nil {
		t.Fatal(err)
	}
	if !s.Nested || s.Seq != 0 {
		t.Errorf("sample = %+v", s)
	}
	wantUsage := map[string]float64{UsageCPU: 45.2, UsageMemory: 62.5, UsageDisk: 26.3}
	if !reflect.DeepEqual(s.Usage, wantUsage) {
		t.Errorf("usage = %v, want %v", s.Usage, wantUsage)
	}
	m := decodeObject(t, s.JSON)
	if m["cpu_percent"] != 45.2 || m["memory_percent"] != 62.5 || m["server_id"] != "srv-2" {
		t.Errorf("json = %s", s.JSON)
	}
	for _, k := range []string{"cpu", "memory", "disk", "network", "containers", "processes", "disk_usage"} {
		if _, ok := m[k]; !ok {
			t.Errorf("%s missing in %s", k, s.JSON)
		}
	}
}

func TestNormalizeMetricsTimestamps(t *testing.T) {
	t.Parallel()
	cases := []struct {
		ts   string
		want time.Time
		err  bool
	}{
		{`"2025-01-01T00:00:00.5Z"`, time.Date(2025, 1, 1, 0, 0, 0, 5e8, time.UTC), false},
		{`"2025-01-01T00:00:00.123456"`, time.Date(2025, 1, 1, 0, 0, 0, 123456000, time.UTC), false},
		{`1735689600`, time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), false},
		{`null`, now, false},
		{`"2099-01-01T00:00:00Z"`, now, false}, // beyond MaxClockSkew: receive time
		{`"yesterday"`, time.Time{}, true},
		{`{}`, time.Time{}, true},
		{`-5`, time.Time{}, true},
	}
	for _, tc := range cases {
		s, err := NormalizeMetrics([]byte(`{"type":"metrics","cpu_percent":1,"timestamp":`+tc.ts+`}`), "s", now)
		if (err != nil) != tc.err {
			t.Errorf("timestamp %s: error %v, want error %v", tc.ts, err, tc.err)
			continue
		}
		if err == nil && !s.Time.Equal(tc.want) {
			t.Errorf("timestamp %s: got %v, want %v", tc.ts, s.Time, tc.want)
		}
	}
	s, err := NormalizeMetrics([]byte(`{"type":"metrics"}`), "s", now)
	if err != nil || !s.Time.Equal(now) || len(s.Usage) != 0 {
		t.Errorf("no timestamp: %+v, %v", s, err)
	}
}

func TestNormalizeMetricsInvalid(t *testing.T) {
	t.Parallel()
	for _, frame := range []string{
		`{"type":"metrics","cpu_percent":"high"}`,
		`{"type":"metrics","seq":-1}`,
		`{"type":"metrics","memory_percent":[1]}`,
		`{"type":"metrics","cpu_percent":1e999}`,
		`[]`, `"x"`,
	} {
		if _, err := NormalizeMetrics([]byte(frame), "s", now); !errors.Is(err, ErrInvalid) {
			t.Errorf("NormalizeMetrics(%s) error = %v, want ErrInvalid", frame, err)
		}
	}
}

func TestNormalizeLog(t *testing.T) {
	t.Parallel()
	l, err := NormalizeLog([]byte(`{"type":"log","data":{"level":"INFO","message":"hello","timestamp":"2024-01-01T00:00:00Z","file":"/var/log/x"}}`), "s1", now)
	if err != nil {
		t.Fatal(err)
	}
	m := decodeObject(t, l.JSON)
	if m["level"] != "INFO" || m["message"] != "hello" || m["server_id"] != "s1" || m["file"] != "/var/log/x" ||
		m["timestamp"] != "2024-01-01T00:00:00Z" {
		t.Errorf("log = %s", l.JSON)
	}
	l, err = NormalizeLog([]byte(`{"type":"log","data":{"message":"m"}}`), "s1", now)
	if err != nil {
		t.Fatal(err)
	}
	if m := decodeObject(t, l.JSON); m["level"] != "info" || !l.Time.Equal(now) {
		t.Errorf("defaults: %s", l.JSON)
	}
	for _, frame := range []string{`{"type":"log","data":{}}`, `{"type":"log","data":{"message":null}}`,
		`{"type":"log","data":{"message":"m","level":3}}`, `{"type":"log","data":{"message":"m","timestamp":"x"}}`} {
		if _, err := NormalizeLog([]byte(frame), "s", now); !errors.Is(err, ErrInvalid) {
			t.Errorf("NormalizeLog(%s) error = %v, want ErrInvalid", frame, err)
		}
	}
}

func TestEncodeRequest(t *testing.T) {
	t.Parallel()
	cases := []struct {
		shape Shape
		req   RPCRequest
		want  string
	}{
		{ShapeDoc, RPCRequest{Kind: KindCommand, ID: "j1", Command: "ls -la", TimeoutMs: 5000},
			`{"type":"command","command_id":"j1","command":"ls -la","timeout_ms":5000}`},
		{ShapeUnknown, RPCRequest{Kind: KindCommand, ID: "j1", Command: "ls"},
			`{"type":"command","command_id":"j1","command":"ls"}`},
		{ShapeChatops, RPCRequest{Kind: KindCommand, ID: "j1", Command: "ls"},
			`{"type":"execute_command","command":"ls","request_id":"j1"}`},
		{ShapeDoc, RPCRequest{Kind: KindDocker, ID: "j2", Action: "start", ContainerID: "c"},
			`{"type":"docker_command","command_id":"j2","action":"start","container_id":"c"}`},
		{ShapeChatops, RPCRequest{Kind: KindDocker, ID: "j2", Action: "start", ContainerID: "c"},
			`{"type":"start_container","container_id":"c","request_id":"j2"}`},
		{ShapeChatops, RPCRequest{Kind: KindDocker, ID: "j2", Action: "stop", ContainerID: "c"},
			`{"type":"stop_container","container_id":"c","timeout":10,"request_id":"j2"}`},
		{ShapeChatops, RPCRequest{Kind: KindDocker, ID: "j2", Action: "restart", ContainerID: "c"},
			`{"type":"restart_container","container_id":"c","timeout":10,"request_id":"j2"}`},
		{ShapeChatops, RPCRequest{Kind: KindDocker, ID: "j2", Action: "logs", ContainerID: "c"},
			`{"type":"get_container_logs","container_id":"c","tail":100,"request_id":"j2"}`},
	}
	for _, tc := range cases {
		got, err := EncodeRequest(tc.shape, tc.req)
		if err != nil || string(got) != tc.want {
			t.Errorf("EncodeRequest(%v, %+v) = %s, %v; want %s", tc.shape, tc.req, got, err, tc.want)
		}
	}
	for _, req := range []RPCRequest{{Kind: "x", ID: "1"}, {Kind: KindCommand}, {Kind: KindDocker, ID: "1", Action: "rm"}} {
		if _, err := EncodeRequest(ShapeDoc, req); !errors.Is(err, ErrInvalid) {
			t.Errorf("EncodeRequest(%+v) error = %v, want ErrInvalid", req, err)
		}
	}
}

func TestDecodeReply(t *testing.T) {
	t.Parallel()
	cases := []struct {
		frame string
		id    string
		want  RPCReply
	}{
		{seedFrames[4], "c1", RPCReply{Output: "hi\n", DurationMs: 150, Success: true}},
		{`{"type":"command_response","command_id":"c","output":"x","exit_code":3,"duration_ms":1,"truncated":true}`,
			"c", RPCReply{Output: "x", ExitCode: 3, DurationMs: 1, Truncated: true}},
		{seedFrames[5], "c2", RPCReply{Success: true, Message: "Container started"}},
		{seedFrames[6], "r1", RPCReply{Output: "x", ExitCode: 2}},
		{seedFrames[7], "r2", RPCReply{Success: true, Message: "2 log lines", Logs: []string{"a", "b"}}},
		{`{"type":"container_stopped","data":{"container_id":"c","status":"stopped"},"request_id":"r"}`,
			"r", RPCReply{Success: true, Message: "Container stopped"}},
		{seedFrames[8], "r3", RPCReply{Message: "Invalid command", Error: "Invalid command", Code: CodeAgentError, ExitCode: -1}},
		{`{"type":"error","message":"commands are disabled","command_id":"c","code":"refused"}`,
			"c", RPCReply{Message: "commands are disabled", Error: "commands are disabled", Code: CodeRefused, ExitCode: -1}},
	}
	for _, tc := range cases {
		id, got, err := DecodeReply([]byte(tc.frame))
		if err != nil || id != tc.id || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("DecodeReply(%s) = %q, %+v, %v; want %q, %+v", tc.frame, id, got, err, tc.id, tc.want)
		}
	}
	for _, frame := range []string{`{"type":"error","message":"x"}`, `{"type":"metrics"}`,
		`{"type":"command_response","output":"x"}`, `{"type":"command_response","command_id":"c","exit_code":"0"}`} {
		if _, _, err := DecodeReply([]byte(frame)); !errors.Is(err, ErrInvalid) {
			t.Errorf("DecodeReply(%s) error = %v, want ErrInvalid", frame, err)
		}
	}
}

// TestMessagesRoundTrip checks the field names of the structs against the protocol's frames.
func TestMessagesRoundTrip(t *testing.T) {
	t.Parallel()
	b, _ := Marshal(AuthSuccess{Type: TypeAuthSuccess, ServerID: "uuid", Message: MessageConnected})
	if string(b) != `{"type":"auth_success","server_id":"uuid","message":"Connected successfully"}` {
		t.Errorf("auth_success = %s", b)
	}
	b, _ = Marshal(NewError(MessageInvalidMessage))
	if string(b) != `{"type":"error","message":"Invalid message format"}` {
		t.Errorf("error = %s", b)
	}
	b, _ = Marshal(MetricsReceived{Type: TypeMetricsReceived, Status: StatusOK})
	if string(b) != `{"type":"metrics_received","status":"ok"}` {
		t.Errorf("metrics_received = %s", b)
	}
	m, err := Decode[ChatopsMetrics]([]byte(seedFrames[3]))
	if err != nil || m.Data.CPU.Cores != 8 || m.Data.Disk.TotalGB != 457 || len(m.Data.Processes) != 1 {
		t.Errorf("chatops metrics = %+v, %v", m, err)
	}
	d, err := Decode[Metrics]([]byte(seedFrames[2]))
	if err != nil || d.Seq != 7 || d.CPUPercent != 1 {
		t.Errorf("doc metrics = %+v, %v", d, err)
	}
	if _, err := Decode[Auth]([]byte(`{"type":"auth","api_key":5}`)); !errors.Is(err, ErrInvalid) {
		t.Errorf("numeric api_key: %v", err)
	}
}

func FuzzDecoders(f *testing.F) {
	for _, s := range seedFrames {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		env, err := Peek(frame)
		if err == nil && env.Type == "" {
			t.Fatalf("Peek(%q) accepted an empty type", frame)
		}
		_ = ShapeOf(env)
		if s, err := NormalizeMetrics(frame, "srv", now); err == nil {
			var m map[string]any
			if json.Unmarshal(s.JSON, &m) != nil || m["server_id"] != "srv" {
				t.Fatalf("NormalizeMetrics(%q) = %s", frame, s.JSON)
			}
			if s.Time.After(now.Add(MaxClockSkew)) {
				t.Fatalf("NormalizeMetrics(%q) kept a future time %v", frame, s.Time)
			}
		} else if !errors.Is(err, ErrInvalid) {
			t.Fatalf("NormalizeMetrics error %v does not wrap ErrInvalid", err)
		}
		if l, err := NormalizeLog(frame, "srv", now); err == nil {
			var m map[string]any
			if json.Unmarshal(l.JSON, &m) != nil || m["server_id"] != "srv" {
				t.Fatalf("NormalizeLog(%q) = %s", frame, l.JSON)
			}
		}
		if id, _, err := DecodeReply(frame); err == nil && id == "" {
			t.Fatalf("DecodeReply(%q) accepted an empty id", frame)
		}
		_, _ = Decode[Auth](frame)
		_, _ = Decode[ChatopsMetrics](frame)
		if err == nil && strings.TrimSpace(string(frame)) == "" {
			t.Fatal("empty frame accepted")
		}
	})
}
