package wsconn

import "strconv"

// Disconnect is why Herald ends a WebSocket: the close code and the reason sent in the close
// frame. It is an error, so the code that decides to end a connection can return it and the one
// place that owns the socket closes with it. A reason is at most 123 bytes (RFC 6455 §5.5).
type Disconnect struct {
	Code   int
	Reason string
}

func (d Disconnect) Error() string {
	return "websocket close " + strconv.Itoa(d.Code) + ": " + d.Reason
}

// WithReason returns d with another reason and the same code, for a reason that says more
// ("slow consumer: 1024 messages behind").
func (d Disconnect) WithReason(reason string) Disconnect {
	return Disconnect{Code: d.Code, Reason: reason}
}

// Every close code Herald sends, in one place. RFC 6455 codes first, then Herald's own in the
// 4000-4999 range that RFC 6455 leaves to applications. A client that reconnects on 1001, 1012
// and 4000 and re-authenticates on 4001 needs nothing else.
var (
	// DisconnectNormal: the conversation is over, nothing went wrong (1000).
	DisconnectNormal = Disconnect{1000, "bye"}
	// DisconnectShutdown: this server is going away; reconnect, to another one if you can (1001).
	DisconnectShutdown = Disconnect{1001, "server shutting down"}
	// DisconnectPolicy: the peer broke a rule (bad credentials, a forbidden request) (1008).
	DisconnectPolicy = Disconnect{1008, "policy violation"}
	// DisconnectTooBig: a frame exceeded the read limit (1009).
	DisconnectTooBig = Disconnect{1009, "message too big"}
	// DisconnectInternal: the server could not go on with this connection (1011).
	DisconnectInternal = Disconnect{1011, "internal error, try again"}
	// DisconnectRestart: the server is restarting or draining; reconnect elsewhere (1012).
	DisconnectRestart = Disconnect{1012, "service restart"}
	// DisconnectSlow: the client did not read fast enough and its send queue overflowed, or the
	// edge itself dropped events meant for it; reconnect and resume (4000).
	DisconnectSlow = Disconnect{4000, "slow consumer"}
	// DisconnectTokenExpired: the credentials the connection was opened with expired or were
	// revoked; authenticate again (4001).
	DisconnectTokenExpired = Disconnect{4001, "token expired"}
	// DisconnectReplaced: a newer connection with the same identity took over (4002).
	DisconnectReplaced = Disconnect{4002, "replaced by a newer connection"}
	// DisconnectKicked: an operator closed the connection (ConnectionService.Kick) (4003).
	DisconnectKicked = Disconnect{4003, "kicked"}
	// DisconnectChurn: connections with this identity replaced each other too often (two
	// clients sharing one credential); this one is refused for a while. Retry later, or give
	// each client its own credential (4004).
	DisconnectChurn = Disconnect{4004, "replaced too often, retry later"}
)
