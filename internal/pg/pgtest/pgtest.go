// Package pgtest gives tests a real, empty PostgreSQL database of their own.
//
// The server is the one named by SWITCHBOARD_TEST_DATABASE_URL (an admin
// connection URL, e.g. postgres://postgres@/postgres?host=/var/run/postgresql)
// or, when that is unset, a private server started with pgembed in
// $TMPDIR/switchboard-pgtest-<uid>. go test runs the test binaries of several
// packages at once; they share that one server, and pgembed's file lock makes
// the first start it and the others attach. Tests never stop it: starting
// PostgreSQL costs about a second, so it is kept for the next run. Stop it by
// hand with pg_ctl stop -D $TMPDIR/switchboard-pgtest-<uid>/postgres.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchboard/switchboard/db"
	"github.com/switchboard/switchboard/internal/pg/pgembed"
)

// EnvURL names the environment variable with an admin connection URL for an
// existing server; the role must be allowed to create databases.
const EnvURL = "SWITCHBOARD_TEST_DATABASE_URL"

// timeout bounds each helper's work; a test that needs a database should
// fail, not hang, when the server is unwell.
const timeout = 60 * time.Second

// adminURL finds or starts the server once per test binary.
var adminURL = sync.OnceValues(func() (string, error) {
	if u := os.Getenv(EnvURL); u != "" {
		return u, nil
	}
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("switchboard-pgtest-%d", os.Getuid()))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	// When the tests run as root, the server runs as the postgres user,
	// which must be able to enter dir.
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	inst, err := pgembed.Start(ctx, dir, nil)
	if err != nil {
		return "", err
	}
	// Deliberately never stopped: other test binaries may be using it.
	return inst.URL(), nil
})

// MustURL returns the connection URL of a fresh, empty database that exists
// for the rest of the test and is dropped in tb.Cleanup.
func MustURL(tb testing.TB) string {
	tb.Helper()
	admin, err := adminURL()
	if err != nil {
		tb.Fatalf("pgtest: start PostgreSQL: %v", err)
	}
	var b [8]byte
	rand.Read(b[:])
	name := "sbtest_" + hex.EncodeToString(b[:])

	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := adminExec(ctx, admin, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		tb.Fatalf("pgtest: create database: %v", err)
	}
	tb.Cleanup(func() {
		// The test's own context is already cancelled by now.
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		// FORCE: a test that leaked a connection must not leak a database.
		if err := adminExec(ctx, admin, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			tb.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})
	u, err := withDatabase(admin, name)
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	return u
}

// MustDB opens a db.DB (migrations applied) on a fresh database and closes
// it in tb.Cleanup.
func MustDB(tb testing.TB) *db.DB {
	tb.Helper()
	u := MustURL(tb)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	d, err := db.Open(ctx, u, nil)
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	// Registered after MustURL's cleanup, so it runs before the drop.
	tb.Cleanup(d.Close)
	return d
}

func adminExec(ctx context.Context, admin, sql string) error {
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

// withDatabase returns connURL with its database replaced by name; connURL
// may be a URL or a keyword/value string.
func withDatabase(connURL, name string) (string, error) {
	if strings.HasPrefix(connURL, "postgres://") || strings.HasPrefix(connURL, "postgresql://") {
		u, err := url.Parse(connURL)
		if err != nil {
			return "", fmt.Errorf("parse %s: invalid URL", EnvURL)
		}
		u.Path = "/" + name
		u.RawPath = ""
		q := u.Query()
		q.Del("dbname")
		u.RawQuery = q.Encode()
		return u.String(), nil
	}
	// In keyword/value strings the last occurrence of a keyword wins.
	return connURL + " dbname=" + name, nil
}
