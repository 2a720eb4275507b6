package db

// LISTEN/NOTIFY between the nodes of a cluster, as a wake-up only. The
// tables (nodes, presence) and their leases are the truth; a notification
// says "something changed, read again now" so that a node need not wait
// for its next poll. A notification may be lost (the listening
// connection drops, a node writes while the listener reconnects): the
// poll still finds the change, later. So a notification carries no data
// a node acts on but the wake-up itself, and which node sent it (so that
// a node ignores its own).

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode"

	"github.com/jackc/pgx/v5"
)

// ClusterChannel is the channel every node listens on.
const ClusterChannel = "switchboard_cluster"

// What a notification says changed.
const (
	// WakePresence: a node's presence rows changed.
	WakePresence = "presence"
	// WakeNodes: a node joined, left, or was marked lost.
	WakeNodes = "nodes"
)

// maxWakeNode bounds the node name in a payload; longer ones are not
// node names (the relay's names are at most 128 bytes, as --node).
const maxWakeNode = 128

// Wake is one notification on ClusterChannel: Kind changed on Node.
type Wake struct {
	Kind string
	Node string
}

func (w Wake) payload() string { return w.Kind + " " + w.Node }

// ParseWake reads a payload, refusing anything but "KIND NODE" with a
// known kind and a printable node name: a payload is written by whatever
// can NOTIFY on the database, and it ends up in logs.
func ParseWake(payload string) (Wake, error) {
	kind, node, ok := strings.Cut(payload, " ")
	if !ok || (kind != WakePresence && kind != WakeNodes) {
		return Wake{}, errors.New("db: notification: unknown kind")
	}
	if node == "" || len(node) > maxWakeNode || strings.IndexFunc(node, func(r rune) bool {
		return r == unicode.ReplacementChar || !unicode.IsPrint(r) || unicode.IsSpace(r)
	}) >= 0 {
		return Wake{}, errors.New("db: notification: bad node name")
	}
	return Wake{Kind: kind, Node: node}, nil
}

const notifySQL = "SELECT pg_notify('" + ClusterChannel + "', $1)"

// Notify wakes the other nodes: kind changed on node. It is sent when the
// statement's transaction commits (here: at once).
func (db *DB) Notify(ctx context.Context, kind, node string) error {
	if _, err := db.pool.Exec(ctx, notifySQL, Wake{Kind: kind, Node: wakeNode(node)}.payload()); err != nil {
		return fmt.Errorf("db: notify %s: %w", kind, err)
	}
	return nil
}

// Listener is a connection of its own, outside the pool, that LISTENs on
// ClusterChannel: a pooled connection would be handed to other queries,
// and its notifications lost with it. It is not safe for concurrent use.
type Listener struct {
	conn *pgx.Conn
}

// Listen opens a Listener. name is its application_name, so that an
// administrator (and a test) can tell it in pg_stat_activity.
func (db *DB) Listen(ctx context.Context, name string) (*Listener, error) {
	cfg := db.pool.Config().ConnConfig.Copy()
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	cfg.RuntimeParams["application_name"] = name
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("db: listen: connect: %w", err)
	}
	if _, err := conn.Exec(ctx, "LISTEN "+ClusterChannel); err != nil {
		_ = conn.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("db: listen: %w", err)
	}
	return &Listener{conn: conn}, nil
}

// ErrBadWake is a notification whose payload ParseWake refused; the
// connection is still good.
var ErrBadWake = errors.New("db: notification with a bad payload")

// Wait returns the next notification. A ctx that ends returns ctx's error
// and leaves the connection usable (pgx interrupts the read with a
// deadline); any other error means the connection is gone.
func (l *Listener) Wait(ctx context.Context) (Wake, error) {
	n, err := l.conn.WaitForNotification(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return Wake{}, ctx.Err()
		}
		return Wake{}, fmt.Errorf("db: listen: %w", err)
	}
	w, err := ParseWake(n.Payload)
	if err != nil {
		return Wake{}, fmt.Errorf("%w: %w", ErrBadWake, err)
	}
	return w, nil
}

// Ping checks that the connection still answers: a connection cut
// without a word (a firewall dropping it) would otherwise wait forever.
func (l *Listener) Ping(ctx context.Context) error {
	if err := l.conn.Ping(ctx); err != nil {
		return fmt.Errorf("db: listen: ping: %w", err)
	}
	return nil
}

// PID is the listening connection's backend process id.
func (l *Listener) PID() uint32 { return l.conn.PgConn().PID() }

// Close closes the connection.
func (l *Listener) Close(ctx context.Context) {
	_ = l.conn.Close(ctx)
}
