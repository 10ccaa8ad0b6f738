package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/heraldhq/herald/pkg/grpcauth"
	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
)

// Exit codes scripts can rely on. `herald run` exits with the remote command's code once the
// command ran; these codes are for everything that stops it before.
const (
	exitOK          = 0
	exitError       = 1 // anything not below
	exitUsage       = 2 // bad flags, arguments or input (gRPC InvalidArgument, HTTP 400)
	exitAuth        = 3 // no, bad or expired credentials: run herald login
	exitDenied      = 4 // the credentials lack the permission
	exitNotFound    = 5 // no such key, connection, server
	exitUnavailable = 6 // Herald (or the agent) cannot be reached or did not answer in time
	exitClosed      = 7 // a watched stream was ended by the server (the close code is printed)
)

// exitErr carries the exit code an error maps to.
type exitErr struct {
	code int
	err  error
}

func (e *exitErr) Error() string { return e.err.Error() }
func (e *exitErr) Unwrap() error { return e.err }

func withCode(code int, err error) error { return &exitErr{code: code, err: err} }

// exitCode maps an error to the process's exit code.
func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	if e, ok := errors.AsType[*exitErr](err); ok {
		return e.code
	}
	if st, ok := status.FromError(err); ok && st.Code() != codes.Unknown {
		return grpcExit(st.Code())
	}
	return exitError
}

func grpcExit(c codes.Code) int {
	switch c {
	case codes.InvalidArgument, codes.FailedPrecondition, codes.OutOfRange:
		return exitUsage
	case codes.Unauthenticated:
		return exitAuth
	case codes.PermissionDenied:
		return exitDenied
	case codes.NotFound:
		return exitNotFound
	case codes.Unavailable, codes.DeadlineExceeded:
		return exitUnavailable
	}
	return exitError
}

// cli is one invocation: its streams, global flags and the configuration file.
type cli struct {
	stdin          io.Reader
	stdout, stderr io.Writer

	configFile string
	context    string // --context: which context to use (default: the current one)
	server     string // --edge: override the context's edge URL
	grpcAddr   string // --grpc: override the context's gRPC address
	grpcTLS    bool   // --grpc-tls: gRPC over TLS
	insecure   bool   // --insecure: accept any certificate
	token      string // --token: a token or user:password (default $HERALD_TOKEN, then the context's)
	output     string // --output: table or json
	timeout    time.Duration
}

// execute runs the CLI and returns the exit code.
func execute(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	c := &cli{stdin: stdin, stdout: stdout, stderr: stderr}
	root := c.root()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	code := exitCode(err)
	if _, ok := errors.AsType[*exitErr](err); !ok && code == exitError && isUsage(err) {
		code = exitUsage
	}
	if !errors.Is(err, errSilent) {
		fmt.Fprintln(stderr, "herald:", err)
		if code == exitUsage && cmd != nil {
			fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
		}
	}
	return code
}

// errSilent ends a command whose message was already printed.
var errSilent = errors.New("")

// isUsage recognises cobra's and pflag's own argument errors, which are plain errors.
func isUsage(err error) bool {
	msg := err.Error()
	for _, s := range []string{"unknown command", "unknown flag", "unknown shorthand", "flag needs an argument",
		"invalid argument", "accepts ", "requires at least", "required flag", "arg(s)"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

func (c *cli) root() *cobra.Command {
	root := &cobra.Command{
		Use:   "herald",
		Short: "Herald's command-line tool: watch events, metrics and logs, run commands, manage keys and connections, serve",
		Long: `herald talks to a Herald deployment (an edge over HTTP/WebSocket, the services over gRPC)
with the token 'herald login' stored for the current context, and runs the all-in-one server
('herald serve').

Credentials: --token, else $HERALD_TOKEN, else the context's stored token. A value of the
form user:password logs in on the way, as Digital Rebar's ?token=user:password does.

Exit codes: 0 ok, 1 error, 2 usage or bad input, 3 not authenticated (log in), 4 permission
denied, 5 not found, 6 unavailable or timed out, 7 a watched stream closed by the server;
'herald run' exits with the command's own code once it ran.`,
		Example: `  herald serve &                                # the all-in-one stack on 127.0.0.1
  herald login -u admin                         # prompts for the password
  herald watch 'profiles.*.*'                   # Digital Rebar events, one JSON object a line
  herald publish profiles save global --object '{"Name":"global"}'
  herald run dev-server -- uname -a`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	pf := root.PersistentFlags()
	pf.StringVar(&c.configFile, "config", "", "configuration file (default $HERALD_CONFIG, else herald/config.json in the user config dir)")
	pf.StringVar(&c.context, "context", "", "context (deployment) to use (default: the current one)")
	pf.StringVar(&c.server, "edge", "", "the edge's URL, e.g. http://127.0.0.1:8080 (default: the context's)")
	pf.StringVar(&c.grpcAddr, "grpc", "", "gRPC address host:port (default: the context's)")
	pf.BoolVar(&c.grpcTLS, "grpc-tls", false, "speak TLS to the gRPC address (default: the context's; https edges usually want it)")
	pf.BoolVar(&c.insecure, "insecure", false, "accept any TLS certificate, e.g. the development stack's self-signed one (default: the context's)")
	pf.StringVar(&c.token, "token", "", "a Herald token or user:password (default $HERALD_TOKEN, then the context's token)")
	pf.StringVarP(&c.output, "output", "o", "table", "output format: table or json")
	pf.DurationVar(&c.timeout, "timeout", 30*time.Second, "how long a request may take")
	_ = root.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"table", "json"}, cobra.ShellCompDirectiveNoFileComp))
	_ = root.RegisterFlagCompletionFunc("context", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		cfg, _, err := c.loadConfig()
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		return cfg.names(), cobra.ShellCompDirectiveNoFileComp
	})
	root.PersistentPreRunE = func(*cobra.Command, []string) error {
		if c.output != "table" && c.output != "json" {
			return withCode(exitUsage, fmt.Errorf("--output %q: want table or json", c.output))
		}
		return nil
	}
	root.AddCommand(c.serveCmd(), c.loginCmd(), c.logoutCmd(), c.contextCmd(), c.watchCmd(), c.metricsCmd(),
		c.logsCmd(), c.publishCmd(), c.runCmd(), c.keysCmd(), c.connectionsCmd())
	return root
}

func (c *cli) json() bool { return c.output == "json" }

// printJSON writes v as one line of JSON.
func (c *cli) printJSON(v any) error {
	return json.NewEncoder(c.stdout).Encode(v)
}

func (c *cli) loadConfig() (*Config, string, error) {
	path := c.configFile
	if path == "" {
		var err error
		if path, err = configPath(); err != nil {
			return nil, "", err
		}
	}
	cfg, err := loadConfig(path)
	return cfg, path, err
}

// target is where a command goes and with which credentials.
type target struct {
	name     string // the context's name
	server   string
	grpc     string
	grpcTLS  bool
	insecure bool
	cred     string // a token or user:password; empty: none
}

// endpoints resolves the context's name and its stored entry (nil when there is none), and
// where it points, with --edge, --grpc, --grpc-tls and --insecure applied.
func (c *cli) endpoints(cfg *Config) (stored *Context, t target) {
	t = target{name: firstOf(c.context, firstOf(cfg.Current, defaultContext)), server: defaultServer, grpc: defaultGRPC}
	if stored = cfg.Contexts[t.name]; stored != nil {
		t.server, t.grpc, t.grpcTLS, t.insecure = stored.Server, stored.GRPC, stored.GRPCTLS, stored.Insecure
	}
	t.server = strings.TrimRight(firstOf(c.server, t.server), "/")
	t.grpc = firstOf(c.grpcAddr, t.grpc)
	t.grpcTLS = t.grpcTLS || c.grpcTLS
	t.insecure = t.insecure || c.insecure
	return stored, t
}

// target resolves the context and the flags that override it.
func (c *cli) target() (target, error) {
	cfg, _, err := c.loadConfig()
	if err != nil {
		return target{}, err
	}
	stored, t := c.endpoints(cfg)
	name := t.name
	if stored == nil && c.context != "" {
		return target{}, withCode(exitUsage, fmt.Errorf("no context %q (see herald context list)", name))
	}
	switch {
	case c.token != "":
		t.cred = c.token
	case os.Getenv("HERALD_TOKEN") != "":
		t.cred = os.Getenv("HERALD_TOKEN")
	case stored != nil && stored.Token != "":
		if !stored.ExpiresAt.IsZero() && time.Now().After(stored.ExpiresAt) {
			return target{}, withCode(exitAuth, fmt.Errorf("the token of context %q expired at %s: run herald login", name,
				stored.ExpiresAt.Format(time.RFC3339)))
		}
		t.cred = stored.Token
	}
	return t, nil
}

// needCred is the error of a command run without credentials.
func (t target) needCred() error {
	if t.cred == "" {
		return withCode(exitAuth, fmt.Errorf("not logged in to %s: run herald login (or pass --token)", t.server))
	}
	return nil
}

// dialGRPC connects to the target's gRPC address and returns a context carrying its Bearer
// token (user:password is exchanged for one first), bounded by --timeout.
func (c *cli) dialGRPC(ctx context.Context, t target, extra time.Duration) (*grpc.ClientConn, context.Context, context.CancelFunc, error) {
	if err := t.needCred(); err != nil {
		return nil, nil, nil, err
	}
	// The development stack serves gRPC on loopback without TLS unless asked; a deployment
	// has TLS (--grpc-tls).
	creds := insecure.NewCredentials()
	if t.grpcTLS {
		creds = credentials.NewTLS(t.tlsConfig())
	}
	cc, err := grpc.NewClient(t.grpc, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, nil, nil, withCode(exitUsage, fmt.Errorf("--grpc %q: %w", t.grpc, err))
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout+extra)
	ctx, err = grpcauth.Bearer(ctx, cc, t.cred)
	if err != nil {
		cancel()
		cc.Close()
		return nil, nil, nil, err
	}
	return cc, ctx, cancel, nil
}

// contextT is a call's context, named short for the commands' callbacks.
type contextT = context.Context

// withGRPC resolves the target, connects and calls f with the authenticated context.
// extra lengthens --timeout (by how long a remote command may run).
func withGRPC[C any](c *cli, cmd *cobra.Command, extra time.Duration, client func(grpc.ClientConnInterface) C, f func(C, contextT) error) error {
	t, err := c.target()
	if err != nil {
		return err
	}
	cc, ctx, cancel, err := c.dialGRPC(cmd.Context(), t, extra)
	if err != nil {
		return err
	}
	defer cc.Close()
	defer cancel()
	return f(client(cc), ctx)
}

func (c *cli) withAuth(cmd *cobra.Command, f func(heraldv1.AuthServiceClient, contextT) error) error {
	return withGRPC(c, cmd, 0, heraldv1.NewAuthServiceClient, f)
}

func (c *cli) withConns(cmd *cobra.Command, f func(heraldv1.ConnectionServiceClient, contextT) error) error {
	return withGRPC(c, cmd, 0, heraldv1.NewConnectionServiceClient, f)
}
