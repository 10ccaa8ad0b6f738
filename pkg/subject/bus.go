package subject

// The rest of the bus: everything Herald's services say to each other over NATS that is not an
// event or an agent's traffic. With subject.go (events) and agent.go (metrics, logs, alerts and
// the agent's RPC) this file is the whole map of Herald's subjects, streams and queue groups;
// nothing else spells one.

// EventStream is the JetStream stream that stores every event (EventsPrefix + ".>"), so a
// reconnecting client can catch up and a new edge can rebuild what it shows.
const EventStream = "HERALD_EVENTS"

// TelemetryStream is the JetStream stream that keeps the servers' recent samples, alerts and
// log entries (TelemetrySubjects) for a short while, so a metrics or logs viewer that
// reconnects can catch up on what it missed.
const TelemetryStream = "HERALD_TELEMETRY"

// Subjects served by the auth service, each answered once by one replica of AuthQueue.
const (
	AuthLogin        = "herald.auth.login"
	AuthKeys         = "herald.auth.keys"
	AuthAPIKeyVerify = "herald.auth.apikey.verify"
)

// AuthQueue is the queue group every auth replica subscribes with, so each request is answered
// once however many replicas run.
const AuthQueue = "herald-auth"

// AuthAPIKeyRevoked is where auth announces that the key with keyID was revoked, so whichever
// ingest holds an agent connected with it closes that connection at once.
func AuthAPIKeyRevoked(keyID string) string {
	return "herald.auth.apikey.revoked." + EncodeToken(keyID)
}

// Kick is the subject one instance (edge or ingest) listens on for requests to close one of the
// connections it holds (ConnectionService.Kick).
func Kick(instance string) string { return "herald.conn.kick." + EncodeToken(instance) }

// Health is the subject one process answers itself, so its readiness check proves a NATS round
// trip (this process to the cluster and back), not merely an open socket. id is unique per
// process.
func Health(id string) string { return "herald.health." + EncodeToken(id) }

// EventStreamProbe is the subject ingest's readiness check publishes to with an expectation
// the stream must refuse: the refusal comes from the stream's leader, which proves
// EventStream takes writes, and nothing is stored. It lies inside EventsWildcard but has
// three tokens where every event subject has six, so no event filter matches it.
const EventStreamProbe = EventsPrefix + ".probe"

// MsgIDHeader is the NATS header carrying an event's id. JetStream stores a message once per id
// within the stream's duplicate window and answers a repeat with the original sequence, which
// makes a retried publish idempotent.
const MsgIDHeader = "Nats-Msg-Id"

// JetStream key-value buckets of the auth service: the fleet's identity data, replicated with
// the NATS cluster so that neither a restart of every auth nor an empty Redis loses it.
const (
	// AuthUsersBucket holds users (bcrypt hashes, permissions), by encoded name.
	AuthUsersBucket = "HERALD_AUTH_USERS"
	// AuthAPIKeysBucket holds agents' API keys (SHA-256 hashes), by hash and by id.
	AuthAPIKeysBucket = "HERALD_AUTH_APIKEYS"
	// AuthSigningBucket holds the private signing keys; only auth reads it.
	AuthSigningBucket = "HERALD_AUTH_SIGNING"
	// AuthKeySetBucket holds the public key set (current and previous) that edges and
	// ingests watch to verify tokens.
	AuthKeySetBucket = "HERALD_AUTH_KEYSET"
	// AuthRevocationsBucket holds revoked tokens (by jti) and users, watched by every
	// verifier so a revocation reaches live connections and instances started later.
	AuthRevocationsBucket = "HERALD_AUTH_REVOCATIONS"
)
