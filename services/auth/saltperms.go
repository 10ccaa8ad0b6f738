package auth

import (
	"github.com/heraldhq/herald/pkg/event"
)

// saltPerms renders Herald permissions in the form Salt's /login answers with: a list of
// function regexes (".*" is everything), and {"<minion glob>": [<function regex>, ...]} for
// rights on some minions only. Herald's rights that act on a server map to Salt functions:
// commands.run.<id> is cmd.run, docker.<action>.<id> is docker.<action>; a permission on
// every type of one server is ".*" there. Permissions to see events have no Salt function
// and are left out; the token itself still carries them.
func saltPerms(perms []string) []any {
	out := []any{}
	byMinion := map[string][]string{}
	var order []string
	add := func(minion, fun string) {
		if _, ok := byMinion[minion]; !ok {
			order = append(order, minion)
		}
		byMinion[minion] = append(byMinion[minion], fun)
	}
	all := func(vs []string) []string {
		if vs == nil {
			return []string{"*"}
		}
		return vs
	}
	for _, p := range perms {
		f, err := event.ParseFilter(p)
		if err != nil || f.Scope != nil {
			continue
		}
		if f.Type == nil && f.Action == nil && f.Key == nil {
			out = append(out, ".*")
			continue
		}
		for _, typ := range all(f.Type) {
			for _, act := range all(f.Action) {
				fun := ""
				switch {
				case typ == "*" && act == "*":
					fun = ".*"
				case typ == "commands" && (act == "run" || act == "*"):
					fun = "cmd.run"
				case typ == "docker" && act == "*":
					fun = "docker.*"
				case typ == "docker":
					fun = "docker." + act
				}
				if fun == "" {
					continue
				}
				for _, key := range all(f.Key) {
					if key == "*" && fun == ".*" {
						out = append(out, ".*")
						continue
					}
					add(key, fun)
				}
			}
		}
	}
	for _, m := range order {
		out = append(out, map[string][]string{m: byMinion[m]})
	}
	return out
}
