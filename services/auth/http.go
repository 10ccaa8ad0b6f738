package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"mime"
	"net/http"
	"strconv"
	"time"
)

// maxBodyBytes bounds login request bodies.
const maxBodyBytes = 64 << 10

// Register adds the HTTP routes: POST /api/v1/auth/login (JSON) and
// POST|GET /login (Salt rest_tornado's shape, see protocols.md §3).
func (s *Service) Register(mux *http.ServeMux) {
	mux.HandleFunc("POST /api/v1/auth/login", s.handleLogin)
	mux.HandleFunc("POST /login", s.handleSaltLogin)
	mux.HandleFunc("GET /login", handleSaltLoginPage)
}

type loginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

type loginResponse struct {
	Token       string   `json:"token"`
	TokenType   string   `json:"token_type"`
	ExpiresAt   string   `json:"expires_at"`
	User        string   `json:"user"`
	Permissions []string `json:"permissions"`
}

type errorResponse struct {
	Error string `json:"error"`
}

func (s *Service) handleLogin(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
	var req loginRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, errorResponse{Error: "request body: " + jsonError(err)})
		return
	}
	sess, err := s.Login(r.Context(), req.Username, req.Password)
	if err != nil {
		status, msg := s.httpError(w, r, req.Username, err)
		writeJSON(w, status, errorResponse{Error: msg})
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, loginResponse{
		Token:       sess.Token,
		TokenType:   "Bearer",
		ExpiresAt:   sess.Claims.ExpiresAt.UTC().Format(time.RFC3339),
		User:        sess.Claims.Subject,
		Permissions: sess.Claims.Permissions,
	})
}

// saltLogin is one element of Salt's {"return": [...]}.
type saltLogin struct {
	Token  string      `json:"token"`
	Start  json.Number `json:"start"`
	Expire json.Number `json:"expire"`
	User   string      `json:"user"`
	Eauth  string      `json:"eauth"`
	Perms  []any       `json:"perms"`
}

// saltStatus is Salt's error body, e.g. {"status": "401 Unauthorized",
// "return": "Please log in"}.
type saltStatus struct {
	Status string `json:"status"`
	Return string `json:"return"`
}

func writeSaltStatus(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, saltStatus{Status: fmt.Sprintf("%d %s", code, http.StatusText(code)), Return: msg})
}

// handleSaltLogin is Salt's POST /login: form or JSON username, password and
// eauth. The eauth value is echoed back; Herald has one user database.
func (s *Service) handleSaltLogin(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
	fields, status, err := saltFields(r)
	if err != nil {
		writeSaltStatus(w, status, err.Error())
		return
	}
	for _, name := range []string{"username", "password", "eauth"} {
		if fields[name] == "" {
			writeSaltStatus(w, http.StatusBadRequest, "missing field: "+name)
			return
		}
	}
	sess, err := s.Login(r.Context(), fields["username"], fields["password"])
	if err != nil {
		status, msg := s.httpError(w, r, fields["username"], err)
		writeSaltStatus(w, status, msg)
		return
	}
	c := sess.Claims
	http.SetCookie(w, &http.Cookie{
		Name:     "session_id",
		Value:    sess.Token,
		Path:     "/",
		Expires:  c.ExpiresAt,
		HttpOnly: true,
		Secure:   r.TLS != nil,
		SameSite: http.SameSiteLaxMode,
	})
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string][]saltLogin{"return": {{
		Token:  sess.Token,
		Start:  epochSeconds(c.IssuedAt),
		Expire: epochSeconds(c.ExpiresAt),
		User:   c.Subject,
		Eauth:  fields["eauth"],
		Perms:  saltPerms(c.Permissions),
	}}})
}

// saltFields reads username, password and eauth from a JSON object or a
// form body, as Salt does (its YAML body is not supported).
func saltFields(r *http.Request) (map[string]string, int, error) {
	ct := r.Header.Get("Content-Type")
	mt := "application/x-www-form-urlencoded"
	if ct != "" {
		var err error
		if mt, _, err = mime.ParseMediaType(ct); err != nil {
			return nil, http.StatusBadRequest, errors.New("bad Content-Type")
		}
	}
	fields := make(map[string]string, 3)
	switch mt {
	case "application/json":
		var body map[string]any
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			return nil, http.StatusBadRequest, errors.New("request body: " + jsonError(err))
		}
		for _, name := range []string{"username", "password", "eauth"} {
			switch v := body[name].(type) {
			case nil:
			case string:
				fields[name] = v
			default:
				return nil, http.StatusBadRequest, fmt.Errorf("%s: must be a string", name)
			}
		}
	case "application/x-www-form-urlencoded", "multipart/form-data":
		if err := r.ParseMultipartForm(maxBodyBytes); err != nil && !errors.Is(err, http.ErrNotMultipart) {
			return nil, http.StatusBadRequest, errors.New("request body: bad form")
		}
		for _, name := range []string{"username", "password", "eauth"} {
			fields[name] = r.PostFormValue(name)
		}
	default:
		return nil, http.StatusUnsupportedMediaType, fmt.Errorf("unsupported Content-Type %q: use JSON or a form", mt)
	}
	return fields, 0, nil
}

// handleSaltLoginPage is Salt's GET /login: always "please log in".
func handleSaltLoginPage(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("WWW-Authenticate", "Session")
	writeSaltStatus(w, http.StatusUnauthorized, "Please log in")
}

// httpError maps a Login error to a status and a client-safe message,
// logging internal errors (their text never reaches the client). A limited
// login gets a Retry-After header.
func (s *Service) httpError(w http.ResponseWriter, r *http.Request, username string, err error) (int, string) {
	var limit *LimitError
	switch {
	case errors.Is(err, ErrInvalidRequest):
		return http.StatusBadRequest, err.Error()
	case errors.Is(err, ErrBadCredentials):
		return http.StatusUnauthorized, err.Error()
	case errors.As(err, &limit):
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(limit.RetryAfter.Seconds()))))
		return http.StatusTooManyRequests, err.Error()
	default:
		s.log.LogAttrs(r.Context(), slog.LevelError, "login failed", slog.String("principal", username),
			slog.String("remote", r.RemoteAddr), slog.Any("err", err))
		return http.StatusInternalServerError, "internal error"
	}
}

// epochSeconds renders t as Salt does: float seconds since the epoch.
func epochSeconds(t time.Time) json.Number {
	return json.Number(strconv.FormatFloat(float64(t.UnixMicro())/1e6, 'f', 6, 64))
}

// jsonError says what is wrong with a JSON body without echoing it.
func jsonError(err error) string {
	var maxErr *http.MaxBytesError
	if errors.As(err, &maxErr) {
		return fmt.Sprintf("larger than %d bytes", maxErr.Limit)
	}
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		if typeErr.Field == "" {
			return "must be a JSON object"
		}
		return fmt.Sprintf("%s: must be a %s", typeErr.Field, typeErr.Type)
	}
	return "not valid JSON"
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // The client may be gone; nothing to do.
}
