package resumeclient

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
)

// Kind is one dialect as its resuming clients speak it: how a session is opened and how a
// frame is read. A new dialect (or client kind) is one small type implementing it.
type Kind interface {
	// Name is how failure messages call the client ("drp", "rancher", ...).
	Name() string
	// Dial is the URL (below base, "ws://host:port") and headers of a session that resumes
	// after pos ("" for live events only).
	Dial(base, token, pos string) (string, http.Header)
	// Hello is what the client sends once connected (subscribe, authenticate); may be nil.
	Hello(token, pos string) [][]byte
	// Parse reads one frame; frames it does not know are the zero Frame.
	Parse(msg []byte) Frame
}

// Frame is what a Kind read from one frame: an event (Position set), the edge's report of a
// resume, or neither.
type Frame struct {
	Key      string // the event's key
	Position string // where to resume after this event; "" when the frame is no event
	Resumed  bool   // the edge caught the client up from its position
	Replayed int    // with Resumed: how many stored events it replayed
	TooOld   bool   // the position was refused as too old (list afresh)
}

// The three dialects that resume from a position, subscribed to every event of one type.

// DRP is Digital Rebar's /api/v3/ws: ?since= on the URL and "register <type>.*.*".
type DRP struct{ Type string }

// Rancher is norman's /v3/subscribe: ?resourceTypes= and ?since=, a bearer token.
type Rancher struct{ Type string }

// Salt is salt-api's /all_events/{token}?since=, events tagged herald/<type>/<action>/<key>.
type Salt struct{ Type string }

func (DRP) Name() string     { return "drp" }
func (Rancher) Name() string { return "rancher" }
func (Salt) Name() string    { return "salt" }

func (DRP) Dial(base, token, pos string) (string, http.Header) {
	return base + "/api/v3/ws?token=" + url.QueryEscape(token) + since("&", pos), nil
}

func (k Rancher) Dial(base, token, pos string) (string, http.Header) {
	return base + "/v3/subscribe?resourceTypes=" + url.QueryEscape(k.Type) + since("&", pos),
		http.Header{"Authorization": {"Bearer " + token}}
}

func (Salt) Dial(base, token, pos string) (string, http.Header) {
	return base + "/all_events/" + url.PathEscape(token) + since("?", pos), nil
}

func since(sep, pos string) string {
	if pos == "" {
		return ""
	}
	return sep + "since=" + url.QueryEscape(pos)
}

func (k DRP) Hello(_, _ string) [][]byte   { return [][]byte{[]byte("register " + k.Type + ".*.*")} }
func (Rancher) Hello(_, _ string) [][]byte { return nil }
func (Salt) Hello(_, _ string) [][]byte    { return [][]byte{[]byte("websocket client ready")} }

func (k DRP) Parse(msg []byte) Frame {
	var f struct {
		Type, Action, Key, Position string
		Object                      struct{ Replayed int }
	}
	if json.Unmarshal(msg, &f) != nil {
		return Frame{}
	}
	switch {
	case f.Type == "websocket" && f.Action == "resume":
		return Frame{Resumed: true, Replayed: f.Object.Replayed}
	case f.Type == "websocket" && f.Action == "error":
		return Frame{TooOld: strings.Contains(string(msg), `"Code":410`)}
	case f.Type == k.Type && f.Position != "":
		return Frame{Key: f.Key, Position: f.Position}
	}
	return Frame{}
}

func (Rancher) Parse(msg []byte) Frame {
	var f struct {
		Name string
		Data struct {
			ID       string
			Replayed int
		}
		Position string
	}
	if json.Unmarshal(msg, &f) != nil {
		return Frame{}
	}
	switch f.Name {
	case "resource.resumed":
		return Frame{Resumed: true, Replayed: f.Data.Replayed}
	case "resource.error":
		return Frame{TooOld: strings.Contains(string(msg), "too old")}
	case "resource.change":
		return Frame{Key: f.Data.ID, Position: f.Position}
	}
	return Frame{}
}

func (k Salt) Parse(msg []byte) Frame {
	var f struct {
		Tag  string
		Data map[string]any
	}
	if json.Unmarshal(msg, &f) != nil {
		return Frame{}
	}
	switch f.Tag {
	case "herald/resume/done":
		n, _ := f.Data["replayed"].(float64)
		return Frame{Resumed: true, Replayed: int(n)}
	case "herald/resume/error":
		return Frame{TooOld: true}
	}
	rest, ok := strings.CutPrefix(f.Tag, "herald/"+k.Type+"/")
	if !ok {
		return Frame{}
	}
	_, key, _ := strings.Cut(rest, "/") // <action>/<key>
	pos, _ := f.Data["_position"].(string)
	return Frame{Key: key, Position: pos}
}

// Kinds is every kind of resuming client, each subscribed to the events of type typ.
func Kinds(typ string) []Kind { return []Kind{DRP{typ}, Rancher{typ}, Salt{typ}} }

// Viewer is a metrics viewer of one server (/api/v1/ws/metrics/{server}): the token and the
// position go in the auth message, and the samples are those Telemetry stores (their data
// carries their key).
type Viewer struct{ Server string }

func (k Viewer) Name() string { return "viewer of " + k.Server }

func (k Viewer) Dial(base, _, _ string) (string, http.Header) {
	return base + "/api/v1/ws/metrics/" + url.PathEscape(k.Server), nil
}

func (Viewer) Hello(token, pos string) [][]byte {
	auth := map[string]string{"type": "auth", "token": token}
	if pos != "" {
		auth["since"] = pos
	}
	b, _ := json.Marshal(auth)
	return [][]byte{b}
}

func (Viewer) Parse(msg []byte) Frame {
	var f struct {
		Type     string
		Code     int
		Replayed int
		Position string
		Data     struct{ Key string }
	}
	if json.Unmarshal(msg, &f) != nil {
		return Frame{}
	}
	switch f.Type {
	case "resumed":
		return Frame{Resumed: true, Replayed: f.Replayed}
	case "error":
		return Frame{TooOld: f.Code == 410}
	case "metrics":
		return Frame{Key: f.Data.Key, Position: f.Position}
	}
	return Frame{}
}
