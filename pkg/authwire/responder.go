package authwire

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/heraldhq/herald/pkg/token"
)

// drainTimeout bounds how long Serve waits for in-flight requests at stop.
const drainTimeout = 10 * time.Second

// Responder serves the auth subjects for the auth service.
type Responder struct {
	// Login answers a decoded, non-empty login request. It must set either
	// the token fields or Error and Code (see LoginError).
	Login func(ctx context.Context, req LoginRequest) LoginReply
	// VerifyAPIKey answers a decoded herald.auth.apikey.verify request (the
	// key may be empty). It must set either the key fields or Error and
	// Code (see APIKeyError). Nil: that subject is not served.
	VerifyAPIKey func(ctx context.Context, req APIKeyRequest) APIKeyReply
	// PublicKey is the key herald.auth.keys replies with.
	PublicKey ed25519.PublicKey
	// Log receives failures to reply; nil discards them.
	Log *slog.Logger
}

// Serve subscribes to SubjectLogin, SubjectKeys and, when VerifyAPIKey is
// set, SubjectAPIKeyVerify in queue group queue
// (QueueGroup if empty) and answers requests until ctx is done; then it
// drains the subscriptions, so requests already received are answered, and
// returns nil. Requests on one subscription are handled one at a time,
// which also bounds the CPU spent hashing passwords.
func (r Responder) Serve(ctx context.Context, nc *nats.Conn, queue string) error {
	if r.Login == nil || len(r.PublicKey) != ed25519.PublicKeySize {
		return errors.New("authwire: Responder needs Login and a public key")
	}
	if queue == "" {
		queue = QueueGroup
	}
	log := r.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	keys, err := json.Marshal(KeysReply{PublicKey: token.EncodePublicKey(r.PublicKey)})
	if err != nil {
		return fmt.Errorf("authwire: %w", err)
	}
	respond := func(m *nats.Msg, v any) {
		data, err := json.Marshal(v)
		if err == nil {
			err = m.Respond(data)
		}
		if err != nil {
			log.LogAttrs(ctx, slog.LevelWarn, "auth reply failed", slog.String("subject", m.Subject), slog.Any("err", err))
		}
	}
	var subs []*nats.Subscription
	defer func() { drain(subs, log) }()

	sub, err := nc.QueueSubscribe(SubjectLogin, queue, func(m *nats.Msg) {
		req, err := DecodeLoginRequest(m.Data)
		if err != nil {
			respond(m, LoginError(CodeBadRequest, err.Error()))
			return
		}
		// Requests still being drained after ctx is done must be answered,
		// so the handler gets its own bounded context.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), DefaultTimeout)
		defer cancel()
		respond(m, r.Login(rctx, req))
	})
	if err != nil {
		return fmt.Errorf("authwire: subscribe %s: %w", SubjectLogin, err)
	}
	subs = append(subs, sub)
	sub, err = nc.QueueSubscribe(SubjectKeys, queue, func(m *nats.Msg) {
		if err := m.Respond(keys); err != nil {
			log.LogAttrs(ctx, slog.LevelWarn, "auth reply failed", slog.String("subject", m.Subject), slog.Any("err", err))
		}
	})
	if err != nil {
		return fmt.Errorf("authwire: subscribe %s: %w", SubjectKeys, err)
	}
	subs = append(subs, sub)
	if r.VerifyAPIKey != nil {
		sub, err = nc.QueueSubscribe(SubjectAPIKeyVerify, queue, func(m *nats.Msg) {
			var req APIKeyRequest
			if err := json.Unmarshal(m.Data, &req); err != nil {
				respond(m, APIKeyError(CodeBadRequest, "request body is not a JSON api key request"))
				return
			}
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), DefaultTimeout)
			defer cancel()
			respond(m, r.VerifyAPIKey(rctx, req))
		})
		if err != nil {
			return fmt.Errorf("authwire: subscribe %s: %w", SubjectAPIKeyVerify, err)
		}
		subs = append(subs, sub)
	}
	// Make sure the server has the interest before callers are told we run.
	if err := nc.Flush(); err != nil {
		return fmt.Errorf("authwire: flush: %w", err)
	}
	<-ctx.Done()
	return nil
}

// DecodeLoginRequest parses a login request and checks both fields are set.
func DecodeLoginRequest(data []byte) (LoginRequest, error) {
	var req LoginRequest
	if err := json.Unmarshal(data, &req); err != nil {
		return LoginRequest{}, errors.New("request body is not a JSON login request")
	}
	switch {
	case req.Username == "":
		return LoginRequest{}, errors.New("username: must not be empty")
	case req.Password == "":
		return LoginRequest{}, errors.New("password: must not be empty")
	}
	return req, nil
}

// drain drains subs and waits, bounded, until each is closed.
func drain(subs []*nats.Subscription, log *slog.Logger) {
	var closed []<-chan nats.SubStatus
	for _, s := range subs {
		ch := s.StatusChanged(nats.SubscriptionClosed)
		if err := s.Drain(); err != nil {
			log.Warn("auth subscription drain failed", "subject", s.Subject, "err", err)
			continue
		}
		closed = append(closed, ch)
	}
	timeout := time.NewTimer(drainTimeout)
	defer timeout.Stop()
	for _, ch := range closed {
		// ch delivers status values and is closed once the subscription is.
		for open := true; open; {
			select {
			case _, open = <-ch:
			case <-timeout.C:
				log.Warn("auth subscriptions not drained in time", "timeout", drainTimeout)
				return
			}
		}
	}
}
