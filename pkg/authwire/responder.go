package authwire

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/heraldhq/herald/pkg/token"
)

// MaxConcurrentLogins bounds the logins a Responder handles at once.
const MaxConcurrentLogins = 256

// loginPending bounds the logins waiting for a slot; beyond it NATS drops them (a slow
// consumer) and their callers time out, rather than auth queueing without end.
const loginPending = 4096

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
	// PublicKey is the key herald.auth.keys replies with, unless CurrentKey is set.
	PublicKey ed25519.PublicKey
	// CurrentKey, if set, returns that key at each request (the current signing key, which
	// rotates; verifiers that watch the key set do not ask).
	CurrentKey func() ed25519.PublicKey
	// Log receives failures to reply; nil discards them.
	Log *slog.Logger
}

// Serve subscribes to SubjectLogin, SubjectKeys and, when VerifyAPIKey is
// set, SubjectAPIKeyVerify in queue group queue
// (QueueGroup if empty) and answers requests until ctx is done; then it
// drains the subscriptions, so requests already received are answered, and
// returns nil. Logins are answered concurrently, at most MaxConcurrentLogins at once (the
// auth service bounds the CPU they spend hashing); one whose caller's deadline has passed
// by the time it is picked up is dropped unanswered, since nobody waits for the answer.
func (r Responder) Serve(ctx context.Context, nc *nats.Conn, queue string) error {
	current := r.CurrentKey
	if current == nil && len(r.PublicKey) == ed25519.PublicKeySize {
		current = func() ed25519.PublicKey { return r.PublicKey }
	}
	if r.Login == nil || current == nil {
		return errors.New("authwire: Responder needs Login and a public key")
	}
	if queue == "" {
		queue = QueueGroup
	}
	log := r.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
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
	var inflight sync.WaitGroup
	defer func() {
		drain(subs, log)
		inflight.Wait()
	}()

	slots := make(chan struct{}, MaxConcurrentLogins)
	sub, err := nc.QueueSubscribe(SubjectLogin, queue, func(m *nats.Msg) {
		req, err := DecodeLoginRequest(m.Data)
		if err != nil {
			respond(m, LoginError(CodeBadRequest, err.Error()))
			return
		}
		// Waiting for a slot holds back this subscription's delivery, so what waits beyond
		// MaxConcurrentLogins is NATS's bounded pending queue (loginPending).
		slots <- struct{}{}
		inflight.Go(func() {
			defer func() { <-slots }()
			// Requests still being drained after ctx is done must be answered, so the
			// handler gets its own context, bounded by the caller's deadline.
			deadline := time.Now().Add(DefaultTimeout)
			if !req.Deadline.IsZero() && req.Deadline.Before(deadline) {
				deadline = req.Deadline
			}
			if time.Until(deadline) <= 0 {
				log.LogAttrs(ctx, slog.LevelInfo, "login dropped: the caller gave up", slog.String("principal", req.Username))
				return
			}
			rctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), deadline)
			defer cancel()
			reply := r.Login(rctx, req)
			if rctx.Err() != nil && reply.Code == CodeInternal {
				return // Nobody is waiting for it.
			}
			respond(m, reply)
		})
	})
	if err != nil {
		return fmt.Errorf("authwire: subscribe %s: %w", SubjectLogin, err)
	}
	if err := sub.SetPendingLimits(loginPending, loginPending*1024); err != nil {
		return fmt.Errorf("authwire: %w", err)
	}
	subs = append(subs, sub)
	sub, err = nc.QueueSubscribe(SubjectKeys, queue, func(m *nats.Msg) {
		respond(m, KeysReply{PublicKey: token.EncodePublicKey(current())})
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
