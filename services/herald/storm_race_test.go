//go:build race

package herald_test

import "time"

// Under the race detector (several times slower, and at most 8128 live goroutines, each socket
// costing several on both ends) the storm is smaller and the close bound looser.
const (
	stormSockets    = 500
	stormCloseBound = 5 * time.Second
)
