package main

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
)

func (c *cli) loginCmd() *cobra.Command {
	var user string
	var passwordStdin bool
	cmd := &cobra.Command{
		Use:   "login",
		Short: "Log in and store the token in the context (user config dir, mode 0600)",
		Long: `login exchanges a user name and password for a token at the edge's
POST /api/v1/auth/login and stores it, with its expiry, the edge URL and the gRPC
address, in the context named by --context (default: the current one, else "default"),
which becomes the current context. The password comes from --password-stdin, else
$HERALD_PASSWORD, else a prompt on the terminal.`,
		Example: `  herald login -u admin
  herald login -u admin --password-stdin <<<"$PW"
  herald --context prod --edge https://herald.example.com --grpc herald.example.com:443 --grpc-tls login -u ops
  herald --edge https://127.0.0.1:8443 --insecure login -u admin   # a self-signed development certificate`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pass, err := c.password(passwordStdin)
			if err != nil {
				return err
			}
			cfg, path, err := c.loadConfig()
			if err != nil {
				return err
			}
			_, t := c.endpoints(cfg)
			name, server := t.name, t.server
			res, err := httpLogin(cmd.Context(), t, user, pass)
			if err != nil {
				return err
			}
			exp, _ := time.Parse(time.RFC3339, res.ExpiresAt)
			cfg.Contexts[name] = &Context{Server: server, GRPC: t.grpc, GRPCTLS: t.grpcTLS, Insecure: t.insecure,
				User: user, Token: res.Token, ExpiresAt: exp}
			cfg.Current = name
			if err := cfg.save(path); err != nil {
				return fmt.Errorf("saving the token: %w", err)
			}
			if c.json() {
				return c.printJSON(map[string]any{"context": name, "server": server, "user": user, "expires_at": res.ExpiresAt})
			}
			fmt.Fprintf(c.stdout, "logged in to %s as %s (context %s, token valid until %s)\n", server, user, name, res.ExpiresAt)
			return nil
		},
	}
	cmd.Flags().StringVarP(&user, "user", "u", "admin", "user name")
	cmd.Flags().BoolVar(&passwordStdin, "password-stdin", false, "read the password from the first line of stdin")
	return cmd
}

func firstOf(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// password reads the password without echoing it when stdin is a terminal.
func (c *cli) password(fromStdin bool) (string, error) {
	if !fromStdin {
		if p := os.Getenv("HERALD_PASSWORD"); p != "" {
			return p, nil
		}
		if f, ok := c.stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			fmt.Fprint(c.stderr, "Password: ")
			b, err := term.ReadPassword(int(f.Fd()))
			fmt.Fprintln(c.stderr)
			return string(b), err
		}
		return "", withCode(exitUsage, fmt.Errorf("no password: use --password-stdin, $HERALD_PASSWORD or a terminal"))
	}
	line, err := bufio.NewReader(c.stdin).ReadString('\n')
	if line = strings.TrimRight(line, "\r\n"); line == "" {
		return "", withCode(exitUsage, fmt.Errorf("--password-stdin: no password on stdin (%v)", err))
	}
	return line, nil
}

func (c *cli) logoutCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "logout",
		Short: "Forget the context's stored token",
		Example: `  herald logout
  herald --context prod logout`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			cfg, path, err := c.loadConfig()
			if err != nil {
				return err
			}
			name := firstOf(c.context, firstOf(cfg.Current, defaultContext))
			ctx, ok := cfg.Contexts[name]
			if !ok {
				return withCode(exitNotFound, fmt.Errorf("no context %q", name))
			}
			ctx.Token, ctx.ExpiresAt = "", time.Time{}
			if err := cfg.save(path); err != nil {
				return err
			}
			fmt.Fprintf(c.stderr, "logged out of context %s\n", name)
			return nil
		},
	}
}

func (c *cli) contextCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "context",
		Short: "List, switch and delete contexts (one per deployment)",
		Long: `A context is a deployment: the edge's URL, the gRPC address and the token
'herald login' got there. 'herald login --context NAME' creates one; every command uses
the current context unless --context names another.`,
		Example: `  herald context list
  herald context use prod
  herald context delete old`,
	}
	complete := func(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
		cfg, _, err := c.loadConfig()
		if err != nil || len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return cfg.names(), cobra.ShellCompDirectiveNoFileComp
	}
	list := &cobra.Command{
		Use:     "list",
		Short:   "List the contexts; the current one is marked *",
		Example: `  herald context list -o json`,
		Args:    cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			cfg, _, err := c.loadConfig()
			if err != nil {
				return err
			}
			type row struct {
				Name      string    `json:"name"`
				Current   bool      `json:"current"`
				Server    string    `json:"server"`
				GRPC      string    `json:"grpc"`
				User      string    `json:"user"`
				LoggedIn  bool      `json:"logged_in"`
				ExpiresAt time.Time `json:"expires_at,omitzero"`
			}
			rows := []row{}
			for _, n := range cfg.names() {
				x := cfg.Contexts[n]
				rows = append(rows, row{n, n == cfg.Current, x.Server, x.GRPC, x.User, x.Token != "", x.ExpiresAt})
			}
			if c.json() {
				return c.printJSON(rows)
			}
			tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "CURRENT\tNAME\tSERVER\tGRPC\tUSER\tEXPIRES")
			for _, r := range rows {
				mark, exp := "", ""
				if r.Current {
					mark = "*"
				}
				if r.LoggedIn {
					exp = r.ExpiresAt.Format(time.RFC3339)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", mark, r.Name, r.Server, r.GRPC, r.User, exp)
			}
			return tw.Flush()
		},
	}
	// edit is a subcommand that changes the configuration for an existing context NAME.
	edit := func(use, short, example string, change func(cfg *Config, name string)) *cobra.Command {
		return &cobra.Command{
			Use: use + " NAME", Short: short, Example: example, Args: cobra.ExactArgs(1), ValidArgsFunction: complete,
			RunE: func(_ *cobra.Command, args []string) error {
				cfg, path, err := c.loadConfig()
				if err != nil {
					return err
				}
				if _, ok := cfg.Contexts[args[0]]; !ok {
					return withCode(exitNotFound, fmt.Errorf("no context %q (herald login --context %s creates it)", args[0], args[0]))
				}
				change(cfg, args[0])
				return cfg.save(path)
			},
		}
	}
	use := edit("use", "Make NAME the current context", `  herald context use prod`, func(cfg *Config, name string) {
		cfg.Current = name
	})
	del := edit("delete", "Delete a context and its token", `  herald context delete old`, func(cfg *Config, name string) {
		delete(cfg.Contexts, name)
		if cfg.Current == name {
			cfg.Current = ""
		}
	})
	cmd.AddCommand(list, use, del)
	return cmd
}
