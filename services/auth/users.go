package auth

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/heraldhq/herald/pkg/event"
)

// UserSpec is one entry of the users file: a JSON list of
//
//	{"name": "ops", "password": "...", "permissions": ["machines.*.*"]}
//
// where "password_hash" (bcrypt) may replace "password", so the file need
// not hold clear-text secrets.
type UserSpec struct {
	Name         string   `json:"name"`
	Password     string   `json:"password,omitempty"`
	PasswordHash string   `json:"password_hash,omitempty"`
	Permissions  []string `json:"permissions"`
}

// maxUsersFileBytes bounds the users file read at start.
const maxUsersFileBytes = 4 << 20

// LoadUsersFile reads and checks a users file.
func LoadUsersFile(path string) ([]UserSpec, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("users file: %w", err)
	}
	if len(data) > maxUsersFileBytes {
		return nil, fmt.Errorf("users file %s: larger than %d bytes", path, maxUsersFileBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var specs []UserSpec
	if err := dec.Decode(&specs); err != nil {
		return nil, fmt.Errorf("users file %s: %w", path, err)
	}
	seen := make(map[string]bool, len(specs))
	for i, s := range specs {
		if err := s.validate(); err != nil {
			return nil, fmt.Errorf("users file %s: entry %d: %w", path, i, err)
		}
		if seen[s.Name] {
			return nil, fmt.Errorf("users file %s: entry %d: name %q defined twice", path, i, s.Name)
		}
		seen[s.Name] = true
	}
	return specs, nil
}

func (s UserSpec) validate() error {
	switch {
	case s.Name == "":
		return errors.New("name: must not be empty")
	case len(s.Name) > maxUsernameBytes:
		return fmt.Errorf("name: longer than %d bytes", maxUsernameBytes)
	case (s.Password == "") == (s.PasswordHash == ""):
		return fmt.Errorf("user %q: exactly one of password and password_hash must be set", s.Name)
	case len(s.Password) > maxPasswordBytes:
		return fmt.Errorf("user %q: password longer than %d bytes", s.Name, maxPasswordBytes)
	}
	if s.PasswordHash != "" {
		if err := checkHash([]byte(s.PasswordHash)); err != nil {
			return fmt.Errorf("user %q: %w", s.Name, err)
		}
	}
	if _, err := event.ParsePermissions(s.Permissions); err != nil {
		return fmt.Errorf("user %q: permissions: %w", s.Name, err)
	}
	return nil
}

// user turns the spec into a User, hashing a clear-text password.
func (s UserSpec) user(h *hasher) (User, error) {
	u := User{Name: s.Name, Permissions: s.Permissions}
	if u.Permissions == nil {
		u.Permissions = []string{}
	}
	if s.PasswordHash != "" {
		u.PasswordHash = []byte(s.PasswordHash)
		return u, nil
	}
	hash, err := h.hash(s.Password)
	if err != nil {
		return User{}, fmt.Errorf("user %q: %w", s.Name, err)
	}
	u.PasswordHash = hash
	return u, nil
}
