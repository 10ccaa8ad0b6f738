// Command herald-ingest runs the ingest service alone against a NATS cluster: gRPC
// EventService and AgentService (with server reflection, for grpcurl), the agent WebSocket
// (/api/v1/agents/ws), /api/v1/api-keys/me and HTTP health endpoints.
//
// AgentService callers' tokens are verified with auth's public key, given with
// -auth.public-key or fetched once from auth over NATS at start. With redis.url
// (HERALD_REDIS_URL) the latest sample and the facts of each server live in Redis, shared by
// every ingest and edge; without it they are kept in memory, which is right for one ingest only.
// Every flag can also be set as HERALD_<FLAG> (nats.url -> HERALD_NATS_URL).
package main

import (
	"github.com/heraldhq/herald/pkg/agentstate"
	"github.com/heraldhq/herald/pkg/registry"
	"github.com/heraldhq/herald/pkg/servicemain"
	"github.com/heraldhq/herald/services/ingest"
)

func main() {
	var cfg ingest.Config
	servicemain.Main(servicemain.Options{Name: "herald-ingest", HTTPAddr: "127.0.0.1:8082", GRPCAddr: "127.0.0.1:9092",
		Verifies: true, RedisFor: "agent state and the connection registry"},
		cfg.RegisterFlags,
		func(env servicemain.Env) (servicemain.Built, error) {
			deps := ingest.Deps{NC: env.NC, Log: env.Log, Verifier: env.Verifier, AnnounceConnections: true}
			if env.Redis != nil {
				deps.State = agentstate.NewRedis(env.Redis, agentstate.DefaultRedisPrefix)
				deps.Registry = registry.NewRedis(env.Redis, registry.DefaultRedisPrefix)
			}
			svc, err := ingest.New(cfg, deps)
			if err != nil {
				return servicemain.Built{}, err
			}
			return servicemain.Built{Service: svc, Degraded: svc.Tracker().Check, Ready: svc.CheckStream}, nil
		})
}
