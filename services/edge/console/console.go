// Package console is Herald's web console, served by every edge at /console/: servers with
// live presence and facts, a server's live charts, log tail, alerts and command box, the event
// stream and the fleet's connections. It is plain HTML, CSS and JavaScript embedded in the
// binary (no build step, no CDN: it works offline), and it has no privileges of its own: the
// page logs the user in at /api/v1/auth/login and talks only to the edge's public endpoints
// with that token.
package console

import (
	"embed"
	"io/fs"
	"net/http"
)

// Path is where the console is mounted.
const Path = "/console/"

//go:embed static
var static embed.FS

// securityPolicy forbids inline script and every origin but the edge's own: a token the page
// holds can only be sent back to the edge, and injected markup cannot run.
const securityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Handler serves the console's files under Path with the security headers.
func Handler() http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := http.StripPrefix(Path, http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", securityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
}
