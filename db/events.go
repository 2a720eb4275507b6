package db

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchboard/switchboard/internal/audit/event"
)

// Event paging limits: the console shows pages, and a page of more than a
// thousand rows helps no one and costs the database.
const (
	DefaultEventLimit = 100
	MaxEventLimit     = 1000
)

var eventInsertColumns = []string{"time", "kind", "message", "client", "control", "operator", "real_ip", "public_ip", "node", "reason"}

const eventColumns = "id, time, kind, message, client, control, operator, real_ip, public_ip, node, reason"

// InsertEvents writes events in one transaction: all of them or none, so a
// caller that buffers events can retry the whole batch. IDs are assigned by
// the database and not reported back.
func (db *DB) InsertEvents(ctx context.Context, events []event.Event) error {
	if len(events) == 0 {
		return nil
	}
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		_, err := tx.CopyFrom(ctx, pgx.Identifier{"events"}, eventInsertColumns,
			pgx.CopyFromSlice(len(events), func(i int) ([]any, error) {
				e := events[i]
				return []any{e.Time, string(e.Kind), e.Message, e.Client, e.Control, e.Operator, e.RealIP, e.PublicIP, e.Node, e.Reason}, nil
			}))
		return err
	})
	if err != nil {
		return fmt.Errorf("db: insert %d events: %w", len(events), err)
	}
	return nil
}

// EventFilter selects events. Zero fields do not filter.
type EventFilter struct {
	Kind     event.Kind
	Client   string
	Control  string
	Since    time.Time // time >= Since
	Until    time.Time // time < Until
	BeforeID int64     // id < BeforeID: the next page after one ending at BeforeID
	AfterID  int64     // id > AfterID: what is new since a page was shown
	Limit    int       // Events only: DefaultEventLimit if <= 0, at most MaxEventLimit
}

// where returns the WHERE clause for f (empty if f selects everything) and
// its arguments.
func (f EventFilter) where() (string, []any) {
	var conds []string
	var args []any
	add := func(cond string, arg any) {
		args = append(args, arg)
		conds = append(conds, strings.ReplaceAll(cond, "?", "$"+strconv.Itoa(len(args))))
	}
	if f.Kind != "" {
		add("kind = ?", string(f.Kind))
	}
	if f.Client != "" {
		add("client = ?", f.Client)
	}
	if f.Control != "" {
		add("control = ?", f.Control)
	}
	if !f.Since.IsZero() {
		add("time >= ?", f.Since)
	}
	if !f.Until.IsZero() {
		add("time < ?", f.Until)
	}
	if f.BeforeID > 0 {
		add("id < ?", f.BeforeID)
	}
	if f.AfterID > 0 {
		add("id > ?", f.AfterID)
	}
	if len(conds) == 0 {
		return "", nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args
}

// Events returns the events f selects, newest (highest ID) first. For the
// next page, pass the last event's ID as BeforeID: keyset paging stays fast
// and stable while new events arrive.
func (db *DB) Events(ctx context.Context, f EventFilter) ([]event.Event, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultEventLimit
	}
	limit = min(limit, MaxEventLimit)
	where, args := f.where()
	args = append(args, limit)
	sql := "SELECT " + eventColumns + " FROM events" + where + " ORDER BY id DESC LIMIT $" + strconv.Itoa(len(args))
	rows, err := db.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("db: events: %w", err)
	}
	events, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (event.Event, error) {
		var e event.Event
		var kind string
		err := row.Scan(&e.ID, &e.Time, &kind, &e.Message, &e.Client, &e.Control, &e.Operator, &e.RealIP, &e.PublicIP, &e.Node, &e.Reason)
		e.Kind = event.Kind(kind)
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("db: events: %w", err)
	}
	return events, nil
}

// CountEvents returns how many events f selects, ignoring f.Limit.
func (db *DB) CountEvents(ctx context.Context, f EventFilter) (int64, error) {
	where, args := f.where()
	var n int64
	if err := db.pool.QueryRow(ctx, "SELECT count(*) FROM events"+where, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("db: count events: %w", err)
	}
	return n, nil
}

// LeftOpen is what a node's previous run left open when it ended without
// its stop event (kill -9, power loss): the Clients and sessions whose end
// was never recorded.
type LeftOpen struct {
	// Abnormal is true when the node's last start has no stop after it.
	Abnormal bool
	// LastEvent is the time of that run's last recorded event.
	LastEvent time.Time
	Clients   []event.Event // a connect event of each Client still open
	Sessions  []event.Event // a start event of each session still open
}

// LeftOpenBy reads what node's last run left open. started and stopped are
// the messages that open and close a run (event.GatewayStarted's prefix and
// the stop texts). A node's events are delivered in order, so IDs order them.
func (db *DB) LeftOpenBy(ctx context.Context, node, startedPrefix string, stopped []string) (LeftOpen, error) {
	var lo LeftOpen
	var startID int64
	err := db.pool.QueryRow(ctx, `SELECT id FROM events
		WHERE node = $1 AND kind = $2 AND starts_with(message, $3)
		ORDER BY id DESC LIMIT 1`, node, string(event.KindGateway), startedPrefix).Scan(&startID)
	if errors.Is(err, pgx.ErrNoRows) {
		return lo, nil
	}
	if err != nil {
		return lo, fmt.Errorf("db: last start of node %s: %w", node, err)
	}
	var closed bool
	if err := db.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM events
		WHERE node = $1 AND id > $2 AND kind = $3 AND message = ANY($4))`,
		node, startID, string(event.KindGateway), stopped).Scan(&closed); err != nil {
		return lo, fmt.Errorf("db: stop of node %s: %w", node, err)
	}
	if closed {
		return lo, nil
	}
	lo.Abnormal = true
	if err := db.pool.QueryRow(ctx, `SELECT max(time) FROM events WHERE node = $1 AND id >= $2`,
		node, startID).Scan(&lo.LastEvent); err != nil {
		return lo, fmt.Errorf("db: last event of node %s: %w", node, err)
	}
	// A Client is open when its connects outnumber its disconnects since
	// the start (a replaced connection logs no disconnect of its own, so
	// counting is more robust than looking at the last event alone).
	open := func(what, plus, minus, key string) ([]event.Event, error) {
		rows, err := db.pool.Query(ctx, `SELECT `+key+`, max(real_ip), max(public_ip)
			FROM events WHERE node = $1 AND id > $2 AND kind IN ($3, $4)
			GROUP BY `+key+`
			HAVING sum(CASE WHEN kind = $3 THEN 1 ELSE -1 END) > 0
			ORDER BY `+key, node, startID, plus, minus)
		if err != nil {
			return nil, fmt.Errorf("db: open %s of node %s: %w", what, node, err)
		}
		evs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (event.Event, error) {
			var e event.Event
			var err error
			if what == "sessions" {
				err = row.Scan(&e.Control, &e.Client, &e.RealIP, &e.PublicIP)
			} else {
				err = row.Scan(&e.Client, &e.RealIP, &e.PublicIP)
			}
			return e, err
		})
		if err != nil {
			return nil, fmt.Errorf("db: open %s of node %s: %w", what, node, err)
		}
		return evs, nil
	}
	if lo.Clients, err = open("clients", string(event.KindClientConnect), string(event.KindClientDisconnect), "client"); err != nil {
		return lo, err
	}
	if lo.Sessions, err = open("sessions", string(event.KindSessionStart), string(event.KindSessionEnd), "control, client"); err != nil {
		return lo, err
	}
	return lo, nil
}
