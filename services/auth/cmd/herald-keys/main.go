// Command herald-keys creates, lists and revokes agents' API keys through
// the auth service's gRPC API:
//
//	herald-keys [-addr 127.0.0.1:9090] [-token T | -user admin -password P] create -server ID [-name N]
//	herald-keys ... list [-server ID]
//	herald-keys ... revoke KEY_ID
//
// The caller needs permission apikeys.manage.* (admin has it). -token
// defaults to $HERALD_TOKEN and -password to $HERALD_PASSWORD; with -user
// it logs in first. create prints the key alone on stdout, the only time
// it is shown, so KEY=$(herald-keys ... create -server web-1) works.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
)

const usage = "usage: herald-keys [-addr host:port] [-token T | -user U -password P] create -server ID [-name N] | list [-server ID] | revoke KEY_ID"

// commands is what -h lists besides the flags.
const commands = `Commands:
  create -server ID [-name N]   make an API key bound to server ID; prints the key, shown only this once
  list [-server ID]             list API keys (id, server, name, created, revoked), of one server with -server
  revoke KEY_ID                 revoke a key; an agent connected with it is disconnected at once
`

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "herald-keys:", err)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("herald-keys", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:9090", "gRPC address of the auth service (or the all-in-one herald)")
	tok := fs.String("token", os.Getenv("HERALD_TOKEN"), "Herald token with apikeys.manage.* (default $HERALD_TOKEN)")
	user := fs.String("user", "", "log in as this user instead of passing -token")
	password := fs.String("password", os.Getenv("HERALD_PASSWORD"), "password for -user (default $HERALD_PASSWORD)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "%s\n\n%s\nFlags:\n", usage, commands)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return errors.New(usage)
	}
	cmd, rest := fs.Arg(0), fs.Args()[1:]
	sub := flag.NewFlagSet("herald-keys "+cmd, flag.ContinueOnError)
	sub.SetOutput(stderr)
	server := sub.String("server", "", "server id")
	name := sub.String("name", "", "label of the new key")
	if err := sub.Parse(rest); err != nil {
		return err
	}
	// Each command and how many arguments follow its flags.
	nargs, known := map[string]int{"create": 0, "list": 0, "revoke": 1}[cmd]
	if !known || sub.NArg() != nargs {
		return errors.New(usage)
	}
	cc, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer cc.Close()
	c := heraldv1.NewAuthServiceClient(cc)
	if *user != "" {
		resp, err := c.Login(ctx, &heraldv1.LoginRequest{Username: *user, Password: *password})
		if err != nil {
			return fmt.Errorf("login: %w", err)
		}
		*tok = resp.GetToken()
	}
	if *tok == "" {
		return errors.New("no credentials: pass -token (or set HERALD_TOKEN), or -user and -password")
	}
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+*tok)

	switch cmd {
	case "create":
		k, err := c.CreateAPIKey(ctx, &heraldv1.CreateAPIKeyRequest{ServerId: *server, Name: *name})
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "created key %s for server %s; the key is shown only this once:\n", k.GetKeyId(), k.GetServerId())
		fmt.Fprintln(stdout, k.GetKey())
		return nil
	case "list":
		resp, err := c.ListAPIKeys(ctx, &heraldv1.ListAPIKeysRequest{ServerId: *server})
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "KEY_ID\tSERVER_ID\tNAME\tCREATED\tREVOKED")
		for _, k := range resp.GetKeys() {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%t\n", k.GetKeyId(), k.GetServerId(), k.GetName(),
				k.GetCreatedAt().AsTime().Format(time.RFC3339), k.GetRevoked())
		}
		return tw.Flush()
	case "revoke":
		if _, err := c.RevokeAPIKey(ctx, &heraldv1.RevokeAPIKeyRequest{KeyId: sub.Arg(0)}); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "revoked key %s\n", sub.Arg(0))
	}
	return nil
}
