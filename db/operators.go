package db

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Operator roles.
const (
	RoleAdmin    = "admin"
	RoleOperator = "operator"
)

// Operator is a named person allowed to run Controls or administer.
type Operator struct {
	ID           int64
	Name         string
	PasswordHash string
	Role         string
	Disabled     bool
	CreatedAt    time.Time

	// Factor is the second factor the operator proves after the password:
	// FactorNone, FactorTOTP or FactorDuo.
	Factor string
	// Require2FA asks for Factor when this operator starts a remote
	// connection from a Control (the console always asks for it).
	Require2FA bool
	// RemoteAccess is what an operator who is not an admin may reach from
	// the browser console: "client:NAME" and "key:KEY-ID" entries.
	RemoteAccess []string
	// TOTPSecret is the enrolled base32 secret; empty when not enrolled.
	// It is stored sealed (see UseSecretsKey) and read back in clear.
	TOTPSecret string
	// TOTPUnreadable tells that a secret is enrolled but cannot be
	// decrypted with the secrets key in use: TOTPSecret then holds the
	// sealed text (so that it is not empty and the factor is still asked
	// for, and fails), never a usable secret. `operators reset-totp`
	// clears it.
	TOTPUnreadable bool
	// FailedSignins counts the sign-in attempts recorded for this operator
	// in its (operator, address) pairs, the pending ones included; pairs
	// that no longer count are deleted within minutes.
	FailedSignins int
	// LockedUntil is the end of the latest lock among this operator's
	// (operator, address) pairs; zero when none is locked. The operator
	// is refused only from those addresses.
	LockedUntil time.Time
	// LastSigninAt is when the operator last signed in with a password
	// (console or Control), from LastSigninAddress (an IPv4 address or an
	// IPv6 /64); zero when never.
	LastSigninAt      time.Time
	LastSigninAddress string
	// RecoveryCodesLeft counts the operator's unused recovery codes.
	RecoveryCodesLeft int
}

// Second factors.
const (
	FactorNone = ""
	FactorTOTP = "totp"
	FactorDuo  = "duo"
)

// IsAdmin reports whether the operator may use the console.
func (o Operator) IsAdmin() bool { return o.Role == RoleAdmin && !o.Disabled }

// operatorColumns are an Operator's columns, for queries FROM (or
// RETURNING of) operators; the throttle fields come from signin_throttle.
const operatorColumns = `operators.id, name, password_hash, role, disabled, created_at, factor, require_2fa, totp_secret,
	(SELECT coalesce(sum(t.attempts), 0)::int FROM signin_throttle t WHERE t.operator_id = operators.id),
	(SELECT max(t.locked_until) FROM signin_throttle t WHERE t.operator_id = operators.id AND t.locked_until > now()),
	last_signin_at, last_signin_address,
	(SELECT count(*)::int FROM operator_recovery_codes c WHERE c.operator_id = operators.id AND c.used_at IS NULL),
	remote_access`

// scanOperator reads an operator and opens its TOTP secret.
func (db *DB) scanOperator(row pgx.Row) (Operator, error) {
	var o Operator
	var locked, lastSignin *time.Time
	err := row.Scan(&o.ID, &o.Name, &o.PasswordHash, &o.Role, &o.Disabled, &o.CreatedAt,
		&o.Factor, &o.Require2FA, &o.TOTPSecret, &o.FailedSignins, &locked,
		&lastSignin, &o.LastSigninAddress, &o.RecoveryCodesLeft, &o.RemoteAccess)
	if err != nil {
		return Operator{}, err
	}
	if locked != nil {
		o.LockedUntil = *locked
	}
	if lastSignin != nil {
		o.LastSigninAt = *lastSignin
	}
	if secret, err := db.open(o.TOTPSecret, totpAD(o.Name)); err != nil {
		o.TOTPUnreadable = true
	} else {
		o.TOTPSecret = secret
	}
	return o, nil
}

// totpAD binds a sealed TOTP secret to its operator. Operators cannot be
// renamed; a rename would have to seal the secret again.
func totpAD(name string) string { return "totp:" + name }

// AddOperator stores o; ErrConflict if the name is taken.
func (db *DB) AddOperator(ctx context.Context, o Operator) (Operator, error) {
	row := db.pool.QueryRow(ctx,
		"INSERT INTO operators (name, password_hash, role, disabled) VALUES ($1, $2, $3, $4) RETURNING "+operatorColumns,
		o.Name, o.PasswordHash, o.Role, o.Disabled)
	added, err := db.scanOperator(row)
	if isUniqueViolation(err) {
		return Operator{}, fmt.Errorf("db: add operator %s: %w", o.Name, ErrConflict)
	}
	if err != nil {
		return Operator{}, fmt.Errorf("db: add operator %s: %w", o.Name, err)
	}
	return added, nil
}

// Operator returns the operator called name, or ErrNotFound.
func (db *DB) Operator(ctx context.Context, name string) (Operator, error) {
	o, err := db.scanOperator(db.pool.QueryRow(ctx, "SELECT "+operatorColumns+" FROM operators WHERE name = $1", name))
	if errors.Is(err, pgx.ErrNoRows) {
		return Operator{}, fmt.Errorf("db: operator %s: %w", name, ErrNotFound)
	}
	if err != nil {
		return Operator{}, fmt.Errorf("db: operator %s: %w", name, err)
	}
	return o, nil
}

// Operators returns every operator by name.
func (db *DB) Operators(ctx context.Context) ([]Operator, error) {
	rows, err := db.pool.Query(ctx, "SELECT "+operatorColumns+" FROM operators ORDER BY name")
	if err != nil {
		return nil, fmt.Errorf("db: operators: %w", err)
	}
	ops, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Operator, error) { return db.scanOperator(row) })
	if err != nil {
		return nil, fmt.Errorf("db: operators: %w", err)
	}
	return ops, nil
}

// CountAdmins counts enabled admins.
func (db *DB) CountAdmins(ctx context.Context) (int, error) {
	var n int
	err := db.pool.QueryRow(ctx, "SELECT count(*) FROM operators WHERE role = 'admin' AND NOT disabled").Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("db: count admins: %w", err)
	}
	return n, nil
}

// UpdateOperator changes one operator's password hash (when not empty),
// role and disabled flag. It refuses, with ErrLastAdmin, a change that
// would leave no enabled admin, so nobody can lock everyone out.
func (db *DB) UpdateOperator(ctx context.Context, name, passwordHash, role string, disabled bool) error {
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		// Serialise admin changes: two admins demoting each other at once
		// must not both succeed.
		if _, err := tx.Exec(ctx, "LOCK TABLE operators IN SHARE ROW EXCLUSIVE MODE"); err != nil {
			return err
		}
		const countAdmins = "SELECT count(*) FROM operators WHERE role = 'admin' AND NOT disabled"
		var before, after int
		if err := tx.QueryRow(ctx, countAdmins).Scan(&before); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `UPDATE operators SET
			password_hash = CASE WHEN $2 = '' THEN password_hash ELSE $2 END,
			role = $3, disabled = $4, updated_at = now() WHERE name = $1`, name, passwordHash, role, disabled)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return ErrNotFound
		}
		if err := tx.QueryRow(ctx, countAdmins).Scan(&after); err != nil {
			return err
		}
		if before > 0 && after == 0 {
			return ErrLastAdmin
		}
		if passwordHash != "" || disabled {
			// A new password or a disabled account ends every Control's
			// kept sign-in: whoever knew the old password is out.
			_, err := tx.Exec(ctx, "DELETE FROM control_tokens WHERE operator_id = (SELECT id FROM operators WHERE name = $1)", name)
			return err
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("db: update operator %s: %w", name, err)
	}
	return nil
}

// ErrLastAdmin refuses a change that would leave no enabled admin.
var ErrLastAdmin = errors.New("at least one enabled admin must remain")

// DeleteOperator removes the operator called name, with its kept Control
// sign-ins, throttle state and recovery codes (ON DELETE CASCADE); its
// events stay, naming it. It refuses with ErrLastAdmin to delete the last
// enabled admin, and with ErrNotFound a name that is no operator.
func (db *DB) DeleteOperator(ctx context.Context, name string) error {
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		// As UpdateOperator: two admins deleting each other at once must
		// not both succeed.
		if _, err := tx.Exec(ctx, "LOCK TABLE operators IN SHARE ROW EXCLUSIVE MODE"); err != nil {
			return err
		}
		var wasAdmin bool
		err := tx.QueryRow(ctx, "DELETE FROM operators WHERE name = $1 RETURNING role = 'admin' AND NOT disabled", name).Scan(&wasAdmin)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		if !wasAdmin {
			return nil
		}
		var left int
		if err := tx.QueryRow(ctx, "SELECT count(*) FROM operators WHERE role = 'admin' AND NOT disabled").Scan(&left); err != nil {
			return err
		}
		if left == 0 {
			return ErrLastAdmin
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("db: delete operator %s: %w", name, err)
	}
	return nil
}

// SetPassword replaces the operator's password hash and ends its kept
// Control sign-ins: whoever knew the old password is out.
func (db *DB) SetPassword(ctx context.Context, id int64, passwordHash string) error {
	if passwordHash == "" {
		return errors.New("db: set password: empty hash")
	}
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, "UPDATE operators SET password_hash = $2, updated_at = now() WHERE id = $1", id, passwordHash)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return ErrNotFound
		}
		_, err = tx.Exec(ctx, "DELETE FROM control_tokens WHERE operator_id = $1", id)
		return err
	})
	if err != nil {
		return fmt.Errorf("db: set password of operator %d: %w", id, err)
	}
	return nil
}

// RecoveryCode is the stored hash of one unused recovery code.
type RecoveryCode struct {
	ID   int64
	Hash string // argon2id PHC string
}

// SetRecoveryCodes replaces the operator's recovery codes by these
// hashes (none: the operator has no codes).
func (db *DB) SetRecoveryCodes(ctx context.Context, id int64, hashes []string) error {
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "DELETE FROM operator_recovery_codes WHERE operator_id = $1", id); err != nil {
			return err
		}
		for _, h := range hashes {
			if _, err := tx.Exec(ctx, "INSERT INTO operator_recovery_codes (operator_id, code_hash) VALUES ($1, $2)", id, h); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("db: set recovery codes of operator %d: %w", id, err)
	}
	return nil
}

// RecoveryCodes lists the operator's unused recovery codes.
func (db *DB) RecoveryCodes(ctx context.Context, id int64) ([]RecoveryCode, error) {
	rows, err := db.pool.Query(ctx, `SELECT id, code_hash FROM operator_recovery_codes
		WHERE operator_id = $1 AND used_at IS NULL ORDER BY id`, id)
	if err != nil {
		return nil, fmt.Errorf("db: recovery codes of operator %d: %w", id, err)
	}
	codes, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (RecoveryCode, error) {
		var c RecoveryCode
		return c, row.Scan(&c.ID, &c.Hash)
	})
	if err != nil {
		return nil, fmt.Errorf("db: recovery codes of operator %d: %w", id, err)
	}
	return codes, nil
}

// UseRecoveryCode spends one recovery code; false when it was spent
// already (by a sign-in in parallel, perhaps on another node). left is
// how many unused codes remain.
func (db *DB) UseRecoveryCode(ctx context.Context, operatorID, codeID int64) (ok bool, left int, err error) {
	err = pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE operator_recovery_codes SET used_at = now()
			WHERE id = $1 AND operator_id = $2 AND used_at IS NULL`, codeID, operatorID)
		if err != nil {
			return err
		}
		ok = tag.RowsAffected() == 1
		return tx.QueryRow(ctx, `SELECT count(*) FROM operator_recovery_codes
			WHERE operator_id = $1 AND used_at IS NULL`, operatorID).Scan(&left)
	})
	if err != nil {
		return false, 0, fmt.Errorf("db: use recovery code: %w", err)
	}
	return ok, left, nil
}

// DeleteExpiredSessions removes console sessions past their expiry.
func (db *DB) DeleteExpiredSessions(ctx context.Context) error {
	if _, err := db.pool.Exec(ctx, "DELETE FROM sessions WHERE expiry < now()"); err != nil {
		return fmt.Errorf("db: delete expired sessions: %w", err)
	}
	return nil
}
