package edge_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/heraldhq/herald/pkg/testutil"
	"github.com/heraldhq/herald/pkg/token"
	"github.com/heraldhq/herald/pkg/wsconn"
	"github.com/heraldhq/herald/services/edge/drp"
)

var drpKeys = []string{"Time", "Type", "Action", "Key", "Principal", "Object", "Original"}

func TestRegisterDeliverDeregister(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	c := r.dial(r.token("*.*.*"))
	c.register("register", "profiles.*.*")
	c.register("register", "sentinel.*.*")

	r.publish("profiles", "save", "global", map[string]any{"Name": "global"})
	r.publish("machines", "create", "m1", map[string]any{"Name": "m1"})
	r.publish("sentinel", "done", "1", nil)

	f := c.next()
	if f.Type != "profiles" || f.Action != "save" || f.Key != "global" || f.Principal != "user:test" {
		t.Fatalf("first frame %+v, want profiles.save.global", f)
	}
	for _, k := range drpKeys {
		if _, ok := f.keys[k]; !ok {
			t.Errorf("frame lacks %q: %v", k, f.keys)
		}
	}
	// DRP's seven, and Herald's Position (the event's place in the stream, for resume).
	if _, ok := f.keys["Position"]; len(f.keys) != len(drpKeys)+1 || !ok {
		t.Errorf("frame has keys %v, want exactly DRP's seven and Position", f.keys)
	}
	var pos string
	if err := json.Unmarshal(f.keys["Position"], &pos); err != nil || !strings.Contains(pos, ":") {
		t.Errorf("Position %s, want <epoch>:<seq>", f.keys["Position"])
	}
	if string(f.Object) != `{"Name":"global"}` || string(f.Original) != "null" || f.Time.IsZero() {
		t.Errorf("frame Object %s Original %s Time %v", f.Object, f.Original, f.Time)
	}
	if f := c.next(); f.Type != "sentinel" {
		t.Fatalf("got %+v, want the sentinel: machines.create.m1 leaked through profiles.*.*", f)
	}

	c.register("deregister", "profiles.*.*")
	r.publish("profiles", "save", "global", nil)
	r.publish("sentinel", "done", "2", nil)
	if f := c.next(); f.Type != "sentinel" || f.Key != "2" {
		t.Fatalf("got %+v after deregister, want only the sentinel", f)
	}
}

func TestCommaListsMatchDRP(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	c := r.dial(r.token("*.*.*"))
	c.register("register", "machines,profiles.create,save.*")
	c.register("register", "sentinel.*.*")
	sent := [][3]string{
		{"machines", "create", "a"}, {"machines", "save", "b"}, {"profiles", "create", "c"},
		{"profiles", "save", "d"}, {"machines", "update", "x"}, {"params", "create", "y"},
		{"profiles", "delete", "z"},
	}
	for _, e := range sent {
		r.publish(e[0], e[1], e[2], nil)
	}
	r.publish("sentinel", "done", "1", nil)
	var got []string
	for i := 0; i < 10; i++ {
		f := c.next()
		if f.Type == "sentinel" {
			break
		}
		got = append(got, f.Key)
	}
	if strings.Join(got, ",") != "a,b,c,d" {
		t.Fatalf("comma list delivered keys %v, want a,b,c,d", got)
	}
}

func TestAwkwardKeysRoundTrip(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	c := r.dial(r.token("*.*.*"))
	c.register("register", "things.*.*")
	keys := []string{"10.0.0.1:8092", "a.b.c", "*", ">", "a b", "tab\there", "ünïcödé ☃", "runner:3f2a", "", "%41", "日本"}
	for _, k := range keys {
		r.publish("things", "create", k, nil)
	}
	for _, k := range keys {
		if f := c.next(); f.Key != k {
			t.Fatalf("key %q arrived as %q", k, f.Key)
		}
	}
	// A key with dots can be registered for exactly: the key is the rest after two dots.
	c.register("register", "exact.create.10.0.0.1:8092")
	r.publish("exact", "create", "10.0.0.1:8093", nil)
	r.publish("exact", "create", "10.0.0.1:8092", nil)
	if f := c.next(); f.Key != "10.0.0.1:8092" {
		t.Fatalf("got key %q, want only 10.0.0.1:8092", f.Key)
	}
}

func TestEachEventOnceAcrossOverlappingRegistrations(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	c := r.dial(r.token("*.*.*"))
	c.register("register", "machines.*.*")
	c.register("register", "*.*.*")
	c.register("register", "*.create.m1")
	r.publish("machines", "create", "m1", nil)
	r.publish("profiles", "save", "p", nil)
	r.publish("sentinel", "done", "1", nil)
	var got []string
	for i := 0; i < 10; i++ {
		f := c.next()
		got = append(got, f.Type+"."+f.Action+"."+f.Key)
		if f.Type == "sentinel" {
			break
		}
	}
	if want := "machines.create.m1 profiles.save.p sentinel.done.1"; strings.Join(got, " ") != want {
		t.Fatalf("got %v, want %s (each once, in order)", got, want)
	}
}

func TestAuthentication(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	good := r.token("*.*.*")
	ok := []struct {
		name string
		url  string
		hdr  http.Header
	}{
		{"query user:password", r.wsURL("token=admin:secret"), nil},
		{"query Token", r.wsURL("Token=" + good), nil},
		{"bearer header", r.wsURL(""), http.Header{"Authorization": {"Bearer " + good}}},
		{"basic header", r.wsURL(""), basic("admin", "secret")},
	}
	for _, tc := range ok {
		c := r.dialURL(tc.url, tc.hdr)
		c.register("register", "*.*.*")
	}

	other, _ := token.GenerateKey()
	foreign, _, _ := token.NewIssuer(other, time.Hour).Issue("mallory", []string{"*.*.*"})
	old := r.expiredToken()
	refused := []struct {
		name, url, reason string
		hdr               http.Header
	}{
		{"no credentials", r.wsURL(""), "no credentials", nil},
		{"wrong password", r.wsURL("token=admin:wrong"), "unauthorized", nil},
		{"wrong basic", r.wsURL(""), "unauthorized", basic("admin", "nope")},
		{"expired token", r.wsURL("token=" + url.QueryEscape(old)), "expired", nil},
		{"other key", r.wsURL("token=" + url.QueryEscape(foreign)), "signature", nil},
		{"garbage", r.wsURL("token=garbage"), "malformed", nil},
		{"unknown scheme", r.wsURL(""), "scheme", http.Header{"Authorization": {"Digest x"}}},
	}
	for _, tc := range refused {
		status, reason := r.dialStatus(tc.url, tc.hdr)
		if status != http.StatusUnauthorized || !strings.Contains(reason, tc.reason) {
			t.Errorf("%s: HTTP %d %q, want 401 mentioning %q", tc.name, status, reason, tc.reason)
		}
	}
}

// expiredToken is signed by the rig's key but expired an hour ago.
func (r *rig) expiredToken() string {
	raw, _, err := token.NewIssuer(r.issuerKey(), time.Minute, token.WithClock(func() time.Time {
		return time.Now().Add(-2 * time.Hour)
	})).Issue("alice", []string{"*.*.*"})
	if err != nil {
		r.t.Fatal(err)
	}
	return raw
}

func TestPermissions(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	c := r.dial(r.token("machines.*.*", "sentinel.*.*"))

	// Outside the permissions entirely: an error frame, and the connection stays up.
	c.send("register params.*.*")
	f := c.next()
	var obj struct {
		Error string
		Code  int
	}
	_ = json.Unmarshal(f.Object, &obj)
	if f.Type != "websocket" || f.Action != "error" || f.Key != "params.*.*" || obj.Code != 403 || !strings.Contains(obj.Error, "permission") {
		t.Fatalf("got %+v (%+v), want a 403 error frame", f, obj)
	}
	// *.*.* means "everything I may see", as in DRP: narrowed to the permissions.
	c.register("register", "*.*.*")
	r.publish("params", "create", "secret", nil)
	r.publish("machines", "create", "m1", nil)
	r.publish("sentinel", "done", "1", nil)
	for _, want := range []string{"machines", "sentinel"} {
		if f := c.next(); f.Type != want {
			t.Fatalf("got %+v, want %s: something outside the permissions leaked", f, want)
		}
	}
}

func TestBadCommandsGetErrorFrames(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	c := r.dial(r.token("*.*.*"))
	for _, tc := range []struct{ send, key, says string }{
		{"register *", "*", "three fields"},
		{"register machines.*", "machines.*", "three fields"},
		{"subscribe machines.*.*", "subscribe machines.*.*", "unknown command"},
		{"REGISTER a.b.c", "REGISTER a.b.c", "unknown command"},
		{"register a,b,c,d,e,f,g,h,i.a,b,c,d,e,f,g,h.*", "a,b,c,d,e,f,g,h,i.a,b,c,d,e,f,g,h.*", "too many subjects"},
	} {
		c.send(tc.send)
		f := c.next()
		var obj struct{ Error string }
		_ = json.Unmarshal(f.Object, &obj)
		if f.Type != "websocket" || f.Action != "error" || f.Key != tc.key || !strings.Contains(obj.Error, tc.says) {
			t.Errorf("%q: got %+v %q, want an error frame saying %q", tc.send, f, obj.Error, tc.says)
		}
	}
	// Still usable afterwards.
	c.register("register", "ok.*.*")
	r.publish("ok", "create", "1", nil)
	if f := c.next(); f.Type != "ok" {
		t.Fatalf("got %+v after errors", f)
	}
}

func TestOversizedFrameCloses1009(t *testing.T) {
	t.Parallel()
	r := newRig(t, withWS(func(c *wsconn.Config) { c.MaxMessageBytes = 512 }))
	c := r.dial(r.token("*.*.*"))
	c.send("register " + strings.Repeat("x", 600) + ".*.*")
	if code, _ := c.closeCode(5 * time.Second); code != websocket.CloseMessageTooBig {
		t.Fatalf("close code %d, want 1009", code)
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		if n := r.edge.Hub().Clients(); n != 0 {
			return fmt.Errorf("%d clients still held", n)
		}
		return nil
	})
}

func TestTokenExpiryClosesSocket(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	raw, _, err := token.NewIssuer(r.issuerKey(), 2*time.Second).Issue("alice", []string{"*.*.*"})
	if err != nil {
		t.Fatal(err)
	}
	c := r.dial(raw)
	c.register("register", "*.*.*")
	code, reason := c.closeCode(10 * time.Second)
	if code != wsconn.DisconnectTokenExpired.Code || reason != "token expired" {
		t.Fatalf("closed with %d %q, want %d token expired", code, reason, wsconn.DisconnectTokenExpired.Code)
	}
}

func TestSharedNATSInterest(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	before := r.ns.NumSubscriptions()
	tok := r.token("*.*.*")
	const n = 200
	clients := make([]*client, n)
	for i := range clients {
		clients[i] = r.dial(tok)
		clients[i].register("register", "*.*.*")
	}
	if got := r.edge.Hub().Subscriptions(); got != 1 {
		t.Fatalf("hub holds %d NATS subscriptions for %d clients on one filter, want 1", got, n)
	}
	if delta := r.ns.NumSubscriptions() - before; delta != 1 {
		t.Fatalf("NATS server gained %d subscriptions, want 1", delta)
	}
	r.publish("machines", "create", "m1", nil)
	for i, c := range clients {
		if f := c.next(); f.Key != "m1" {
			t.Fatalf("client %d got %+v", i, f)
		}
	}
}

// A client that stops reading is closed within a bound while another on the same edge keeps
// receiving every event.
func TestSlowConsumerClosedOthersUnaffected(t *testing.T) {
	t.Parallel()
	r := newRig(t, withWS(func(c *wsconn.Config) { c.SendQueue = 64 }))
	tok := r.token("*.*.*")
	slow := r.dial(tok)
	slow.register("register", "*.*.*")
	fast := r.dial(tok)
	fast.register("register", "*.*.*")

	received := make(chan int, 1)
	go func() {
		n := 0
		for ; n < 100000; n++ {
			f, err := fast.read(10 * time.Second)
			if err != nil || f.Type == "sentinel" {
				break
			}
		}
		received <- n
	}()
	// The slow client reads nothing. 64 KiB objects fill the kernel's socket buffers quickly,
	// then its queue of 64 overflows.
	big := strings.Repeat("x", 64<<10)
	const events = 400
	for i := 0; i < events; i++ {
		r.publish("load", "tick", fmt.Sprint(i), map[string]string{"pad": big})
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		if n := r.edge.Hub().Clients(); n != 1 {
			return fmt.Errorf("%d clients held, want the slow one gone", n)
		}
		return nil
	})
	r.publish("sentinel", "done", "1", nil)
	if n := <-received; n != events {
		t.Fatalf("the fast client got %d of %d events", n, events)
	}
	code, reason := slow.closeCode(10 * time.Second)
	// The close frame reaches the slow client only if it reads in time; the connection ends
	// either way, and the reason is there when it does.
	if code != websocket.CloseAbnormalClosure && (code != wsconn.DisconnectSlow.Code || !strings.Contains(reason, "slow consumer")) {
		t.Fatalf("slow client closed with %d %q", code, reason)
	}
}

// Pings keep an idle client that answers them alive, and reap one that does not.
func TestPingsReapDeadPeers(t *testing.T) {
	t.Parallel()
	r := newRig(t, withWS(func(c *wsconn.Config) {
		c.PingInterval = 100 * time.Millisecond
		c.PongWait = 400 * time.Millisecond
	}))
	tok := r.token("*.*.*")
	live := r.dial(tok) // gorilla answers pings while it reads
	dead := r.dial(tok) // never reads, so never answers
	start := time.Now()
	// The dial returns when the handshake does, which may be before the edge holds the client.
	testutil.Eventually(t, 5*time.Second, func() error {
		if n := r.edge.Hub().Clients(); n != 2 {
			return fmt.Errorf("%d clients, want both held", n)
		}
		return nil
	})
	liveFrame := make(chan frame, 1)
	go func() {
		f, err := live.read(5 * time.Second) // idle: the first frame is the ack sent below
		if err != nil {
			t.Errorf("live idle client: %v", err)
		}
		liveFrame <- f
	}()
	testutil.Eventually(t, 5*time.Second, func() error {
		if n := r.edge.Hub().Clients(); n != 1 {
			return fmt.Errorf("%d clients, want the dead one reaped", n)
		}
		return nil
	})
	// The dead client was reaped after a pong wait; the live one, idle as long, still works.
	live.send("register *.*.*")
	if f := <-liveFrame; f.Type != "websocket" || f.Action != "register" {
		t.Fatalf("live client got %+v, want its ack", f)
	}
	if waited := time.Since(start); waited < 400*time.Millisecond {
		t.Fatalf("dead client reaped after %s, before its pong wait", waited)
	}
	_ = dead
}

// Shutdown drains: every client is closed with 1012, reconnect elsewhere.
func TestShutdownClosesClients(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	c := r.dial(r.token("*.*.*"))
	c.register("register", "*.*.*")
	stopped := make(chan error, 1)
	go func() { stopped <- r.stop() }()
	code, reason := c.closeCode(5 * time.Second)
	if code != websocket.CloseServiceRestart || reason != "service restart" {
		t.Fatalf("closed with %d %q, want 1012 service restart", code, reason)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("edge.Run: %v", err)
	}
}

// A pattern registered twice is one registration (one deregister ends it), and a connection
// holds at most drp.MaxRegistrations.
func TestRegistrationsAreDedupedAndBounded(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	c := r.dial(r.token("*.*.*"))
	c.register("register", "profiles.*.*")
	c.register("register", "profiles.*.*")
	c.register("register", "sentinel.*.*")
	c.register("deregister", "profiles.*.*")
	r.publish("profiles", "save", "global", nil)
	r.publish("sentinel", "done", "1", nil)
	if f := c.next(); f.Type != "sentinel" {
		t.Fatalf("got %+v after one deregister of a twice-registered pattern, want the sentinel", f)
	}
	for i := 1; i < drp.MaxRegistrations; i++ { // the sentinel is the first
		c.register("register", fmt.Sprintf("machines.create.m%d", i))
	}
	c.send("register machines.create.over")
	f := c.next()
	var obj struct{ Code int }
	_ = json.Unmarshal(f.Object, &obj)
	if f.Action != "error" || f.Key != "machines.create.over" || obj.Code != http.StatusBadRequest {
		t.Fatalf("registration %d: got %+v, want a 400 error frame", drp.MaxRegistrations+1, f)
	}
}
