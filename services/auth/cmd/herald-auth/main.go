// Command herald-auth runs the auth service alone against a NATS cluster:
// HTTP login (/api/v1/auth/login, Salt's /login) and health, gRPC
// AuthService (with server reflection), and herald.auth.* on NATS.
// Every flag can also be set as HERALD_<FLAG> (auth.token-ttl ->
// HERALD_AUTH_TOKEN_TTL); the admin password also as HERALD_ADMIN_PASSWORD.
// With redis.url (HERALD_REDIS_URL) users and API keys live in Redis and
// replicas share them; without it they live in memory and die with the
// process.
package main

import (
	"github.com/heraldhq/herald/pkg/servicemain"
	"github.com/heraldhq/herald/services/auth"
)

func main() {
	var cfg auth.Config
	servicemain.Main(servicemain.Options{Name: "herald-auth", HTTPAddr: "127.0.0.1:8081", GRPCAddr: "127.0.0.1:9091",
		RedisFor: "users and API keys"},
		cfg.RegisterFlags,
		func(env servicemain.Env) (servicemain.Built, error) {
			deps := auth.Deps{NC: env.NC, Log: env.Log}
			if env.Redis != nil {
				deps.Store = auth.NewRedisStore(env.Redis, auth.DefaultRedisPrefix)
			}
			svc, err := auth.New(cfg, deps)
			return servicemain.Built{Service: svc}, err
		})
}
