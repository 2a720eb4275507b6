package db

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/switchboard/switchboard/internal/auth/sealed"
)

// SettingDuoSecretKey is the Duo Auth API secret key: a setting kept
// sealed (see UseSecretsKey).
const SettingDuoSecretKey = "duo_secret_key"

// secretSettings are the settings stored sealed, each with the associated
// data "setting:"+name.
var secretSettings = []string{SettingDuoSecretKey}

func isSecretSetting(name string) bool { return slices.Contains(secretSettings, name) }

// ErrSecretUnreadable is a sealed secret that cannot be opened: the
// secrets key is not the one that sealed it (secrets.key was lost or
// replaced, or this node has another key than the node that wrote it), or
// no key is in use.
var ErrSecretUnreadable = errors.New("the stored secret cannot be decrypted with this gateway's secrets key")

// UseSecretsKey makes the store seal TOTP secrets and secret settings
// when it writes them and open them when it reads them. The gateway gives
// it its key before anything reads or writes those; a DB without a key (a
// command-line tool that writes no secrets, a test) stores values as
// given, and reports sealed ones as unreadable (Operator.TOTPUnreadable,
// ErrSecretUnreadable).
func (db *DB) UseSecretsKey(box *sealed.Box) { db.secrets.Store(box) }

// seal is what is stored of value under ad.
func (db *DB) seal(value, ad string) (string, error) {
	box := db.secrets.Load()
	if box == nil || value == "" {
		return value, nil
	}
	s, err := box.SealString(value, ad)
	if err != nil {
		return "", fmt.Errorf("db: seal secret: %w", err)
	}
	return s, nil
}

// open is the clear value of a stored one: a value stored before
// encryption at rest is returned as it is.
func (db *DB) open(stored, ad string) (string, error) {
	if !sealed.IsSealed(stored) {
		return stored, nil
	}
	box := db.secrets.Load()
	if box == nil {
		return "", fmt.Errorf("%w: no secrets key in use", ErrSecretUnreadable)
	}
	v, err := box.OpenString(stored, ad)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrSecretUnreadable, err)
	}
	return v, nil
}

func settingAD(name string) string { return "setting:" + name }

// storedSetting is what is stored for a setting's value.
func (db *DB) storedSetting(name, value string) (string, error) {
	if !isSecretSetting(name) {
		return value, nil
	}
	return db.seal(value, settingAD(name))
}

// Setting returns the value of the named setting, or ErrNotFound; a
// secret one that cannot be opened is ErrSecretUnreadable.
func (db *DB) Setting(ctx context.Context, name string) (string, error) {
	var value string
	err := db.pool.QueryRow(ctx, "SELECT value FROM settings WHERE name = $1", name).Scan(&value)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", fmt.Errorf("db: setting %s: %w", name, ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("db: setting %s: %w", name, err)
	}
	if isSecretSetting(name) {
		if value, err = db.open(value, settingAD(name)); err != nil {
			return "", fmt.Errorf("db: setting %s: %w", name, err)
		}
	}
	return value, nil
}

// SetSetting stores value under name, replacing any previous value.
func (db *DB) SetSetting(ctx context.Context, name, value string) error {
	stored, err := db.storedSetting(name, value)
	if err != nil {
		return err
	}
	_, err = db.pool.Exec(ctx, `
		INSERT INTO settings (name, value) VALUES ($1, $2)
		ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = now()`,
		name, stored)
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
	stored, err := db.storedSetting(name, value)
	if err != nil {
		return "", err
	}
	if _, err := db.pool.Exec(ctx,
		"INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
		name, stored); err != nil {
		return "", fmt.Errorf("db: create setting %s: %w", name, err)
	}
	return db.Setting(ctx, name)
}

// Settings returns the stored values of the named settings; absent names
// are absent from the map. A secret setting that cannot be opened is
// absent too, and the error, which wraps ErrSecretUnreadable, comes with
// the map of all the others: a caller that does not need the secret can
// go on, and one that does not look fails closed.
func (db *DB) Settings(ctx context.Context, names []string) (map[string]string, error) {
	rows, err := db.pool.Query(ctx, "SELECT name, value FROM settings WHERE name = ANY($1)", names)
	if err != nil {
		return nil, fmt.Errorf("db: settings: %w", err)
	}
	defer rows.Close()
	out := make(map[string]string, len(names))
	var unreadable []string
	var openErr error
	for rows.Next() {
		var n, v string
		if err := rows.Scan(&n, &v); err != nil {
			return nil, fmt.Errorf("db: settings: %w", err)
		}
		if isSecretSetting(n) {
			if v, err = db.open(v, settingAD(n)); err != nil {
				unreadable, openErr = append(unreadable, n), err
				continue
			}
		}
		out[n] = v
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("db: settings: %w", err)
	}
	if openErr != nil {
		return out, fmt.Errorf("db: settings %s: %w", strings.Join(unreadable, ", "), openErr)
	}
	return out, nil
}

// SetSettings stores several settings in one transaction, so a reader
// never sees half of a change.
func (db *DB) SetSettings(ctx context.Context, values map[string]string) error {
	stored := make(map[string]string, len(values))
	for n, v := range values {
		s, err := db.storedSetting(n, v)
		if err != nil {
			return err
		}
		stored[n] = s
	}
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		for n, v := range stored {
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

// SecretsReport is what SealClearSecrets did and found.
type SecretsReport struct {
	// Sealed counts the clear values it sealed.
	Sealed int
	// Unreadable names the sealed values the key in use cannot open, as
	// "TOTP of operator NAME" or "setting NAME", each with the reason.
	Unreadable []string
}

// SealClearSecrets seals, in place, the TOTP secrets and secret settings
// still stored in clear (written before encryption at rest, or by a node
// without a key), and lists the sealed ones the key in use cannot open. It
// is idempotent, and safe while other nodes run: the rows are locked
// while they are sealed.
func (db *DB) SealClearSecrets(ctx context.Context) (SecretsReport, error) {
	box := db.secrets.Load()
	if box == nil {
		return SecretsReport{}, errors.New("db: seal secrets: no secrets key in use")
	}
	var rep SecretsReport
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		rep = SecretsReport{}
		// The lock an UPDATE takes, up front: UpdateOperator's LOCK TABLE
		// then waits for this transaction instead of deadlocking with it.
		if _, err := tx.Exec(ctx, "LOCK TABLE operators IN ROW EXCLUSIVE MODE"); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, "SELECT id, name, totp_secret FROM operators WHERE totp_secret <> '' ORDER BY id FOR UPDATE")
		if err != nil {
			return err
		}
		type row struct {
			id          int64
			name, value string
		}
		ops, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
			var o row
			return o, r.Scan(&o.id, &o.name, &o.value)
		})
		if err != nil {
			return err
		}
		for _, o := range ops {
			ad := totpAD(o.name)
			if sealed.IsSealed(o.value) {
				if _, err := box.OpenString(o.value, ad); err != nil {
					rep.Unreadable = append(rep.Unreadable, fmt.Sprintf("TOTP of operator %s (%v)", o.name, err))
				}
				continue
			}
			s, err := box.SealString(o.value, ad)
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, "UPDATE operators SET totp_secret = $2 WHERE id = $1", o.id, s); err != nil {
				return err
			}
			rep.Sealed++
		}
		rows, err = tx.Query(ctx, "SELECT name, value FROM settings WHERE name = ANY($1) AND value <> '' ORDER BY name FOR UPDATE", secretSettings)
		if err != nil {
			return err
		}
		sets, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
			var o row
			return o, r.Scan(&o.name, &o.value)
		})
		if err != nil {
			return err
		}
		for _, o := range sets {
			ad := settingAD(o.name)
			if sealed.IsSealed(o.value) {
				if _, err := box.OpenString(o.value, ad); err != nil {
					rep.Unreadable = append(rep.Unreadable, fmt.Sprintf("setting %s (%v)", o.name, err))
				}
				continue
			}
			s, err := box.SealString(o.value, ad)
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, "UPDATE settings SET value = $2 WHERE name = $1", o.name, s); err != nil {
				return err
			}
			rep.Sealed++
		}
		return nil
	})
	if err != nil {
		return SecretsReport{}, fmt.Errorf("db: seal secrets: %w", err)
	}
	return rep, nil
}
