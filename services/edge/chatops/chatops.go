// Package chatops serves the REST calls of the ChatOps web terminal's backend, so its frontend
// can be pointed at Herald:
//
//	POST /api/v1/commands/{server_id}        run a shell command on the server's agent
//	GET  /api/v1/servers, /api/v1/servers/{server_id}   the servers Herald knows (agents
//	                                         online now, and those that reported facts)
//	GET  /api/v1/metrics/{server_id}/latest  the server's latest metrics sample
//	GET  /health                             {"status":"healthy"}
//
// Credentials are a Herald token (Authorization: Bearer, as the ChatOps frontend sends its
// JWT) or Basic. Errors are FastAPI's {"detail": ...}, as ChatOps answers them. Commands go
// to the agent through agentrpc, exactly as gRPC AgentService.RunCommand does, and need
// commands.run.<server_id>; reading a server needs metrics.read.<server_id>.
package chatops

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/heraldhq/herald/pkg/access"
	"github.com/heraldhq/herald/pkg/agentrpc"
	"github.com/heraldhq/herald/pkg/agentwire"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/registry"
)

// Paths of the API.
const (
	CommandPath = "/api/v1/commands/{server_id}"
	ServersPath = "/api/v1/servers"
	ServerPath  = "/api/v1/servers/{server_id}"
	LatestPath  = "/api/v1/metrics/{server_id}/latest"
	HealthPath  = "/health"
)

// Bounds of a command request.
const (
	// CommandTimeout is the wait for the agent's answer: ChatOps' requests carry no timeout,
	// so they get Herald's default for commands.
	CommandTimeout  = 30 * time.Second
	maxCommandBytes = 64 << 10
	maxIDBytes      = 256
	lookupTimeout   = 2 * time.Second
)

// Latest is each server's latest metrics sample, kept by ingest (agentstate.Store).
type Latest interface {
	LatestMetrics(ctx context.Context, serverID string) (json.RawMessage, bool, error)
}

// Facts is each server's host facts, kept by ingest (agentstate.Store).
type Facts interface {
	ListFacts(ctx context.Context) (map[string]json.RawMessage, error)
}

// Handler serves the API.
type Handler struct {
	Auth    *access.Authenticator
	NC      *nats.Conn        // carries commands to the ingest holding the agent
	Tracker *registry.Tracker // whose Registry lists the agents online, fleet-wide
	Latest  Latest            // nil: no metrics
	Facts   Facts             // nil: only the servers online are listed
	JobIDs  *agentrpc.JobIDs
	Log     *slog.Logger
}

// Register mounts the routes on mux.
func (h *Handler) Register(mux *http.ServeMux) {
	mux.Handle("POST "+CommandPath, h.rest(h.command))
	mux.Handle("GET "+ServersPath, h.rest(h.servers))
	mux.Handle("GET "+ServerPath, h.rest(h.server))
	mux.Handle("GET "+LatestPath, h.rest(h.latest))
	mux.HandleFunc("GET "+HealthPath, func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "healthy"})
	})
}

// rest authenticates a request; a refusal is FastAPI's 401 with WWW-Authenticate: Bearer.
func (h *Handler) rest(serve func(http.ResponseWriter, *http.Request, access.Session)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sess, err := h.Auth.Request(r)
		if err != nil {
			code, msg := http.StatusUnauthorized, "Could not validate credentials: "+err.Error()
			if errors.Is(err, access.ErrUnavailable) {
				code, msg = http.StatusServiceUnavailable, "authentication is unavailable, try again"
			}
			w.Header().Set("WWW-Authenticate", "Bearer")
			detail(w, code, msg)
			return
		}
		if sid := r.PathValue("server_id"); len(sid) > maxIDBytes {
			detail(w, http.StatusUnprocessableEntity, fmt.Sprintf("server_id: longer than %d bytes", maxIDBytes))
			return
		}
		serve(w, r, sess)
	})
}

// CommandRequest is ChatOps' body of POST /api/v1/commands/{server_id}.
type CommandRequest struct {
	Command string `json:"command"`
}

// CommandResponse is ChatOps' answer: success is a zero exit code, and error repeats the
// output of a failed command.
type CommandResponse struct {
	Success  bool    `json:"success"`
	Output   string  `json:"output"`
	Error    *string `json:"error"`
	ExitCode *int    `json:"exit_code"`
}

func (h *Handler) command(w http.ResponseWriter, r *http.Request, sess access.Session) {
	sid := r.PathValue("server_id")
	var req CommandRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxCommandBytes+4096)).Decode(&req); err != nil {
		detail(w, http.StatusUnprocessableEntity, "body must be {\"command\": \"...\"}: "+err.Error())
		return
	}
	switch {
	case strings.TrimSpace(req.Command) == "":
		detail(w, http.StatusUnprocessableEntity, "command: must not be empty")
		return
	case len(req.Command) > maxCommandBytes:
		detail(w, http.StatusUnprocessableEntity, fmt.Sprintf("command: longer than %d bytes", maxCommandBytes))
		return
	}
	if !may(sess, "commands", "run", sid) {
		detail(w, http.StatusForbidden, fmt.Sprintf("%s may not run commands on server %s: needs commands.run.%s", sess.Principal(), sid, sid))
		return
	}
	rpc := agentwire.RPCRequest{Kind: agentwire.KindCommand, ID: h.JobIDs.Next(time.Now()), Command: req.Command,
		TimeoutMs: CommandTimeout.Milliseconds(), Principal: sess.Principal()}
	reply, err := agentrpc.Call(r.Context(), h.NC, sid, rpc)
	switch {
	case errors.Is(err, agentrpc.ErrOffline):
		detail(w, http.StatusServiceUnavailable, "Agent not connected. Please ensure the agent is running and connected.")
	case errors.Is(err, agentrpc.ErrTimeout):
		detail(w, http.StatusGatewayTimeout, fmt.Sprintf("the agent of %s did not answer within %s", sid, CommandTimeout))
	case r.Context().Err() != nil:
		// The caller went away; nobody reads an answer.
	case err != nil:
		h.Log.Warn("chatops: command not delivered", "server_id", sid, "err", err)
		detail(w, http.StatusServiceUnavailable, "the event bus is unavailable, try again")
	case reply.Code != "":
		detail(w, http.StatusInternalServerError, "Failed to execute command: "+reply.Error)
	default:
		code := reply.ExitCode
		resp := CommandResponse{Success: code == 0, Output: reply.Output, ExitCode: &code}
		if code != 0 {
			resp.Error = &reply.Output
		}
		writeJSON(w, http.StatusOK, resp)
	}
}

// Server is ChatOps' ServerResponse, filled from what Herald knows: the agent's connection
// and its facts. Herald keeps no server inventory, so host and port are unknown and the
// times are the agent's connection's.
type Server struct {
	ID           string          `json:"id"`
	Name         string          `json:"name"`
	Host         *string         `json:"host"`
	Port         *int            `json:"port"`
	Metadata     json.RawMessage `json:"metadata"`
	Status       string          `json:"status"`        // "online" or "offline"
	HealthStatus string          `json:"health_status"` // "healthy" while online, else "unknown"
	LastSeen     *time.Time      `json:"last_seen"`
	CreatedAt    *time.Time      `json:"created_at"`
	UpdatedAt    *time.Time      `json:"updated_at"`
}

func (h *Handler) servers(w http.ResponseWriter, r *http.Request, sess access.Session) {
	all, err := h.known(r.Context())
	if err != nil {
		h.Log.Warn("chatops: listing servers failed", "err", err)
		detail(w, http.StatusServiceUnavailable, "the connection registry is unavailable, try again")
		return
	}
	out := make([]Server, 0, len(all))
	for _, s := range all {
		if may(sess, "metrics", "read", s.ID) {
			out = append(out, s)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *Handler) server(w http.ResponseWriter, r *http.Request, sess access.Session) {
	sid := r.PathValue("server_id")
	all, err := h.known(r.Context())
	if err != nil {
		h.Log.Warn("chatops: listing servers failed", "err", err)
		detail(w, http.StatusServiceUnavailable, "the connection registry is unavailable, try again")
		return
	}
	for _, s := range all {
		if s.ID == sid && may(sess, "metrics", "read", sid) {
			writeJSON(w, http.StatusOK, s)
			return
		}
	}
	detail(w, http.StatusNotFound, "Server not found")
}

// known lists the servers with an agent online (from the registry) and those that reported
// facts (offline unless online), sorted by id.
func (h *Handler) known(ctx context.Context) ([]Server, error) {
	ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	conns, err := h.Tracker.Registry().List(ctx, registry.Query{Endpoint: "agent"})
	if err != nil {
		return nil, err
	}
	byID := map[string]*Server{}
	get := func(id string) *Server {
		if byID[id] == nil {
			byID[id] = &Server{ID: id, Name: id, Metadata: json.RawMessage("{}"), Status: "offline", HealthStatus: "unknown"}
		}
		return byID[id]
	}
	if h.Facts != nil {
		facts, err := h.Facts.ListFacts(ctx)
		if err != nil {
			return nil, err
		}
		for id, f := range facts {
			s := get(id)
			if len(f) > 0 && json.Valid(f) {
				s.Metadata = f
			}
			var named struct {
				Hostname string `json:"hostname"`
			}
			if json.Unmarshal(f, &named) == nil && named.Hostname != "" {
				s.Name = named.Hostname
			}
		}
	}
	now := time.Now().UTC()
	for _, c := range conns {
		if c.ServerID == "" {
			continue
		}
		s := get(c.ServerID)
		created := c.CreateTime
		s.Status, s.HealthStatus, s.LastSeen, s.CreatedAt = "online", "healthy", &now, &created
	}
	out := make([]Server, 0, len(byID))
	for _, s := range byID {
		out = append(out, *s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (h *Handler) latest(w http.ResponseWriter, r *http.Request, sess access.Session) {
	sid := r.PathValue("server_id")
	if !may(sess, "metrics", "read", sid) {
		detail(w, http.StatusNotFound, "Server not found")
		return
	}
	if h.Latest == nil {
		detail(w, http.StatusNotFound, "No metrics available for this server")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), lookupTimeout)
	defer cancel()
	sample, ok, err := h.Latest.LatestMetrics(ctx, sid)
	switch {
	case err != nil:
		h.Log.Warn("chatops: latest metrics failed", "server_id", sid, "err", err)
		detail(w, http.StatusServiceUnavailable, "the agent state store is unavailable, try again")
	case !ok:
		detail(w, http.StatusNotFound, "No metrics available for this server")
	default:
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(sample)
	}
}

// may reports whether sess may do typ.action on server sid (the synthetic event
// <typ>.<action>.<sid>, as every Herald check on a server).
func may(sess access.Session, typ, action, sid string) bool {
	return sess.Permitted(&event.Event{Type: typ, Action: action, Key: sid, Scope: event.ScopeGlobal})
}

// detail writes FastAPI's error body.
func detail(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"detail": msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
