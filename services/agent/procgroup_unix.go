//go:build unix

package agent

import (
	"os/exec"
	"syscall"
)

// startInOwnGroup makes c the leader of a new process group and makes the
// context's cancellation kill that whole group, not only the shell.
func startInOwnGroup(c *exec.Cmd) {
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	c.Cancel = func() error {
		// The negative pid addresses the group whose id is the shell's pid.
		return syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
	}
}
