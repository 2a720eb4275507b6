package db

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// KnownClient is a Client seen recently, connected or not. Triggers on the
// presence table keep the rows (migration 00010): every node's Clients are
// known, and no node writes them itself.
type KnownClient struct {
	Name, KeyID string
	// Node, the addresses and the rest are those of its latest connection.
	Node, RealIP, PublicIP, OS, Version string
	Services                            []string
	FirstSeen                           time.Time
	ConnectedAt                         time.Time
	// LastSeen is when its latest connection ended (or, while it is
	// connected, began).
	LastSeen time.Time
}

// KnownClientsKept is how long a Client that does not come back stays
// known.
const KnownClientsKept = 30 * 24 * time.Hour

const knownColumns = "name, key_id, node, real_ip, public_ip, os, version, services, first_seen, connected_at, last_seen"

func scanKnown(row pgx.Row) (KnownClient, error) {
	var k KnownClient
	err := row.Scan(&k.Name, &k.KeyID, &k.Node, &k.RealIP, &k.PublicIP, &k.OS, &k.Version, &k.Services,
		&k.FirstSeen, &k.ConnectedAt, &k.LastSeen)
	return k, err
}

// OfflineFilter selects offline known Clients.
type OfflineFilter struct {
	// Search matches a part of the name, addresses, OS or a service,
	// ignoring case; "" matches all.
	Search string
	// Since leaves out Clients last seen before it; zero: none (rows
	// older than KnownClientsKept are pruned).
	Since         time.Time
	Limit, Offset int
}

// PruneKnownClients deletes the Clients not seen for KnownClientsKept;
// the console does when it shows the Clients page.
func (db *DB) PruneKnownClients(ctx context.Context) (int64, error) {
	tag, err := db.pool.Exec(ctx, "DELETE FROM known_clients WHERE last_seen < now() - make_interval(secs => $1)",
		seconds(KnownClientsKept))
	if err != nil {
		return 0, fmt.Errorf("db: prune known clients: %w", err)
	}
	return tag.RowsAffected(), nil
}

// OfflineClients lists the known Clients that are not connected now (no
// live presence row: none renewed within NodeLease), most recently seen
// first, and how many match in all.
func (db *DB) OfflineClients(ctx context.Context, f OfflineFilter) ([]KnownClient, int, error) {
	if f.Limit <= 0 {
		f.Limit = 50
	}
	var since *time.Time
	if !f.Since.IsZero() {
		since = &f.Since
	}
	const where = ` FROM known_clients k
WHERE ($1::timestamptz IS NULL OR k.last_seen >= $1)
  AND ($2 = '' OR strpos(lower(k.name || ' ' || k.real_ip || ' ' || k.public_ip || ' ' || k.os || ' ' || array_to_string(k.services, ' ')), $2) > 0)
  AND NOT EXISTS (SELECT 1 FROM presence p WHERE p.name = k.name AND p.key_id = k.key_id
      AND p.last_heartbeat > now() - make_interval(secs => $3))`
	needle := strings.ToLower(strings.TrimSpace(f.Search))
	var total int
	if err := db.pool.QueryRow(ctx, "SELECT count(*)"+where, since, needle, seconds(NodeLease)).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("db: count offline clients: %w", err)
	}
	rows, err := db.pool.Query(ctx, "SELECT "+prefixed("k.", knownColumns)+where+
		" ORDER BY k.last_seen DESC, k.name, k.key_id LIMIT $4 OFFSET $5", since, needle, seconds(NodeLease), f.Limit, f.Offset)
	if err != nil {
		return nil, 0, fmt.Errorf("db: offline clients: %w", err)
	}
	ks, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (KnownClient, error) { return scanKnown(row) })
	if err != nil {
		return nil, 0, fmt.Errorf("db: offline clients: %w", err)
	}
	return ks, total, nil
}

func prefixed(p, columns string) string {
	cols := strings.Split(columns, ", ")
	for i, c := range cols {
		cols[i] = p + c
	}
	return strings.Join(cols, ", ")
}

// KnownClient returns the row of the Client name of keyID, or ErrNotFound.
func (db *DB) KnownClient(ctx context.Context, name, keyID string) (KnownClient, error) {
	k, err := scanKnown(db.pool.QueryRow(ctx, "SELECT "+knownColumns+" FROM known_clients WHERE name = $1 AND key_id = $2", name, keyID))
	if errors.Is(err, pgx.ErrNoRows) {
		return KnownClient{}, fmt.Errorf("db: known client %s: %w", name, ErrNotFound)
	}
	if err != nil {
		return KnownClient{}, fmt.Errorf("db: known client %s: %w", name, err)
	}
	return k, nil
}

// KnownClientsNamed returns the rows of every Client called name, in
// whatever key space, most recently seen first.
func (db *DB) KnownClientsNamed(ctx context.Context, name string) ([]KnownClient, error) {
	rows, err := db.pool.Query(ctx, "SELECT "+knownColumns+" FROM known_clients WHERE name = $1 ORDER BY last_seen DESC", name)
	if err != nil {
		return nil, fmt.Errorf("db: known clients named %s: %w", name, err)
	}
	ks, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (KnownClient, error) { return scanKnown(row) })
	if err != nil {
		return nil, fmt.Errorf("db: known clients named %s: %w", name, err)
	}
	return ks, nil
}

// ForgetKnownClient deletes the row of the Client name of keyID, or
// returns ErrNotFound.
func (db *DB) ForgetKnownClient(ctx context.Context, name, keyID string) error {
	tag, err := db.pool.Exec(ctx, "DELETE FROM known_clients WHERE name = $1 AND key_id = $2", name, keyID)
	if err != nil {
		return fmt.Errorf("db: forget client %s: %w", name, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("db: forget client %s: %w", name, ErrNotFound)
	}
	return nil
}

// ClientSample is the Clients of the whole cluster in one quarter hour:
// the sum over the nodes of each one's highest and latest count.
type ClientSample struct {
	Bucket       time.Time
	Peak, Last   int
	PeakSessions int
}

// ClientTrend returns the quarter hours since since that have samples,
// oldest first (migration 00010 says how they are kept).
func (db *DB) ClientTrend(ctx context.Context, since time.Time) ([]ClientSample, error) {
	rows, err := db.pool.Query(ctx, `SELECT bucket, sum(peak)::int, sum(last)::int, sum(peak_sessions)::int
FROM client_samples WHERE bucket >= $1 GROUP BY bucket ORDER BY bucket`, since)
	if err != nil {
		return nil, fmt.Errorf("db: client trend: %w", err)
	}
	ss, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (ClientSample, error) {
		var s ClientSample
		err := row.Scan(&s.Bucket, &s.Peak, &s.Last, &s.PeakSessions)
		return s, err
	})
	if err != nil {
		return nil, fmt.Errorf("db: client trend: %w", err)
	}
	return ss, nil
}
