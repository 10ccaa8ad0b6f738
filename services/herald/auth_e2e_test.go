package herald_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/crypto/bcrypt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/heraldhq/herald/pkg/authwire"
	"github.com/heraldhq/herald/pkg/natsx"
	"github.com/heraldhq/herald/pkg/testutil/redistest"
	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
	"github.com/heraldhq/herald/services/herald"
)

// authStack is a stack whose admin password is hashed at bcrypt's default cost, as in
// production, so a password check costs what it really does.
func authStack(t *testing.T) (*herald.Stack, heraldv1.AuthServiceClient) {
	t.Helper()
	return authStackWith(t, herald.Config{})
}

func authStackWith(t *testing.T, cfg herald.Config) (*herald.Stack, heraldv1.AuthServiceClient) {
	t.Helper()
	cfg.Listen.HTTPAddr, cfg.Listen.GRPCAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.NATS.StoreDir = t.TempDir()
	cfg.Auth.AdminPassword = "correct horse"
	cfg.Auth.BcryptCost = bcrypt.DefaultCost
	s := runStack(t, cfg)
	cc, err := grpc.NewClient(s.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return s, heraldv1.NewAuthServiceClient(cc)
}

// dialDRPFrom opens a DRP socket from the loopback address src (any 127.x.y.z works on Linux),
// so a test can play clients at different addresses. It returns the HTTP status on refusal.
func dialDRPFrom(ctx context.Context, addr, src, query string) (*websocket.Conn, int, error) {
	d := websocket.Dialer{HandshakeTimeout: 30 * time.Second, NetDialContext: (&net.Dialer{
		LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}).DialContext}
	ws, resp, err := d.DialContext(ctx, "ws://"+addr+"/api/v3/ws?"+query, nil)
	if err != nil {
		code := 0
		if resp != nil {
			code = resp.StatusCode
		}
		return nil, code, err
	}
	return ws, http.StatusSwitchingProtocols, nil
}

// closeCode waits (bounded) for ws to be closed by the server and returns the close error.
func closeCode(ws *websocket.Conn, within time.Duration) (*websocket.CloseError, error) {
	_ = ws.SetReadDeadline(time.Now().Add(within))
	for range 1000 {
		if _, _, err := ws.ReadMessage(); err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				return ce, nil
			}
			return nil, err
		}
	}
	return nil, errors.New("no close among 1000 frames")
}

// A reconnect storm of 2,000 (500 under -race) user:password DRP sockets all get in (the edge checks the password
// once and shares the answer), and a password change closes every one of them with 4001
// within a second (measured from the ChangePassword call, which hashes the new password
// first; under -race the bound is looser, see storm_race_test.go).
func TestPasswordStormAndPasswordChangeClosesSockets(t *testing.T) {
	n := stormSockets
	s, ac := authStack(t)
	q := "token=" + url.QueryEscape("admin:correct horse")
	socks := make([]*websocket.Conn, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	start := time.Now()
	for i := range n {
		wg.Go(func() {
			ws, code, err := dialDRPFrom(t.Context(), s.HTTPAddr(), "127.0.0.1", q)
			if err != nil {
				errs <- fmt.Errorf("socket %d: %w (HTTP %d)", i, err, code)
				return
			}
			socks[i] = ws
		})
	}
	wg.Wait()
	took := time.Since(start)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, ws := range socks {
		t.Cleanup(func() { ws.Close() })
	}
	t.Logf("%d user:password DRP sockets opened at once: all in after %s", n, took.Round(time.Millisecond))

	// Prove the sockets are live (one registration each is ack'ed), then change the password.
	expectAck(t, socks[0], "register", "profiles.*.*")
	login, err := ac.Login(t.Context(), &heraldv1.LoginRequest{Username: "admin", Password: "correct horse"})
	if err != nil {
		t.Fatal(err)
	}
	changed := time.Now()
	if _, err := ac.ChangePassword(bearer(t.Context(), login.GetToken()),
		&heraldv1.ChangePasswordRequest{User: "admin", NewPassword: "battery staple"}); err != nil {
		t.Fatal(err)
	}
	var closeErrs = make(chan error, n)
	var last sync.Mutex
	var slowest time.Duration
	for _, ws := range socks {
		wg.Go(func() {
			ce, err := closeCode(ws, 5*time.Second)
			if err != nil {
				closeErrs <- err
				return
			}
			if ce.Code != 4001 || !strings.Contains(ce.Text, "revoked") {
				closeErrs <- fmt.Errorf("close %d %q, want 4001 token revoked", ce.Code, ce.Text)
				return
			}
			last.Lock()
			slowest = max(slowest, time.Since(changed))
			last.Unlock()
		})
	}
	wg.Wait()
	close(closeErrs)
	for err := range closeErrs {
		t.Fatal(err)
	}
	t.Logf("password change closed all %d sockets with 4001 within %s", n, slowest.Round(time.Millisecond))
	if slowest > stormCloseBound {
		t.Errorf("sockets closed %s after the password change, want within %s", slowest, stormCloseBound)
	}
	// The old password no longer opens a socket; the new one does.
	if _, code, _ := dialDRPFrom(t.Context(), s.HTTPAddr(), "127.0.0.1", q); code != http.StatusUnauthorized {
		t.Fatalf("old password after the change: HTTP %d, want 401", code)
	}
	ws, code, err := dialDRPFrom(t.Context(), s.HTTPAddr(), "127.0.0.1", "token="+url.QueryEscape("admin:battery staple"))
	if err != nil {
		t.Fatalf("new password: %v (HTTP %d)", err, code)
	}
	ws.Close()
}

// Revoking one token closes the socket opened with it within a second and refuses it at
// once; a socket with another token of the same user stays.
func TestRevokeTokenClosesItsSocket(t *testing.T) {
	s, ac := authStack(t)
	tok := func() string {
		r, err := ac.Login(t.Context(), &heraldv1.LoginRequest{Username: "admin", Password: "correct horse"})
		if err != nil {
			t.Fatal(err)
		}
		return r.GetToken()
	}
	doomed, kept := tok(), tok()
	a := dialDRP(t, s.HTTPAddr(), "token="+doomed)
	b := dialDRP(t, s.HTTPAddr(), "token="+kept)
	expectAck(t, a, "register", "profiles.*.*")
	expectAck(t, b, "register", "profiles.*.*")
	revoked := time.Now()
	if _, err := ac.RevokeToken(bearer(t.Context(), kept), &heraldv1.RevokeTokenRequest{Token: doomed}); err != nil {
		t.Fatal(err)
	}
	if _, err := ac.Verify(t.Context(), &heraldv1.VerifyRequest{Token: doomed}); err == nil {
		t.Fatal("revoked token verifies over gRPC")
	}
	ce, err := closeCode(a, 5*time.Second)
	if err != nil || ce.Code != 4001 || !strings.Contains(ce.Text, "revoked") {
		t.Fatalf("revoked token's socket: %v %v, want 4001 token revoked", ce, err)
	}
	if d := time.Since(revoked); d > time.Second {
		t.Errorf("closed %s after the revocation, want within 1s", d)
	}
	expectAck(t, b, "register", "machines.*.*") // the other token's socket is still up
	if _, code, _ := dialDRPFrom(t.Context(), s.HTTPAddr(), "127.0.0.1", "token="+doomed); code != http.StatusUnauthorized {
		t.Fatalf("revoked token: HTTP %d, want 401", code)
	}
}

// Wrong passwords for admin from one address, through the edge, do not lock admin out from
// another: the stranger is slowed down, the owner gets in.
func TestStrangerCannotLockOutUser(t *testing.T) {
	s, _ := authStack(t)
	const stranger, owner = "127.0.0.66", "127.0.0.7"
	wrong := "token=" + url.QueryEscape("admin:guess")
	refused := 0
	for range 15 {
		_, code, _ := dialDRPFrom(t.Context(), s.HTTPAddr(), stranger, wrong)
		if code != http.StatusUnauthorized {
			t.Fatalf("wrong password: HTTP %d, want 401", code)
		}
		refused++
	}
	right := "token=" + url.QueryEscape("admin:correct horse")
	if _, code, _ := dialDRPFrom(t.Context(), s.HTTPAddr(), stranger, right); code != http.StatusUnauthorized {
		t.Fatalf("the stranger's address is not limited: HTTP %d", code)
	}
	ws, code, err := dialDRPFrom(t.Context(), s.HTTPAddr(), owner, right)
	if err != nil {
		t.Fatalf("owner locked out by a stranger: %v (HTTP %d)", err, code)
	}
	ws.Close()
	if st := s.Auth().LoginLimits(); st.RefusedUserAddress == 0 {
		t.Fatalf("no refusal counted: %+v", st)
	}
}

// Redis is only the connection registry: stopped, then started empty, it takes no user, key
// or session with it. Logins (token and password), API keys (what an ingest asks when an
// agent connects) and sockets keep working without a restart.
func TestRedisRestartedEmptyLosesNoIdentity(t *testing.T) {
	rs := redistest.Start(t)
	s, ac := authStackWith(t, herald.Config{RedisURL: rs.URL()})
	nc, err := natsx.ConnectInProcess(s.NATSServer(), "test", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	key := s.DevAPIKey()
	check := func(when string) {
		t.Helper()
		r, err := ac.Login(t.Context(), &heraldv1.LoginRequest{Username: "admin", Password: "correct horse"})
		if err != nil {
			t.Fatalf("%s: login: %v", when, err)
		}
		dialDRP(t, s.HTTPAddr(), "token="+r.GetToken()).Close()
		ws, code, err := dialDRPFrom(t.Context(), s.HTTPAddr(), "127.0.0.1", "token="+url.QueryEscape("admin:correct horse"))
		if err != nil {
			t.Fatalf("%s: password socket: %v (HTTP %d)", when, err, code)
		}
		ws.Close()
		if info, err := authwire.VerifyAPIKey(t.Context(), nc, key); err != nil || info.ServerID != herald.DevServerID {
			t.Fatalf("%s: api key: %+v, %v", when, info, err)
		}
	}
	check("before")
	rs.Stop()
	check("while Redis is down")
	rs.Restart()
	check("after Redis came back empty")
}
