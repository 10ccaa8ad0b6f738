package herald_test

import (
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"path"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/crypto/bcrypt"

	"github.com/heraldhq/herald/pkg/app"
	"github.com/heraldhq/herald/services/herald"
)

// DRP's Go client (package api of Digital Rebar Provision v4) cannot be fetched through the
// Go module proxy (the module is not published there), so drpAPIClient repeats, call for call,
// what that client puts on the wire and how it reads the answers: the requests of
// api.UserSession, Client.Info, the token refresh, Client.PostEvent and Client.Events, its
// transport (TLS without verification, HTTP/2 attempted) and R.Do's parsing (only
// application/json is accepted, even on success; a status of 400 or more is a models.Error).

// drpModelsError is DRP's models.Error.
type drpModelsError struct {
	Model, Key, Type string
	Messages         []string
	Code             int
}

func (e *drpModelsError) Error() string {
	return fmt.Sprintf("%s %s/%s: %d %s", e.Type, e.Model, e.Key, e.Code, strings.Join(e.Messages, "; "))
}

// drpEvent is DRP's models.Event.
type drpEvent struct {
	Time                         time.Time
	Type, Action, Key, Principal string
	Object, Original             any
}

type drpAPIClient struct {
	endpoint string // https://host:port, as given to api.UserSession
	http     *http.Client
	token    string
}

// drpTransport is api's transport(): TLS with InsecureSkipVerify and HTTP/2.
func drpTransport() *http.Transport {
	return &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true,
		MaxIdleConns: 10, IdleConnTimeout: 90 * time.Second, TLSHandshakeTimeout: 10 * time.Second}
}

// urlFor is Client.UrlFor: endpoint + /api/v3 + the joined path.
func (c *drpAPIClient) urlFor(args ...string) string {
	return c.endpoint + path.Join("/api/v3", path.Join(args...))
}

// do is R.Do for one attempt: Accept JSON, the client's Authorization unless one is set,
// then the content-type check and decoding.
func (c *drpAPIClient) do(method, u string, hdr http.Header, body any, val any) error {
	var rd io.Reader
	if hdr == nil {
		hdr = http.Header{}
	}
	if body != nil {
		hdr.Set("Content-Type", "application/json")
		buf, err := json.Marshal(&body)
		if err != nil {
			return err
		}
		rd = strings.NewReader(string(buf))
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		return err
	}
	req.Header = hdr
	req.Header.Set("Accept", "application/json")
	if req.Header.Get("Authorization") == "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	ct := resp.Header.Get("Content-Type")
	if mt, _, _ := mime.ParseMediaType(ct); mt != "application/json" {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("Cannot handle content-type %s (status %d, body %q)", ct, resp.StatusCode, b)
	}
	dec := json.NewDecoder(resp.Body)
	if resp.StatusCode >= 400 {
		res := &drpModelsError{}
		if err := dec.Decode(res); err != nil {
			return fmt.Errorf("status %d: %w", resp.StatusCode, err)
		}
		return res
	}
	if val != nil && resp.ContentLength != 0 {
		return dec.Decode(val)
	}
	return nil
}

// drpUserToken is models.UserToken.
type drpUserToken struct {
	Token string
	Info  struct {
		Arch, Os, Version, Id string
		ApiPort               int `json:"api_port"`
	}
}

// drpUserSession is api.UserSession: a Basic-authenticated GET users/<name>/token.
func drpUserSession(endpoint, user, pass string) (*drpAPIClient, drpUserToken, error) {
	c := &drpAPIClient{endpoint: endpoint, http: &http.Client{Transport: drpTransport()}}
	basic := base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
	var tok drpUserToken
	err := c.do("GET", c.urlFor("users", user, "token"), http.Header{"Authorization": {"Basic " + basic}}, nil, &tok)
	c.token = tok.Token
	return c, tok, err
}

// reauth is the refresh UserSession runs every 300 s: with the current token, ?ttl=600.
func (c *drpAPIClient) reauth(user string) (drpUserToken, error) {
	var tok drpUserToken
	err := c.do("GET", c.urlFor("users", user, "token")+"?"+url.Values{"ttl": {"600"}}.Encode(), nil, nil, &tok)
	return tok, err
}

// events is Client.Events: the socket at UrlFor("ws") with the scheme forced to wss.
func (c *drpAPIClient) events() (*websocket.Conn, error) {
	ep, err := url.Parse(c.urlFor("ws"))
	if err != nil {
		return nil, err
	}
	ep.Scheme = "wss"
	d := &websocket.Dialer{Proxy: http.ProxyFromEnvironment, TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	ws, _, err := d.Dial(ep.String(), http.Header{"Authorization": {"Bearer " + c.token}})
	return ws, err
}

func TestDRPClientOverTLS(t *testing.T) {
	cfg := herald.Config{Listen: app.ListenConfig{HTTPAddr: "127.0.0.1:0", GRPCAddr: "127.0.0.1:0", SelfSigned: true}}
	cfg.NATS.StoreDir = t.TempDir()
	cfg.Auth.AdminPassword = "correct horse"
	cfg.Auth.BcryptCost = bcrypt.MinCost
	s := runStack(t, cfg)
	endpoint := "https://" + s.HTTPAddr()

	// A wrong password is DRP's 401, as a models.Error the client can read.
	if _, _, err := drpUserSession(endpoint, "admin", "wrong"); err == nil {
		t.Fatal("login with a wrong password succeeded")
	} else if e, ok := err.(*drpModelsError); !ok || e.Code != http.StatusUnauthorized {
		t.Fatalf("wrong password: %v, want a models.Error with code 401", err)
	}
	c, tok, err := drpUserSession(endpoint, "admin", "correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if tok.Token == "" || tok.Info.Version == "" || tok.Info.ApiPort == 0 {
		t.Fatalf("UserToken = %+v, want a token and the server's info", tok)
	}
	if _, err := s.Auth().Verifier().Verify(t.Context(), tok.Token); err != nil {
		t.Fatalf("the token is not a Herald token: %v", err)
	}
	if re, err := c.reauth("admin"); err != nil || re.Token == "" {
		t.Fatalf("token refresh = %+v, %v", re, err)
	}
	if _, err := c.reauth("someone-else"); err == nil {
		t.Fatal("a token for another user was handed out")
	}
	var info map[string]any
	if err := c.do("GET", c.urlFor("info"), nil, nil, &info); err != nil || info["version"] == nil {
		t.Fatalf("info = %v, %v", info, err)
	}
	// Whatever Herald does not serve under /api/v3 is DRP's 404, not text.
	if err := c.do("GET", c.urlFor("machines"), nil, nil, nil); err == nil {
		t.Fatal("GET /api/v3/machines succeeded")
	} else if e, ok := err.(*drpModelsError); !ok || e.Code != http.StatusNotFound {
		t.Fatalf("unknown path: %v, want a models.Error with code 404", err)
	}

	// Events(), then Register with a comma list: the socket acknowledges in DRP's shape.
	ws, err := c.events()
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if err := ws.WriteMessage(websocket.TextMessage, []byte("register profiles,machines.save.*")); err != nil {
		t.Fatal(err)
	}
	readDRP := func() drpEvent {
		t.Helper()
		_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, msg, err := ws.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		var e drpEvent
		if err := json.Unmarshal(msg, &e); err != nil {
			t.Fatalf("%s: %v", msg, err)
		}
		return e
	}
	if ack := readDRP(); ack.Type != "websocket" || ack.Action != "register" {
		t.Fatalf("register answered %+v", ack)
	}

	// PostEvent: a DRP event posted over REST reaches the registered client.
	posted := drpEvent{Type: "profiles", Action: "save", Key: "global", Object: map[string]any{"Name": "global"}}
	if err := c.do("POST", c.urlFor("events"), nil, posted, nil); err != nil {
		t.Fatal(err)
	}
	got := readDRP()
	if got.Type != "profiles" || got.Action != "save" || got.Key != "global" || got.Principal != "user:admin" || got.Time.IsZero() {
		t.Fatalf("received %+v", got)
	}
	if obj, _ := got.Object.(map[string]any); obj["Name"] != "global" {
		t.Fatalf("object %v", got.Object)
	}
	// A bad event is a 400 models.Error.
	if err := c.do("POST", c.urlFor("events"), nil, drpEvent{Action: "save"}, nil); err == nil {
		t.Fatal("an event without a type was accepted")
	} else if e, ok := err.(*drpModelsError); !ok || e.Code != http.StatusBadRequest {
		t.Fatalf("bad event: %v", err)
	}
}
