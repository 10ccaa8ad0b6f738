// Package drpapi serves the Digital Rebar REST calls DRP's own clients (its Go api package,
// drpcli) make around the event socket, so they work against Herald with only the endpoint
// changed:
//
//	GET  /api/v3/users/{user}/token   api.UserSession, drpcli -U/-P: {"Token","Info"} (models.UserToken)
//	GET  /api/v3/info                 what drpcli asks first (models.Info)
//	POST /api/v3/events               drpcli events post: inject an event (needs events.post.<type>)
//	     /api/v3/...                  anything else: 404 with a models.Error body
//
// Credentials are DRP's (Authorization Bearer/Basic, or ?token=). Every answer, errors
// included, is JSON: DRP's client refuses any other content type, even on success.
package drpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/pkg/access"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/eventpub"
	"github.com/heraldhq/herald/pkg/subject"
)

// Paths of the API.
const (
	TokenPath  = "/api/v3/users/{user}/token"
	InfoPath   = "/api/v3/info"
	EventsPath = "/api/v3/events"
	// Prefix is the subtree whose unknown paths get DRP's 404.
	Prefix = "/api/v3/"
)

// Version is what Info reports: DRP's major API version, marked as Herald's.
const Version = "v4.0.0+herald"

// publishTimeout bounds a POST /api/v3/events waiting for JetStream's acknowledgement.
const publishTimeout = 5 * time.Second

// maxEventBody bounds a posted event: the largest valid object and original, with room for
// the other fields and JSON escaping.
const maxEventBody = 2*event.MaxObjectBytes + 64<<10

// Handler serves the API.
type Handler struct {
	Auth     *access.Authenticator
	JS       jetstream.JetStream // where posted events are stored (the event stream)
	Instance string              // this edge's id, reported as Info's id
	Log      *slog.Logger
}

// Register mounts the routes on mux, the 404 for the rest of /api/v3/ included; the more
// specific routes other packages mount under /api/v3/ win over it.
func (h *Handler) Register(mux *http.ServeMux) {
	mux.Handle("GET "+TokenPath, h.rest(h.token))
	mux.Handle("GET "+InfoPath, h.rest(h.info))
	mux.Handle("POST "+EventsPath, h.rest(h.postEvent))
	mux.HandleFunc(Prefix, notFound)
}

// rest authenticates a request before serve; a refusal is DRP's 401.
func (h *Handler) rest(serve func(http.ResponseWriter, *http.Request, access.Session)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sess, err := h.Auth.Request(r)
		if err != nil {
			WriteAuthError(w, err)
			return
		}
		serve(w, r, sess)
	})
}

// UserToken is DRP's models.UserToken: a bearer token and the server's Info.
type UserToken struct {
	Token string
	Info  Info
}

// Info is the part of DRP's models.Info that describes an API endpoint; the provisioning
// services (DHCP, TFTP, PXE, files) Herald does not run are reported off, on port 0.
type Info struct {
	Arch               string   `json:"arch"`
	Os                 string   `json:"os"`
	Version            string   `json:"version"`
	Id                 string   `json:"id"`
	LocalId            string   `json:"local_id"`
	Address            net.IP   `json:"address"`
	ApiPort            int      `json:"api_port"`
	FilePort           int      `json:"file_port"`
	DhcpPort           int      `json:"dhcp_port"`
	PxePort            int      `json:"pxe_port"`
	TftpPort           int      `json:"tftp_port"`
	TftpEnabled        bool     `json:"tftp_enabled"`
	DhcpEnabled        bool     `json:"dhcp_enabled"`
	PxeEnabled         bool     `json:"pxe_enabled"`
	ProvisionerEnabled bool     `json:"prov_enabled"`
	Features           []string `json:"features"`
	Errors             []string `json:"errors"`
}

// token answers api.UserSession's login (Basic) and its refresh (Bearer, ?ttl=600) with the
// Herald token of the caller: issued for this request after a password, else the one it
// presented. Herald's tokens live as long as auth issues them for, so ttl is not honoured.
func (h *Handler) token(w http.ResponseWriter, r *http.Request, sess access.Session) {
	if user := r.PathValue("user"); user != sess.Claims.Subject {
		WriteError(w, Error{Model: "users", Key: user, Type: "AUTH", Code: http.StatusForbidden,
			Messages: []string{fmt.Sprintf("%s may not get a token for user %s", sess.Principal(), user)}})
		return
	}
	writeJSON(w, http.StatusOK, UserToken{Token: sess.Token, Info: h.describe(r)})
}

func (h *Handler) info(w http.ResponseWriter, r *http.Request, _ access.Session) {
	writeJSON(w, http.StatusOK, h.describe(r))
}

// describe is Info as seen by this request: the address and port it reached.
func (h *Handler) describe(r *http.Request) Info {
	in := Info{Arch: runtime.GOARCH, Os: runtime.GOOS, Version: Version, Id: h.Instance, LocalId: h.Instance,
		Features: []string{}, Errors: []string{}}
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		if host, port, err := net.SplitHostPort(a.String()); err == nil {
			in.Address = net.ParseIP(host)
			in.ApiPort, _ = strconv.Atoi(port)
		}
	}
	return in
}

// postEvent stores a DRP models.Event in the event stream, through the same publisher and
// with the same rule as gRPC EventService.Publish: the caller needs events.post.<type>, and
// an event naming no principal gets the caller's. 204 once JetStream has stored it.
func (h *Handler) postEvent(w http.ResponseWriter, r *http.Request, sess access.Session) {
	var ev event.Event
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxEventBody))
	if err := dec.Decode(&ev); err != nil {
		h.fail(w, http.StatusBadRequest, "", "body is not a JSON event: "+err.Error())
		return
	}
	ev.Normalize(time.Now())
	if err := ev.Validate(); err != nil {
		h.fail(w, http.StatusBadRequest, ev.Type, err.Error())
		return
	}
	if !sess.Permitted(&event.Event{Type: "events", Action: "post", Key: ev.Type, Scope: event.ScopeGlobal}) {
		h.fail(w, http.StatusForbidden, ev.Type, fmt.Sprintf("%s may not post %s events: needs events.post.%s", sess.Principal(), ev.Type, ev.Type))
		return
	}
	if ev.Principal == "" {
		ev.Principal = sess.Principal()
	}
	ctx, cancel := context.WithTimeout(r.Context(), publishTimeout)
	defer cancel()
	// ExpectStream: a 204 means stored in the event stream, as for EventService.
	_, err := eventpub.Publish(ctx, h.JS, &ev, jetstream.WithExpectStream(subject.EventStream))
	switch {
	case errors.Is(err, event.ErrInvalid):
		h.fail(w, http.StatusBadRequest, ev.Type, err.Error())
	case err != nil:
		h.Log.Warn("drp api: event not stored", "type", ev.Type, "err", err)
		h.fail(w, http.StatusServiceUnavailable, ev.Type, "the event bus is unavailable, try again")
	default:
		// DRP's client checks the content type even of an empty answer.
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNoContent)
	}
}

func (h *Handler) fail(w http.ResponseWriter, code int, key, msg string) {
	WriteError(w, Error{Model: "events", Key: key, Type: "API_ERROR", Code: code, Messages: []string{msg}})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
