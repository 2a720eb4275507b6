//go:build linux

package pgembed

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// inspectProcess tells what the process pid is, from /proc: kill(pid, 0)
// cannot tell a zombie or an unrelated program from a live postmaster.
func inspectProcess(pid int, pgData string) procState {
	dir := "/proc/" + strconv.Itoa(pid)
	stat, err := os.ReadFile(dir + "/stat")
	if errors.Is(err, fs.ErrNotExist) {
		// /proc mounted with hidepid hides other users' processes; only
		// kill can say that the PID is really free.
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return procGone
		}
		return procUnknown
	}
	if err != nil {
		return procUnknown
	}
	// The command name in parentheses may itself hold spaces and
	// parentheses; the state letter follows the last ")".
	j := bytes.LastIndexByte(stat, ')')
	if j < 0 || j+2 >= len(stat) {
		return procUnknown
	}
	switch stat[j+2] {
	case 'Z', 'X', 'x':
		return procZombie
	}
	args, err := cmdline(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return procGone
	case err != nil:
		return procUnknown
	case len(args) == 0:
		return procForeign // a kernel thread, or a process that is exiting
	}
	if !isPostmasterCommand(args) {
		return procForeign
	}
	// A postmaster's working directory is its data directory: it changes
	// into it at start-up.
	same, err := sameDir(dir+"/cwd", pgData)
	switch {
	case err == nil && same:
		return procPostmaster
	case err == nil:
		return procForeign // a postmaster of another cluster
	case errors.Is(err, fs.ErrNotExist):
		if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
			return procGone
		}
		return procZombie
	}
	// Another user's working directory is hidden from us; the -D that
	// pg_ctl passed is the next best evidence.
	for k := 1; k+1 < len(args); k++ {
		if args[k] == "-D" {
			if same, err := sameDir(args[k+1], pgData); err == nil && same {
				return procPostmaster
			}
		}
	}
	return procUnknown
}

// clusterProcesses lists the live processes whose working directory is
// pgData: the postmaster and its backends and auxiliary processes, which
// outlive a killed postmaster for a moment. Processes of other users are
// invisible to a non-root caller; those of the server's user are not.
func clusterProcesses(pgData string) []clusterProc {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	var procs []clusterProc
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		dir := "/proc/" + e.Name()
		// A zombie has no working directory, so it fails here too.
		if same, err := sameDir(dir+"/cwd", pgData); err != nil || !same {
			continue
		}
		args, err := cmdline(dir)
		if err != nil || len(args) == 0 {
			continue
		}
		// A shell someone left in the data directory is not ours to
		// wait for or kill; server processes are named postgres.
		isPM := isPostmasterCommand(args)
		if !isPM && !strings.HasPrefix(args[0], "postgres:") {
			continue
		}
		procs = append(procs, clusterProc{pid: pid, postmaster: isPM})
	}
	return procs
}

func cmdline(procDir string) ([]string, error) {
	b, err := os.ReadFile(procDir + "/cmdline")
	if err != nil {
		return nil, err
	}
	b = bytes.TrimRight(b, "\x00")
	if len(b) == 0 {
		return nil, nil
	}
	return strings.Split(string(b), "\x00"), nil
}

// isPostmasterCommand reports whether args is a postmaster's command line. A
// postmaster keeps the command line it was started with, while its children
// rewrite theirs to "postgres: <role>".
func isPostmasterCommand(args []string) bool {
	base := filepath.Base(args[0])
	return base == "postgres" || base == "postmaster"
}

// sameDir reports whether the two paths name the same directory, symbolic
// links resolved.
func sameDir(a, b string) (bool, error) {
	fa, err := os.Stat(a)
	if err != nil {
		return false, err
	}
	fb, err := os.Stat(b)
	if err != nil {
		return false, err
	}
	return os.SameFile(fa, fb), nil
}
