package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
)

func (c *cli) publishCmd() *cobra.Command {
	var object, scope string
	cmd := &cobra.Command{
		Use:   "publish TYPE ACTION [KEY]",
		Short: "Publish one event through ingest's gRPC EventService",
		Long: `publish sends one event and prints the subject and stream sequence NATS
acknowledged it with. It needs the permission events.post.<type>; an event names the
caller as its principal.`,
		Example: `  herald publish profiles save global --object '{"Name":"global"}'
  herald publish node create c-1:m-1 --scope cluster:c-1 --object '{"name":"m-1"}' -o json`,
		Args: cobra.RangeArgs(2, 3),
		RunE: func(cmd *cobra.Command, args []string) error {
			var obj any
			if err := json.Unmarshal([]byte(object), &obj); err != nil {
				return withCode(exitUsage, fmt.Errorf("--object: %w", err))
			}
			val, err := structpb.NewValue(obj)
			if err != nil {
				return withCode(exitUsage, fmt.Errorf("--object: %w", err))
			}
			ev := &heraldv1.Event{Type: args[0], Action: args[1], Scope: scope, Object: val}
			if len(args) == 3 {
				ev.Key = args[2]
			}
			return withGRPC(c, cmd, 0, heraldv1.NewEventServiceClient, func(es heraldv1.EventServiceClient, ctx contextT) error {
				resp, err := es.Publish(ctx, &heraldv1.PublishRequest{Event: ev})
				if err != nil {
					return err
				}
				if c.json() {
					return c.printJSON(map[string]any{"subject": resp.GetSubject(), "sequence": resp.GetSequence()})
				}
				fmt.Fprintf(c.stdout, "published %s sequence %d\n", resp.GetSubject(), resp.GetSequence())
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&object, "object", "null", "the event's object, as JSON")
	cmd.Flags().StringVar(&scope, "scope", "", `the event's scope: global, cluster:<id> or project:<id> (default "global")`)
	return cmd
}

func (c *cli) runCmd() *cobra.Command {
	var cmdTimeout time.Duration
	cmd := &cobra.Command{
		Use:   "run SERVER -- COMMAND [ARG...]",
		Short: "Run a shell command on a server's agent and exit with its exit code",
		Long: `run sends the command (its words joined by spaces, run by the agent's shell) through
AgentService.RunCommand to the agent of SERVER, prints its output on stdout and
"exit N in D (job J)" on stderr, and exits with the command's exit code. It needs
commands.run.<server> and an agent started with -enable-commands. Before the command ran,
failures use herald's codes (6: the agent is offline or timed out).`,
		Example: `  herald run dev-server -- uname -a
  herald run web-1 --command-timeout 2m -- 'apt-get update && apt-get -y upgrade'
  herald run dev-server -o json -- echo hi | jq .exit_code`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var res *heraldv1.RunCommandResponse
			err := withGRPC(c, cmd, cmdTimeout, heraldv1.NewAgentServiceClient, func(as heraldv1.AgentServiceClient, ctx contextT) (err error) {
				res, err = as.RunCommand(ctx, &heraldv1.RunCommandRequest{
					ServerId: args[0], Command: strings.Join(args[1:], " "), Timeout: durationpb.New(cmdTimeout)})
				return err
			})
			if err != nil {
				return err
			}
			if c.json() {
				err = c.printJSON(map[string]any{"server_id": args[0], "job_id": res.GetJobId(), "exit_code": res.GetExitCode(),
					"output": res.GetOutput(), "duration_seconds": res.GetDuration().AsDuration().Seconds()})
			} else {
				fmt.Fprint(c.stdout, res.GetOutput())
				fmt.Fprintf(c.stderr, "exit %d in %s (job %s)\n", res.GetExitCode(), res.GetDuration().AsDuration(), res.GetJobId())
			}
			if err == nil && res.GetExitCode() != 0 {
				return withCode(int(res.GetExitCode()), errSilent)
			}
			return err
		},
	}
	cmd.Flags().DurationVar(&cmdTimeout, "command-timeout", 30*time.Second, "longest the command may run")
	return cmd
}

func (c *cli) keysCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Create, list and revoke agents' API keys (needs apikeys.manage.*)",
		Example: `  KEY=$(herald keys create --server web-1 --name "prod agent")
  herald keys list --server web-1
  herald keys revoke hk_id_...`,
	}
	var server, name string
	create := &cobra.Command{
		Use:   "create --server ID",
		Short: "Create a key bound to one server; the key is printed once, alone on stdout",
		Example: `  KEY=$(herald keys create --server web-1)
  herald keys create --server web-1 --name "prod agent" -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.withAuth(cmd, func(a heraldv1.AuthServiceClient, ctx contextT) error {
				k, err := a.CreateAPIKey(ctx, &heraldv1.CreateAPIKeyRequest{ServerId: server, Name: name})
				if err != nil {
					return err
				}
				if c.json() {
					return c.printJSON(map[string]any{"key_id": k.GetKeyId(), "server_id": k.GetServerId(), "key": k.GetKey()})
				}
				fmt.Fprintf(c.stderr, "created key %s for server %s; the key is shown only this once:\n", k.GetKeyId(), k.GetServerId())
				fmt.Fprintln(c.stdout, k.GetKey())
				return nil
			})
		},
	}
	create.Flags().StringVar(&server, "server", "", "the server id the key is bound to (required)")
	create.Flags().StringVar(&name, "name", "", "a label for the key")
	_ = create.MarkFlagRequired("server")
	var listServer string
	list := &cobra.Command{
		Use:     "list [--server ID]",
		Short:   "List keys (never their secrets)",
		Example: `  herald keys list -o json | jq -r '.[] | select(.revoked | not) | .key_id'`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.withAuth(cmd, func(a heraldv1.AuthServiceClient, ctx contextT) error {
				resp, err := a.ListAPIKeys(ctx, &heraldv1.ListAPIKeysRequest{ServerId: listServer})
				if err != nil {
					return err
				}
				type row struct {
					KeyID     string    `json:"key_id"`
					ServerID  string    `json:"server_id"`
					Name      string    `json:"name"`
					CreatedAt time.Time `json:"created_at"`
					Revoked   bool      `json:"revoked"`
				}
				rows := []row{}
				for _, k := range resp.GetKeys() {
					rows = append(rows, row{k.GetKeyId(), k.GetServerId(), k.GetName(), k.GetCreatedAt().AsTime(), k.GetRevoked()})
				}
				if c.json() {
					return c.printJSON(rows)
				}
				tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "KEY_ID\tSERVER_ID\tNAME\tCREATED\tREVOKED")
				for _, r := range rows {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%t\n", r.KeyID, r.ServerID, r.Name, r.CreatedAt.Format(time.RFC3339), r.Revoked)
				}
				return tw.Flush()
			})
		},
	}
	list.Flags().StringVar(&listServer, "server", "", "only this server's keys")
	revoke := &cobra.Command{
		Use:     "revoke KEY_ID",
		Short:   "Revoke a key; its agent is refused from then on",
		Example: `  herald keys revoke hk_id_...`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.withAuth(cmd, func(a heraldv1.AuthServiceClient, ctx contextT) error {
				if _, err := a.RevokeAPIKey(ctx, &heraldv1.RevokeAPIKeyRequest{KeyId: args[0]}); err != nil {
					return err
				}
				if c.json() {
					return c.printJSON(map[string]any{"key_id": args[0], "revoked": true})
				}
				fmt.Fprintf(c.stderr, "revoked key %s\n", args[0])
				return nil
			})
		},
	}
	cmd.AddCommand(create, list, revoke)
	return cmd
}

func (c *cli) connectionsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "connections",
		Aliases: []string{"conn"},
		Short:   "List and kick live connections across the fleet",
		Example: `  herald connections list
  herald connections kick 127.0.0.1:53422`,
	}
	list := &cobra.Command{
		Use:     "list",
		Short:   "Every live WebSocket and request in flight (needs connections.list.*)",
		Example: `  herald connections list -o json | jq -r '.[] | select(.endpoint == "agent") | .server_id'`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.withConns(cmd, func(cs heraldv1.ConnectionServiceClient, ctx contextT) error {
				resp, err := cs.List(ctx, &heraldv1.ListRequest{})
				if err != nil {
					return err
				}
				type row struct {
					RemoteAddr string    `json:"remote_addr"`
					Principal  string    `json:"principal"`
					Endpoint   string    `json:"endpoint"`
					ServerID   string    `json:"server_id,omitempty"`
					Instance   string    `json:"instance"`
					Websocket  bool      `json:"websocket"`
					CreatedAt  time.Time `json:"created_at"`
				}
				rows := []row{}
				for _, x := range resp.GetConnections() {
					rows = append(rows, row{x.GetRemoteAddr(), x.GetPrincipal(), x.GetEndpoint(), x.GetServerId(), x.GetInstance(),
						x.GetWebsocket(), x.GetCreateTime().AsTime()})
				}
				if c.json() {
					return c.printJSON(rows)
				}
				tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "REMOTE_ADDR\tPRINCIPAL\tENDPOINT\tSERVER_ID\tINSTANCE\tSINCE")
				for _, r := range rows {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.RemoteAddr, r.Principal, r.Endpoint, r.ServerID, r.Instance,
						r.CreatedAt.Format(time.RFC3339))
				}
				return tw.Flush()
			})
		},
	}
	kick := &cobra.Command{
		Use:     "kick REMOTE_ADDR",
		Short:   "Close a connection (code 4003) wherever it is held (needs connections.kick.*)",
		Example: `  herald connections kick 127.0.0.1:53422`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.withConns(cmd, func(cs heraldv1.ConnectionServiceClient, ctx contextT) error {
				resp, err := cs.Kick(ctx, &heraldv1.KickRequest{RemoteAddr: args[0]})
				if err != nil {
					return err
				}
				if c.json() {
					return c.printJSON(map[string]any{"remote_addr": resp.GetConnection().GetRemoteAddr(), "kicked": true})
				}
				fmt.Fprintf(c.stderr, "kicked %s (%s)\n", args[0], resp.GetConnection().GetPrincipal())
				return nil
			})
		},
	}
	cmd.AddCommand(list, kick)
	return cmd
}
