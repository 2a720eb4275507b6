package db

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Setting returns the value of the named setting, or ErrNotFound.
func (db *DB) Setting(ctx context.Context, name string) (string, error) {
	var value string
	err := db.pool.QueryRow(ctx, "SELECT value FROM settings WHERE name = $1", name).Scan(&value)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", fmt.Errorf("db: setting %s: %w", name, ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("db: setting %s: %w", name, err)
	}
	return value, nil
}

// SetSetting stores value under name, replacing any previous value.
func (db *DB) SetSetting(ctx context.Context, name, value string) error {
	_, err := db.pool.Exec(ctx, `
		INSERT INTO settings (name, value) VALUES ($1, $2)
		ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = now()`,
		name, value)
	if err != nil {
		return fmt.Errorf("db: set setting %s: %w", name, err)
	}
	return nil
}

// SettingOrCreate returns the named setting, storing create's value first if
// there is none. When several nodes race, the first insert wins and all of
// them return its value, which is what a per-installation salt needs. create
// runs only when the setting looks absent, and its value may be discarded.
func (db *DB) SettingOrCreate(ctx context.Context, name string, create func() (string, error)) (string, error) {
	value, err := db.Setting(ctx, name)
	if !errors.Is(err, ErrNotFound) {
		return value, err
	}
	value, err = create()
	if err != nil {
		return "", fmt.Errorf("db: create setting %s: %w", name, err)
	}
	if _, err := db.pool.Exec(ctx,
		"INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
		name, value); err != nil {
		return "", fmt.Errorf("db: create setting %s: %w", name, err)
	}
	return db.Setting(ctx, name)
}

// Settings returns the stored values of the named settings; absent names
// are absent from the map.
func (db *DB) Settings(ctx context.Context, names []string) (map[string]string, error) {
	rows, err := db.pool.Query(ctx, "SELECT name, value FROM settings WHERE name = ANY($1)", names)
	if err != nil {
		return nil, fmt.Errorf("db: settings: %w", err)
	}
	defer rows.Close()
	out := make(map[string]string, len(names))
	for rows.Next() {
		var n, v string
		if err := rows.Scan(&n, &v); err != nil {
			return nil, fmt.Errorf("db: settings: %w", err)
		}
		out[n] = v
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("db: settings: %w", err)
	}
	return out, nil
}

// SetSettings stores several settings in one transaction, so a reader
// never sees half of a change.
func (db *DB) SetSettings(ctx context.Context, values map[string]string) error {
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		for n, v := range values {
			if _, err := tx.Exec(ctx, `INSERT INTO settings (name, value) VALUES ($1, $2)
				ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value, updated_at = now()`, n, v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("db: set settings: %w", err)
	}
	return nil
}
