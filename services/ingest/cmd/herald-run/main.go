// Command herald-run runs a shell command on a server's agent through gRPC AgentService and
// prints its output, exiting with the command's exit code.
//
//	herald-run -token admin:PASSWORD dev-server 'uname -a'
//
// A -token of user:password is first exchanged for a token with AuthService.Login.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/heraldhq/herald/pkg/grpcauth"
	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
)

func main() {
	code, err := run()
	if err != nil {
		fmt.Fprintln(os.Stderr, "herald-run:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func run() (int, error) {
	addr := flag.String("addr", "127.0.0.1:9090", "gRPC address of ingest (and of auth for a user:password login)")
	tok := flag.String("token", os.Getenv("HERALD_TOKEN"), "a Herald token, or user:password (default $HERALD_TOKEN)")
	timeout := flag.Duration("timeout", 30*time.Second, "longest the command may run")
	flag.Parse()
	if flag.NArg() != 2 {
		return 0, fmt.Errorf("usage: herald-run [flags] SERVER_ID 'COMMAND'")
	}
	cc, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return 0, err
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout+10*time.Second)
	defer cancel()
	if ctx, err = grpcauth.Bearer(ctx, cc, *tok); err != nil {
		return 0, err
	}
	res, err := heraldv1.NewAgentServiceClient(cc).RunCommand(ctx, &heraldv1.RunCommandRequest{
		ServerId: flag.Arg(0), Command: flag.Arg(1), Timeout: durationpb.New(*timeout)})
	if err != nil {
		return 0, err
	}
	fmt.Print(res.GetOutput())
	fmt.Fprintf(os.Stderr, "exit %d in %s (job %s)\n", res.GetExitCode(), res.GetDuration().AsDuration(), res.GetJobId())
	return int(res.GetExitCode()), nil
}
