// Command herald is Herald's one command-line tool, in the style of kubectl and nats: it logs
// in and keeps a token per context (deployment) in the user's config directory, watches
// events, metrics and logs, publishes events, runs commands on agents, manages API keys and
// connections, and serves the all-in-one stack (`herald serve`, what `make run` starts).
// `herald --help` lists the commands, their examples and the exit codes.
package main

import (
	"context"
	"os"
)

func main() {
	os.Exit(execute(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
