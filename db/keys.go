package db

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Key is a gateway key as stored: KeyID identifies it (in logs and the
// console), Verifier checks a presented secret. The secret itself is never
// stored.
type Key struct {
	ID        int64
	KeyID     string
	Label     string
	Verifier  []byte
	CreatedAt time.Time
}

const keyColumns = "id, key_id, label, verifier, created_at"

func scanKey(row pgx.Row) (Key, error) {
	var k Key
	err := row.Scan(&k.ID, &k.KeyID, &k.Label, &k.Verifier, &k.CreatedAt)
	return k, err
}

// AddKey stores k and returns it with ID and CreatedAt set. It returns
// ErrConflict if a key with k.KeyID exists.
func (db *DB) AddKey(ctx context.Context, k Key) (Key, error) {
	row := db.pool.QueryRow(ctx,
		"INSERT INTO gateway_keys (key_id, label, verifier) VALUES ($1, $2, $3) RETURNING "+keyColumns,
		k.KeyID, k.Label, k.Verifier)
	added, err := scanKey(row)
	if isUniqueViolation(err) {
		return Key{}, fmt.Errorf("db: add key %s: %w", k.KeyID, ErrConflict)
	}
	if err != nil {
		return Key{}, fmt.Errorf("db: add key %s: %w", k.KeyID, err)
	}
	return added, nil
}

// Keys returns every gateway key, oldest first.
func (db *DB) Keys(ctx context.Context) ([]Key, error) {
	rows, err := db.pool.Query(ctx, "SELECT "+keyColumns+" FROM gateway_keys ORDER BY id")
	if err != nil {
		return nil, fmt.Errorf("db: keys: %w", err)
	}
	keys, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Key, error) { return scanKey(row) })
	if err != nil {
		return nil, fmt.Errorf("db: keys: %w", err)
	}
	return keys, nil
}

// Key returns the key with keyID, or ErrNotFound.
func (db *DB) Key(ctx context.Context, keyID string) (Key, error) {
	k, err := scanKey(db.pool.QueryRow(ctx, "SELECT "+keyColumns+" FROM gateway_keys WHERE key_id = $1", keyID))
	if errors.Is(err, pgx.ErrNoRows) {
		return Key{}, fmt.Errorf("db: key %s: %w", keyID, ErrNotFound)
	}
	if err != nil {
		return Key{}, fmt.Errorf("db: key %s: %w", keyID, err)
	}
	return k, nil
}

// RemoveKey deletes the key with keyID, or returns ErrNotFound.
func (db *DB) RemoveKey(ctx context.Context, keyID string) error {
	tag, err := db.pool.Exec(ctx, "DELETE FROM gateway_keys WHERE key_id = $1", keyID)
	if err != nil {
		return fmt.Errorf("db: remove key %s: %w", keyID, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("db: remove key %s: %w", keyID, ErrNotFound)
	}
	return nil
}

// UpdateKeyLabel sets the label of the key with keyID, or returns ErrNotFound.
func (db *DB) UpdateKeyLabel(ctx context.Context, keyID, label string) error {
	tag, err := db.pool.Exec(ctx, "UPDATE gateway_keys SET label = $2 WHERE key_id = $1", keyID, label)
	if err != nil {
		return fmt.Errorf("db: update key %s: %w", keyID, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("db: update key %s: %w", keyID, ErrNotFound)
	}
	return nil
}
