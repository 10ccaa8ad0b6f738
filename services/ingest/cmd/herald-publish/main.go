// Command herald-publish publishes one event through Herald's gRPC EventService and prints
// the stream sequence NATS acknowledged it with. It is the README's example client:
//
//	herald-publish -type profiles -action save -key global -object '{"Name":"global"}'
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/heraldhq/herald/pkg/grpcauth"
	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "herald-publish:", err)
		os.Exit(1)
	}
}

func run() error {
	addr := flag.String("addr", "127.0.0.1:9090", "gRPC address of ingest (all-in-one: 127.0.0.1:9090)")
	typ := flag.String("type", "", "event type, e.g. profiles (required)")
	action := flag.String("action", "", "event action, e.g. save (required)")
	key := flag.String("key", "", "event key, e.g. global")
	scope := flag.String("scope", "", `event scope (default "global")`)
	object := flag.String("object", "null", "event object as JSON")
	id := flag.String("id", "", "event id: publishing the same id again stores nothing new (default: generated)")
	timeout := flag.Duration("timeout", 10*time.Second, "how long to wait for the acknowledgement")
	tok := flag.String("token", os.Getenv("HERALD_TOKEN"), "a Herald token allowed events.post.<type>, or user:password (default $HERALD_TOKEN)")
	flag.Parse()

	var obj any
	if err := json.Unmarshal([]byte(*object), &obj); err != nil {
		return fmt.Errorf("-object: %w", err)
	}
	val, err := structpb.NewValue(obj)
	if err != nil {
		return fmt.Errorf("-object: %w", err)
	}
	// The dev stack serves gRPC on loopback without TLS.
	conn, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if ctx, err = grpcauth.Bearer(ctx, conn, *tok); err != nil {
		return err
	}
	resp, err := heraldv1.NewEventServiceClient(conn).Publish(ctx, &heraldv1.PublishRequest{
		Event: &heraldv1.Event{Type: *typ, Action: *action, Key: *key, Scope: *scope, Object: val, Id: *id},
	})
	if err != nil {
		return err
	}
	dup := ""
	if resp.GetDuplicate() {
		dup = " (already stored: a duplicate)"
	}
	fmt.Printf("published %s sequence %d id %s%s\n", resp.GetSubject(), resp.GetSequence(), resp.GetId(), dup)
	return nil
}
