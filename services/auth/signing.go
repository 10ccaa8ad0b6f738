package auth

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/pkg/authwire"
	"github.com/heraldhq/herald/pkg/subject"
	"github.com/heraldhq/herald/pkg/token"
)

// signingKey is the entry of subject.AuthSigningBucket: the private key auth signs with and
// the one it signed with before the last rotation (PKCS #8 PEM each). Every auth instance
// signs with Current; verifiers accept both.
type signingEntry struct {
	Current  []byte `json:"current"`
	Previous []byte `json:"previous,omitempty"`
	// FileKeyID is the kid of the last auth.signing-key-file key put in place. A file key is
	// applied once, when it is new: a rotation afterwards is not undone by the next restart
	// of an auth that still has the same file configured.
	FileKeyID string `json:"file_kid,omitempty"`
}

const signingKey = "signing"

// keyring holds the signing keys: in JetStream (shared by every auth instance and kept across
// restarts) when kv is set, else in this process only.
type keyring struct {
	signing, keyset jetstream.KeyValue // nil: memory only
	newIssuer       func(ed25519.PrivateKey) *token.Issuer
	verifier        *token.KeySet
	log             *slog.Logger

	mu       sync.Mutex
	issuer   *token.Issuer
	current  ed25519.PrivateKey
	previous ed25519.PrivateKey
}

func (k *keyring) Issuer() *token.Issuer {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.issuer
}

// load reads the stored keys, creating them when none are stored. fromFile, when set, is
// the configured key: the first time it is seen it becomes the current key (the stored one,
// if different, the previous); once applied, rotations replace it as they replace any key.
func (k *keyring) load(ctx context.Context, fromFile ed25519.PrivateKey) error {
	if k.signing == nil {
		cur := fromFile
		if cur == nil {
			var err error
			if cur, err = token.GenerateKey(); err != nil {
				return err
			}
		}
		return k.use(ctx, signingEntryOf(cur, nil))
	}
	for range casAttempts {
		e, err := k.signing.Get(ctx, signingKey)
		var rev uint64
		var stored signingEntry
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return fmt.Errorf("signing keys: %w", err)
		default:
			if err := json.Unmarshal(e.Value(), &stored); err != nil {
				return fmt.Errorf("signing keys: %w", err)
			}
			rev = e.Revision()
		}
		want := stored
		fileKID := ""
		if fromFile != nil {
			fileKID = token.KeyID(fromFile.Public().(ed25519.PublicKey))
		}
		cur, _ := token.ParsePrivateKeyPEM(stored.Current)
		switch {
		case fromFile != nil && cur != nil && cur.Equal(fromFile):
			if stored.FileKeyID == fileKID {
				return k.use(ctx, stored)
			}
			want.FileKeyID = fileKID // in place already, stored before the kid was recorded
		case fromFile != nil && stored.FileKeyID == "" && cur != nil && len(stored.Previous) > 0 && previousIs(stored, fromFile):
			// Stored before the kid was recorded, and rotated since the file was put in place:
			// keep the rotation, record the file as applied.
			want.FileKeyID = fileKID
		case fromFile != nil && (cur == nil || stored.FileKeyID != fileKID):
			want = signingEntryOf(fromFile, cur)
			want.FileKeyID = fileKID
		case cur == nil:
			fresh, err := token.GenerateKey()
			if err != nil {
				return err
			}
			want = signingEntryOf(fresh, nil)
		default:
			if fromFile != nil {
				k.log.Info("auth.signing-key-file was put in place before and rotated since: signing with the rotated key",
					"file_kid", fileKID)
			}
			return k.use(ctx, stored)
		}
		if err := k.store(ctx, want, rev); errors.Is(err, jetstream.ErrKeyExists) {
			continue // Another instance wrote first: read its keys.
		} else if err != nil {
			return err
		}
		return k.use(ctx, want)
	}
	return errors.New("signing keys: too many concurrent updates")
}

// rotate makes a new current key; the current one becomes the previous one, and the previous
// one stops verifying.
func (k *keyring) rotate(ctx context.Context) (string, error) {
	for range casAttempts {
		fresh, err := token.GenerateKey()
		if err != nil {
			return "", err
		}
		k.mu.Lock()
		want := signingEntryOf(fresh, k.current)
		k.mu.Unlock()
		if k.signing != nil {
			e, err := k.signing.Get(ctx, signingKey)
			if err != nil {
				return "", fmt.Errorf("rotate signing key: %w", err)
			}
			var stored signingEntry
			if err := json.Unmarshal(e.Value(), &stored); err != nil {
				return "", fmt.Errorf("rotate signing key: %w", err)
			}
			cur, err := token.ParsePrivateKeyPEM(stored.Current)
			if err != nil {
				return "", fmt.Errorf("rotate signing key: %w", err)
			}
			want = signingEntryOf(fresh, cur)
			want.FileKeyID = stored.FileKeyID
			if err := k.store(ctx, want, e.Revision()); errors.Is(err, jetstream.ErrKeyExists) {
				continue
			} else if err != nil {
				return "", err
			}
		}
		if err := k.use(ctx, want); err != nil {
			return "", err
		}
		return token.KeyID(fresh.Public().(ed25519.PublicKey)), nil
	}
	return "", errors.New("rotate signing key: too many concurrent updates")
}

// previousIs reports whether e's previous key is k.
func previousIs(e signingEntry, k ed25519.PrivateKey) bool {
	prev, err := token.ParsePrivateKeyPEM(e.Previous)
	return err == nil && prev.Equal(k)
}

func signingEntryOf(cur, prev ed25519.PrivateKey) signingEntry {
	e := signingEntry{}
	e.Current, _ = token.MarshalPrivateKeyPEM(cur)
	if prev != nil {
		e.Previous, _ = token.MarshalPrivateKeyPEM(prev)
	}
	return e
}

// store writes e if the entry is still at revision rev (0: absent).
func (k *keyring) store(ctx context.Context, e signingEntry, rev uint64) error {
	data, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("signing keys: %w", err)
	}
	if rev == 0 {
		_, err = k.signing.Create(ctx, signingKey, data)
	} else {
		_, err = k.signing.Update(ctx, signingKey, data, rev)
	}
	if err != nil {
		return fmt.Errorf("signing keys: %w", err)
	}
	return nil
}

// use signs with e's current key from now on, verifies with both, and publishes both public
// keys to the key set edges and ingests watch.
func (k *keyring) use(ctx context.Context, e signingEntry) error {
	cur, err := token.ParsePrivateKeyPEM(e.Current)
	if err != nil {
		return fmt.Errorf("signing keys: %w", err)
	}
	var prev ed25519.PrivateKey
	if len(e.Previous) > 0 {
		if prev, err = token.ParsePrivateKeyPEM(e.Previous); err != nil {
			return fmt.Errorf("signing keys: previous: %w", err)
		}
	}
	pubs := []ed25519.PublicKey{cur.Public().(ed25519.PublicKey)}
	if prev != nil {
		pubs = append(pubs, prev.Public().(ed25519.PublicKey))
	}
	k.mu.Lock()
	changed := k.current == nil || !k.current.Equal(cur)
	k.current, k.previous = cur, prev
	k.issuer = k.newIssuer(cur)
	k.mu.Unlock()
	k.verifier.SetKeys(pubs...)
	if changed {
		k.log.Info("signing with key", "kid", token.KeyID(pubs[0]))
	}
	if k.keyset == nil {
		return nil
	}
	ks := authwire.KeySet{}
	for _, p := range pubs {
		ks.Keys = append(ks.Keys, authwire.PublishedKey{KeyID: token.KeyID(p), PublicKey: token.EncodePublicKey(p)})
	}
	data, err := json.Marshal(ks)
	if err != nil {
		return fmt.Errorf("publish key set: %w", err)
	}
	if _, err := k.keyset.Put(ctx, authwire.KeySetKey, data); err != nil {
		return fmt.Errorf("publish key set: %w", err)
	}
	return nil
}

// follow switches to keys another instance rotated to, until ctx is done.
func (k *keyring) follow(ctx context.Context) {
	if k.signing == nil {
		<-ctx.Done()
		return
	}
	for ctx.Err() == nil {
		w, err := k.signing.Watch(ctx, signingKey, jetstream.UpdatesOnly())
		if err == nil {
			k.followUpdates(ctx, w)
			_ = w.Stop()
		}
		if ctx.Err() == nil {
			k.log.Warn("watching signing keys failed; retrying", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(retryInterval):
			}
		}
	}
}

func (k *keyring) followUpdates(ctx context.Context, w jetstream.KeyWatcher) {
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-w.Updates():
			if !ok {
				return
			}
			if e == nil || e.Operation() != jetstream.KeyValuePut {
				continue
			}
			var stored signingEntry
			if err := json.Unmarshal(e.Value(), &stored); err != nil {
				k.log.Warn("bad signing key entry ignored", "err", err)
				continue
			}
			uctx, cancel := context.WithTimeout(ctx, bootstrapTimeout)
			if err := k.use(uctx, stored); err != nil {
				k.log.Warn("switching signing key failed", "err", err)
			}
			cancel()
		}
	}
}

// retryInterval spaces attempts to watch a bucket again after the watch failed.
const retryInterval = time.Second

// openSigning makes (or binds) the signing and key set buckets.
func openSigning(ctx context.Context, js jetstream.JetStream, cfg KVConfig) (signing, keyset jetstream.KeyValue, err error) {
	if signing, err = cfg.bucket(ctx, js, subject.AuthSigningBucket, 0); err != nil {
		return nil, nil, err
	}
	if keyset, err = cfg.bucket(ctx, js, subject.AuthKeySetBucket, 0); err != nil {
		return nil, nil, err
	}
	return signing, keyset, nil
}
