// Package natsx starts and reaches NATS the way every Herald process does:
// an embedded server for the all-in-one mode and tests, and client
// connections with reconnect and logging defaults for everything else.
package natsx

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// DefaultStoreDir is where the all-in-one mode keeps JetStream data: an absolute path in
// the user's state directory ($XDG_STATE_HOME/herald/nats, else ~/.local/state/herald/nats),
// so the stored events do not depend on the directory the process was started in. Without a
// home directory it is herald/nats under the system's temporary directory.
func DefaultStoreDir() string {
	if d := os.Getenv("XDG_STATE_HOME"); filepath.IsAbs(d) {
		return filepath.Join(d, "herald", "nats")
	}
	if home, err := os.UserHomeDir(); err == nil && filepath.IsAbs(home) {
		return filepath.Join(home, ".local", "state", "herald", "nats")
	}
	return filepath.Join(os.TempDir(), "herald", "nats")
}

// EmbeddedConfig configures an in-process nats-server.
type EmbeddedConfig struct {
	// StoreDir holds JetStream data. Empty means DefaultStoreDir().
	StoreDir string
	// Listen also opens a client port on 127.0.0.1 that the server picks
	// itself, never the standard 4222 a real NATS may hold. When false the
	// server accepts in-process connections only (see ConnectInProcess).
	Listen bool
	// ServerName names the server in logs and JetStream. Empty means "herald".
	ServerName string
	// ReadyTimeout bounds the wait for the server to accept clients. Zero
	// means 10s.
	ReadyTimeout time.Duration
	// Logger receives the server's log lines. Nil means the server logs
	// nothing.
	Logger *slog.Logger
}

// RegisterFlags registers the embedded server's flags on fs.
func (c *EmbeddedConfig) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.StoreDir, "nats.store-dir", DefaultStoreDir(), "directory for the embedded NATS server's JetStream data")
	fs.BoolVar(&c.Listen, "nats.listen", false, "also let the embedded NATS server accept clients on a 127.0.0.1 port of its own choosing")
}

// Validate reports settings that cannot work.
func (c EmbeddedConfig) Validate() error {
	if c.ReadyTimeout < 0 {
		return errors.New("nats.ready-timeout: must not be negative")
	}
	return nil
}

// Embedded starts a nats-server with JetStream in this process and waits
// until it accepts clients. The caller owns the server: stop it with
// Shutdown. The server never installs signal handlers; the process's main
// owns signals.
func Embedded(cfg EmbeddedConfig) (*server.Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.StoreDir == "" {
		cfg.StoreDir = DefaultStoreDir()
	}
	if cfg.ServerName == "" {
		cfg.ServerName = "herald"
	}
	if cfg.ReadyTimeout == 0 {
		cfg.ReadyTimeout = 10 * time.Second
	}
	opts := &server.Options{
		ServerName: cfg.ServerName,
		Host:       "127.0.0.1",
		Port:       -1,
		DontListen: !cfg.Listen,
		NoSigs:     true,
		NoLog:      cfg.Logger == nil,
		JetStream:  true,
		StoreDir:   cfg.StoreDir,
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	if cfg.Logger != nil {
		s.SetLoggerV2(serverLogger{cfg.Logger.With("component", "nats-server")}, false, false, false)
	}
	s.Start()
	if !s.ReadyForConnections(cfg.ReadyTimeout) {
		Shutdown(s)
		return nil, fmt.Errorf("embedded nats: not ready for connections within %s (store dir %s)", cfg.ReadyTimeout, cfg.StoreDir)
	}
	return s, nil
}

// Shutdown stops s and waits until it has released its store and ports.
// It is safe to call more than once.
func Shutdown(s *server.Server) {
	s.Shutdown()
	s.WaitForShutdown()
}

// ConnectInProcess connects to s without a socket. It fails if s is not
// running; it does not reconnect, since the server lives and dies with the
// process.
func ConnectInProcess(s *server.Server, name string, log *slog.Logger) (*nats.Conn, error) {
	opts := append(handlers(log, name), nats.Name(name), nats.InProcessServer(s), nats.MaxReconnects(0))
	nc, err := nats.Connect("", opts...)
	if err != nil {
		return nil, fmt.Errorf("connect in-process to nats as %s: %w", name, err)
	}
	return nc, nil
}

// serverLogger adapts nats-server's printf logger to slog. Fatalf is
// logged as an error and never exits: only main decides to exit.
type serverLogger struct{ log *slog.Logger }

func (l serverLogger) Noticef(format string, v ...any) { l.log.Info(fmt.Sprintf(format, v...)) }
func (l serverLogger) Warnf(format string, v ...any)   { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l serverLogger) Fatalf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l serverLogger) Errorf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l serverLogger) Debugf(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l serverLogger) Tracef(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }
