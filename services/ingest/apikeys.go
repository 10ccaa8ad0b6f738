package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/heraldhq/herald/pkg/authwire"
)

// APIKeyInfo is what a valid API key says: the key's id and name and the one server it is
// bound to.
type APIKeyInfo = authwire.APIKeyInfo

// APIKeyVerifier checks an agent's API key. Errors wrap authwire.ErrUnauthorized for an
// unknown or revoked key and authwire.ErrUnavailable when the check cannot be made now.
type APIKeyVerifier interface {
	VerifyAPIKey(ctx context.Context, key string) (APIKeyInfo, error)
}

// keyCheckTimeout bounds one API key verification.
const keyCheckTimeout = 5 * time.Second

// natsKeyVerifier asks the auth service over NATS (authwire).
type natsKeyVerifier struct{ nc *nats.Conn }

// VerifyAPIKey implements APIKeyVerifier.
func (v natsKeyVerifier) VerifyAPIKey(ctx context.Context, key string) (APIKeyInfo, error) {
	return authwire.VerifyAPIKey(ctx, v.nc, key)
}

// verifyKey checks key with a bounded wait; an empty key or a key without a server is
// unauthorized.
func (s *Service) verifyKey(key string) (APIKeyInfo, error) {
	if key == "" {
		return APIKeyInfo{}, fmt.Errorf("%w: empty API key", authwire.ErrUnauthorized)
	}
	ctx, cancel := context.WithTimeout(context.Background(), keyCheckTimeout)
	defer cancel()
	info, err := s.apiKeys.VerifyAPIKey(ctx, key)
	if err != nil {
		return APIKeyInfo{}, err
	}
	if info.ServerID == "" {
		return APIKeyInfo{}, fmt.Errorf("%w: key is bound to no server", authwire.ErrUnauthorized)
	}
	return info, nil
}

// apiKeyMe is the body of GET /api/v1/api-keys/me (chatops' field names).
type apiKeyMe struct {
	ServerID string `json:"server_id"`
	KeyID    string `json:"key_id"`
	Name     string `json:"name"`
	IsActive bool   `json:"is_active"`
}

// serveAPIKeyMe answers GET /api/v1/api-keys/me: the key in X-API-Key, as chatops' agent
// checks it before dialing. 401 {"detail":...} for a bad key (FastAPI's error body, which that
// agent reads), 503 when the auth service cannot be asked.
func (s *Service) serveAPIKeyMe(w http.ResponseWriter, r *http.Request) {
	info, err := s.verifyKey(r.Header.Get("X-API-Key"))
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	switch {
	case errors.Is(err, authwire.ErrUnauthorized):
		w.WriteHeader(http.StatusUnauthorized)
		_ = json.NewEncoder(w).Encode(map[string]string{"detail": "Invalid or inactive API key"})
	case err != nil:
		s.log.Warn("API key check failed", "err", err)
		w.WriteHeader(http.StatusServiceUnavailable)
		_ = json.NewEncoder(w).Encode(map[string]string{"detail": "Authentication unavailable, try again later"})
	default:
		_ = json.NewEncoder(w).Encode(apiKeyMe{ServerID: info.ServerID, KeyID: info.KeyID, Name: info.Name, IsActive: true})
	}
}
