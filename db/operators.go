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
	// TOTPSecret is the enrolled base32 secret; empty when not enrolled.
	TOTPSecret    string
	FailedSignins int
	LockedUntil   time.Time // zero when not locked
}

// Second factors.
const (
	FactorNone = ""
	FactorTOTP = "totp"
	FactorDuo  = "duo"
)

// IsAdmin reports whether the operator may use the console.
func (o Operator) IsAdmin() bool { return o.Role == RoleAdmin && !o.Disabled }

const operatorColumns = "id, name, password_hash, role, disabled, created_at, factor, require_2fa, totp_secret, failed_signins, locked_until"

func scanOperator(row pgx.Row) (Operator, error) {
	var o Operator
	var locked *time.Time
	err := row.Scan(&o.ID, &o.Name, &o.PasswordHash, &o.Role, &o.Disabled, &o.CreatedAt,
		&o.Factor, &o.Require2FA, &o.TOTPSecret, &o.FailedSignins, &locked)
	if locked != nil {
		o.LockedUntil = *locked
	}
	return o, err
}

// AddOperator stores o; ErrConflict if the name is taken.
func (db *DB) AddOperator(ctx context.Context, o Operator) (Operator, error) {
	row := db.pool.QueryRow(ctx,
		"INSERT INTO operators (name, password_hash, role, disabled) VALUES ($1, $2, $3, $4) RETURNING "+operatorColumns,
		o.Name, o.PasswordHash, o.Role, o.Disabled)
	added, err := scanOperator(row)
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
	o, err := scanOperator(db.pool.QueryRow(ctx, "SELECT "+operatorColumns+" FROM operators WHERE name = $1", name))
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
	ops, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Operator, error) { return scanOperator(row) })
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

// DeleteExpiredSessions removes console sessions past their expiry.
func (db *DB) DeleteExpiredSessions(ctx context.Context) error {
	if _, err := db.pool.Exec(ctx, "DELETE FROM sessions WHERE expiry < now()"); err != nil {
		return fmt.Errorf("db: delete expired sessions: %w", err)
	}
	return nil
}
