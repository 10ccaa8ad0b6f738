package console

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestServesEmbeddedFilesWithPolicy(t *testing.T) {
	mux := http.NewServeMux()
	mux.Handle("GET "+Path, Handler())
	for _, tc := range []struct{ path, want, ctype string }{
		{"/console/", `<script src="console.js" defer></script>`, "text/html"},
		{"/console/console.js", "class Live", "text/javascript"},
		{"/console/console.css", "[hidden]", "text/css"},
	} {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, tc.path, nil))
		h := rec.Header()
		if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), tc.want) || !strings.HasPrefix(h.Get("Content-Type"), tc.ctype) {
			t.Errorf("GET %s: %d %s, body has %q: %t", tc.path, rec.Code, h.Get("Content-Type"), tc.want, strings.Contains(rec.Body.String(), tc.want))
		}
		if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") {
			t.Errorf("GET %s: CSP %q", tc.path, csp)
		}
	}
	// No inline script in the page itself: the policy would block it.
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/console/", nil))
	if strings.Contains(rec.Body.String(), "<script>") || strings.Contains(rec.Body.String(), "onclick=") {
		t.Error("index.html carries inline script")
	}
	rec = httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/console", nil))
	if rec.Code/100 != 3 || rec.Header().Get("Location") != "/console/" {
		t.Errorf("GET /console: %d to %q, want a redirect to /console/", rec.Code, rec.Header().Get("Location"))
	}
}
