//go:build !race

package herald_test

import "time"

// The reconnect storm the auth e2e test opens, and how soon a password change must have
// closed all of its sockets.
const (
	stormSockets    = 2000
	stormCloseBound = time.Second
)
