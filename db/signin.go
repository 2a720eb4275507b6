package db

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// HasOperators reports whether any operator exists: from then on Controls
// must sign in.
func (db *DB) HasOperators(ctx context.Context) (bool, error) {
	var ok bool
	if err := db.pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM operators)").Scan(&ok); err != nil {
		return false, fmt.Errorf("db: any operators: %w", err)
	}
	return ok, nil
}

// BeginSignin counts one sign-in attempt for the operator before its
// password or code is checked, and refuses it (false) while the account is
// locked or limit attempts are already pending or failed within lockFor.
// Counting first, in one statement, is what keeps parallel guesses from
// all being checked before the first failure is counted. Failures older
// than lockFor, and an expired lock, are forgotten.
func (db *DB) BeginSignin(ctx context.Context, id int64, limit int, lockFor time.Duration) (bool, error) {
	tag, err := db.pool.Exec(ctx, `
		UPDATE operators SET
			failed_signins = CASE
				WHEN locked_until <= now() OR last_attempt_at < now() - make_interval(secs => $3) THEN 1
				ELSE failed_signins + 1 END,
			locked_until = CASE WHEN locked_until <= now() THEN NULL ELSE locked_until END,
			last_attempt_at = now()
		WHERE id = $1
			AND (locked_until IS NULL OR locked_until <= now())
			AND (failed_signins < $2 OR last_attempt_at IS NULL OR last_attempt_at < now() - make_interval(secs => $3))`,
		id, limit, lockFor.Seconds())
	if err != nil {
		return false, fmt.Errorf("db: begin sign-in: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

// SigninFailed ends an attempt that failed: it stays counted, and when the
// count has reached limit the account is locked until now+lockFor. It
// reports whether this failure locked the account.
func (db *DB) SigninFailed(ctx context.Context, id int64, limit int, lockFor time.Duration) (locked bool, err error) {
	tag, err := db.pool.Exec(ctx, `
		UPDATE operators SET failed_signins = 0, locked_until = now() + make_interval(secs => $3)
		WHERE id = $1 AND failed_signins >= $2 AND (locked_until IS NULL OR locked_until <= now())`,
		id, limit, lockFor.Seconds())
	if err != nil {
		return false, fmt.Errorf("db: count failed sign-in: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

// SigninStepPassed uncounts an attempt whose step (the password) was
// right but whose sign-in goes on (the second factor counts again).
func (db *DB) SigninStepPassed(ctx context.Context, id int64) error {
	if _, err := db.pool.Exec(ctx, "UPDATE operators SET failed_signins = greatest(failed_signins - 1, 0) WHERE id = $1", id); err != nil {
		return fmt.Errorf("db: sign-in step passed: %w", err)
	}
	return nil
}

// SigninSucceeded clears the operator's failure count.
func (db *DB) SigninSucceeded(ctx context.Context, id int64) error {
	if _, err := db.pool.Exec(ctx, "UPDATE operators SET failed_signins = 0, locked_until = NULL WHERE id = $1", id); err != nil {
		return fmt.Errorf("db: clear failed sign-ins: %w", err)
	}
	return nil
}

// UseTOTPStep records that the operator's TOTP code for step was used. It
// succeeds only for a step later than any used before, so a code, once
// accepted, is refused from then on, on every gateway node.
func (db *DB) UseTOTPStep(ctx context.Context, id, step int64) (bool, error) {
	tag, err := db.pool.Exec(ctx, "UPDATE operators SET totp_last_step = $2 WHERE id = $1 AND totp_last_step < $2", id, step)
	if err != nil {
		return false, fmt.Errorf("db: use TOTP code: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

// SetTOTP enrols (or, with an empty secret, removes) the operator's TOTP
// secret. Enrolling makes TOTP the operator's factor when none was chosen;
// removing it drops TOTP as the factor.
func (db *DB) SetTOTP(ctx context.Context, name, secret string) error {
	tag, err := db.pool.Exec(ctx, `
		UPDATE operators SET totp_secret = $2, totp_last_step = 0,
			factor = CASE
				WHEN $2 <> '' AND factor = '' THEN 'totp'
				WHEN $2 = '' AND factor = 'totp' THEN ''
				ELSE factor END,
			updated_at = now()
		WHERE name = $1`, name, secret)
	if err != nil {
		return fmt.Errorf("db: set TOTP for %s: %w", name, err)
	}
	if tag.RowsAffected() > 0 {
		if err := db.RevokeOperatorTokens(ctx, name); err != nil {
			return err
		}
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("db: set TOTP for %s: %w", name, ErrNotFound)
	}
	return nil
}

// SetSecondFactor sets the operator's factor and whether remote connections
// need it. A change ends the operator's kept Control sign-ins, so that they
// sign in again under the new rule.
func (db *DB) SetSecondFactor(ctx context.Context, name, factor string, require bool) error {
	tag, err := db.pool.Exec(ctx, `WITH changed AS (
			UPDATE operators SET factor = $2, require_2fa = $3, updated_at = now()
			WHERE name = $1 AND (factor <> $2 OR require_2fa <> $3) RETURNING id),
		gone AS (DELETE FROM control_tokens WHERE operator_id IN (SELECT id FROM changed))
		SELECT 1 FROM operators WHERE name = $1`, name, factor, require)
	if err != nil {
		return fmt.Errorf("db: set second factor for %s: %w", name, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("db: set second factor for %s: %w", name, ErrNotFound)
	}
	return nil
}

// ControlToken is a Control's sign-in, kept for a short while.
type ControlToken struct {
	ID        int64
	Operator  string
	Control   string
	PublicIP  string
	CreatedAt time.Time
	ExpiresAt time.Time
	LastUsed  time.Time
	// SecondFactor tells whether the sign-in proved the second factor.
	SecondFactor bool
}

// AddControlToken stores the hash of a new token; secondFactor tells
// whether the sign-in proved the second factor.
func (db *DB) AddControlToken(ctx context.Context, hash []byte, operatorID int64, control, publicIP string, expires time.Time, secondFactor bool) error {
	_, err := db.pool.Exec(ctx, `INSERT INTO control_tokens (token_hash, operator_id, control, public_ip, expires_at, second_factor)
		VALUES ($1, $2, $3, $4, $5, $6)`, hash, operatorID, control, publicIP, expires, secondFactor)
	if err != nil {
		return fmt.Errorf("db: add control token: %w", err)
	}
	return nil
}

// UseControlToken returns the unexpired token with this hash, and its
// operator, and notes its use; ErrNotFound when there is none.
func (db *DB) UseControlToken(ctx context.Context, hash []byte) (ControlToken, Operator, error) {
	var id int64
	var t ControlToken
	err := db.pool.QueryRow(ctx, `UPDATE control_tokens SET last_used_at = now()
		WHERE token_hash = $1 AND expires_at > now()
		RETURNING operator_id, id, control, public_ip, created_at, expires_at, last_used_at, second_factor`, hash).
		Scan(&id, &t.ID, &t.Control, &t.PublicIP, &t.CreatedAt, &t.ExpiresAt, &t.LastUsed, &t.SecondFactor)
	if errors.Is(err, pgx.ErrNoRows) {
		return ControlToken{}, Operator{}, fmt.Errorf("db: control token: %w", ErrNotFound)
	}
	if err != nil {
		return ControlToken{}, Operator{}, fmt.Errorf("db: control token: %w", err)
	}
	o, err := scanOperator(db.pool.QueryRow(ctx, "SELECT "+operatorColumns+" FROM operators WHERE id = $1", id))
	if err != nil {
		return ControlToken{}, Operator{}, fmt.Errorf("db: control token's operator: %w", err)
	}
	t.Operator = o.Name
	return t, o, nil
}

// ControlTokens lists the unexpired tokens, newest first.
func (db *DB) ControlTokens(ctx context.Context) ([]ControlToken, error) {
	rows, err := db.pool.Query(ctx, `SELECT t.id, o.name, t.control, t.public_ip, t.created_at, t.expires_at, t.last_used_at
		FROM control_tokens t JOIN operators o ON o.id = t.operator_id
		WHERE t.expires_at > now() ORDER BY t.created_at DESC`)
	if err != nil {
		return nil, fmt.Errorf("db: control tokens: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (ControlToken, error) {
		var t ControlToken
		err := row.Scan(&t.ID, &t.Operator, &t.Control, &t.PublicIP, &t.CreatedAt, &t.ExpiresAt, &t.LastUsed)
		return t, err
	})
	if err != nil {
		return nil, fmt.Errorf("db: control tokens: %w", err)
	}
	return out, nil
}

// RevokeControlToken deletes one token and returns whose it was.
func (db *DB) RevokeControlToken(ctx context.Context, id int64) (string, error) {
	var name string
	err := db.pool.QueryRow(ctx, `DELETE FROM control_tokens t USING operators o
		WHERE t.id = $1 AND o.id = t.operator_id RETURNING o.name`, id).Scan(&name)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", fmt.Errorf("db: revoke control token %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("db: revoke control token %d: %w", id, err)
	}
	return name, nil
}

// RevokeOperatorTokens deletes every token of one operator, as a password
// change or disabling needs.
func (db *DB) RevokeOperatorTokens(ctx context.Context, name string) error {
	_, err := db.pool.Exec(ctx, `DELETE FROM control_tokens WHERE operator_id = (SELECT id FROM operators WHERE name = $1)`, name)
	if err != nil {
		return fmt.Errorf("db: revoke tokens of %s: %w", name, err)
	}
	return nil
}

// RevokeAllControlTokens ends every kept Control sign-in, as requiring 2FA
// for everyone needs.
func (db *DB) RevokeAllControlTokens(ctx context.Context) error {
	if _, err := db.pool.Exec(ctx, "DELETE FROM control_tokens"); err != nil {
		return fmt.Errorf("db: revoke all control tokens: %w", err)
	}
	return nil
}

// DeleteExpiredControlTokens removes tokens past their expiry.
func (db *DB) DeleteExpiredControlTokens(ctx context.Context) error {
	if _, err := db.pool.Exec(ctx, "DELETE FROM control_tokens WHERE expires_at < now()"); err != nil {
		return fmt.Errorf("db: delete expired control tokens: %w", err)
	}
	return nil
}
