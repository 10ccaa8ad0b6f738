// Package grpcauth gives command-line clients the credentials Herald's gRPC services want:
// "authorization: Bearer <token>" metadata, from a token or from user:password through
// AuthService.Login.
package grpcauth

import (
	"context"
	"fmt"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
)

// Bearer returns ctx carrying the token; credentials of the form user:password are first
// exchanged for a token with AuthService.Login on cc.
func Bearer(ctx context.Context, cc grpc.ClientConnInterface, credentials string) (context.Context, error) {
	tok := credentials
	if user, pass, ok := strings.Cut(credentials, ":"); ok {
		res, err := heraldv1.NewAuthServiceClient(cc).Login(ctx, &heraldv1.LoginRequest{Username: user, Password: pass})
		if err != nil {
			return nil, fmt.Errorf("login: %w", err)
		}
		tok = res.GetToken()
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok), nil
}
