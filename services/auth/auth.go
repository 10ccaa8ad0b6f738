// Package auth is Herald's auth service: users with bcrypt-hashed
// passwords, a bootstrap admin, and Ed25519-signed tokens (pkg/token)
// issued over HTTP (JSON and Salt's /login), gRPC (herald.v1.AuthService)
// and NATS (pkg/authwire). Edges verify tokens locally with the public key.
//
// It also keeps agents' API keys, each bound to one server and stored as
// its SHA-256: created, listed and revoked over gRPC (permission
// apikeys.manage.*), verified by ingests over NATS (authwire.VerifyAPIKey).
// With a JetStream (Deps.JetStream) users, API keys, signing keys and revocations live in
// JetStream key-value buckets shared by every auth instance and kept across restarts; the
// public key set and the revocations are what edges and ingests watch (authwire.Trust).
// Without one (unit tests) everything is in this process's memory.
package auth

import (
	"context"
	"crypto/ed25519"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/crypto/bcrypt"

	"github.com/heraldhq/herald/pkg/authwire"
	"github.com/heraldhq/herald/pkg/token"
)

// AdminUser is the bootstrap administrator's name.
const AdminUser = "admin"

// AdminPermissions are granted to the bootstrap administrator: everything.
var AdminPermissions = []string{"*.*.*"}

// Defaults for zero Config fields.
const (
	DefaultTokenTTL           = time.Hour
	DefaultLoginMaxFailures   = 10
	DefaultLoginFailureWindow = time.Minute
)

// maxUsernameBytes bounds user names everywhere (login, users file).
const maxUsernameBytes = 256

// Config configures the auth service. Zero values mean the documented
// default.
type Config struct {
	// AdminPassword is the bootstrap admin's password (secret). Empty: keep
	// an admin already in the store, else generate one and log it once.
	AdminPassword string
	// UsersFile is an optional JSON list of users (see UserSpec).
	UsersFile string
	// SigningKeyFile is an Ed25519 PKCS #8 PEM private key, made the current signing key at
	// start. Empty: the key stored in JetStream (made by the first instance, rotated with
	// RotateSigningKey), or one generated in memory without JetStream.
	SigningKeyFile string
	// KVReplicas is the number of copies of auth's key-value buckets in a NATS cluster
	// (3 on a production cluster; default 1).
	KVReplicas int
	// TokenTTL is how long issued tokens live (default 1h).
	TokenTTL time.Duration
	// BcryptCost is the cost of newly hashed passwords (default
	// bcrypt.DefaultCost; tests use bcrypt.MinCost).
	BcryptCost int
	// LoginMaxFailures is how many failed logins a user name may have from one
	// address (ten times as many over all names from one address) before further
	// attempts from there back off, 1s doubling up to LoginFailureWindow (default
	// 10; negative disables the limit). Never per name alone: a stranger cannot
	// lock a user out.
	LoginMaxFailures int
	// LoginFailureWindow is the window of LoginMaxFailures (default 1m).
	LoginFailureWindow time.Duration
}

// RegisterFlags registers the auth.* flags on fs.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.AdminPassword, "auth.admin-password", c.AdminPassword,
		"password of the bootstrap user admin (secret); empty generates one and logs it once")
	fs.Var(fallbackString{&c.AdminPassword}, AdminPasswordAlias,
		"alias of auth.admin-password used only when that is unset; read from HERALD_ADMIN_PASSWORD")
	fs.StringVar(&c.UsersFile, "auth.users-file", c.UsersFile,
		`JSON list of users: [{"name","password" or "password_hash","permissions"}]`)
	fs.StringVar(&c.SigningKeyFile, "auth.signing-key-file", c.SigningKeyFile,
		"Ed25519 PKCS#8 PEM signing key; empty generates one in memory (dev only: tokens die on restart)")
	fs.IntVar(&c.KVReplicas, "auth.kv-replicas", 1, "copies of auth's key-value buckets (users, API keys, signing keys, revocations) in the NATS cluster; 3 on a production cluster")
	fs.DurationVar(&c.TokenTTL, "auth.token-ttl", DefaultTokenTTL, "lifetime of issued tokens")
	fs.IntVar(&c.BcryptCost, "auth.bcrypt-cost", bcrypt.DefaultCost, "bcrypt cost of password hashes")
	fs.IntVar(&c.LoginMaxFailures, "auth.login-max-failures", DefaultLoginMaxFailures,
		"failed logins per (user, address) before backing off; ten times as many per address (negative: no limit)")
	fs.DurationVar(&c.LoginFailureWindow, "auth.login-failure-window", DefaultLoginFailureWindow,
		"failures older than this are forgotten; also the longest backoff")
}

// AdminPasswordAlias is a second flag name for auth.admin-password, so that
// pkg/config binds it to HERALD_ADMIN_PASSWORD, the variable the issue and
// the README name (the dotted flag maps to HERALD_AUTH_ADMIN_PASSWORD).
const AdminPasswordAlias = "admin-password"

// fallbackString is a flag.Value that sets its target only while the target
// is empty. It keeps precedence right for the alias: -auth.admin-password
// on the command line (parsed first) or HERALD_AUTH_ADMIN_PASSWORD (applied
// after it, flags being visited in name order) win over
// HERALD_ADMIN_PASSWORD.
type fallbackString struct{ target *string }

func (f fallbackString) String() string {
	if f.target == nil {
		return ""
	}
	return *f.target
}

func (f fallbackString) Set(v string) error {
	if *f.target == "" {
		*f.target = v
	}
	return nil
}

// Validate checks the configuration.
func (c Config) Validate() error {
	var errs []error
	if c.TokenTTL < 0 {
		errs = append(errs, errors.New("auth.token-ttl: must not be negative"))
	}
	if c.BcryptCost != 0 && (c.BcryptCost < bcrypt.MinCost || c.BcryptCost > bcrypt.MaxCost) {
		errs = append(errs, fmt.Errorf("auth.bcrypt-cost: must be in [%d, %d]", bcrypt.MinCost, bcrypt.MaxCost))
	}
	if c.KVReplicas < 0 || c.KVReplicas > 5 {
		errs = append(errs, fmt.Errorf("auth.kv-replicas: must be between 1 and 5, got %d", c.KVReplicas))
	}
	if c.LoginFailureWindow < 0 {
		errs = append(errs, errors.New("auth.login-failure-window: must not be negative"))
	}
	if len(c.AdminPassword) > maxPasswordBytes {
		errs = append(errs, fmt.Errorf("auth.admin-password: longer than %d bytes", maxPasswordBytes))
	}
	return errors.Join(errs...)
}

func (c Config) withDefaults() Config {
	if c.TokenTTL == 0 {
		c.TokenTTL = DefaultTokenTTL
	}
	if c.BcryptCost == 0 {
		c.BcryptCost = bcrypt.DefaultCost
	}
	if c.LoginMaxFailures == 0 {
		c.LoginMaxFailures = DefaultLoginMaxFailures
	}
	if c.LoginFailureWindow == 0 {
		c.LoginFailureWindow = DefaultLoginFailureWindow
	}
	return c
}

// Deps are the service's collaborators.
type Deps struct {
	// NC carries the authwire subjects; nil: Run serves no NATS.
	NC *nats.Conn
	// JetStream holds users, API keys, signing keys and revocations in key-value buckets;
	// nil: memory, this process only.
	JetStream jetstream.JetStream
	// KVMemory keeps those buckets in memory instead of files (tests only).
	KVMemory bool
	// Log is the logger; nil discards.
	Log *slog.Logger
	// Store holds users and API keys; nil: a KVStore with JetStream, else a MemoryStore.
	Store Store
	// Now is the clock for tokens and the login limiter; nil: time.Now.
	Now func() time.Time
}

// Service issues tokens to users who prove their password.
type Service struct {
	cfg           Config
	nc            *nats.Conn
	log           *slog.Logger
	store         Store
	hasher        *hasher
	keys          *keyring
	verifier      *token.KeySet
	revocations   *token.Revocations
	revocationsKV jetstream.KeyValue // nil without JetStream
	trust         *authwire.Trust    // nil without JetStream
	limiter       *failureLimiter
	now           func() time.Time
}

// bootstrapTimeout bounds the store writes New makes.
const bootstrapTimeout = 10 * time.Second

// New checks cfg, loads or generates the signing key, loads the users file
// and makes sure the admin user exists. It starts nothing; the only I/O is
// reading the configured files and writing the bootstrap users to the store.
func New(cfg Config, deps Deps) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	cfg = cfg.withDefaults()
	s := &Service{cfg: cfg, nc: deps.NC, log: deps.Log, store: deps.Store}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.log = s.log.With("component", "auth")
	now := deps.Now
	if now == nil {
		now = time.Now
	}
	s.now = now
	var err error
	if s.hasher, err = newHasher(cfg.BcryptCost); err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), bootstrapTimeout)
	defer cancel()
	if err := s.openState(ctx, deps); err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	s.limiter = newFailureLimiter(cfg.LoginMaxFailures, cfg.LoginFailureWindow, now)
	if err := s.loadUsers(ctx); err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	if err := s.bootstrapAdmin(ctx); err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	return s, nil
}

// openState binds the buckets (with a JetStream) and loads the signing keys.
func (s *Service) openState(ctx context.Context, deps Deps) error {
	clock := token.WithClock(s.now)
	s.keys = &keyring{log: s.log, newIssuer: func(p ed25519.PrivateKey) *token.Issuer {
		return token.NewIssuer(p, s.cfg.TokenTTL, clock)
	}}
	var fromFile ed25519.PrivateKey
	if s.cfg.SigningKeyFile != "" {
		var err error
		if fromFile, err = token.LoadPrivateKeyPEM(s.cfg.SigningKeyFile); err != nil {
			return err
		}
	}
	if deps.JetStream == nil {
		if s.store == nil {
			s.store = NewMemoryStore()
		}
		s.revocations = token.NewRevocations(clock)
		s.verifier = token.NewKeySet(clock, token.WithRevocations(s.revocations))
		s.keys.verifier = s.verifier
		if fromFile == nil {
			s.log.Warn("no JetStream and no auth.signing-key-file: using a key generated in memory; tokens will not survive a restart")
		}
		return s.keys.load(ctx, fromFile)
	}
	kvc := KVConfig{Replicas: s.cfg.KVReplicas, Memory: deps.KVMemory}
	if s.store == nil {
		st, err := NewKVStore(ctx, deps.JetStream, kvc)
		if err != nil {
			return err
		}
		s.store = st
	}
	var err error
	if s.keys.signing, s.keys.keyset, err = openSigning(ctx, deps.JetStream, kvc); err != nil {
		return err
	}
	if s.revocationsKV, err = openRevocations(ctx, deps.JetStream, kvc, s.cfg.TokenTTL); err != nil {
		return err
	}
	s.trust = authwire.NewTrust(deps.JetStream, s.log, clock)
	s.verifier, s.revocations = s.trust.Verifier(), s.trust.Revocations()
	s.keys.verifier = s.verifier
	return s.keys.load(ctx, fromFile)
}

// RotateSigningKey makes a new signing key for every auth instance; tokens signed with the one
// it replaces keep verifying (it stays in the key set as the previous key) until the next
// rotation. It returns the new key's id.
func (s *Service) RotateSigningKey(ctx context.Context) (string, error) {
	kid, err := s.keys.rotate(ctx)
	if err != nil {
		return "", err
	}
	s.log.LogAttrs(ctx, slog.LevelInfo, "signing key rotated", slog.String("principal", principalFrom(ctx)), slog.String("kid", kid))
	return kid, nil
}

func (s *Service) loadUsers(ctx context.Context) error {
	if s.cfg.UsersFile == "" {
		return nil
	}
	specs, err := LoadUsersFile(s.cfg.UsersFile)
	if err != nil {
		return err
	}
	for _, spec := range specs {
		u, err := spec.user(s.hasher)
		if err != nil {
			return fmt.Errorf("users file %s: %w", s.cfg.UsersFile, err)
		}
		if err := s.store.PutUser(ctx, u); err != nil {
			return fmt.Errorf("users file %s: %w", s.cfg.UsersFile, err)
		}
	}
	s.log.Info("users loaded", "file", s.cfg.UsersFile, "count", len(specs))
	return nil
}

// bootstrapAdmin makes sure "admin" can log in: a configured password
// always wins (it is how an operator resets it); otherwise an admin already
// in the store (or the users file) is kept; otherwise a password is
// generated and logged exactly once, since nobody could log in without it.
func (s *Service) bootstrapAdmin(ctx context.Context) error {
	password := s.cfg.AdminPassword
	if password == "" {
		_, err := s.store.GetUser(ctx, AdminUser)
		if err == nil {
			return nil
		}
		if !errors.Is(err, ErrUserNotFound) {
			return fmt.Errorf("bootstrap admin: %w", err)
		}
		password = generatePassword()
	}
	hash, err := s.hasher.hash(password)
	if err != nil {
		return fmt.Errorf("bootstrap admin: %w", err)
	}
	u := User{Name: AdminUser, PasswordHash: hash, Permissions: append([]string(nil), AdminPermissions...)}
	if err := s.store.PutUser(ctx, u); err != nil {
		return fmt.Errorf("bootstrap admin: %w", err)
	}
	if s.cfg.AdminPassword == "" {
		// The one place a secret is logged, on purpose: it is the only way to
		// learn it. Set HERALD_ADMIN_PASSWORD to avoid it.
		s.log.Warn("generated password for user admin; it is shown only this once (set HERALD_ADMIN_PASSWORD to choose it)",
			"user", AdminUser, "password", password)
	}
	return nil
}

// Verifier returns a verifier for this service's tokens, for an edge in the
// same process: it follows rotations and refuses revoked tokens.
func (s *Service) Verifier() *token.KeySet { return s.verifier }

// PublicKey returns the key that verifies this service's new tokens.
func (s *Service) PublicKey() ed25519.PublicKey { return s.keys.Issuer().PublicKey() }

// Run serves the authwire NATS subjects in queue group authwire.QueueGroup
// until ctx is done, then drains those subscriptions and returns nil.
// Without a NATS connection it only waits for ctx.
func (s *Service) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wg.Go(func() { s.keys.follow(ctx) })
	if s.trust != nil {
		wg.Go(func() { _ = s.trust.Run(ctx) })
	}
	if s.nc == nil {
		<-ctx.Done()
		return nil
	}
	r := authwire.Responder{Login: s.natsLogin, VerifyAPIKey: s.natsVerifyAPIKey, CurrentKey: s.PublicKey, Log: s.log}
	s.log.Info("serving auth on NATS", "subjects", []string{authwire.SubjectLogin, authwire.SubjectKeys, authwire.SubjectAPIKeyVerify}, "queue", authwire.QueueGroup)
	if err := r.Serve(ctx, s.nc, authwire.QueueGroup); err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	return nil
}
