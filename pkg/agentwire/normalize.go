package agentwire

import (
	"encoding/json"
	"fmt"
	"math"
	"time"
)

// MaxClockSkew bounds how far in the future a sample's timestamp may be. A later one is
// replaced by the receive time: the latest-sample store drops anything not newer than what it
// holds, so one sample from a clock far ahead would otherwise hide every later sample.
const MaxClockSkew = 5 * time.Minute

// Usage keys of Sample.Usage, also the alert types.
const (
	UsageCPU    = "cpu"
	UsageMemory = "memory"
	UsageDisk   = "disk"
)

// Sample is a normalized metrics message.
type Sample struct {
	// Time is the sample's own timestamp (UTC), or the receive time when it had none.
	Time time.Time
	// Seq is Herald's sequence number; 0 when the agent sent none.
	Seq uint64
	// Nested reports chatops' shape ({"type":"metrics","data":{...}}).
	Nested bool
	// Usage holds the percentages found: UsageCPU, UsageMemory, UsageDisk (the fullest disk).
	Usage map[string]float64
	// JSON is the normalized sample object published on subject.Metrics: every field the agent
	// sent (chatops: the fields of "data"), with server_id set to the authenticated server,
	// timestamp as RFC 3339 UTC, and cpu_percent / memory_percent / disk_usage derived from
	// chatops' cpu / memory / disk objects when absent. "type" is dropped; "seq" stays, so a viewer can spot a gap.
	JSON json.RawMessage
}

// NormalizeMetrics turns a metrics frame of either shape into a Sample for serverID. The
// server id inside the frame is ignored: an agent reports for the server its key belongs to.
// Errors wrap ErrInvalid.
func NormalizeMetrics(frame []byte, serverID string, now time.Time) (Sample, error) {
	var top map[string]json.RawMessage
	if err := strictObject(frame, &top); err != nil {
		return Sample{}, err
	}
	var s Sample
	if raw, ok := top["seq"]; ok {
		if err := json.Unmarshal(raw, &s.Seq); err != nil {
			return Sample{}, fmt.Errorf("%w: seq: %w", ErrInvalid, err)
		}
	}
	fields := top
	if isObject(top["data"]) {
		s.Nested = true
		fields = nil
		if err := json.Unmarshal(top["data"], &fields); err != nil {
			return Sample{}, fmt.Errorf("%w: data: %w", ErrInvalid, err)
		}
	} else {
		// seq stays: viewers can spot a gap in an agent's samples by it.
		delete(fields, "type")
	}
	if fields == nil { // "data": {} decodes to an empty map, never nil; this is defensive
		fields = map[string]json.RawMessage{}
	}

	ts, err := timestampField(fields, now)
	if err != nil {
		return Sample{}, err
	}
	s.Time = ts
	fields["timestamp"] = mustJSON(ts.Format(time.RFC3339Nano))
	fields["server_id"] = mustJSON(serverID)

	s.Usage = make(map[string]float64, 3)
	for _, g := range []struct{ key, flat, nested string }{
		{UsageCPU, "cpu_percent", "cpu"},
		{UsageMemory, "memory_percent", "memory"},
	} {
		v, ok, err := numberField(fields, g.flat)
		if err != nil {
			return Sample{}, err
		}
		if !ok {
			if v, ok = nestedPercent(fields[g.nested]); ok {
				fields[g.flat] = mustJSON(v)
			}
		}
		if ok {
			s.Usage[g.key] = v
		}
	}
	if _, ok := fields["disk_usage"]; !ok && isObject(fields["disk"]) {
		fields["disk_usage"] = json.RawMessage("[" + string(fields["disk"]) + "]")
	}
	if v, ok := fullestDisk(fields["disk_usage"]); ok {
		s.Usage[UsageDisk] = v
	}

	out, err := json.Marshal(fields)
	if err != nil {
		return Sample{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	s.JSON = out
	return s, nil
}

// LogSample is a normalized log message.
type LogSample struct {
	// Time is the entry's timestamp (UTC), or the receive time when it had none.
	Time time.Time
	// JSON is the entry published on subject.Logs: the fields of "data" (or of the frame itself
	// when an agent sends them flat), with server_id, timestamp normalized as for metrics and
	// level defaulting to "info".
	JSON json.RawMessage
}

// NormalizeLog turns {"type":"log","data":{"level","message","timestamp",...}} into a LogSample
// for serverID. "message" must be a string. Errors wrap ErrInvalid.
func NormalizeLog(frame []byte, serverID string, now time.Time) (LogSample, error) {
	var top map[string]json.RawMessage
	if err := strictObject(frame, &top); err != nil {
		return LogSample{}, err
	}
	fields := top
	if isObject(top["data"]) {
		fields = nil
		if err := json.Unmarshal(top["data"], &fields); err != nil {
			return LogSample{}, fmt.Errorf("%w: data: %w", ErrInvalid, err)
		}
	} else {
		delete(fields, "type")
	}
	if fields == nil {
		fields = map[string]json.RawMessage{}
	}
	var msg string
	if err := json.Unmarshal(fields["message"], &msg); err != nil || fields["message"] == nil || isNull(fields["message"]) {
		return LogSample{}, fmt.Errorf("%w: message: must be a string", ErrInvalid)
	}
	var level string
	if raw, ok := fields["level"]; ok && !isNull(raw) {
		if err := json.Unmarshal(raw, &level); err != nil {
			return LogSample{}, fmt.Errorf("%w: level: must be a string", ErrInvalid)
		}
	}
	if level == "" {
		fields["level"] = mustJSON("info")
	}
	ts, err := timestampField(fields, now)
	if err != nil {
		return LogSample{}, err
	}
	fields["timestamp"] = mustJSON(ts.Format(time.RFC3339Nano))
	fields["server_id"] = mustJSON(serverID)
	out, err := json.Marshal(fields)
	if err != nil {
		return LogSample{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return LogSample{Time: ts, JSON: out}, nil
}

// Layouts accepted for "timestamp" besides RFC 3339: Python's isoformat without a zone
// (chatops' server writes those), read as UTC.
var zonelessLayouts = []string{"2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05.999999999"}

// timestampField reads fields["timestamp"]: an RFC 3339 string, a zoneless ISO string (UTC),
// or a number of Unix seconds. Missing or null means now. The result is UTC and never more
// than MaxClockSkew ahead of now.
func timestampField(fields map[string]json.RawMessage, now time.Time) (time.Time, error) {
	raw, ok := fields["timestamp"]
	if !ok || isNull(raw) {
		return now.UTC(), nil
	}
	var ts time.Time
	var str string
	var num float64
	switch {
	case json.Unmarshal(raw, &str) == nil:
		t, err := time.Parse(time.RFC3339Nano, str)
		for _, layout := range zonelessLayouts {
			if err == nil {
				break
			}
			t, err = time.ParseInLocation(layout, str, time.UTC)
		}
		if err != nil {
			return time.Time{}, fmt.Errorf("%w: timestamp: %q is not RFC 3339", ErrInvalid, str)
		}
		ts = t
	case json.Unmarshal(raw, &num) == nil:
		if num < 0 || num > 1e11 { // after year 5138: not a Unix time in seconds
			return time.Time{}, fmt.Errorf("%w: timestamp: %v is out of range", ErrInvalid, num)
		}
		sec, frac := math.Modf(num)
		ts = time.Unix(int64(sec), int64(frac*1e9))
	default:
		return time.Time{}, fmt.Errorf("%w: timestamp: must be a string", ErrInvalid)
	}
	if ts.Year() < 1 || ts.Year() > 9999 {
		return time.Time{}, fmt.Errorf("%w: timestamp: out of range", ErrInvalid)
	}
	if ts.After(now.Add(MaxClockSkew)) {
		ts = now
	}
	return ts.UTC(), nil
}

// numberField reads a numeric field; absent or null is (0, false, nil), anything but a number
// is an error.
func numberField(fields map[string]json.RawMessage, key string) (float64, bool, error) {
	raw, ok := fields[key]
	if !ok || isNull(raw) {
		return 0, false, nil
	}
	var v float64
	if err := json.Unmarshal(raw, &v); err != nil {
		return 0, false, fmt.Errorf("%w: %s: must be a number", ErrInvalid, key)
	}
	return v, true, nil
}

// nestedPercent reads "usage_percent" of a chatops object such as "cpu"; anything else is
// "not there" (chatops' sub-objects are informational).
func nestedPercent(raw json.RawMessage) (float64, bool) {
	if !isObject(raw) {
		return 0, false
	}
	var o struct {
		UsagePercent *float64 `json:"usage_percent"`
	}
	if json.Unmarshal(raw, &o) != nil || o.UsagePercent == nil {
		return 0, false
	}
	return *o.UsagePercent, true
}

// percentKeys are the names doc agents use for a disk's fill level (Herald's, Python's and
// gopsutil's spellings).
var percentKeys = []string{"usage_percent", "used_percent", "usedPercent", "percent"}

// fullestDisk returns the highest fill level among the objects of a disk_usage array.
func fullestDisk(raw json.RawMessage) (float64, bool) {
	var disks []map[string]json.RawMessage
	if json.Unmarshal(raw, &disks) != nil {
		return 0, false
	}
	best, found := 0.0, false
	for _, d := range disks {
		for _, k := range percentKeys {
			var v float64
			if r, ok := d[k]; ok && json.Unmarshal(r, &v) == nil {
				if !found || v > best {
					best, found = v, true
				}
				break
			}
		}
	}
	return best, found
}

func isNull(raw json.RawMessage) bool { return string(raw) == "null" }

// mustJSON encodes strings, floats and times' strings, which cannot fail for finite values.
func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("agentwire: encode %T: %v", v, err)) // unreachable: callers pass finite numbers and strings
	}
	return b
}
