package hub

import "errors"

// ErrSkip, returned by an Encoder, means the event is not for the clients taking frames from
// that encoder (a dialect that leaves out Herald's own event types, or a socket's own
// connection event): they get nothing, and it is neither logged nor counted as undecodable.
var ErrSkip = errors.New("hub: not for these clients")
