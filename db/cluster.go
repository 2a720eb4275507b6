package db

import (
	"context"
	"fmt"
	"time"
)

// Located is a Client's presence on another node, for a cross-node session.
type Located struct {
	Node     string
	KeyID    string
	Services []string
}

// LocateClient finds the Client named name on the nodes other than self
// whose leases are live: the rows of that name, the one holding keyID (if
// any) first. A row whose node is lost or whose heartbeat is older than
// lease is a ghost, and is left out.
func (db *DB) LocateClient(ctx context.Context, self, name, keyID string, lease time.Duration) ([]Located, error) {
	rows, err := db.pool.Query(ctx, `
SELECT p.node, p.key_id, p.services FROM presence p JOIN nodes n ON n.name = p.node
WHERE p.name = $1 AND p.node <> $2 AND n.lost_at IS NULL
	AND n.last_seen > now() - make_interval(secs => $3)
	AND p.last_heartbeat > now() - make_interval(secs => $3)
ORDER BY p.key_id = $4 DESC, p.connected_at DESC
LIMIT 16`, name, self, seconds(lease), keyID)
	if err != nil {
		return nil, fmt.Errorf("db: locate client %q: %w", name, err)
	}
	defer rows.Close()
	var out []Located
	for rows.Next() {
		var l Located
		if err := rows.Scan(&l.Node, &l.KeyID, &l.Services); err != nil {
			return nil, fmt.Errorf("db: locate client %q: %w", name, err)
		}
		out = append(out, l)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("db: locate client %q: %w", name, err)
	}
	return out, nil
}
