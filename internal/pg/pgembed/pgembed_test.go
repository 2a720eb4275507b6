//go:build unix

package pgembed

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// tempDataDir returns a fresh directory the server's user can enter when the
// test runs as root (t.TempDir's directories are 0700).
func tempDataDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "pgembed-test-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func skipWithoutPostgres(t *testing.T) {
	t.Helper()
	if _, err := Find(); errors.Is(err, ErrNotInstalled) {
		t.Skip(err)
	}
}

func mustStart(t *testing.T, ctx context.Context, dir string) *Instance {
	t.Helper()
	inst, err := Start(ctx, dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := inst.Stop(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return inst
}

func queryOne(t *testing.T, ctx context.Context, url, sql string) string {
	t.Helper()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	defer conn.Close(ctx)
	var s string
	if err := conn.QueryRow(ctx, sql).Scan(&s); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return s
}

func TestStartStop(t *testing.T) {
	skipWithoutPostgres(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	dir := tempDataDir(t)

	first, err := Start(ctx, dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if first.Attached() {
		t.Error("first Start attached; want it to start the server")
	}
	if got := queryOne(t, ctx, first.URL(), "SELECT current_database()"); got != Database {
		t.Errorf("current_database() = %q, want %q", got, Database)
	}
	if got := queryOne(t, ctx, first.URL(), "SHOW listen_addresses"); got != "" {
		t.Errorf("listen_addresses = %q, want empty (socket only)", got)
	}
	t.Cleanup(func() { first.Stop(context.Background()) })
	conn, err := pgx.Connect(ctx, first.URL())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE kept (x text)"); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)

	t.Run("second start attaches", func(t *testing.T) {
		second, err := Start(ctx, dir, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		if !second.Attached() {
			t.Error("second Start did not attach")
		}
		if err := second.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		// Stopping the attached instance must leave the server up.
		queryOne(t, ctx, first.URL(), "SELECT 'still up'")
	})

	if err := first.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "postgres", "postmaster.pid")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("postmaster.pid after Stop: %v; want it gone", err)
	}

	t.Run("restart reuses data", func(t *testing.T) {
		again := mustStart(t, ctx, dir)
		if again.Attached() {
			t.Error("Start after Stop attached")
		}
		if got := queryOne(t, ctx, again.URL(), "SELECT count(*)::text FROM kept"); got != "0" {
			t.Errorf("count = %q, want 0", got)
		}
	})
}

func TestConcurrentStart(t *testing.T) {
	skipWithoutPostgres(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	dir := tempDataDir(t)

	const n = 3
	insts := make(chan *Instance, n)
	errs := make(chan error, n)
	for range n {
		go func() {
			inst, err := Start(ctx, dir, slog.New(slog.DiscardHandler))
			errs <- err
			insts <- inst
		}()
	}
	owners := 0
	var all []*Instance
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
		inst := <-insts
		all = append(all, inst)
		if !inst.Attached() {
			owners++
		}
	}
	if owners != 1 {
		t.Errorf("%d instances started the server, want exactly 1", owners)
	}
	for _, inst := range all {
		queryOne(t, ctx, inst.URL(), "SELECT 'ok'")
	}
	for _, inst := range all {
		if err := inst.Stop(ctx); err != nil {
			t.Error(err)
		}
	}
}

func TestSocketPathTooLong(t *testing.T) {
	skipWithoutPostgres(t)
	dir := filepath.Join(tempDataDir(t), strings.Repeat("x", 100))
	_, err := Start(t.Context(), dir, nil)
	if err == nil || !strings.Contains(err.Error(), "choose a shorter --data-dir") {
		t.Fatalf("Start = %v, want a socket path error", err)
	}
}

func TestUntraversableDir(t *testing.T) {
	skipWithoutPostgres(t)
	if os.Geteuid() != 0 {
		t.Skip("only root runs the server as another user")
	}
	parent, err := os.MkdirTemp("", "pgembed-closed-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(parent) })
	if err := os.Chmod(parent, 0o700); err != nil {
		t.Fatal(err)
	}
	_, err = Start(t.Context(), filepath.Join(parent, "data"), nil)
	if err == nil || !strings.Contains(err.Error(), "chmod o+x "+parent) {
		t.Fatalf("Start = %v, want advice to chmod o+x %s", err, parent)
	}
}

func TestConfQuote(t *testing.T) {
	for in, want := range map[string]string{
		"/tmp/x":    "'/tmp/x'",
		"/tmp/o'k":  "'/tmp/o''k'",
		`/tmp/a\b`:  `'/tmp/a\\b'`,
		"/tmp/a b/": "'/tmp/a b/'",
	} {
		if got := confQuote(in); got != want {
			t.Errorf("confQuote(%q) = %s, want %s", in, got, want)
		}
	}
}

// TestStartNotFooledByLockFile covers the postmaster.pid that a server killed
// long ago leaves behind, whose PID now belongs to another program, and a
// server that is shutting down: Start must start a server of its own, not
// attach to either.
func TestStartNotFooledByLockFile(t *testing.T) {
	skipWithoutPostgres(t)
	t.Parallel()
	setupCtx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	dir := tempDataDir(t)
	logger := testLogger(t)

	first, err := Start(setupCtx, dir, logger)
	if err != nil {
		t.Fatal(err)
	}
	pidPath := filepath.Join(first.pgData, "postmaster.pid")
	pidFileText, err := os.ReadFile(pidPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Stop(setupCtx); err != nil {
		t.Fatal(err)
	}

	// writeStale leaves lock files as a server with PID pid that was killed
	// would have: postmaster.pid and the socket's lock file.
	writeStale := func(t *testing.T, pid int) {
		t.Helper()
		_, rest, _ := strings.Cut(string(pidFileText), "\n")
		text := fmt.Sprintf("%d\n%s", pid, rest)
		for _, p := range []string{pidPath, first.socketPath() + ".lock"} {
			if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
			// The server's files belong to the server's user.
			if first.runAs != nil {
				if err := os.Chown(p, int(first.runAs.uid), int(first.runAs.gid)); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	startFresh := func(t *testing.T, ctx context.Context) *Instance {
		t.Helper()
		began := time.Now()
		inst, err := Start(ctx, dir, logger)
		if err != nil {
			t.Fatal(err)
		}
		// Should the test fail half way; a second Stop does nothing.
		t.Cleanup(func() { inst.Stop(context.Background()) })
		if inst.Attached() {
			t.Fatal("Start attached; want it to start a server of its own")
		}
		if got := queryOne(t, ctx, inst.URL(), "SELECT 'up'"); got != "up" {
			t.Fatalf("query = %q", got)
		}
		t.Logf("started in %v", time.Since(began).Round(time.Millisecond))
		return inst
	}

	t.Run("pid of a sleep", func(t *testing.T) {
		ctx := restartContext(t)
		sleep := exec.Command("sleep", "60")
		// As the server's user, so that kill(pid, 0) from pg_ctl and the
		// server succeeds as it would for a postmaster's zombie.
		if first.runAs != nil {
			sleep.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: first.runAs.uid, Gid: first.runAs.gid}}
		}
		if err := sleep.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() {
			sleep.Process.Kill()
			sleep.Wait()
		}()
		writeStale(t, sleep.Process.Pid)
		if err := startFresh(t, ctx).Stop(ctx); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("pid of this test", func(t *testing.T) {
		ctx := restartContext(t)
		writeStale(t, os.Getpid())
		if err := startFresh(t, ctx).Stop(ctx); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("shutting down", func(t *testing.T) {
		ctx := restartContext(t)
		old, err := Start(ctx, dir, logger)
		if err != nil {
			t.Fatal(err)
		}
		conn, err := pgx.Connect(ctx, old.URL())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		text, err := os.ReadFile(pidPath)
		if err != nil {
			t.Fatal(err)
		}
		first, _, _ := strings.Cut(string(text), "\n")
		pid, err := strconv.Atoi(first)
		if err != nil {
			t.Fatal(err)
		}
		// A smart shutdown waits for our open connection to end, so the
		// server stays in "stopping" for as long as we like.
		if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		for !strings.Contains(readFileOrEmpty(pidPath), "\nstopping") {
			if ctx.Err() != nil {
				t.Fatal("server never reported stopping in postmaster.pid")
			}
			time.Sleep(5 * time.Millisecond)
		}

		type result struct {
			inst *Instance
			err  error
		}
		done := make(chan result, 1)
		go func() {
			inst, err := Start(ctx, dir, logger)
			done <- result{inst, err}
		}()
		select {
		case r := <-done:
			if r.err == nil && r.inst.Attached() {
				r.inst.Stop(ctx)
			}
			t.Fatalf("Start returned while the old server was shutting down: attached=%v, err=%v", r.err == nil && r.inst.Attached(), r.err)
		case <-time.After(300 * time.Millisecond):
		}
		conn.Close(ctx) // lets the old server exit
		r := <-done
		if r.err != nil {
			t.Fatal(r.err)
		}
		defer r.inst.Stop(ctx)
		if r.inst.Attached() {
			t.Fatal("Start attached to a server that was shutting down")
		}
		if got := queryOne(t, ctx, r.inst.URL(), "SELECT 'up'"); got != "up" {
			t.Fatalf("query = %q", got)
		}
	})
}

func readFileOrEmpty(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

// testLogger shows pgembed's log with the output of a failed (or -v) test.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), nil))
}

// restartTimeout bounds a Start on an existing cluster in the tests. It is
// well under readyTimeout, so that a Start that attaches to a dead server
// and waits for it fails.
const restartTimeout = 20 * time.Second

func restartContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), restartTimeout)
	t.Cleanup(cancel)
	return ctx
}
