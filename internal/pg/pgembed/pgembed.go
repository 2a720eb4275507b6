//go:build unix

// Package pgembed runs a private PostgreSQL server for `switchboard serve`
// and the other subcommands when no --database-url is given, so that a
// single-machine installation needs nothing but an installed PostgreSQL.
//
// Everything lives under one data directory:
//
//	<dataDir>/postgres      the cluster (initdb on first use)
//	<dataDir>/run           the Unix socket; the server listens on nothing else
//	<dataDir>/postgres.log  the server log
//	<dataDir>/pgembed.lock  serialises start, attach and stop decisions
//
// The server accepts local connections without a password (trust): the only
// way in is the socket, in a directory only the server's user (and root) may
// enter. When a server already runs on the data directory, Start attaches to
// it and Stop leaves it running, so that `switchboard keys` works whether or
// not `switchboard serve` is running.
//
// A server killed together with the gateway (kill -9, OOM killer) leaves
// postmaster.pid behind, naming a zombie or, later, an unrelated process.
// Start tells those from a live server by the process itself (on Linux,
// /proc) and by a real connection through the socket, clears the stale lock
// files and starts a new server at once; it waits for a server that is
// shutting down, and attaches only to a live one.
//
// PostgreSQL refuses to run as root. When the gateway runs as root, the
// server programs run as the system user "postgres" (or "nobody"), which then
// owns the cluster and socket directories; root still connects through the
// socket.
package pgembed

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

const (
	// Superuser is the PostgreSQL role initdb creates; it owns everything.
	Superuser = "switchboard"
	// Database is the database Start creates for the gateway.
	Database = "switchboard"

	// port only names the socket file (.s.PGSQL.5432): the server listens on
	// no TCP port, so it cannot clash with a system PostgreSQL.
	port = 5432

	// maxSocketPath is the longest socket path Linux accepts: sun_path holds
	// 108 bytes including the terminating NUL. PostgreSQL refuses longer
	// paths with an error that does not name our --data-dir.
	maxSocketPath = 107

	// startTimeout bounds pg_ctl's wait for the server to accept connections;
	// crash recovery after an unclean stop can take a while on a slow disk.
	startTimeout = 120 * time.Second

	// readyTimeout bounds how long we wait for an attached server that is
	// still starting up (or recovering) before giving up.
	readyTimeout = 30 * time.Second
)

// Instance is a running private PostgreSQL server.
type Instance struct {
	binDir  string
	dataDir string
	pgData  string
	runDir  string
	logFile string
	runAs   *serverUser // nil unless we are root
	owned   bool        // we started it, so Stop stops it
	logger  *slog.Logger
}

// Start starts the private server for dataDir, or attaches to the one already
// running there, and makes sure the database exists. It returns once the
// server accepts connections. Several processes may call Start on one
// dataDir at once: a file lock serialises initdb and start.
func Start(ctx context.Context, dataDir string, logger *slog.Logger) (*Instance, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	binDir, err := Find()
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return nil, errorf("data dir %s: %w", dataDir, err)
	}
	inst := &Instance{
		binDir:  binDir,
		dataDir: abs,
		pgData:  filepath.Join(abs, "postgres"),
		runDir:  filepath.Join(abs, "run"),
		logFile: filepath.Join(abs, "postgres.log"),
		logger:  logger,
	}
	if sock := inst.socketPath(); len(sock) > maxSocketPath {
		return nil, errorf("socket path %s is %d bytes, longer than the %d the operating system allows: choose a shorter --data-dir", sock, len(sock), maxSocketPath)
	}

	dirMode := os.FileMode(0o700)
	if os.Geteuid() == 0 {
		if inst.runAs, err = lookupServerUser(); err != nil {
			return nil, err
		}
		// The server's user must pass through dataDir to reach its own
		// directories, but needs to list nothing in it.
		dirMode = 0o711
	}
	if err := os.MkdirAll(abs, dirMode); err != nil {
		return nil, errorf("create data dir: %w", err)
	}
	if inst.runAs != nil {
		if err := inst.runAs.checkTraversable(abs); err != nil {
			return nil, err
		}
	}

	unlock, err := lockFile(ctx, filepath.Join(abs, "pgembed.lock"))
	if err != nil {
		return nil, err
	}
	defer unlock()

	if err := inst.prepare(ctx); err != nil {
		return nil, err
	}
	state, err := inst.inspect(ctx)
	if err != nil {
		return nil, err
	}
	if state == serverRunning {
		logger.Info("pgembed: attaching to running PostgreSQL", "data_dir", inst.pgData)
	} else {
		if err := inst.start(ctx); err != nil {
			return nil, err
		}
		inst.owned = true
	}
	if err := inst.ensureDatabase(ctx); err != nil {
		if inst.owned {
			stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			if stopErr := inst.pgCtlStop(stopCtx); stopErr != nil {
				logger.Error("pgembed: stop after failed start", "err", stopErr)
			}
		}
		return nil, err
	}
	return inst, nil
}

// URL returns a pgx connection string for the gateway's database.
func (i *Instance) URL() string { return i.urlFor(Database) }

// Attached reports whether Start found the server already running, in which
// case Stop leaves it running.
func (i *Instance) Attached() bool { return !i.owned }

// LogFile returns the path of the server's log, for error messages.
func (i *Instance) LogFile() string { return i.logFile }

// Stop stops the server with pg_ctl's fast mode (active sessions are
// disconnected, their transactions rolled back) if this Instance started it,
// and is a no-op if it attached to a running one.
func (i *Instance) Stop(ctx context.Context) error {
	if !i.owned {
		return nil
	}
	unlock, err := lockFile(ctx, filepath.Join(i.dataDir, "pgembed.lock"))
	if err != nil {
		return err
	}
	defer unlock()
	if err := i.pgCtlStop(ctx); err != nil {
		return err
	}
	i.owned = false
	i.logger.Info("pgembed: PostgreSQL stopped", "data_dir", i.pgData)
	return nil
}

func (i *Instance) urlFor(dbname string) string {
	u := url.URL{
		Scheme: "postgres",
		Path:   "/" + dbname,
		RawQuery: url.Values{
			"host":    {i.runDir},
			"user":    {Superuser},
			"sslmode": {"disable"},
		}.Encode(),
	}
	return u.String()
}

func (i *Instance) socketPath() string {
	return filepath.Join(i.runDir, fmt.Sprintf(".s.PGSQL.%d", port))
}

// prepare creates the cluster on first use and the files and directories the
// server's user must own. The caller holds the lock.
func (i *Instance) prepare(ctx context.Context) error {
	if _, err := os.Stat(filepath.Join(i.pgData, "PG_VERSION")); errors.Is(err, os.ErrNotExist) {
		if err := i.initdb(ctx); err != nil {
			return err
		}
	} else if err != nil {
		return errorf("check data dir: %w", err)
	}

	if err := os.MkdirAll(i.runDir, 0o700); err != nil {
		return errorf("create socket dir: %w", err)
	}
	// pg_ctl opens the log as the server's user, which may not create files
	// in dataDir, so create it here.
	f, err := os.OpenFile(i.logFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return errorf("create server log: %w", err)
	}
	f.Close()

	// Settings that depend on where dataDir is live in their own file,
	// rewritten on every start, so that a moved data directory still works.
	conf := fmt.Sprintf("# Written by Switchboard on every start; edits are lost.\n"+
		"listen_addresses = ''\n"+
		"port = %d\n"+
		"unix_socket_directories = %s\n"+
		"unix_socket_permissions = 0700\n",
		port, confQuote(i.runDir))
	confPath := filepath.Join(i.pgData, "switchboard.conf")
	if old, err := os.ReadFile(confPath); err != nil || string(old) != conf {
		if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
			return errorf("write switchboard.conf: %w", err)
		}
	}

	if i.runAs != nil {
		for _, p := range []string{i.runDir, i.logFile, confPath} {
			if err := os.Lchown(p, int(i.runAs.uid), int(i.runAs.gid)); err != nil {
				return errorf("chown %s to %s: %w", p, i.runAs.name, err)
			}
		}
		if err := i.runAs.chownTree(i.pgData); err != nil {
			return err
		}
	}
	return nil
}

// initdb creates the cluster in a scratch directory and renames it into
// place, so that a crash half-way leaves no half-made cluster behind.
func (i *Instance) initdb(ctx context.Context) error {
	// An empty directory (made by hand, say) is fine; anything else might be
	// someone's data.
	if err := os.Remove(i.pgData); err != nil && !errors.Is(err, os.ErrNotExist) {
		return errorf("%s exists but is not a PostgreSQL data directory; move it away or choose another --data-dir", i.pgData)
	}
	tmp := i.pgData + ".initdb"
	if err := os.RemoveAll(tmp); err != nil {
		return errorf("remove leftover %s: %w", tmp, err)
	}
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return errorf("initdb: %w", err)
	}
	if i.runAs != nil {
		if err := os.Chown(tmp, int(i.runAs.uid), int(i.runAs.gid)); err != nil {
			return errorf("initdb: chown %s to %s: %w", tmp, i.runAs.name, err)
		}
	}
	i.logger.Info("pgembed: creating PostgreSQL cluster", "data_dir", i.pgData, "bin_dir", i.binDir)
	// The C locale exists everywhere; the host's locale may not be installed.
	if out, err := i.run(ctx, "initdb", "-D", tmp, "--auth=trust", "-U", Superuser, "-E", "UTF8", "--locale=C", "--no-instructions"); err != nil {
		os.RemoveAll(tmp)
		return errorf("initdb: %w: %s", err, out)
	}
	f, err := os.OpenFile(filepath.Join(tmp, "postgresql.conf"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return errorf("initdb: %w", err)
	}
	_, err = f.WriteString("\n# Added by Switchboard: where to listen, rewritten on every start.\ninclude_if_exists = 'switchboard.conf'\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return errorf("initdb: append to postgresql.conf: %w", err)
	}
	if err := os.Rename(tmp, i.pgData); err != nil {
		return errorf("initdb: %w", err)
	}
	return nil
}

func (i *Instance) start(ctx context.Context) error {
	i.logger.Info("pgembed: starting PostgreSQL", "data_dir", i.pgData, "socket_dir", i.runDir, "log", i.logFile)
	out, err := i.run(ctx, "pg_ctl", "start", "-w", "-s",
		"-t", fmt.Sprint(int(startTimeout.Seconds())),
		"-D", i.pgData, "-l", i.logFile)
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		// pg_ctl was killed, but the server it launched runs on in its own
		// session; do not leave it behind.
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		i.run(stopCtx, "pg_ctl", "stop", "-w", "-s", "-m", "immediate", "-D", i.pgData)
		return errorf("start PostgreSQL: %w", ctx.Err())
	}
	return errorf("start PostgreSQL: %w: %s\n%s: %s", err, out, i.logFile, tail(i.logFile, 10))
}

func (i *Instance) pgCtlStop(ctx context.Context) error {
	if out, err := i.run(ctx, "pg_ctl", "stop", "-w", "-s", "-m", "fast", "-D", i.pgData); err != nil {
		return errorf("stop PostgreSQL: %w: %s", err, out)
	}
	return nil
}

// ensureDatabase creates the gateway's database if it does not exist. It
// also proves that this process can reach the server through the socket,
// which is what fails when a root-owned directory hides it.
func (i *Instance) ensureDatabase(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	var conn *pgx.Conn
	for {
		var err error
		conn, err = pgx.Connect(ctx, i.urlFor("postgres"))
		if err == nil {
			break
		}
		// An attached server may still be starting up or recovering.
		select {
		case <-ctx.Done():
			return errorf("connect to %s as %s: %w (server log: %s)", i.runDir, Superuser, err, i.logFile)
		case <-time.After(100 * time.Millisecond):
		}
	}
	defer conn.Close(context.WithoutCancel(ctx))

	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", Database).Scan(&exists); err != nil {
		return errorf("look up database %s: %w", Database, err)
	}
	if exists {
		return nil
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{Database}.Sanitize()); err != nil {
		return errorf("create database %s: %w", Database, err)
	}
	i.logger.Info("pgembed: created database", "database", Database)
	return nil
}

// run runs a server program, as the server's user when we are root, and
// returns its combined output.
func (i *Instance) run(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, program(i.binDir, name), args...)
	// Our working directory (say /root) may be closed to the server's user.
	cmd.Dir = i.dataDir
	cmd.Env = serverEnv(i.runAs)
	// Its own process group: a Ctrl-C meant for us must not kill pg_ctl half
	// way through a stop; our ctx decides.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if i.runAs != nil {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: i.runAs.uid, Gid: i.runAs.gid, Groups: i.runAs.groups}
	}
	// pg_ctl start leaves a server behind; should it ever hold our pipe,
	// do not wait for it forever.
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	return strings.TrimSpace(out.String()), err
}

// serverEnv is our environment without PG* variables, which would redirect
// pg_ctl or the server (PGDATA, PGPORT, PGOPTIONS, ...).
func serverEnv(u *serverUser) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") || (u != nil && strings.HasPrefix(kv, "HOME=")) {
			continue
		}
		env = append(env, kv)
	}
	if u != nil {
		env = append(env, "HOME="+u.home)
	}
	return env
}

// confQuote quotes a value for postgresql.conf.
func confQuote(s string) string {
	return "'" + strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), "'", "''") + "'"
}

// tail returns the last n lines of a file, for error messages.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
