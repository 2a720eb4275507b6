//go:build unix

package pgembed

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

const (
	// pingTimeout bounds one health probe of the socket. A healthy server
	// answers a local connection in milliseconds; a postmaster that does not
	// answer within this is starting, stopping or stuck, and the pid file and
	// /proc tell which.
	pingTimeout = 2 * time.Second

	// shutdownWait bounds how long Start waits for a postmaster that is
	// shutting down (a fast shutdown writes a checkpoint first) before it
	// gives up rather than start a second server on the same cluster.
	shutdownWait = 60 * time.Second

	// orphanWait is how long the backends of a killed postmaster get to
	// notice its death and exit on their own (they normally take a few
	// milliseconds) before Start kills them: while one of them is attached
	// to the old shared memory, a new postmaster refuses to start.
	orphanWait = 5 * time.Second

	// pollInterval paces the waits above. It is short because a restart
	// after a crash is on the gateway's critical path.
	pollInterval = 20 * time.Millisecond

	// pmStatusStopping is line 8 of postmaster.pid once a shutdown has begun
	// (PostgreSQL 10 and later; see PM_STATUS_STOPPING in miscadmin.h).
	pmStatusStopping = "stopping"
)

// serverState is what Start found on the cluster.
type serverState int

const (
	serverStopped serverState = iota // no postmaster: start one
	serverRunning                    // a live postmaster of this cluster: attach to it
)

// pidFile is the part of postmaster.pid that Start relies on.
type pidFile struct {
	raw    []byte
	pid    int
	status string // "starting", "stopping", "ready", "standby", or "" early in start-up
}

// errPIDFileIncomplete marks a lock file without a PID: PostgreSQL creates it
// empty and writes it a moment later.
var errPIDFileIncomplete = errors.New("lock file has no PID yet")

// readLockFile parses a PostgreSQL lock file (postmaster.pid, or the socket's
// .lock file): the first line is the PID, negative for a single-user backend.
func readLockFile(path string) (*pidFile, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	first, _, complete := bytes.Cut(raw, []byte("\n"))
	if !complete {
		return nil, errPIDFileIncomplete
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(first)))
	if err != nil {
		return nil, fmt.Errorf("%s: first line %q is not a PID", path, first)
	}
	if pid < 0 {
		pid = -pid
	}
	if pid == 0 {
		return nil, fmt.Errorf("%s: PID 0", path)
	}
	pf := &pidFile{raw: raw, pid: pid}
	if lines := strings.Split(string(raw), "\n"); len(lines) > 7 {
		pf.status = strings.TrimSpace(lines[7])
	}
	return pf, nil
}

// inspect decides whether a postmaster runs on the cluster. It must not trust
// `pg_ctl status` (or PostgreSQL's own lock file check), which only asks
// kill(pid, 0): that succeeds for a killed postmaster until its zombie is
// reaped, which on some systems takes seconds, and for an unrelated process
// that was given the PID of a postmaster long gone. Attaching to either means
// waiting readyTimeout for connections that never come.
//
// So inspect looks at the process itself and at its socket: a live
// postmaster of this cluster that answers (or is starting up) is attached
// to; a dead, dying or foreign one has its lock files cleared so that a new
// server can start at once; one that is shutting down is waited for. The
// caller holds pgembed.lock, so no other pgembed starts a server meanwhile.
func (i *Instance) inspect(ctx context.Context) (serverState, error) {
	pidPath := filepath.Join(i.pgData, "postmaster.pid")
	var (
		waitingSince    time.Time // when the wait for a shutdown began
		incompleteSince time.Time
		unknownSince    time.Time
	)
	for {
		pf, err := readLockFile(pidPath)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return serverStopped, nil
		case errors.Is(err, errPIDFileIncomplete):
			// A postmaster is creating the file right now (a pg_ctl start
			// that outlived a killed gateway, say), or one crashed in that
			// instant. Give it a moment; if the file stays empty, let
			// PostgreSQL refuse to start and explain, rather than delete
			// a lock we cannot attribute.
			if incompleteSince.IsZero() {
				incompleteSince = time.Now()
			} else if time.Since(incompleteSince) > time.Second {
				return serverStopped, nil
			}
			if err := sleep(ctx, pollInterval); err != nil {
				return 0, errorf("read %s: %w", pidPath, err)
			}
			continue
		case err != nil:
			return 0, errorf("read postmaster.pid: %w", err)
		}

		state := inspectProcess(pf.pid, i.pgData)
		switch state {
		case procGone, procZombie, procForeign:
			again, err := i.clearStale(ctx, pf, state)
			if err != nil {
				return 0, err
			}
			if again {
				continue
			}
			return serverStopped, nil
		}

		// A process that is, or may be, our postmaster.
		if pf.status == pmStatusStopping {
			if waitingSince.IsZero() {
				waitingSince = time.Now()
				i.logger.Info("pgembed: waiting for PostgreSQL to finish shutting down", "pid", pf.pid, "data_dir", i.pgData)
			} else if time.Since(waitingSince) > shutdownWait {
				return 0, errorf("PostgreSQL (PID %d) is still shutting down after %s; stop it with pg_ctl stop -D %s", pf.pid, shutdownWait, i.pgData)
			}
			if err := sleep(ctx, pollInterval); err != nil {
				return 0, errorf("wait for PostgreSQL (PID %d) to shut down: %w", pf.pid, err)
			}
			continue
		}
		perr := i.ping(ctx)
		if perr == nil {
			return serverRunning, nil
		}
		if ctx.Err() != nil {
			return 0, errorf("probe PostgreSQL (PID %d): %w", pf.pid, ctx.Err())
		}
		if isShuttingDown(perr) {
			// The pid file says so too, a moment later; the check above
			// then waits for the exit.
			if err := sleep(ctx, pollInterval); err != nil {
				return 0, errorf("wait for PostgreSQL (PID %d) to shut down: %w", pf.pid, err)
			}
			continue
		}
		var pgErr *pgconn.PgError
		if state == procPostmaster || errors.As(perr, &pgErr) {
			// Our live postmaster (or a server that answered on our
			// socket) that refuses connections for now: starting up or in
			// crash recovery. Attach; ensureDatabase waits for it.
			i.logger.Info("pgembed: PostgreSQL is running but not accepting connections yet", "pid", pf.pid, "status", pf.status, "probe", perr)
			return serverRunning, nil
		}
		// procUnknown: this system cannot tell a zombie from a postmaster
		// that is starting. Wait for the process to either answer or go;
		// in the end, attach as before rather than risk a second server.
		if unknownSince.IsZero() {
			unknownSince = time.Now()
		} else if time.Since(unknownSince) > readyTimeout {
			return serverRunning, nil
		}
		if err := sleep(ctx, pollInterval); err != nil {
			return 0, errorf("probe PostgreSQL (PID %d): %w", pf.pid, err)
		}
	}
}

// clearStale removes the lock files of a postmaster that is gone, a zombie,
// or whose PID now belongs to another program, so that the next pg_ctl start
// succeeds: PostgreSQL itself only asks kill(pid, 0) and would refuse. It
// reports again=true when the cluster turned out not to be free after all and
// the caller should look again.
func (i *Instance) clearStale(ctx context.Context, pf *pidFile, state procState) (again bool, err error) {
	i.logger.Warn("pgembed: PostgreSQL did not shut down cleanly; clearing its lock files", "pid", pf.pid, "process", state.String(), "data_dir", i.pgData)

	// The killed postmaster's backends may still be attached to its shared
	// memory; PostgreSQL then refuses to start ("pre-existing shared memory
	// block is still in use"). They exit by themselves once they notice.
	postmaster, err := i.awaitOrphans(ctx)
	if err != nil {
		return false, err
	}
	if postmaster != 0 {
		// A live postmaster of this cluster that the pid file does not
		// name: someone replaced the file. Never start a second server,
		// and do not attach either: that postmaster shuts itself down
		// once it notices the file is no longer its own.
		return false, errorf("postmaster.pid names PID %d, but PostgreSQL (PID %d) runs on %s: stop it with kill -TERM %d", pf.pid, postmaster, i.pgData, postmaster)
	}

	pidPath := filepath.Join(i.pgData, "postmaster.pid")
	// Remove only what we judged: should a server have started meanwhile
	// (not through pgembed, which we lock out), its file differs.
	if now, err := os.ReadFile(pidPath); err == nil && !bytes.Equal(now, pf.raw) {
		return true, nil
	}
	if err := os.Remove(pidPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, errorf("remove stale %s: %w", pidPath, err)
	}

	// The socket's lock file holds the same PID and blocks the start the
	// same way. Our socket directory serves only this cluster, so a lock
	// there whose process is not a live postmaster of it is stale.
	sockLock := i.socketPath() + ".lock"
	lf, err := readLockFile(sockLock)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	case err != nil:
		// Unreadable or half written: PostgreSQL will say what is wrong.
		i.logger.Warn("pgembed: cannot read socket lock file", "path", sockLock, "err", err)
		return false, nil
	}
	switch st := inspectProcess(lf.pid, i.pgData); {
	case lf.pid == pf.pid, st == procGone, st == procZombie, st == procForeign:
		if err := os.Remove(sockLock); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return false, errorf("remove stale %s: %w", sockLock, err)
		}
	}
	return false, nil
}

// awaitOrphans waits for the processes left from a dead postmaster of this
// cluster to exit, kills those that outlast orphanWait, and returns the PID
// of a live postmaster of the cluster should it find one (then it waits for
// nothing). Where processes cannot be listed it returns at once.
func (i *Instance) awaitOrphans(ctx context.Context) (postmaster int, err error) {
	deadline := time.Now().Add(orphanWait)
	killed := false
	for {
		procs := clusterProcesses(i.pgData)
		for _, p := range procs {
			if p.postmaster {
				return p.pid, nil
			}
		}
		if len(procs) == 0 {
			return 0, nil
		}
		if time.Now().After(deadline) {
			if killed {
				// Let pg_ctl start fail and PostgreSQL name the culprit.
				i.logger.Error("pgembed: processes of the dead PostgreSQL server do not exit", "count", len(procs), "pid", procs[0].pid)
				return 0, nil
			}
			// The cluster crashed already and the new server recovers it
			// from the WAL; a lingering backend only blocks that.
			for _, p := range procs {
				i.logger.Warn("pgembed: killing leftover process of the dead PostgreSQL server", "pid", p.pid)
				if err := syscall.Kill(p.pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
					i.logger.Warn("pgembed: kill leftover process", "pid", p.pid, "err", err)
				}
			}
			killed = true
			deadline = time.Now().Add(2 * time.Second)
		}
		if err := sleep(ctx, pollInterval); err != nil {
			return 0, errorf("wait for processes of the dead PostgreSQL server to exit: %w", err)
		}
	}
}

// ping proves that the server behind our socket accepts a real connection:
// a socket file and a PID prove nothing after a crash.
func (i *Instance) ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, i.urlFor("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	return conn.Ping(ctx)
}

// isShuttingDown reports whether the server refused a connection because a
// shutdown has begun. The cluster is created with the C locale, so the
// message is PostgreSQL's English one; 57P03 alone also means "starting up".
func isShuttingDown(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "57P03" && strings.Contains(pgErr.Message, "shutting down")
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// procState is what inspectProcess learnt about the PID in a lock file.
type procState int

const (
	procGone       procState = iota // no such process
	procZombie                      // exited but not yet reaped: holds no socket and no shared memory
	procForeign                     // alive, but not a postmaster of this cluster (its PID was reused)
	procPostmaster                  // alive, and the postmaster of this cluster
	procUnknown                     // alive; this system cannot tell what it is
)

func (s procState) String() string {
	switch s {
	case procGone:
		return "gone"
	case procZombie:
		return "zombie"
	case procForeign:
		return "another program"
	case procPostmaster:
		return "postmaster"
	default:
		return "unknown"
	}
}

// clusterProc is a process whose working directory is the cluster: every
// PostgreSQL server process changes into its data directory at start.
type clusterProc struct {
	pid        int
	postmaster bool // not a backend or auxiliary process
}
