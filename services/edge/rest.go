package edge

import (
	"net/http"
	"strings"

	"github.com/gorilla/websocket"

	"github.com/heraldhq/herald/pkg/access"
	"github.com/heraldhq/herald/pkg/metrics"
	"github.com/heraldhq/herald/pkg/registry"
	"github.com/heraldhq/herald/services/edge/connections"
	"github.com/heraldhq/herald/services/edge/rancher"
)

// TrackREST lists every plain HTTP request but health probes and metrics scrapes in the connection registry while
// it is in flight
// (Digital Rebar's connections API shows REST as well as WebSocket connections). WebSocket
// upgrades pass through: each dialect lists its socket once it has authenticated it.
//
// The principal is what the request shows without a round trip: a Bearer token or R_SESS
// cookie verified locally, the user name of Basic or ?token=user:password credentials (as
// claimed), else DRP's "unknown". Listing must never cost a login.
func (e *Edge) TrackREST(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Health probes and scrapes come from the load balancer and Prometheus, every few
		// seconds: not connections worth two registry writes each.
		if websocket.IsWebSocketUpgrade(r) || r.URL.Path == "/healthz" || r.URL.Path == "/readyz" || r.URL.Path == metrics.Path {
			next.ServeHTTP(w, r)
			return
		}
		_, untrack := e.tracker.Track(registry.Conn{RemoteAddr: r.RemoteAddr, Principal: e.restPrincipal(r),
			Endpoint: connections.EndpointREST}, nil)
		defer untrack()
		next.ServeHTTP(w, r)
	})
}

func (e *Edge) restPrincipal(r *http.Request) string {
	raw := ""
	if scheme, cred, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok {
		switch {
		case strings.EqualFold(scheme, "Bearer"):
			raw = strings.TrimSpace(cred)
		case strings.EqualFold(scheme, "Basic"):
			if user, _, ok := access.DecodeBasic(strings.TrimSpace(cred)); ok {
				return "user:" + user
			}
		}
	} else if c, err := r.Cookie(rancher.CookieName); err == nil {
		raw = c.Value
	} else if t := r.URL.Query().Get("token"); t != "" {
		if user, _, ok := strings.Cut(t, ":"); ok {
			return "user:" + user
		}
		raw = t
	}
	if raw != "" {
		if sess, err := e.auth.Token(r.Context(), raw); err == nil {
			return sess.Principal()
		}
	}
	return "unknown"
}
