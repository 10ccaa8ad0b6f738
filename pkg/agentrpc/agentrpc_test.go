package agentrpc_test

import (
	"testing"
	"time"

	"github.com/heraldhq/herald/pkg/agentrpc"
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
