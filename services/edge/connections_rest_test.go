package edge_test

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/pkg/testutil"
)

// TestRESTKick kicks a DRP socket with DELETE /api/v3/connections/{addr}, as the console does:
// refused without connections.kick, then closed with 4003 wherever it is held, then gone.
func TestRESTKick(t *testing.T) {
	r := newRig(t)
	admin, viewer := r.token("*.*.*"), r.token("machines.*.*")
	victim := r.dial(admin)
	addr := victim.ws.LocalAddr().String()
	call := func(method, tok string) (int, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), method, r.srv.URL+"/api/v3/connections/"+url.PathEscape(addr), nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		if code, body := call(http.MethodGet, admin); code != http.StatusOK {
			return fmt.Errorf("GET: %d %s", code, body)
		}
		return nil
	})
	if code, body := call(http.MethodDelete, viewer); code != http.StatusForbidden {
		t.Fatalf("kick without connections.kick: %d %s, want 403", code, body)
	}
	if code, body := call(http.MethodDelete, admin); code != http.StatusOK || !strings.Contains(body, addr) {
		t.Fatalf("kick: %d %s, want 200 with the connection", code, body)
	}
	if code, reason := victim.closeCode(5 * time.Second); code != 4003 || !strings.HasPrefix(reason, "kicked by ") {
		t.Fatalf("kicked socket closed with %d %q, want 4003 kicked by ...", code, reason)
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		if code, body := call(http.MethodDelete, admin); code != http.StatusNotFound {
			return fmt.Errorf("kick again: %d %s, want 404", code, body)
		}
		return nil
	})
}
