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

// SigninLimits are the throttle's numbers; see internal/auth/signin's
// Policy, which they come from.
type SigninLimits struct {
	// MaxFailures attempts from one address for one operator, none more
	// than Window after the previous, lock that pair for LockFor.
	MaxFailures int
	Window      time.Duration
	LockFor     time.Duration
	// Past DelayAfter attempts for one operator from all addresses, none
	// more than Window after the previous, each further attempt from an
	// address not known for the operator makes the next such attempt wait
	// DelayBase, doubling with each attempt, up to DelayMax.
	DelayAfter int
	DelayBase  time.Duration
	DelayMax   time.Duration
	// KnownFor is how long a successful sign-in from an address exempts
	// that address from the delay.
	KnownFor time.Duration
}

// Delay is the progressive delay after the n-th attempt within a window.
func (l SigninLimits) Delay(n int) time.Duration {
	if n <= l.DelayAfter {
		return 0
	}
	d := l.DelayBase
	for i := l.DelayAfter + 1; i < n && d < l.DelayMax; i++ {
		d *= 2
	}
	return min(d, l.DelayMax)
}

// SigninGate is BeginSignin's answer.
type SigninGate struct {
	// OK: the attempt is counted and may be checked.
	OK bool
	// Locked: refused because the (operator, address) pair is locked, or
	// holds MaxFailures attempts already.
	Locked bool
	// Wait: refused because of the operator-wide delay, for this long yet.
	Wait time.Duration
}

// BeginSignin counts one sign-in attempt of the operator from address (an
// IP address, or an IPv6 /64) before its password or code is checked, or
// refuses it: while the (operator, address) pair is locked or already
// holds MaxFailures attempts, or, for an address from which the operator
// has not signed in within KnownFor, while the operator-wide delay runs.
//
// A second factor's attempt (secondFactor: its password was right a moment
// ago) is not held back by the delay, its password step was, but it counts
// like any other.
//
// Every attempt of an operator takes that operator's row lock first, so
// attempts are counted one after the other, each seeing all the others:
// parallel guesses are counted before any of them is checked and gain
// nothing. An attempt counts as a failure until SigninStepPassed or
// SigninCompleted takes it back, so a delay is reserved when an attempt
// begins, not when it fails. Attempts from known addresses and second
// factors count towards the delay but do not reserve it.
func (db *DB) BeginSignin(ctx context.Context, id int64, address string, secondFactor bool, l SigninLimits) (SigninGate, error) {
	var gate SigninGate
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		gate = SigninGate{}
		var delayUntil *time.Time
		// A no-op UPDATE rather than SELECT ... FOR UPDATE: it takes the
		// table lock UpdateOperator's LOCK TABLE waits for, so the two
		// queue instead of deadlocking.
		err := tx.QueryRow(ctx, `UPDATE operators SET signin_delay_until = signin_delay_until WHERE id = $1
			RETURNING signin_delay_until`, id).Scan(&delayUntil)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		// Read after the lock, so with a snapshot that holds every
		// attempt counted before this one.
		var now time.Time
		var known bool
		var total, attempts int
		var last, lockedUntil *time.Time
		err = tx.QueryRow(ctx, `SELECT clock_timestamp(),
				EXISTS (SELECT 1 FROM signin_addresses WHERE operator_id = $1 AND address = $2
					AND last_signin_at > clock_timestamp() - make_interval(secs => $4)),
				coalesce(sum(attempts) FILTER (WHERE last_attempt_at > clock_timestamp() - make_interval(secs => $3)), 0)::int,
				coalesce(max(attempts) FILTER (WHERE address = $2), 0),
				max(last_attempt_at) FILTER (WHERE address = $2),
				max(locked_until) FILTER (WHERE address = $2)
			FROM signin_throttle WHERE operator_id = $1`,
			id, address, l.Window.Seconds(), l.KnownFor.Seconds()).Scan(&now, &known, &total, &attempts, &last, &lockedUntil)
		if err != nil {
			return err
		}
		if lockedUntil != nil && lockedUntil.After(now) {
			gate.Locked = true
			return nil
		}
		inWindow := last != nil && last.After(now.Add(-l.Window))
		if !inWindow || lockedUntil != nil {
			// Forgotten, or a lock that has ended: the pair starts again.
			if inWindow {
				total -= attempts
			}
			attempts = 0
		}
		if attempts >= l.MaxFailures {
			gate.Locked = true
			return nil
		}
		gated := !known && !secondFactor
		if gated && delayUntil != nil && delayUntil.After(now) {
			gate.Wait = delayUntil.Sub(now)
			return nil
		}
		if _, err := tx.Exec(ctx, `INSERT INTO signin_throttle (operator_id, address, attempts, last_attempt_at)
			VALUES ($1, $2, $3, $4)
			ON CONFLICT (operator_id, address) DO UPDATE SET
				attempts = excluded.attempts, last_attempt_at = excluded.last_attempt_at, locked_until = NULL`,
			id, address, attempts+1, now); err != nil {
			return err
		}
		// Only gated attempts reserve the delay: those from known
		// addresses and second factors count, but do not hold anyone back.
		if d := l.Delay(total + 1); gated && d > 0 && (delayUntil == nil || delayUntil.Before(now.Add(d))) {
			if _, err := tx.Exec(ctx, "UPDATE operators SET signin_delay_until = $2 WHERE id = $1", id, now.Add(d)); err != nil {
				return err
			}
		}
		gate.OK = true
		return nil
	})
	if err != nil {
		return SigninGate{}, fmt.Errorf("db: begin sign-in: %w", err)
	}
	return gate, nil
}

// SigninFailed ends an attempt that failed: it stays counted, and when the
// (operator, address) pair holds limit attempts it is locked for lockFor.
// It reports whether this failure locked the pair.
func (db *DB) SigninFailed(ctx context.Context, id int64, address string, l SigninLimits) (locked bool, err error) {
	tag, err := db.pool.Exec(ctx, `
		UPDATE signin_throttle SET locked_until = clock_timestamp() + make_interval(secs => $4)
		WHERE operator_id = $1 AND address = $2 AND attempts >= $3
			AND (locked_until IS NULL OR locked_until <= clock_timestamp())`,
		id, address, l.MaxFailures, l.LockFor.Seconds())
	if err != nil {
		return false, fmt.Errorf("db: count failed sign-in: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

// SigninStepPassed uncounts an attempt whose step (the password) was
// right but whose sign-in goes on (the second factor counts again), or
// that ended without a guess.
func (db *DB) SigninStepPassed(ctx context.Context, id int64, address string) error {
	if _, err := db.pool.Exec(ctx, `UPDATE signin_throttle SET attempts = greatest(attempts - 1, 0)
		WHERE operator_id = $1 AND address = $2`, id, address); err != nil {
		return fmt.Errorf("db: sign-in step passed: %w", err)
	}
	return nil
}

// SigninCompleted records a successful sign-in from address: the pair's
// attempts are cleared, the operator's last sign-in is noted, and the
// address is known for the operator (exempt from the operator-wide delay)
// for knownFor. Addresses not used for
// longer are forgotten.
func (db *DB) SigninCompleted(ctx context.Context, id int64, address string, knownFor time.Duration) error {
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		// The operator's row first, as BeginSignin locks them: the
		// other order could deadlock with a sign-in in parallel.
		if _, err := tx.Exec(ctx, `UPDATE operators SET last_signin_at = clock_timestamp(), last_signin_address = $2
			WHERE id = $1`, id, address); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "DELETE FROM signin_throttle WHERE operator_id = $1 AND address = $2", id, address); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO signin_addresses (operator_id, address, last_signin_at) VALUES ($1, $2, clock_timestamp())
			ON CONFLICT (operator_id, address) DO UPDATE SET last_signin_at = excluded.last_signin_at`, id, address); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `DELETE FROM signin_addresses
			WHERE operator_id = $1 AND last_signin_at < clock_timestamp() - make_interval(secs => $2)`, id, knownFor.Seconds())
		return err
	})
	if err != nil {
		return fmt.Errorf("db: record sign-in: %w", err)
	}
	return nil
}

// UnlockOperator clears every sign-in throttle of the operator: the locks
// and counts of all its (operator, address) pairs and the operator-wide
// delay. Known addresses stay known.
func (db *DB) UnlockOperator(ctx context.Context, id int64) error {
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		// The operator's row first, as BeginSignin locks them.
		// The columns of 00003 too, for nodes of the version before.
		if _, err := tx.Exec(ctx, `UPDATE operators SET signin_delay_until = NULL, failed_signins = 0, locked_until = NULL
			WHERE id = $1`, id); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "DELETE FROM signin_throttle WHERE operator_id = $1", id)
		return err
	})
	if err != nil {
		return fmt.Errorf("db: unlock operator: %w", err)
	}
	return nil
}

// SigninSucceeded is UnlockOperator, under the name `operators unlock`
// calls.
func (db *DB) SigninSucceeded(ctx context.Context, id int64) error { return db.UnlockOperator(ctx, id) }

// DeleteStaleSignins forgets throttle state that no longer counts: pairs
// whose last attempt is older than window and that are not locked, ended
// delays, and addresses not used to sign in for knownFor.
func (db *DB) DeleteStaleSignins(ctx context.Context, window, knownFor time.Duration) error {
	// Three statements, no transaction: none holds locks of two tables.
	for _, q := range []struct {
		sql string
		arg float64
	}{
		{`DELETE FROM signin_throttle WHERE last_attempt_at < now() - make_interval(secs => $1)
			AND (locked_until IS NULL OR locked_until < now())`, window.Seconds()},
		{"DELETE FROM signin_addresses WHERE last_signin_at < now() - make_interval(secs => $1)", knownFor.Seconds()},
		{"UPDATE operators SET signin_delay_until = NULL WHERE signin_delay_until < now() - make_interval(secs => $1)", 0},
	} {
		if _, err := db.pool.Exec(ctx, q.sql, q.arg); err != nil {
			return fmt.Errorf("db: delete stale sign-in throttles: %w", err)
		}
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
// secret, sealed with the secrets key, and deletes the operator's recovery
// codes. Enrolling makes TOTP the operator's factor when none was chosen;
// removing it drops TOTP as the factor.
func (db *DB) SetTOTP(ctx context.Context, name, secret string) error {
	stored, err := db.seal(secret, totpAD(name))
	if err != nil {
		return err
	}
	tag, err := db.pool.Exec(ctx, `
		UPDATE operators SET totp_secret = $2, totp_last_step = 0,
			factor = CASE
				WHEN $2 <> '' AND factor = '' THEN 'totp'
				WHEN $2 = '' AND factor = 'totp' THEN ''
				ELSE factor END,
			updated_at = now()
		WHERE name = $1`, name, stored)
	if err != nil {
		return fmt.Errorf("db: set TOTP for %s: %w", name, err)
	}
	if tag.RowsAffected() > 0 {
		if err := db.RevokeOperatorTokens(ctx, name); err != nil {
			return err
		}
		// Recovery codes belong to the app they were made with: a new
		// enrolment makes its own, a removed one leaves none.
		if _, err := db.pool.Exec(ctx, `DELETE FROM operator_recovery_codes
			WHERE operator_id = (SELECT id FROM operators WHERE name = $1)`, name); err != nil {
			return fmt.Errorf("db: set TOTP for %s: %w", name, err)
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
	o, err := db.scanOperator(db.pool.QueryRow(ctx, "SELECT "+operatorColumns+" FROM operators WHERE id = $1", id))
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

// OperatorState is what admitting a Control needs of an operator.
type OperatorState struct {
	ID         int64
	Name       string
	Role       string
	Disabled   bool
	Factor     string
	Require2FA bool
}

// KeptSignin is a live Control token as admitting a Control checks it.
type KeptSignin struct {
	Hash         []byte
	OperatorID   int64
	Control      string
	ExpiresAt    time.Time
	SecondFactor bool
}

// SigninSnapshot is a consistent copy of what admits Controls: every
// operator (no password hash, no secret) and every unexpired token hash.
type SigninSnapshot struct {
	Operators []OperatorState
	Tokens    []KeptSignin
}

// SigninSnapshot reads the operators and live tokens in one snapshot.
func (db *DB) SigninSnapshot(ctx context.Context) (SigninSnapshot, error) {
	var snap SigninSnapshot
	err := pgx.BeginTxFunc(ctx, db.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, "SELECT id, name, role, disabled, factor, require_2fa FROM operators ORDER BY id")
		if err != nil {
			return err
		}
		snap.Operators, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (OperatorState, error) {
			var o OperatorState
			return o, r.Scan(&o.ID, &o.Name, &o.Role, &o.Disabled, &o.Factor, &o.Require2FA)
		})
		if err != nil {
			return err
		}
		rows, err = tx.Query(ctx, `SELECT token_hash, operator_id, control, expires_at, second_factor
			FROM control_tokens WHERE expires_at > now()`)
		if err != nil {
			return err
		}
		snap.Tokens, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (KeptSignin, error) {
			var t KeptSignin
			return t, r.Scan(&t.Hash, &t.OperatorID, &t.Control, &t.ExpiresAt, &t.SecondFactor)
		})
		return err
	})
	if err != nil {
		return SigninSnapshot{}, fmt.Errorf("db: sign-in snapshot: %w", err)
	}
	return snap, nil
}
