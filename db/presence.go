package db

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Presence is one connected Client's row: which node holds it. A Client is
// named within its key space, so (Name, KeyID) is the key; the newest
// connection wins.
type Presence struct {
	Name     string
	KeyID    string
	Node     string
	RealIP   string
	PublicIP string
	OS       string
	Version  string
	Services []string
	// ServiceKinds maps services to their kind for the browser console.
	ServiceKinds map[string]string
	// ConnectedAt is the connecting node's clock; it decides which of two
	// connections of one Client is the newer.
	ConnectedAt time.Time
	// LastHeartbeat is the database's clock when the holding node last
	// renewed its rows (with its node lease).
	LastHeartbeat time.Time
	// ConnID is random per connection.
	ConnID string
}

// PresenceOp is one change to the presence table: an upsert (Delete false,
// all of P) or a conditional delete (Delete true; P.Name, P.KeyID, P.ConnID).
type PresenceOp struct {
	Delete bool
	P      Presence
}

const presenceColumns = "name, key_id, node, real_ip, public_ip, os, version, services, connected_at, last_heartbeat, conn_id, service_kinds"

func scanPresence(row pgx.Row) (Presence, error) {
	var p Presence
	err := row.Scan(&p.Name, &p.KeyID, &p.Node, &p.RealIP, &p.PublicIP, &p.OS, &p.Version, &p.Services,
		&p.ConnectedAt, &p.LastHeartbeat, &p.ConnID, &p.ServiceKinds)
	return p, err
}

const upsertPresence = `
INSERT INTO presence (` + presenceColumns + `)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, now(), $10, $11)
ON CONFLICT (name, key_id) DO UPDATE SET node = EXCLUDED.node, real_ip = EXCLUDED.real_ip,
	public_ip = EXCLUDED.public_ip, os = EXCLUDED.os, version = EXCLUDED.version, services = EXCLUDED.services,
	service_kinds = EXCLUDED.service_kinds, connected_at = EXCLUDED.connected_at, last_heartbeat = now(), conn_id = EXCLUDED.conn_id
WHERE presence.connected_at <= EXCLUDED.connected_at`

const deletePresence = "DELETE FROM presence WHERE name = $1 AND key_id = $2 AND conn_id = $3"

// Lock order. Nodes write presence at once: one upserts the row of a
// Client that just moved to it while the one it left deletes its stale
// row, renews its own rows' heartbeat, or has them removed as lost. Each
// statement that touches several rows locks them in (name, key_id) order,
// as the primary key sorts, and batches are sorted the same way, so two
// writers never wait on each other in a cycle (PostgreSQL reported
// "deadlock detected" during fail-backs before). The trigger that removes
// a lost node's rows does the same (migration 00012).
const lockNodeRows = "SELECT name, key_id FROM presence WHERE node = $1 ORDER BY name, key_id FOR UPDATE"

func comparePresenceKey(a, b Presence) int {
	if c := strings.Compare(a.Name, b.Name); c != 0 {
		return c
	}
	return strings.Compare(a.KeyID, b.KeyID)
}

// ApplyPresence applies ops in order, in one transaction. An upsert
// replaces the row of its Client unless the row holds a newer connection
// (a later ConnectedAt): the newest connection wins, whichever node writes
// last. A delete removes the row only while it still holds ConnID, so a
// node that lets go of an old connection never removes the Client's newer
// one on another node.
//
// The same transaction wakes the other nodes (Notify, WakePresence), named
// by the first op's P.Node, so that a Client connecting on one node shows
// on the others before their next poll. An op without a node wakes them
// all the same.
func (db *DB) ApplyPresence(ctx context.Context, ops []PresenceOp) error {
	if len(ops) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	b.Queue(notifySQL, Wake{Kind: WakePresence, Node: wakeNode(ops[0].P.Node)}.payload())
	// Rows are locked in (name, key_id) order by every writer (see
	// lockOrder); the sort is stable, so one Client's ops keep theirs.
	ops = slices.Clone(ops)
	slices.SortStableFunc(ops, func(a, b PresenceOp) int { return comparePresenceKey(a.P, b.P) })
	for _, op := range ops {
		p := op.P
		if op.Delete {
			b.Queue(deletePresence, p.Name, p.KeyID, p.ConnID)
			continue
		}
		services := p.Services
		if services == nil {
			services = []string{}
		}
		b.Queue(upsertPresence, p.Name, p.KeyID, p.Node, p.RealIP, p.PublicIP, p.OS, p.Version, services, p.ConnectedAt, p.ConnID, kindsOf(p))
	}
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return fmt.Errorf("db: presence: %w", err)
	}
	return nil
}

// HeartbeatPresence renews last_heartbeat of every row node holds, in one
// statement, and returns how many it holds.
func (db *DB) HeartbeatPresence(ctx context.Context, node string) (int64, error) {
	tag, err := db.pool.Exec(ctx, `WITH mine AS (`+lockNodeRows+`)
UPDATE presence p SET last_heartbeat = now() FROM mine
WHERE p.name = mine.name AND p.key_id = mine.key_id AND p.node = $1`, node)
	if err != nil {
		return 0, fmt.Errorf("db: presence heartbeat of %s: %w", node, err)
	}
	return tag.RowsAffected(), nil
}

// DeleteNodePresence removes every row node holds: at its start (what its
// previous run left) and at its orderly stop, and wakes the other nodes in
// the same statement. A node marked lost loses its rows in the same
// transaction, by a trigger (migration 00008).
func (db *DB) DeleteNodePresence(ctx context.Context, node string) (int64, error) {
	var n int64
	err := db.pool.QueryRow(ctx, `WITH mine AS (`+lockNodeRows+`),
gone AS (DELETE FROM presence p USING mine WHERE p.name = mine.name AND p.key_id = mine.key_id AND p.node = $1 RETURNING 1)
SELECT count(*), pg_notify('`+ClusterChannel+`', $2) FROM gone`, node, Wake{Kind: WakePresence, Node: wakeNode(node)}.payload()).Scan(&n, nil)
	if err != nil {
		return 0, fmt.Errorf("db: delete presence of %s: %w", node, err)
	}
	return n, nil
}

// wakeNode is node as a notification names it: a node name has no spaces
// (--node is a host name), but a payload must parse whatever it is given.
func wakeNode(node string) string {
	node = strings.ReplaceAll(node, " ", "_")
	if node == "" {
		return "-"
	}
	return node
}

func (db *DB) queryPresence(ctx context.Context, sql string, args ...any) ([]Presence, error) {
	rows, err := db.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("db: presence: %w", err)
	}
	ps, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Presence, error) { return scanPresence(row) })
	if err != nil {
		return nil, fmt.Errorf("db: presence: %w", err)
	}
	return ps, nil
}

// PresenceForKey lists the Clients of one key space on every node, by
// name. Rows whose node has not renewed them within NodeLease are left
// out: that node is about to be reported lost, and its rows removed.
func (db *DB) PresenceForKey(ctx context.Context, keyID string) ([]Presence, error) {
	return db.queryPresence(ctx, "SELECT "+presenceColumns+` FROM presence
WHERE key_id = $1 AND last_heartbeat > now() - make_interval(secs => $2) ORDER BY name`, keyID, seconds(NodeLease))
}

// AllPresence lists every connected Client of the cluster, by name and
// key, leaving out rows older than NodeLease as PresenceForKey does.
func (db *DB) AllPresence(ctx context.Context) ([]Presence, error) {
	return db.queryPresence(ctx, "SELECT "+presenceColumns+` FROM presence
WHERE last_heartbeat > now() - make_interval(secs => $1) ORDER BY name, key_id`, seconds(NodeLease))
}

// ReplaceNodePresence makes node's rows be exactly ps (the connections it
// holds), in one transaction: rows of other connections under node are
// removed, and each of ps is upserted (newest connection wins). A node
// does this when its rows and its Clients disagree (its rows were removed
// while it was reported lost, or changes were dropped from a full queue).
func (db *DB) ReplaceNodePresence(ctx context.Context, node string, ps []Presence) error {
	ids := make([]string, 0, len(ps))
	for _, p := range ps {
		ids = append(ids, p.ConnID)
	}
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `WITH mine AS (`+lockNodeRows+`)
DELETE FROM presence p USING mine WHERE p.name = mine.name AND p.key_id = mine.key_id AND p.node = $1
	AND NOT (p.conn_id = ANY($2))`, node, ids); err != nil {
			return err
		}
		ps = slices.Clone(ps)
		slices.SortFunc(ps, comparePresenceKey)
		b := &pgx.Batch{}
		b.Queue(notifySQL, Wake{Kind: WakePresence, Node: wakeNode(node)}.payload())
		for _, p := range ps {
			services := p.Services
			if services == nil {
				services = []string{}
			}
			b.Queue(upsertPresence, p.Name, p.KeyID, node, p.RealIP, p.PublicIP, p.OS, p.Version, services, p.ConnectedAt, p.ConnID, kindsOf(p))
		}
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return fmt.Errorf("db: replace presence of %s: %w", node, err)
	}
	return nil
}

// PresenceElsewhere lists the rows held by nodes other than node whose
// connection started after since (zero: all of them): what a node compares
// its own Clients with to find the ones that reconnected elsewhere.
func (db *DB) PresenceElsewhere(ctx context.Context, node string, since time.Time) ([]Presence, error) {
	return db.queryPresence(ctx, "SELECT "+presenceColumns+" FROM presence WHERE node <> $1 AND connected_at > $2", node, since)
}

// kindsOf is p's service kinds for the jsonb column, never NULL.
func kindsOf(p Presence) map[string]string {
	if p.ServiceKinds == nil {
		return map[string]string{}
	}
	return p.ServiceKinds
}
