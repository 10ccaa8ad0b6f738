package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gorilla/websocket"
)

// loginResult is the edge's answer to POST /api/v1/auth/login.
type loginResult struct {
	Token     string `json:"token"`
	ExpiresAt string `json:"expires_at"`
	User      string `json:"user"`
}

// httpLogin exchanges a user name and password for a token at the edge.
func httpLogin(ctx context.Context, t target, user, pass string) (loginResult, error) {
	body, _ := json.Marshal(map[string]string{"username": user, "password": pass})
	var out loginResult
	t.cred = "" // the body carries the credentials
	err := doJSON(ctx, t, http.MethodPost, "/api/v1/auth/login", body, &out)
	return out, err
}

// bearerToken is a token for sockets and requests that want one (the monitoring sockets'
// first message): user:password credentials are exchanged at the edge.
func bearerToken(ctx context.Context, t target) (string, error) {
	if err := t.needCred(); err != nil {
		return "", err
	}
	user, pass, ok := strings.Cut(t.cred, ":")
	if !ok {
		return t.cred, nil
	}
	res, err := httpLogin(ctx, t, user, pass)
	if err != nil {
		return "", fmt.Errorf("login: %w", err)
	}
	return res.Token, nil
}

// authHeader is the Authorization header for credentials: Basic for user:password (which
// Herald's REST and DRP endpoints accept), else Bearer.
func authHeader(cred string) string {
	if strings.Contains(cred, ":") {
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(cred))
	}
	return "Bearer " + cred
}

// tlsConfig is the client TLS of the target: the system's roots, or none checked with
// --insecure (a development certificate).
func (t target) tlsConfig() *tls.Config {
	return &tls.Config{InsecureSkipVerify: t.insecure} //nolint:gosec // only when the user asks for it
}

// doJSON sends body (nil: none) to the edge with the target's credentials (empty: none) and
// decodes a 2xx answer into out. Other answers become errors with the exit code of their status.
func doJSON(ctx context.Context, t target, method, path string, body []byte, out any) error {
	u, cred := t.server+path, t.cred
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		Proxy: http.ProxyFromEnvironment, TLSClientConfig: t.tlsConfig()}}
	defer client.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return withCode(exitUsage, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if cred != "" {
		req.Header.Set("Authorization", authHeader(cred))
	}
	resp, err := client.Do(req)
	if err != nil {
		return withCode(exitUnavailable, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return withCode(exitUnavailable, err)
	}
	if resp.StatusCode/100 != 2 {
		return httpError(method+" "+req.URL.Path, resp, b)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s %s: %w", method, u, err)
	}
	return nil
}

// httpError reads the message of Herald's error bodies (auth's {"error"}, DRP's
// models.Error {"Messages"}, norman's {"message"}) and maps the status to an exit code.
func httpError(what string, resp *http.Response, body []byte) error {
	var e struct {
		Error    string   `json:"error"`
		Message  string   `json:"message"`
		Messages []string `json:"Messages"`
	}
	_ = json.Unmarshal(body, &e)
	msg := strings.Join(append([]string{e.Error, e.Message}, e.Messages...), " ")
	if msg = strings.TrimSpace(msg); msg == "" {
		msg = strings.TrimSpace(string(body))
	}
	err := fmt.Errorf("%s: %s: %s", what, resp.Status, msg)
	switch resp.StatusCode {
	case http.StatusBadRequest:
		return withCode(exitUsage, err)
	case http.StatusUnauthorized:
		return withCode(exitAuth, err)
	case http.StatusForbidden:
		return withCode(exitDenied, err)
	case http.StatusNotFound:
		return withCode(exitNotFound, err)
	case http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusGatewayTimeout:
		return withCode(exitUnavailable, err)
	}
	return err
}

// socketURL is the ws:// or wss:// URL of path on an edge given as http(s)://host:port.
func socketURL(edge, path string) (*url.URL, error) {
	u, err := url.Parse(edge + path)
	if err != nil {
		return nil, withCode(exitUsage, fmt.Errorf("edge URL %q: %w", edge, err))
	}
	switch u.Scheme {
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	}
	return u, nil
}

// dialWS opens a socket at path on the edge; header may carry credentials.
func dialWS(ctx context.Context, t target, path string, query url.Values, header http.Header) (*websocket.Conn, error) {
	u, err := socketURL(t.server, path)
	if err != nil {
		return nil, err
	}
	u.RawQuery = query.Encode()
	d := websocket.Dialer{HandshakeTimeout: 15 * time.Second, Proxy: http.ProxyFromEnvironment, TLSClientConfig: t.tlsConfig()}
	ws, resp, err := d.DialContext(ctx, u.String(), header)
	if err != nil {
		if resp != nil && errors.Is(err, websocket.ErrBadHandshake) {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
			resp.Body.Close()
			return nil, httpError("GET "+path, resp, b)
		}
		return nil, withCode(exitUnavailable, fmt.Errorf("dial %s: %w", u.Redacted(), err))
	}
	return ws, nil
}
