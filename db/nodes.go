package db

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Node is a gateway node's row in the node registry. The times come from
// the database's clock (now()), never from a node's.
type Node struct {
	Name         string
	AdvertiseURL string
	// Fingerprint is the SHA-256 of the node's TLS certificate, "" without TLS.
	Fingerprint string
	Role        string
	Version     string
	StartedAt   time.Time
	LastSeen    time.Time
	// Nonce is random per process run: only the run holding the row renews it.
	Nonce    string
	Clients  int
	Sessions int
	// LostAt is when a node noticed this one's lease had run out; zero
	// while it is not lost.
	LostAt time.Time
	// Age is how long ago LastSeen was, by the database's clock, when the
	// row was read.
	Age time.Duration
}

// NodeLease is how long a node's row counts as live after its last
// heartbeat (nodes renew it every 2 s): a row older than that belongs to a
// lost node, and its name may be claimed by another process.
const NodeLease = 15 * time.Second

var (
	// ErrNodeLive is a claim of a node name whose row another process run
	// renewed within the lease.
	ErrNodeLive = errors.New("node is already running")
	// ErrNodeTaken is a heartbeat of a row that another process run has
	// taken over (or deleted).
	ErrNodeTaken = errors.New("node row is held by another process")
)

// NodeLiveError is ErrNodeLive with the row that holds the name.
type NodeLiveError struct{ Node Node }

func (e *NodeLiveError) Error() string {
	return fmt.Sprintf("node %s is already running (last seen %ds ago at %s)",
		e.Node.Name, int(e.Node.Age.Round(time.Second)/time.Second), e.Node.AdvertiseURL)
}

func (e *NodeLiveError) Unwrap() error { return ErrNodeLive }

const nodeColumns = "name, advertise_url, fingerprint, role, version, started_at, last_seen, nonce, clients, sessions, lost_at, now() - last_seen"

func scanNode(row pgx.Row) (Node, error) {
	var n Node
	var lost *time.Time
	err := row.Scan(&n.Name, &n.AdvertiseURL, &n.Fingerprint, &n.Role, &n.Version, &n.StartedAt, &n.LastSeen, &n.Nonce,
		&n.Clients, &n.Sessions, &lost, &n.Age)
	if lost != nil {
		n.LostAt = *lost
	}
	return n, err
}

func seconds(d time.Duration) float64 { return d.Seconds() }

// ClaimNode makes n (Name, AdvertiseURL, Role, Version, Nonce) the holder
// of its name, with started_at and last_seen now. A row of another nonce
// renewed within lease is left alone and reported as a *NodeLiveError,
// unless force says the caller knows its holder is gone (it holds the
// name's lock, see LockNodeName). Claiming again with the same nonce
// renews the row.
func (db *DB) ClaimNode(ctx context.Context, n Node, lease time.Duration, force bool) (Node, error) {
	return db.claimNode(ctx, n, lease, force, 3)
}

func (db *DB) claimNode(ctx context.Context, n Node, lease time.Duration, force bool, tries int) (Node, error) {
	row := db.pool.QueryRow(ctx, `
INSERT INTO nodes (name, advertise_url, role, version, started_at, last_seen, nonce, clients, sessions, lost_at, fingerprint)
VALUES ($1, $2, $3, $4, now(), now(), $5, $6, $7, NULL, $10)
ON CONFLICT (name) DO UPDATE SET advertise_url = EXCLUDED.advertise_url, role = EXCLUDED.role, fingerprint = EXCLUDED.fingerprint,
	version = EXCLUDED.version, started_at = CASE WHEN nodes.nonce = EXCLUDED.nonce THEN nodes.started_at ELSE now() END,
	last_seen = now(), nonce = EXCLUDED.nonce, clients = EXCLUDED.clients, sessions = EXCLUDED.sessions, lost_at = NULL
WHERE $8 OR nodes.nonce = EXCLUDED.nonce OR nodes.last_seen < now() - make_interval(secs => $9)
RETURNING `+nodeColumns,
		n.Name, n.AdvertiseURL, n.Role, n.Version, n.Nonce, n.Clients, n.Sessions, force, seconds(lease), n.Fingerprint)
	claimed, err := scanNode(row)
	if err == nil {
		return claimed, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return Node{}, fmt.Errorf("db: claim node %s: %w", n.Name, err)
	}
	holder, err := db.Node(ctx, n.Name)
	if errors.Is(err, ErrNotFound) && tries > 1 {
		// Deleted in between: its holder left; try again.
		return db.claimNode(ctx, n, lease, force, tries-1)
	}
	if err != nil {
		return Node{}, fmt.Errorf("db: claim node %s: %w", n.Name, err)
	}
	return Node{}, fmt.Errorf("db: claim node %s: %w", n.Name, &NodeLiveError{Node: holder})
}

// HeartbeatNode renews the row of name held by nonce: last_seen now, the
// current counts, URL and role; a lost mark is cleared. It returns
// ErrNodeTaken when the row is not held by nonce (any more).
func (db *DB) HeartbeatNode(ctx context.Context, n Node) error {
	tag, err := db.pool.Exec(ctx, `
UPDATE nodes SET last_seen = now(), clients = $3, sessions = $4, advertise_url = $5, role = $6, lost_at = NULL, fingerprint = $7
WHERE name = $1 AND nonce = $2`,
		n.Name, n.Nonce, n.Clients, n.Sessions, n.AdvertiseURL, n.Role, n.Fingerprint)
	if err != nil {
		return fmt.Errorf("db: heartbeat node %s: %w", n.Name, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("db: heartbeat node %s: %w", n.Name, ErrNodeTaken)
	}
	return nil
}

// MarkLostNodes marks as lost every node but self whose last_seen is older
// than lease and that is not marked yet, and returns them. The update is
// conditional, so of several nodes that look at once exactly one gets each
// lost node back.
func (db *DB) MarkLostNodes(ctx context.Context, self string, lease time.Duration) ([]Node, error) {
	rows, err := db.pool.Query(ctx, `
UPDATE nodes SET lost_at = now()
WHERE name <> $1 AND lost_at IS NULL AND last_seen < now() - make_interval(secs => $2)
RETURNING `+nodeColumns, self, seconds(lease))
	if err != nil {
		return nil, fmt.Errorf("db: mark lost nodes: %w", err)
	}
	lost, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Node, error) { return scanNode(row) })
	if err != nil {
		return nil, fmt.Errorf("db: mark lost nodes: %w", err)
	}
	return lost, nil
}

// LostNodeKept is how long a lost node stays in the registry (and on the
// Servers tab, as lost) before ForgetLostNodes removes it: long enough for
// an administrator to see what happened overnight.
const LostNodeKept = 24 * time.Hour

// ForgetLostNodes deletes the nodes marked lost more than kept ago, and
// returns their names. A node that comes back after that claims its name
// anew.
func (db *DB) ForgetLostNodes(ctx context.Context, kept time.Duration) ([]string, error) {
	rows, err := db.pool.Query(ctx, `
DELETE FROM nodes WHERE lost_at IS NOT NULL AND lost_at < now() - make_interval(secs => $1) RETURNING name`, seconds(kept))
	if err != nil {
		return nil, fmt.Errorf("db: forget lost nodes: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("db: forget lost nodes: %w", err)
	}
	return names, nil
}

// LeaveNode deletes the row of name if nonce holds it, and reports whether
// it did.
func (db *DB) LeaveNode(ctx context.Context, name, nonce string) (bool, error) {
	tag, err := db.pool.Exec(ctx, "DELETE FROM nodes WHERE name = $1 AND nonce = $2", name, nonce)
	if err != nil {
		return false, fmt.Errorf("db: leave node %s: %w", name, err)
	}
	return tag.RowsAffected() > 0, nil
}

// Node returns the row of name, or ErrNotFound.
func (db *DB) Node(ctx context.Context, name string) (Node, error) {
	n, err := scanNode(db.pool.QueryRow(ctx, "SELECT "+nodeColumns+" FROM nodes WHERE name = $1", name))
	if errors.Is(err, pgx.ErrNoRows) {
		return Node{}, fmt.Errorf("db: node %s: %w", name, ErrNotFound)
	}
	if err != nil {
		return Node{}, fmt.Errorf("db: node %s: %w", name, err)
	}
	return n, nil
}

// Nodes returns every node of the registry, by name.
func (db *DB) Nodes(ctx context.Context) ([]Node, error) {
	rows, err := db.pool.Query(ctx, "SELECT "+nodeColumns+" FROM nodes ORDER BY name")
	if err != nil {
		return nil, fmt.Errorf("db: nodes: %w", err)
	}
	nodes, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Node, error) { return scanNode(row) })
	if err != nil {
		return nil, fmt.Errorf("db: nodes: %w", err)
	}
	return nodes, nil
}

// Now is the database server's clock.
func (db *DB) Now(ctx context.Context) (time.Time, error) {
	var t time.Time
	if err := db.pool.QueryRow(ctx, "SELECT now()").Scan(&t); err != nil {
		return time.Time{}, fmt.Errorf("db: now: %w", err)
	}
	return t, nil
}

// NodeLock is a session-level advisory lock on a node name, held on a
// connection of its own for as long as the process runs. PostgreSQL
// releases it the moment that connection closes, so a free lock proves
// that no process which took it is still connected: a run killed with
// kill -9 can be replaced at once, without waiting for its lease.
type NodeLock struct {
	conn *pgxpool.Conn
	name string
}

// LockNodeName tries to take the lock of name. It returns nil and no error
// when another session holds it.
func (db *DB) LockNodeName(ctx context.Context, name string) (*NodeLock, error) {
	conn, err := db.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("db: lock node %s: %w", name, err)
	}
	var ok bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock(hashtextextended('switchboard node ' || $1, 0))", name).Scan(&ok); err != nil {
		conn.Release()
		return nil, fmt.Errorf("db: lock node %s: %w", name, err)
	}
	if !ok {
		conn.Release()
		return nil, nil
	}
	return &NodeLock{conn: conn, name: name}, nil
}

// Held reports whether the lock's connection still answers, and with it
// the lock: a connection lost to a database outage took the lock along.
func (l *NodeLock) Held(ctx context.Context) bool {
	if l == nil {
		return false
	}
	_, err := l.conn.Exec(ctx, "SELECT 1")
	return err == nil
}

// Release gives the lock up and returns its connection to the pool. Safe
// on nil.
func (l *NodeLock) Release() {
	if l == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := l.conn.Exec(ctx, "SELECT pg_advisory_unlock(hashtextextended('switchboard node ' || $1, 0))", l.name); err != nil {
		// A connection that may still hold the lock must not go back to the pool.
		_ = l.conn.Conn().Close(ctx)
	}
	l.conn.Release()
}

// ClusterSecret is the installation's secret for node-to-node links,
// made by the first caller.
func (db *DB) ClusterSecret(ctx context.Context) ([]byte, error) {
	fresh := make([]byte, 32)
	if _, err := rand.Read(fresh); err != nil {
		return nil, fmt.Errorf("db: cluster secret: %w", err)
	}
	// Two nodes making it at once: the one that waited on the other's
	// insert sees no row in its statement's snapshot, and reads again.
	for try := 0; ; try++ {
		var secret []byte
		err := db.pool.QueryRow(ctx, `
WITH made AS (INSERT INTO cluster_secret (id, secret) VALUES (1, $1) ON CONFLICT (id) DO NOTHING RETURNING secret)
SELECT secret FROM made UNION ALL SELECT secret FROM cluster_secret WHERE id = 1 LIMIT 1`, fresh).Scan(&secret)
		if errors.Is(err, pgx.ErrNoRows) && try < 3 {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("db: cluster secret: %w", err)
		}
		return secret, nil
	}
}
