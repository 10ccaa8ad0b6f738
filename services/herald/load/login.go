package load

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// Login returns a token for user from the Herald at base (http://127.0.0.1:8080), for the
// gRPC publish modes, which take a token rather than a password.
func Login(base, user, password string) (string, error) {
	if err := loopbackURL(base, "http"); err != nil {
		return "", fmt.Errorf("load: login %s: %w", base, err)
	}
	body, _ := json.Marshal(map[string]string{"username": user, "password": password})
	hc := http.Client{Timeout: 10 * time.Second}
	resp, err := hc.Post(base+"/api/v1/auth/login", "application/json", bytes.NewReader(body))
	if err != nil {
		return "", fmt.Errorf("load: login: %w", err)
	}
	defer resp.Body.Close()
	var out struct{ Token string }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.Token == "" {
		return "", fmt.Errorf("load: login: HTTP %d: %v", resp.StatusCode, err)
	}
	return out.Token, nil
}
