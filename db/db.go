// Package db is Switchboard's PostgreSQL store: configuration, gateway keys
// and audit events, one file per aggregate, all methods on DB. Open applies
// the embedded migrations, so a gateway node always runs against the schema
// it was built for.
package db

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

	"github.com/switchboard/switchboard/internal/auth/sealed"
	"github.com/switchboard/switchboard/migrations"
)

var (
	// ErrNotFound is returned when the requested row does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict is returned when a row with the same unique key exists.
	ErrConflict = errors.New("already exists")
)

// migrationLockID names the advisory lock that serialises migrations when
// several gateway nodes start at once. Arbitrary, but fixed forever.
const migrationLockID int64 = 0x5357_4254_4d49_4752 // "SWBTMIGR"

// DB is the store. It is safe for concurrent use.
type DB struct {
	pool   *pgxpool.Pool
	logger *slog.Logger
	// secrets seals TOTP secrets and secret settings; see UseSecretsKey.
	secrets atomic.Pointer[sealed.Box]
}

// Open connects to the database at url (a pgx connection string), checks
// that it answers, and brings its schema up to date.
func Open(ctx context.Context, url string, logger *slog.Logger) (*DB, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgx's parse errors can quote the URL, password included.
		return nil, errors.New("db: parse database URL: invalid connection string")
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("db: open: %w", err)
	}
	db := &DB{pool: pool, logger: logger}
	if err := db.Ping(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	if err := db.migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return db, nil
}

// Close waits for queries in progress and closes every connection.
func (db *DB) Close() { db.pool.Close() }

// Ping checks that the database answers.
func (db *DB) Ping(ctx context.Context) error {
	if err := db.pool.Ping(ctx); err != nil {
		return fmt.Errorf("db: ping: %w", err)
	}
	return nil
}

// migrate applies pending migrations, each in its own transaction. A
// transaction-level advisory lock, held on a connection of its own, makes
// concurrent Opens wait for each other; it is released when that
// transaction ends, even if this process dies. (goose's own session locker
// polls every few seconds, which slows every concurrent start.)
func (db *DB) migrate(ctx context.Context) error {
	sqlDB := stdlib.OpenDBFromPool(db.pool)
	defer sqlDB.Close()
	provider, err := goose.NewProvider(goose.DialectPostgres, sqlDB, migrations.FS,
		goose.WithDisableGlobalRegistry(true),
		goose.WithSlog(db.logger),
	)
	if err != nil {
		return fmt.Errorf("db: migrate: %w", err)
	}
	err = pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", migrationLockID); err != nil {
			return fmt.Errorf("lock: %w", err)
		}
		results, err := provider.Up(ctx)
		for _, r := range results {
			db.logger.Info("db: applied migration", "source", r.Source.Path, "duration", r.Duration)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("db: migrate: %w", err)
	}
	return nil
}

// isUniqueViolation reports whether err is PostgreSQL's unique_violation.
func isUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505"
}

// Pool is the connection pool, for libraries that take one (the console's
// session store).
func (db *DB) Pool() *pgxpool.Pool { return db.pool }
