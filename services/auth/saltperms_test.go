package auth

import (
	"encoding/json"
	"testing"
)

func TestSaltPerms(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		perms []string
		want  string
	}{
		{[]string{"*.*.*"}, `[".*"]`},
		{[]string{"profiles.*.*"}, `[]`},
		{[]string{"commands.run.web-1", "docker.*.web-1", "docker.logs.db-1", "metrics.read.*"},
			`[{"web-1":["cmd.run","docker.*"]},{"db-1":["docker.logs"]}]`},
		{[]string{"*.*.web-2", "commands.run.*"}, `[{"web-2":[".*"]},{"*":["cmd.run"]}]`},
	} {
		b, _ := json.Marshal(saltPerms(tc.perms))
		if string(b) != tc.want {
			t.Errorf("saltPerms(%q) = %s, want %s", tc.perms, b, tc.want)
		}
	}
}
