package db

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// SetRemoteAccess replaces what operator name may reach from the browser
// console (see Operator.RemoteAccess).
func (db *DB) SetRemoteAccess(ctx context.Context, name string, entries []string) error {
	if entries == nil {
		entries = []string{}
	}
	tag, err := db.pool.Exec(ctx, "UPDATE operators SET remote_access = $2 WHERE name = $1", name, entries)
	if err != nil {
		return fmt.Errorf("db: remote access of %s: %w", name, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("db: remote access of %s: %w", name, ErrNotFound)
	}
	return nil
}

// HostKey is an SSH host key pinned for one Client's service.
type HostKey struct {
	Client, KeyID, Service string
	Key                    []byte // ssh.PublicKey.Marshal()
	Fingerprint            string // SHA256:...
	PinnedAt               time.Time
}

// PinnedHostKey is the key pinned for (client, keyID, service), if any.
func (db *DB) PinnedHostKey(ctx context.Context, client, keyID, service string) (HostKey, bool, error) {
	h := HostKey{Client: client, KeyID: keyID, Service: service}
	err := db.pool.QueryRow(ctx, `SELECT host_key, fingerprint, pinned_at FROM ssh_host_keys
		WHERE client = $1 AND key_id = $2 AND service = $3`, client, keyID, service).Scan(&h.Key, &h.Fingerprint, &h.PinnedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return HostKey{}, false, nil
	}
	if err != nil {
		return HostKey{}, false, fmt.Errorf("db: host key of %s/%s: %w", client, service, err)
	}
	return h, true, nil
}

// PinHostKey pins a host key on first use. A key pinned meanwhile (another
// node, another browser) is kept: the caller reads it back to compare.
func (db *DB) PinHostKey(ctx context.Context, h HostKey) error {
	_, err := db.pool.Exec(ctx, `INSERT INTO ssh_host_keys (client, key_id, service, host_key, fingerprint)
		VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING`, h.Client, h.KeyID, h.Service, h.Key, h.Fingerprint)
	if err != nil {
		return fmt.Errorf("db: pin host key of %s/%s: %w", h.Client, h.Service, err)
	}
	return nil
}

// HostKeys lists the keys pinned for a Client (every key ID).
func (db *DB) HostKeys(ctx context.Context, client string) ([]HostKey, error) {
	rows, err := db.pool.Query(ctx, `SELECT client, key_id, service, host_key, fingerprint, pinned_at
		FROM ssh_host_keys WHERE client = $1 ORDER BY service, key_id`, client)
	if err != nil {
		return nil, fmt.Errorf("db: host keys of %s: %w", client, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (HostKey, error) {
		var h HostKey
		err := r.Scan(&h.Client, &h.KeyID, &h.Service, &h.Key, &h.Fingerprint, &h.PinnedAt)
		return h, err
	})
	if err != nil {
		return nil, fmt.Errorf("db: host keys of %s: %w", client, err)
	}
	return out, nil
}

// ClearHostKey forgets the pinned key of a Client's service, so that the
// next terminal pins the key the server has now.
func (db *DB) ClearHostKey(ctx context.Context, client, keyID, service string) error {
	_, err := db.pool.Exec(ctx, "DELETE FROM ssh_host_keys WHERE client = $1 AND key_id = $2 AND service = $3", client, keyID, service)
	if err != nil {
		return fmt.Errorf("db: clear host key of %s/%s: %w", client, service, err)
	}
	return nil
}

// Recording is one browser session (desktop or terminal) and, for a
// recorded terminal, its asciicast.
type Recording struct {
	ID                        int64
	Kind                      string // "desktop" or "terminal"
	Operator, Client, Service string
	Node, SSHUser             string
	Started                   time.Time
	Ended                     time.Time // zero while it runs
	CastBytes                 int64     // size of the asciicast; 0: none
}

// StartRecording records a browser session's start and returns its ID.
func (db *DB) StartRecording(ctx context.Context, r Recording) (int64, error) {
	var id int64
	err := db.pool.QueryRow(ctx, `INSERT INTO recordings (kind, operator, client, service, node, started_at)
		VALUES ($1, $2, $3, $4, $5, $6) RETURNING id`, r.Kind, r.Operator, r.Client, r.Service, r.Node, r.Started).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("db: start recording: %w", err)
	}
	return id, nil
}

// EndRecording stores a session's end, its SSH user and, for a recorded
// terminal, the gzipped asciicast of castBytes bytes (castGz nil: none).
func (db *DB) EndRecording(ctx context.Context, id int64, ended time.Time, sshUser string, castGz []byte, castBytes int64) error {
	_, err := db.pool.Exec(ctx, `UPDATE recordings SET ended_at = $2, ssh_user = $3, cast_gz = $4, cast_bytes = $5 WHERE id = $1`,
		id, ended, sshUser, castGz, castBytes)
	if err != nil {
		return fmt.Errorf("db: end recording %d: %w", id, err)
	}
	return nil
}

const recordingColumns = "id, kind, operator, client, service, node, ssh_user, started_at, ended_at, cast_bytes"

func scanRecording(row pgx.Row) (Recording, error) {
	var r Recording
	var ended *time.Time
	err := row.Scan(&r.ID, &r.Kind, &r.Operator, &r.Client, &r.Service, &r.Node, &r.SSHUser, &r.Started, &ended, &r.CastBytes)
	if ended != nil {
		r.Ended = *ended
	}
	return r, err
}

// Recordings lists browser sessions, newest first, at most limit.
func (db *DB) Recordings(ctx context.Context, limit int) ([]Recording, error) {
	rows, err := db.pool.Query(ctx, "SELECT "+recordingColumns+" FROM recordings ORDER BY started_at DESC, id DESC LIMIT $1", limit)
	if err != nil {
		return nil, fmt.Errorf("db: recordings: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Recording, error) { return scanRecording(r) })
	if err != nil {
		return nil, fmt.Errorf("db: recordings: %w", err)
	}
	return out, nil
}

// RecordingCast is recording id with its gzipped asciicast (nil: none).
func (db *DB) RecordingCast(ctx context.Context, id int64) (Recording, []byte, error) {
	var gz []byte
	var r Recording
	var ended *time.Time
	err := db.pool.QueryRow(ctx, "SELECT "+recordingColumns+", cast_gz FROM recordings WHERE id = $1", id).Scan(
		&r.ID, &r.Kind, &r.Operator, &r.Client, &r.Service, &r.Node, &r.SSHUser, &r.Started, &ended, &r.CastBytes, &gz)
	if errors.Is(err, pgx.ErrNoRows) {
		return Recording{}, nil, fmt.Errorf("db: recording %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return Recording{}, nil, fmt.Errorf("db: recording %d: %w", id, err)
	}
	if ended != nil {
		r.Ended = *ended
	}
	return r, gz, nil
}

// DeleteRecordingsBefore removes the sessions that started before t: the
// retention setting.
func (db *DB) DeleteRecordingsBefore(ctx context.Context, t time.Time) (int64, error) {
	tag, err := db.pool.Exec(ctx, "DELETE FROM recordings WHERE started_at < $1", t)
	if err != nil {
		return 0, fmt.Errorf("db: delete old recordings: %w", err)
	}
	return tag.RowsAffected(), nil
}
