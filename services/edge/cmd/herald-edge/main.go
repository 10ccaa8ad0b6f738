// Command herald-edge runs one edge gateway alone against a NATS cluster: the WebSocket
// dialects and the connections API on HTTP, ConnectionService on gRPC, plus health endpoints. Tokens are verified with the auth service's public
// key, given with -auth.public-key or fetched once from auth over NATS at start.
// Every flag can also be set as HERALD_<FLAG> (nats.url -> HERALD_NATS_URL).
package main

import (
	"github.com/heraldhq/herald/pkg/agentstate"
	"github.com/heraldhq/herald/pkg/registry"
	"github.com/heraldhq/herald/pkg/servicemain"
	"github.com/heraldhq/herald/services/edge"
)

func main() {
	var cfg edge.Config
	servicemain.Main(servicemain.Options{Name: "herald-edge", HTTPAddr: "127.0.0.1:8083", GRPCAddr: "127.0.0.1:9093",
		Verifies: true, RedisFor: "the connection registry and agent state"},
		cfg.RegisterFlags,
		func(env servicemain.Env) (servicemain.Built, error) {
			deps := edge.Deps{NC: env.NC, Verifier: env.Verifier, Log: env.Log, AnnounceConnections: true}
			if env.Redis != nil {
				state := agentstate.NewRedis(env.Redis, agentstate.DefaultRedisPrefix)
				deps.Latest, deps.Facts = state, state
				deps.Registry = registry.NewRedis(env.Redis, registry.DefaultRedisPrefix)
			}
			e, err := edge.New(cfg, deps)
			if err != nil {
				return servicemain.Built{}, err
			}
			return servicemain.Built{Service: e, Wrap: e.TrackREST, Degraded: e.Tracker().Check}, nil
		})
}
