//go:build race

package herald_test

// stormSockets is smaller under the race detector, which allows at most 8128 live goroutines
// (each socket costs several on both ends).
const stormSockets = 500
