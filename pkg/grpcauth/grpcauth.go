// Package grpcauth is the "authorization: Bearer <token>" metadata of Herald's gRPC services:
// clients get it from a token or from user:password through AuthService.Login, servers read it.
package grpcauth

import (
	"context"
	"fmt"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

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

// IncomingToken is the server side of Bearer: the token from a call's "authorization: Bearer
// <token>" metadata, or an Unauthenticated status that says what is missing.
func IncomingToken(ctx context.Context) (string, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	if len(vals) == 0 {
		return "", status.Error(codes.Unauthenticated, `missing "authorization: Bearer <token>" metadata`)
	}
	scheme, tok, _ := strings.Cut(strings.TrimSpace(vals[0]), " ")
	if tok = strings.TrimSpace(tok); !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return "", status.Error(codes.Unauthenticated, `authorization metadata must be "Bearer <token>"`)
	}
	return tok, nil
}
