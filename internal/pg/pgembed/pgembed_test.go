//go:build unix

package pgembed

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
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
