//go:build unix && !linux

package pgembed

import (
	"errors"
	"os"
	"syscall"
)

// inspectProcess tells what little kill(pid, 0) can: whether the PID exists.
// Without /proc a zombie looks alive, so Start relies on the socket probe.
func inspectProcess(pid int, _ string) procState {
	if pid == os.Getpid() {
		return procForeign // we are not a postmaster
	}
	err := syscall.Kill(pid, 0)
	if errors.Is(err, syscall.ESRCH) {
		return procGone
	}
	return procUnknown
}

// clusterProcesses cannot list processes here; should a killed postmaster's
// backends linger, PostgreSQL's own shared memory check refuses the start
// and says why.
func clusterProcesses(string) []clusterProc { return nil }
