// Command herald-auth runs the auth service alone against a NATS cluster:
// HTTP login (/api/v1/auth/login, Salt's /login) and health, gRPC
// AuthService (with server reflection), and herald.auth.* on NATS.
// Every flag can also be set as HERALD_<FLAG> (auth.token-ttl ->
// HERALD_AUTH_TOKEN_TTL); the admin password also as HERALD_ADMIN_PASSWORD.
// Users, API keys, signing keys and revocations live in JetStream key-value
// buckets of the NATS cluster (auth.kv-replicas copies), shared by every
// instance and kept across restarts; Redis holds nothing of auth's.
package main

import (
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/pkg/servicemain"
	"github.com/heraldhq/herald/services/auth"
)

func main() {
	var cfg auth.Config
	servicemain.Main(servicemain.Options{Name: "herald-auth", HTTPAddr: "127.0.0.1:8081", GRPCAddr: "127.0.0.1:9091"},
		cfg.RegisterFlags,
		func(env servicemain.Env) (servicemain.Built, error) {
			js, err := jetstream.New(env.NC)
			if err != nil {
				return servicemain.Built{}, err
			}
			svc, err := auth.New(cfg, auth.Deps{NC: env.NC, JetStream: js, Log: env.Log})
			return servicemain.Built{Service: svc}, err
		})
}
