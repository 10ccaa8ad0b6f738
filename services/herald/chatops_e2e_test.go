package herald_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/heraldhq/herald/pkg/testutil"
	"github.com/heraldhq/herald/services/herald"
)

// chatopsCall sends one request as the ChatOps frontend does: JSON body, Bearer token.
func chatopsCall(t *testing.T, method, url, tok string, body any) (int, map[string]any) {
	t.Helper()
	var rd *bytes.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// TestChatOpsCommandEndpoint runs commands on the real agent through ChatOps' REST endpoint:
// output and exit code come back in ChatOps' shape; an offline server is its 503.
func TestChatOpsCommandEndpoint(t *testing.T) {
	s := startAgentStack(t)
	base := "http://" + s.HTTPAddr()
	tok := adminToken(t, s)

	if code, body := chatopsCall(t, "GET", base+"/health", "", nil); code != http.StatusOK || body["status"] != "healthy" {
		t.Fatalf("/health = %d %v", code, body)
	}
	if code, body := chatopsCall(t, "POST", base+"/api/v1/commands/"+herald.DevServerID, "", map[string]string{"command": "true"}); code != http.StatusUnauthorized || body["detail"] == nil {
		t.Fatalf("no credentials = %d %v, want 401 with a detail", code, body)
	}
	if code, body := chatopsCall(t, "POST", base+"/api/v1/commands/"+herald.DevServerID, tok, map[string]string{"command": "true"}); code != http.StatusServiceUnavailable {
		t.Fatalf("command before the agent connects = %d %v, want 503", code, body)
	}

	startAgent(t, "ws://"+s.HTTPAddr()+"/api/v1/agents/ws", s.DevAPIKey())
	// The servers list shows the agent online once it has authenticated.
	testutil.Eventually(t, 15*time.Second, func() error {
		req, _ := http.NewRequest("GET", base+"/api/v1/servers", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var servers []struct{ ID, Status string }
		if err := json.NewDecoder(resp.Body).Decode(&servers); err != nil {
			return err
		}
		for _, sv := range servers {
			if sv.ID == herald.DevServerID && sv.Status == "online" {
				return nil
			}
		}
		return fmt.Errorf("servers = %+v, want %s online", servers, herald.DevServerID)
	})

	code, body := chatopsCall(t, "POST", base+"/api/v1/commands/"+herald.DevServerID, tok, map[string]string{"command": "echo hello"})
	if code != http.StatusOK || body["success"] != true || body["output"] != "hello\n" || body["exit_code"] != float64(0) || body["error"] != nil {
		t.Fatalf("echo hello = %d %v", code, body)
	}
	code, body = chatopsCall(t, "POST", base+"/api/v1/commands/"+herald.DevServerID, tok, map[string]string{"command": "echo oops; exit 3"})
	if code != http.StatusOK || body["success"] != false || body["exit_code"] != float64(3) || body["output"] != "oops\n" || body["error"] != "oops\n" {
		t.Fatalf("exit 3 = %d %v", code, body)
	}
	if code, body := chatopsCall(t, "POST", base+"/api/v1/commands/"+herald.DevServerID, tok, map[string]string{"command": " "}); code != http.StatusUnprocessableEntity {
		t.Fatalf("empty command = %d %v, want 422", code, body)
	}
	// The latest sample the agent sent.
	testutil.Eventually(t, 15*time.Second, func() error {
		code, body := chatopsCall(t, "GET", base+"/api/v1/metrics/"+herald.DevServerID+"/latest", tok, nil)
		if code != http.StatusOK || len(body) == 0 {
			return fmt.Errorf("latest = %d %v", code, body)
		}
		return nil
	})
}
