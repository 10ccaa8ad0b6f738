package config

import (
	"bytes"
	"errors"
	"flag"
	"strings"
	"testing"
	"time"
)

type settings struct {
	url      string
	ttl      time.Duration
	password string
	queue    int
}

func newFlagSet(s *settings) *flag.FlagSet {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(new(bytes.Buffer))
	fs.StringVar(&s.url, "nats.url", "nats://default:4222", "")
	fs.DurationVar(&s.ttl, "auth.token-ttl", time.Hour, "")
	fs.StringVar(&s.password, "admin.password", "", "")
	fs.IntVar(&s.queue, "edge.send-queue", 64, "")
	return fs
}

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestEnvName(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"nats.url":        "HERALD_NATS_URL",
		"edge.send-queue": "HERALD_EDGE_SEND_QUEUE",
		"a.b-c":           "HERALD_A_B_C",
		"admin-password":  "HERALD_ADMIN_PASSWORD",
	} {
		if got := EnvName(in); got != want {
			t.Errorf("EnvName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParsePrecedence(t *testing.T) {
	t.Parallel()
	var s settings
	fs := newFlagSet(&s)
	err := parse(fs, []string{"-nats.url", "nats://flag:1"}, env(map[string]string{
		"HERALD_NATS_URL":        "nats://env:1", // loses to the flag
		"HERALD_AUTH_TOKEN_TTL":  "5m",           // beats the default
		"HERALD_UNRELATED_THING": "x",
	}), new(bytes.Buffer))
	if err != nil {
		t.Fatal(err)
	}
	if s.url != "nats://flag:1" {
		t.Errorf("nats.url = %q, want the flag's value", s.url)
	}
	if s.ttl != 5*time.Minute {
		t.Errorf("auth.token-ttl = %s, want the env's 5m", s.ttl)
	}
	if s.queue != 64 {
		t.Errorf("edge.send-queue = %d, want the default 64", s.queue)
	}
}

func TestParseBadEnvNamesVariableNotValue(t *testing.T) {
	t.Parallel()
	var s settings
	err := parse(newFlagSet(&s), nil, env(map[string]string{"HERALD_EDGE_SEND_QUEUE": "lots-s3cret"}), new(bytes.Buffer))
	if err == nil {
		t.Fatal("bad env value accepted")
	}
	if !strings.Contains(err.Error(), "HERALD_EDGE_SEND_QUEUE") {
		t.Errorf("error %q does not name the variable", err)
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Errorf("error %q echoes the value", err)
	}
}

func TestPrintConfigRedacts(t *testing.T) {
	t.Parallel()
	var s settings
	fs := newFlagSet(&s)
	fs.String("redis.url", "", "")
	fs.String("auth.public-key-file", "", "")
	var out bytes.Buffer
	err := parse(fs, []string{"-print-config", "-redis.url", "redis://u:hunter2@127.0.0.1:6379/0", "-auth.public-key-file", "keys/pub.pem"},
		env(map[string]string{"HERALD_ADMIN_PASSWORD": "hunter2"}), &out)
	if !errors.Is(err, ErrPrinted) {
		t.Fatalf("err = %v, want ErrPrinted", err)
	}
	got := out.String()
	if strings.Contains(got, "hunter2") {
		t.Fatalf("printed config leaks a secret:\n%s", got)
	}
	for _, want := range []string{
		"admin.password=REDACTED\n",
		"auth.token-ttl=1h0m0s\n",
		"auth.public-key-file=keys/pub.pem\n",
		"nats.url=nats://default:4222\n",
		"redis.url=redis://u:REDACTED@127.0.0.1:6379/0\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("printed config lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, PrintFlag) {
		t.Errorf("printed config includes -%s itself", PrintFlag)
	}
}

func TestIsSecret(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]bool{
		"admin.password":        true,
		"auth.signing-key":      true,
		"auth.private-key-file": true,
		"nats.token":            true,
		"oauth.client_secret":   true,
		"auth.public-key-file":  false,
		"auth.token-ttl":        false,
		"nats.url":              false,
		"edge.keyboard":         false,
		"monkey":                false,
	} {
		if got := IsSecret(name); got != want {
			t.Errorf("IsSecret(%q) = %v, want %v", name, got, want)
		}
	}
}
