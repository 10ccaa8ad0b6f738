package auth_test

import (
	"bytes"
	"flag"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/pkg/config"
	"github.com/heraldhq/herald/services/auth"
)

func parseAuthFlags(t *testing.T, args []string, env map[string]string) auth.Config {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	var cfg auth.Config
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfg.RegisterFlags(fs)
	if err := config.Parse(fs, args); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// Not parallel: t.Setenv.
func TestAdminPasswordFromEnv(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"HERALD_ADMIN_PASSWORD", nil, map[string]string{"HERALD_ADMIN_PASSWORD": "from-env"}, "from-env"},
		{"dotted env wins", nil, map[string]string{"HERALD_ADMIN_PASSWORD": "short", "HERALD_AUTH_ADMIN_PASSWORD": "dotted"}, "dotted"},
		{"flag wins", []string{"-auth.admin-password", "flag"}, map[string]string{"HERALD_ADMIN_PASSWORD": "env"}, "flag"},
		{"unset", nil, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := parseAuthFlags(t, tc.args, tc.env).AdminPassword; got != tc.want {
				t.Fatalf("AdminPassword = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestFlagsDefaultsAndRedaction(t *testing.T) {
	cfg := parseAuthFlags(t, []string{"-auth.token-ttl", "5m", "-admin-password", "s3cret"}, nil)
	if cfg.TokenTTL != 5*time.Minute || cfg.BcryptCost != 10 || cfg.LoginMaxFailures != auth.DefaultLoginMaxFailures {
		t.Fatalf("cfg %+v", cfg)
	}
	var fsCfg auth.Config
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fsCfg.RegisterFlags(fs)
	if err := fs.Parse([]string{"-auth.admin-password", "s3cret"}); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	config.Print(&out, fs)
	if strings.Contains(out.String(), "s3cret") || !strings.Contains(out.String(), "auth.admin-password=REDACTED") {
		t.Fatalf("print-config leaks or hides wrongly:\n%s", out.String())
	}
}
