package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/heraldhq/herald/pkg/authwire"
)

// API key errors, mapped to each transport's status.
var (
	// ErrInvalidAPIKey means a key is unknown, revoked or malformed; the
	// cases are deliberately indistinguishable to the caller.
	ErrInvalidAPIKey = errors.New("invalid or inactive API key")
	// ErrInvalidArgument means a server id or name was refused.
	ErrInvalidArgument = errors.New("invalid argument")
)

// APIKeyPrefix starts every key Herald issues, so a leaked one is easy to
// recognise (secret scanners, logs).
const APIKeyPrefix = "hk_"

// Bounds on API key fields.
const (
	apiKeySecretBytes = 32
	apiKeyIDBytes     = 8
	maxServerIDBytes  = 128
	maxKeyNameBytes   = 128
	// maxAPIKeyBytes bounds what is hashed on verification; real keys are
	// 46 bytes.
	maxAPIKeyBytes = 256
	// createAttempts bounds retries on an id collision, which 64 random
	// bits make vanishingly rare.
	createAttempts = 3
)

// NewAPIKey is a key just created: the secret, which exists nowhere else
// once it is handed out, and its stored record.
type NewAPIKey struct {
	// Key is the secret: APIKeyPrefix and 43 base64url characters.
	Key string
	APIKey
}

// CreateAPIKey makes a key for serverID's agent. The returned Key is the
// only copy of the secret; the store keeps its SHA-256. An unacceptable
// serverID or name gives an error wrapping ErrInvalidArgument.
func (s *Service) CreateAPIKey(ctx context.Context, serverID, name string) (NewAPIKey, error) {
	if err := checkServerID(serverID); err != nil {
		return NewAPIKey{}, err
	}
	if err := checkKeyName(name); err != nil {
		return NewAPIKey{}, err
	}
	for range createAttempts {
		secret := APIKeyPrefix + base64.RawURLEncoding.EncodeToString(randomBytes(apiKeySecretBytes))
		k := APIKey{
			ID:        hex.EncodeToString(randomBytes(apiKeyIDBytes)),
			Hash:      HashAPIKey(secret),
			ServerID:  serverID,
			Name:      name,
			CreatedAt: s.now().UTC(),
		}
		err := s.store.PutAPIKey(ctx, k)
		if errors.Is(err, ErrAPIKeyExists) {
			continue
		}
		if err != nil {
			return NewAPIKey{}, fmt.Errorf("create api key: %w", err)
		}
		s.log.LogAttrs(ctx, slog.LevelInfo, "api key created", slog.String("key_id", k.ID),
			slog.String("server_id", serverID), slog.String("principal", principalFrom(ctx)))
		return NewAPIKey{Key: secret, APIKey: k}, nil
	}
	return NewAPIKey{}, fmt.Errorf("create api key: %d id collisions in a row", createAttempts)
}

// ListAPIKeys returns the keys of serverID, or every key when it is empty,
// revoked ones included, oldest first.
func (s *Service) ListAPIKeys(ctx context.Context, serverID string) ([]APIKey, error) {
	keys, err := s.store.ListAPIKeys(ctx, serverID)
	if err != nil {
		return nil, fmt.Errorf("list api keys: %w", err)
	}
	return keys, nil
}

// RevokeAPIKey revokes the key with that id for good; an unknown id gives
// an error wrapping ErrAPIKeyNotFound. Agents already connected with it are
// not disconnected by this call: it takes effect at their next connect.
func (s *Service) RevokeAPIKey(ctx context.Context, keyID string) error {
	if keyID == "" {
		return fmt.Errorf("%w: key_id: must not be empty", ErrInvalidArgument)
	}
	if err := s.store.RevokeAPIKey(ctx, keyID); err != nil {
		return fmt.Errorf("revoke api key: %w", err)
	}
	s.log.LogAttrs(ctx, slog.LevelInfo, "api key revoked", slog.String("key_id", keyID),
		slog.String("principal", principalFrom(ctx)))
	// An agent connected with the key is closed by the ingest holding it; best effort: the
	// key is revoked either way, and refused at the agent's next connect.
	if s.nc != nil {
		if err := s.nc.Publish(authwire.SubjectAPIKeyRevoked(keyID), nil); err != nil {
			s.log.Warn("revocation not announced", "key_id", keyID, "err", err)
		}
	}
	return nil
}

// VerifyAPIKey returns the record of a valid key. Unknown, revoked, empty
// or oversized keys give ErrInvalidAPIKey; anything else is internal.
func (s *Service) VerifyAPIKey(ctx context.Context, key string) (APIKey, error) {
	if key == "" || len(key) > maxAPIKeyBytes {
		return APIKey{}, ErrInvalidAPIKey
	}
	k, err := s.store.APIKeyByHash(ctx, HashAPIKey(key))
	switch {
	case errors.Is(err, ErrAPIKeyNotFound):
		return APIKey{}, ErrInvalidAPIKey
	case err != nil:
		return APIKey{}, fmt.Errorf("verify api key: %w", err)
	case k.Revoked:
		s.log.LogAttrs(ctx, slog.LevelInfo, "revoked api key presented", slog.String("key_id", k.ID),
			slog.String("server_id", k.ServerID))
		return APIKey{}, ErrInvalidAPIKey
	}
	return k, nil
}

// HashAPIKey returns the lowercase hex SHA-256 of key: what stores keep.
func HashAPIKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// randomBytes returns n bytes from the system's CSPRNG; crypto/rand.Read
// never fails (it crashes the program if the kernel cannot supply them).
func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// checkServerID accepts ids that read well in logs and URLs: non-empty,
// bounded, UTF-8, no spaces or control characters.
func checkServerID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%w: server_id: must not be empty", ErrInvalidArgument)
	case len(id) > maxServerIDBytes:
		return fmt.Errorf("%w: server_id: longer than %d bytes", ErrInvalidArgument, maxServerIDBytes)
	case !utf8.ValidString(id):
		return fmt.Errorf("%w: server_id: not UTF-8", ErrInvalidArgument)
	case strings.IndexFunc(id, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
		return fmt.Errorf("%w: server_id: must not contain spaces or control characters", ErrInvalidArgument)
	}
	return nil
}

func checkKeyName(name string) error {
	switch {
	case len(name) > maxKeyNameBytes:
		return fmt.Errorf("%w: name: longer than %d bytes", ErrInvalidArgument, maxKeyNameBytes)
	case !utf8.ValidString(name):
		return fmt.Errorf("%w: name: not UTF-8", ErrInvalidArgument)
	case strings.IndexFunc(name, unicode.IsControl) >= 0:
		return fmt.Errorf("%w: name: must not contain control characters", ErrInvalidArgument)
	}
	return nil
}

// principalKey is the context key of the authenticated caller's name, set
// by the gRPC layer so that the audit log lines above name who acted.
type principalKey struct{}

func withPrincipal(ctx context.Context, name string) context.Context {
	return context.WithValue(ctx, principalKey{}, name)
}

// principalFrom returns the caller set by withPrincipal, or "local" for
// in-process calls (the all-in-one stack's dev key).
func principalFrom(ctx context.Context) string {
	if p, ok := ctx.Value(principalKey{}).(string); ok {
		return p
	}
	return "local"
}
