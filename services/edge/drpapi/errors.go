package drpapi

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/heraldhq/herald/pkg/access"
)

// Error is DRP's models.Error body: DRP's clients decode every answer of 400 or more into it,
// and fail on anything that is not JSON.
type Error struct {
	Model    string
	Key      string
	Type     string
	Messages []string
	Code     int
}

// WriteError writes e as a JSON body with status e.Code.
func WriteError(w http.ResponseWriter, e Error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.Code)
	_ = json.NewEncoder(w).Encode(e)
}

// WriteAuthError answers a failed authentication as DRP does: 401 (503 when auth cannot be
// reached) with WWW-Authenticate: dr-provision and a models.Error body saying why.
func WriteAuthError(w http.ResponseWriter, err error) {
	code := http.StatusUnauthorized
	msg := err.Error()
	if errors.Is(err, access.ErrUnavailable) {
		code = http.StatusServiceUnavailable
		msg = "authentication is unavailable, try again"
	}
	w.Header().Set("WWW-Authenticate", "dr-provision")
	WriteError(w, Error{Type: "AUTH", Messages: []string{msg}, Code: code})
}

// notFound answers every /api/v3 path Herald does not serve: DRP's 404 in its own shape, so
// a DRP client reports "not found" rather than failing to parse text.
func notFound(w http.ResponseWriter, r *http.Request) {
	WriteError(w, Error{Model: "api", Key: r.URL.Path, Type: "API_ERROR", Code: http.StatusNotFound,
		Messages: []string{r.Method + " " + r.URL.Path + ": not found (Herald serves DRP's token, info, events, connections and ws endpoints)"}})
}
