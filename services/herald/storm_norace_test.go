//go:build !race

package herald_test

// stormSockets is the size of the reconnect storm the auth e2e test opens.
const stormSockets = 2000
