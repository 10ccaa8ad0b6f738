package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// Context is one deployment the CLI talks to, with the token `herald login` got there.
type Context struct {
	Server    string    `json:"edge"`               // the edge's base URL, http://host:port
	GRPC      string    `json:"grpc"`               // host:port of the gRPC services
	GRPCTLS   bool      `json:"grpc_tls,omitempty"` // gRPC over TLS
	Insecure  bool      `json:"insecure,omitempty"` // accept any certificate (a development one)
	User      string    `json:"user,omitempty"`     // who logged in
	Token     string    `json:"token,omitempty"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
}

// Config is the CLI's file: named contexts and the current one. It holds tokens, so it is
// written 0600 in a 0700 directory.
type Config struct {
	Current  string              `json:"current"`
	Contexts map[string]*Context `json:"contexts"`
}

// Defaults of a context nobody configured: the all-in-one `herald serve` on loopback.
const (
	defaultServer  = "http://127.0.0.1:8080"
	defaultGRPC    = "127.0.0.1:9090"
	defaultContext = "default"
)

// configPath is $HERALD_CONFIG, else herald/config.json in the user's config directory.
func configPath() (string, error) {
	if p := os.Getenv("HERALD_CONFIG"); p != "" {
		return p, nil
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("config directory: %w (set HERALD_CONFIG)", err)
	}
	return filepath.Join(dir, "herald", "config.json"), nil
}

// loadConfig reads the file; a missing one is an empty configuration.
func loadConfig(path string) (*Config, error) {
	cfg := &Config{Contexts: map[string]*Context{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return cfg, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, cfg); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if cfg.Contexts == nil {
		cfg.Contexts = map[string]*Context{}
	}
	return cfg, nil
}

// save writes the file whole through a temporary file, so a crash leaves the old one.
func (c *Config) save(path string) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".config-*.json")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after the rename there is nothing left to remove
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// names lists the contexts in order.
func (c *Config) names() []string {
	names := make([]string, 0, len(c.Contexts))
	for n := range c.Contexts {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
