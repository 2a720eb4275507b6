package db

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Key is a gateway key as stored: KeyID identifies it (in logs and the
// console), StoredKey checks a peer's proof of it (wire.StoredKey). Neither
// the key nor anything that proves it is stored.
type Key struct {
	ID        int64
	KeyID     string
	Label     string
	StoredKey []byte
	// V1Verifier is what a version 1 gateway stored instead of StoredKey
	// (wire.VerifierV1). A row has it, and no StoredKey, from before the
	// upgrade until ConvertKey replaces it; AddKey never sets it.
	V1Verifier []byte
	CreatedAt  time.Time
}

const keyColumns = "id, key_id, label, stored_key, v1_verifier, created_at"

func scanKey(row pgx.Row) (Key, error) {
	var k Key
	err := row.Scan(&k.ID, &k.KeyID, &k.Label, &k.StoredKey, &k.V1Verifier, &k.CreatedAt)
	return k, err
}

// AddKey stores k (its KeyID, Label and StoredKey) and returns it with ID
// and CreatedAt set. It returns ErrConflict if a key with k.KeyID exists.
func (db *DB) AddKey(ctx context.Context, k Key) (Key, error) {
	if len(k.StoredKey) == 0 {
		return Key{}, fmt.Errorf("db: add key %s: no stored key", k.KeyID)
	}
	row := db.pool.QueryRow(ctx,
		"INSERT INTO gateway_keys (key_id, label, stored_key) VALUES ($1, $2, $3) RETURNING "+keyColumns,
		k.KeyID, k.Label, k.StoredKey)
	added, err := scanKey(row)
	if isUniqueViolation(err) {
		return Key{}, fmt.Errorf("db: add key %s: %w", k.KeyID, ErrConflict)
	}
	if err != nil {
		return Key{}, fmt.Errorf("db: add key %s: %w", k.KeyID, err)
	}
	return added, nil
}

// Keys returns every gateway key, oldest first, rows not yet converted
// from version 1 included (StoredKey nil, V1Verifier set).
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

// ConvertKey replaces the version 1 verifier of the row with id by
// storedKey under the new keyID, and deletes the verifier. It does nothing
// (converted=false) when the row is gone or converted already, so nodes
// that convert at the same time do no harm. When a key with keyID exists
// already (the same key added again after the upgrade) the version 1 row
// is deleted instead: the key is there, with the newer row's label.
func (db *DB) ConvertKey(ctx context.Context, id int64, keyID string, storedKey []byte) (converted bool, err error) {
	if len(storedKey) == 0 {
		return false, fmt.Errorf("db: convert key %d: no stored key", id)
	}
	tag, err := db.pool.Exec(ctx,
		"UPDATE gateway_keys SET key_id = $2, stored_key = $3, v1_verifier = NULL WHERE id = $1 AND stored_key IS NULL",
		id, keyID, storedKey)
	if isUniqueViolation(err) {
		tag, err = db.pool.Exec(ctx, "DELETE FROM gateway_keys WHERE id = $1 AND stored_key IS NULL", id)
		if err != nil {
			return false, fmt.Errorf("db: convert key %d to %s: delete the duplicate: %w", id, keyID, err)
		}
		return tag.RowsAffected() > 0, nil
	}
	if err != nil {
		return false, fmt.Errorf("db: convert key %d to %s: %w", id, keyID, err)
	}
	return tag.RowsAffected() > 0, nil
}
