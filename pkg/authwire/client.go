package authwire

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/heraldhq/herald/pkg/token"
)

// Login asks the auth service for a token for user and password and returns
// the raw token. Refused credentials give an error wrapping ErrUnauthorized
// with the service's reason; no answer gives one wrapping ErrUnavailable.
func Login(ctx context.Context, nc *nats.Conn, user, password, address string) (string, error) {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(DefaultTimeout)
	}
	req, err := json.Marshal(LoginRequest{Username: user, Password: password, Address: address, Deadline: deadline})
	if err != nil {
		return "", fmt.Errorf("auth login: %w", err)
	}
	var reply LoginReply
	if err := request(ctx, nc, SubjectLogin, req, &reply); err != nil {
		return "", fmt.Errorf("auth login: %w", err)
	}
	if err := replyError(reply.Code, reply.Error); err != nil {
		return "", fmt.Errorf("auth login: %w", err)
	}
	if reply.Token == "" {
		return "", fmt.Errorf("auth login: %w: reply without token", ErrInternal)
	}
	return reply.Token, nil
}

// FetchPublicKey asks the auth service for the Ed25519 key that verifies its
// tokens, so an edge can build a token.Verifier at start.
func FetchPublicKey(ctx context.Context, nc *nats.Conn) (ed25519.PublicKey, error) {
	var reply KeysReply
	if err := request(ctx, nc, SubjectKeys, nil, &reply); err != nil {
		return nil, fmt.Errorf("auth keys: %w", err)
	}
	if err := replyError(reply.Code, reply.Error); err != nil {
		return nil, fmt.Errorf("auth keys: %w", err)
	}
	pub, err := token.ParsePublicKey(reply.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("auth keys: %w: %w", ErrInternal, err)
	}
	return pub, nil
}

// VerifyAPIKey asks the auth service which server key belongs to. An
// unknown, revoked or empty key gives an error wrapping ErrUnauthorized; no
// answer gives one wrapping ErrUnavailable, so a caller can tell "refuse
// this agent" from "try again later". The key is never part of an error.
func VerifyAPIKey(ctx context.Context, nc *nats.Conn, key string) (APIKeyInfo, error) {
	req, err := json.Marshal(APIKeyRequest{Key: key})
	if err != nil {
		return APIKeyInfo{}, fmt.Errorf("auth verify api key: %w", err)
	}
	var reply APIKeyReply
	if err := request(ctx, nc, SubjectAPIKeyVerify, req, &reply); err != nil {
		return APIKeyInfo{}, fmt.Errorf("auth verify api key: %w", err)
	}
	if err := replyError(reply.Code, reply.Error); err != nil {
		return APIKeyInfo{}, fmt.Errorf("auth verify api key: %w", err)
	}
	if reply.KeyID == "" || reply.ServerID == "" {
		return APIKeyInfo{}, fmt.Errorf("auth verify api key: %w: reply without key id or server id", ErrInternal)
	}
	return APIKeyInfo{KeyID: reply.KeyID, ServerID: reply.ServerID, Name: reply.Name}, nil
}

// request sends data on subj and decodes the reply into v, classifying
// transport failures as ErrUnavailable.
func request(ctx context.Context, nc *nats.Conn, subj string, data []byte, v any) error {
	if nc == nil {
		return fmt.Errorf("%w: no NATS connection", ErrUnavailable)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	msg, err := nc.RequestWithContext(ctx, subj, data)
	switch {
	case err == nil:
	case errors.Is(err, context.Canceled):
		return err
	case errors.Is(err, nats.ErrNoResponders):
		return fmt.Errorf("%w: no responders on %s", ErrUnavailable, subj)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		return fmt.Errorf("%w: no reply on %s: %w", ErrUnavailable, subj, err)
	default:
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if err := json.Unmarshal(msg.Data, v); err != nil {
		return fmt.Errorf("%w: decode reply: %w", ErrInternal, err)
	}
	return nil
}

// replyError maps a reply's code onto the package's sentinel errors.
func replyError(code, msg string) error {
	if code == "" && msg == "" {
		return nil
	}
	if msg == "" {
		msg = code
	}
	switch code {
	case CodeUnauthorized:
		return fmt.Errorf("%w: %s", ErrUnauthorized, msg)
	case CodeBadRequest:
		return fmt.Errorf("%w: %s", ErrBadRequest, msg)
	default:
		return fmt.Errorf("%w: %s", ErrInternal, msg)
	}
}
