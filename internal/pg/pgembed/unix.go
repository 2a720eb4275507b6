//go:build unix

package pgembed

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"time"
)

// serverUser is the unprivileged account the server runs as when we are root.
type serverUser struct {
	name     string
	home     string
	uid, gid uint32
	groups   []uint32
}

// lookupServerUser picks the account for the server: "postgres", which
// packaged installations create, or else "nobody".
func lookupServerUser() (*serverUser, error) {
	var errs []error
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		su := &serverUser{name: u.Username, home: u.HomeDir}
		uid, err := strconv.ParseUint(u.Uid, 10, 32)
		if err != nil {
			return nil, errorf("user %s: uid %q: %w", name, u.Uid, err)
		}
		gid, err := strconv.ParseUint(u.Gid, 10, 32)
		if err != nil {
			return nil, errorf("user %s: gid %q: %w", name, u.Gid, err)
		}
		su.uid, su.gid = uint32(uid), uint32(gid)
		gids, err := u.GroupIds()
		if err != nil {
			return nil, errorf("user %s: groups: %w", name, err)
		}
		for _, g := range gids {
			if n, err := strconv.ParseUint(g, 10, 32); err == nil {
				su.groups = append(su.groups, uint32(n))
			}
		}
		if !slices.Contains(su.groups, su.gid) {
			su.groups = append(su.groups, su.gid)
		}
		return su, nil
	}
	return nil, errorf("PostgreSQL refuses to run as root and neither user postgres nor nobody exists: %w", errors.Join(errs...))
}

// checkTraversable makes sure the server's user can reach dir, so that the
// failure is a clear message here rather than a permission error in the
// server log.
func (u *serverUser) checkTraversable(dir string) error {
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return errorf("data dir: %w", err)
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return nil // not a Unix file system; let the server tell
		}
		perm := fi.Mode().Perm()
		var can bool
		switch {
		case st.Uid == u.uid:
			can = perm&0o100 != 0
		case slices.Contains(u.groups, st.Gid):
			can = perm&0o010 != 0
		default:
			can = perm&0o001 != 0
		}
		if !can {
			return errorf("PostgreSQL runs as user %s (it refuses to run as root), who cannot enter %s: run `chmod o+x %s` or choose another --data-dir", u.name, d, d)
		}
		if parent := filepath.Dir(d); parent == d {
			return nil
		}
	}
}

// chownTree gives the cluster to the server's user when it belongs to someone
// else (created by an earlier non-root run, say); the server refuses a data
// directory it does not own.
func (u *serverUser) chownTree(root string) error {
	fi, err := os.Stat(root)
	if err != nil {
		return errorf("data dir: %w", err)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid == u.uid && st.Gid == u.gid {
		return nil
	}
	err = filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, int(u.uid), int(u.gid))
	})
	if err != nil {
		return errorf("chown %s to %s: %w", root, u.name, err)
	}
	return nil
}

// lockFile takes an exclusive flock on path, waiting until it is free or ctx
// ends, and returns the function that releases it. flock has no timeout, so
// poll with LOCK_NB.
func lockFile(ctx context.Context, path string) (func(), error) {
	// Read-only is enough for flock and lets a non-root command share a
	// lock file that root created.
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o644)
	if err != nil {
		return nil, errorf("lock: %w", err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil // closing releases the lock
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, errorf("lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, errorf("lock %s: %w", path, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}
