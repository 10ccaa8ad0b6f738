// Command herald-load measures a Herald stack on this machine: N DRP WebSocket clients spread
// over source addresses and edges, events at R/s through gRPC or straight onto NATS, then one
// JSON result line on stdout and a summary on stderr. Only loopback targets are accepted.
//
//	herald-load -edges ws://127.0.0.1:8080/api/v3/ws -token admin:$PW -clients 1000 -rate 100 \
//	    -duration 20s -publish grpc-stream -grpc 127.0.0.1:9090 -pids $(pgrep -d, -x herald)
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"time"

	"github.com/heraldhq/herald/services/herald/load"
)

func main() {
	var cfg load.Config
	var edges, pids string
	flag.StringVar(&edges, "edges", "ws://127.0.0.1:8080/api/v3/ws", "comma-separated DRP socket URLs")
	flag.StringVar(&cfg.Token, "token", os.Getenv("HERALD_TOKEN"), "token or user:password for the sockets (HERALD_TOKEN)")
	flag.IntVar(&cfg.Clients, "clients", 100, "WebSocket clients")
	flag.IntVar(&cfg.Sources, "sources", 1, "source addresses 127.0.0.2... to spread the clients over")
	flag.Float64Var(&cfg.ConnectRate, "connect-rate", 0, "new connections per second (0: as fast as they go)")
	flag.Float64Var(&cfg.Rate, "rate", 10, "events per second (every client receives every event)")
	flag.DurationVar(&cfg.Duration, "duration", 10*time.Second, "how long to publish")
	flag.DurationVar(&cfg.Drain, "drain", 5*time.Second, "how long to wait for the last events")
	flag.StringVar(&cfg.Publish, "publish", load.PublishNATS, "nats, grpc or grpc-stream")
	flag.StringVar(&cfg.NATSURL, "nats", "nats://127.0.0.1:4222", "NATS URL for -publish nats")
	flag.StringVar(&cfg.GRPCAddr, "grpc", "127.0.0.1:9090", "ingest gRPC address for -publish grpc*")
	flag.StringVar(&cfg.GRPCToken, "grpc-token", "", "bearer token for gRPC (empty: -token)")
	flag.IntVar(&cfg.Concurrency, "concurrency", 4, "unary gRPC callers for -publish grpc")
	flag.StringVar(&pids, "pids", "", "comma-separated server pids to read RSS and CPU of from /proc")
	flag.IntVar(&cfg.Size, "size", 100, "approximate bytes of each event's object")
	flag.DurationVar(&cfg.Report, "progress", 5*time.Second, "progress line period")
	flag.Parse()
	cfg.Edges = strings.Split(edges, ",")
	for _, p := range strings.FieldsFunc(pids, func(r rune) bool { return r == ',' || r == ' ' }) {
		pid, err := strconv.Atoi(p)
		if err != nil {
			fmt.Fprintf(os.Stderr, "herald-load: -pids: %v\n", err)
			os.Exit(2)
		}
		cfg.Pids = append(cfg.Pids, pid)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	res, err := load.Run(ctx, cfg, log)
	if res != nil {
		_ = json.NewEncoder(os.Stdout).Encode(res)
		res.Summary(os.Stderr)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "herald-load: %v\n", err)
		os.Exit(1)
	}
}
