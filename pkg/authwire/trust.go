package authwire

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/pkg/subject"
	"github.com/heraldhq/herald/pkg/token"
)

// KeySetKey is the entry of subject.AuthKeySetBucket holding the published KeySet.
const KeySetKey = "current"

// KeySet is the value of KeySetKey: the public keys that verify auth's tokens, the current
// (signing) key first, then the previous one, which still verifies tokens issued before the
// last rotation.
type KeySet struct {
	Keys []PublishedKey `json:"keys"`
}

// PublishedKey is one public key of a KeySet.
type PublishedKey struct {
	KeyID     string `json:"kid"`
	PublicKey string `json:"public_key"` // token.EncodePublicKey
}

// PublicKeys decodes the set, skipping (and reporting) keys that do not parse.
func (ks KeySet) PublicKeys() ([]ed25519.PublicKey, error) {
	var out []ed25519.PublicKey
	var errs []error
	for _, k := range ks.Keys {
		pub, err := token.ParsePublicKey(k.PublicKey)
		if err != nil {
			errs = append(errs, fmt.Errorf("key %s: %w", k.KeyID, err))
			continue
		}
		out = append(out, pub)
	}
	return out, errors.Join(errs...)
}

// Revocation entries of subject.AuthRevocationsBucket: "t.<jti>" holds a RevokedToken,
// "u.<base64url subject>" a RevokedUser.
const (
	revokedTokenPrefix = "t."
	revokedUserPrefix  = "u."
)

// RevokedToken is the value of a revoked jti.
type RevokedToken struct {
	Subject   string    `json:"sub"`
	ExpiresAt time.Time `json:"exp"`
}

// RevokedUser is the value of a revoked user: every token issued before Before is revoked.
type RevokedUser struct {
	Subject string    `json:"sub"`
	Before  time.Time `json:"before"`
}

// RevokedTokenKey is the revocations entry of the token with jti id.
func RevokedTokenKey(id string) string { return revokedTokenPrefix + id }

// RevokedUserKey is the revocations entry of user sub.
func RevokedUserKey(sub string) string {
	return revokedUserPrefix + base64.RawURLEncoding.EncodeToString([]byte(sub))
}

// ApplyRevocation records one revocations entry (its key and value) in rev.
func ApplyRevocation(rev *token.Revocations, key string, value []byte) error {
	switch {
	case strings.HasPrefix(key, revokedTokenPrefix):
		var t RevokedToken
		if err := json.Unmarshal(value, &t); err != nil {
			return fmt.Errorf("revocation %s: %w", key, err)
		}
		rev.RevokeToken(strings.TrimPrefix(key, revokedTokenPrefix), t.Subject, t.ExpiresAt)
	case strings.HasPrefix(key, revokedUserPrefix):
		var u RevokedUser
		if err := json.Unmarshal(value, &u); err != nil {
			return fmt.Errorf("revocation %s: %w", key, err)
		}
		rev.RevokeUser(u.Subject, u.Before)
	default:
		return fmt.Errorf("revocation %s: unknown kind of entry", key)
	}
	return nil
}

// Trust keeps a token.KeySet and its token.Revocations in step with auth's buckets (key set
// and revocations) by watching them: an edge or ingest verifies with it, picks up a rotated
// key or a revocation within the watch's delay, and, started before auth ever ran (the buckets
// do not exist yet) or while NATS is away, serves and refuses tokens with token.ErrNoKey until
// a key is known.
type Trust struct {
	keys *token.KeySet
	rev  *token.Revocations
	js   jetstream.JetStream
	log  *slog.Logger
}

// NewTrust returns a Trust reading js; opts configure the verifier (clock, leeway).
func NewTrust(js jetstream.JetStream, log *slog.Logger, opts ...token.Option) *Trust {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	rev := token.NewRevocations(opts...)
	return &Trust{keys: token.NewKeySet(append(opts, token.WithRevocations(rev))...), rev: rev, js: js, log: log}
}

// Verifier verifies tokens with the keys known so far, refusing revoked ones.
func (t *Trust) Verifier() *token.KeySet { return t.keys }

// Revocations is the list the verifier refuses, for watching live sessions.
func (t *Trust) Revocations() *token.Revocations { return t.rev }

// retryInterval spaces attempts to bind a bucket that is not there yet, or to watch again
// after the watch failed.
const retryInterval = time.Second

// Run watches both buckets until ctx is done; it returns nil then. Failures are logged and
// retried every retryInterval.
func (t *Trust) Run(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		defer close(done)
		t.watch(ctx, subject.AuthRevocationsBucket, t.applyRevocation)
	}()
	t.watch(ctx, subject.AuthKeySetBucket, t.applyKeySet)
	<-done
	return nil
}

func (t *Trust) applyKeySet(key string, value []byte) error {
	if key != KeySetKey {
		return nil
	}
	var ks KeySet
	if err := json.Unmarshal(value, &ks); err != nil {
		return fmt.Errorf("key set: %w", err)
	}
	pubs, err := ks.PublicKeys()
	if len(pubs) > 0 {
		t.keys.SetKeys(pubs...)
		ids := make([]string, 0, len(ks.Keys))
		for _, k := range ks.Keys {
			ids = append(ids, k.KeyID)
		}
		t.log.Info("token signing keys updated", "kids", ids)
	}
	return err
}

func (t *Trust) applyRevocation(key string, value []byte) error {
	return ApplyRevocation(t.rev, key, value)
}

// watch applies every entry of bucket, now and as they change, until ctx is done. Deletes are
// ignored: a key set is replaced, never deleted, and a revocation only expires with the tokens
// it covers.
func (t *Trust) watch(ctx context.Context, bucket string, apply func(key string, value []byte) error) {
	for ctx.Err() == nil {
		err := t.watchOnce(ctx, bucket, apply)
		if ctx.Err() != nil {
			return
		}
		t.log.Warn("watching auth bucket failed; retrying", "bucket", bucket, "err", err, "retry", retryInterval)
		select {
		case <-ctx.Done():
		case <-time.After(retryInterval):
		}
	}
}

func (t *Trust) watchOnce(ctx context.Context, bucket string, apply func(key string, value []byte) error) error {
	kv, err := t.js.KeyValue(ctx, bucket)
	if err != nil {
		return fmt.Errorf("bind %s: %w", bucket, err)
	}
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watch %s: %w", bucket, err)
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				return fmt.Errorf("watch %s: closed", bucket)
			}
			if e == nil || e.Operation() != jetstream.KeyValuePut {
				continue // nil marks the end of the initial values
			}
			if err := apply(e.Key(), e.Value()); err != nil {
				t.log.Warn("bad auth bucket entry ignored", "bucket", bucket, "err", err)
			}
		}
	}
}
