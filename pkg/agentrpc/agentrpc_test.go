package agentrpc_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/heraldhq/herald/pkg/agentrpc"
	"github.com/heraldhq/herald/pkg/agentwire"
	"github.com/heraldhq/herald/pkg/subject"
	"github.com/heraldhq/herald/pkg/testutil/natstest"
)

func TestJIDsIncrease(t *testing.T) {
	t.Parallel()
	var j agentrpc.JobIDs
	at := time.Date(2025, 6, 7, 8, 9, 10, 123456789, time.UTC)
	a, b := j.Next(at), j.Next(at)
	if a != "20250607080910123456" || b != "20250607080910123457" {
		t.Errorf("jids = %s, %s", a, b)
	}
	if c := j.Next(at.Add(-time.Hour)); c <= b || len(c) != 20 {
		t.Errorf("jid after a clock step back = %s, want > %s", c, b)
	}
}

func TestCallMapsOutcomes(t *testing.T) {
	t.Parallel()
	ns := natstest.RunServer(t)
	nc := natstest.Connect(t, ns)
	req := agentwire.RPCRequest{Kind: agentwire.KindCommand, ID: "1", Command: "true", TimeoutMs: 50}
	if _, err := agentrpc.Call(t.Context(), nc, "nobody", req); !errors.Is(err, agentrpc.ErrOffline) {
		t.Fatalf("no holder: %v, want ErrOffline", err)
	}
	answer := func(server string, reply agentwire.RPCReply) {
		sub, err := nc.Subscribe(subject.AgentRPC(server), func(m *nats.Msg) {
			b, _ := json.Marshal(reply)
			_ = m.Respond(b)
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sub.Unsubscribe() })
	}
	answer("ok", agentwire.RPCReply{Output: "hi\n", ExitCode: 3})
	answer("gone", agentwire.RPCReply{Code: agentwire.CodeGone})
	answer("late", agentwire.RPCReply{Code: agentwire.CodeTimeout, Error: "no answer"})
	if r, err := agentrpc.Call(t.Context(), nc, "ok", req); err != nil || r.Output != "hi\n" || r.ExitCode != 3 {
		t.Fatalf("answered: %+v, %v", r, err)
	}
	if _, err := agentrpc.Call(t.Context(), nc, "gone", req); !errors.Is(err, agentrpc.ErrGone) || !errors.Is(err, agentrpc.ErrOffline) {
		t.Fatalf("gone: %v", err)
	}
	if _, err := agentrpc.Call(t.Context(), nc, "late", req); !errors.Is(err, agentrpc.ErrTimeout) {
		t.Fatalf("holder's timeout: %v", err)
	}
	if _, err := agentrpc.Call(t.Context(), nc, "ok", agentwire.RPCRequest{ID: "2"}); !errors.Is(err, agentwire.ErrInvalid) {
		t.Fatalf("no timeout: %v, want ErrInvalid", err)
	}
}
