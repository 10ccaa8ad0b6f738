//go:build !unix

package agent

import "os/exec"

// startInOwnGroup keeps exec's default on systems without process groups:
// the context's cancellation kills the shell only.
func startInOwnGroup(*exec.Cmd) {}
