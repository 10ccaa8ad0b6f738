// Package authwire is the NATS request/reply contract of the auth service:
// the subjects, the JSON bodies, a client (Login, FetchPublicKey) for the
// services that need auth without importing it (edges), and a Responder
// that the auth service uses to serve the same structs.
//
// herald.auth.login: request {"username","password"}; reply
// {"token","expires_at","user","permissions"} or {"error","code"}.
// herald.auth.keys: empty request; reply {"public_key":"<base64>"}.
// herald.auth.apikey.verify: request {"key"}; reply
// {"key_id","server_id","name"} or {"error","code"}.
package authwire

import (
	"errors"
	"time"

	"github.com/heraldhq/herald/pkg/subject"
)

// Subjects served by the auth service; pkg/subject owns their spelling.
const (
	SubjectLogin        = subject.AuthLogin
	SubjectKeys         = subject.AuthKeys
	SubjectAPIKeyVerify = subject.AuthAPIKeyVerify
)

// QueueGroup is the queue group every auth replica subscribes with (subject.AuthQueue).
const QueueGroup = subject.AuthQueue

// Error codes carried in a reply's "code".
const (
	CodeUnauthorized = "unauthorized"
	CodeBadRequest   = "bad_request"
	CodeInternal     = "internal"
)

// DefaultTimeout bounds a request whose context has no deadline.
const DefaultTimeout = 5 * time.Second

// Errors returned by the client functions, wrapped with the detail.
var (
	// ErrUnauthorized means the auth service refused the credentials.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrBadRequest means the auth service refused the request as malformed
	// (e.g. an empty user name).
	ErrBadRequest = errors.New("bad auth request")
	// ErrUnavailable means no auth service answered: no responders, a
	// timeout, or the NATS connection is closed.
	ErrUnavailable = errors.New("auth service unavailable")
	// ErrInternal means the auth service answered with an internal error or
	// a reply that could not be understood.
	ErrInternal = errors.New("auth service error")
)

// LoginRequest is the body of a herald.auth.login request.
type LoginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
	// Address is the client's address (host, no port) as the edge saw it, for limiting
	// failed logins per source; empty when unknown.
	Address string `json:"address,omitempty"`
	// Deadline is when the caller stops waiting; auth drops a request it reaches later.
	Deadline time.Time `json:"deadline,omitzero"`
}

// LoginReply is the body of a herald.auth.login reply: either the token
// fields or Error and Code are set.
type LoginReply struct {
	Token       string    `json:"token,omitempty"`
	ExpiresAt   time.Time `json:"expires_at,omitzero"`
	User        string    `json:"user,omitempty"`
	Permissions []string  `json:"permissions,omitempty"`
	Error       string    `json:"error,omitempty"`
	Code        string    `json:"code,omitempty"`
}

// KeysReply is the body of a herald.auth.keys reply.
type KeysReply struct {
	PublicKey string `json:"public_key,omitempty"`
	Error     string `json:"error,omitempty"`
	Code      string `json:"code,omitempty"`
}

// LoginError returns a failed LoginReply with code and a message for the
// client; msg must not carry internal details.
func LoginError(code, msg string) LoginReply {
	return LoginReply{Error: msg, Code: code}
}

// APIKeyRequest is the body of a herald.auth.apikey.verify request.
type APIKeyRequest struct {
	Key string `json:"key"`
}

// APIKeyReply is the body of a herald.auth.apikey.verify reply: either the
// key fields or Error and Code are set.
type APIKeyReply struct {
	KeyID    string `json:"key_id,omitempty"`
	ServerID string `json:"server_id,omitempty"`
	Name     string `json:"name,omitempty"`
	Error    string `json:"error,omitempty"`
	Code     string `json:"code,omitempty"`
}

// APIKeyInfo is what a valid API key stands for; never the secret.
type APIKeyInfo struct {
	// KeyID is the key's public id.
	KeyID string
	// ServerID is the server whose agent the key authenticates.
	ServerID string
	// Name is the key's label, possibly empty.
	Name string
}

// APIKeyError returns a failed APIKeyReply with code and a message for the
// client; msg must not carry internal details.
func APIKeyError(code, msg string) APIKeyReply {
	return APIKeyReply{Error: msg, Code: code}
}

// SubjectAPIKeyRevoked is where auth announces that the key with keyID was revoked, so
// whichever ingest holds an agent connected with it closes that connection at once.
func SubjectAPIKeyRevoked(keyID string) string { return subject.AuthAPIKeyRevoked(keyID) }
