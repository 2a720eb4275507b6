package db

import (
	"context"
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

var eventInsertColumns = []string{"time", "kind", "message", "client", "control", "operator", "real_ip", "public_ip", "node"}

const eventColumns = "id, time, kind, message, client, control, operator, real_ip, public_ip, node"

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
				return []any{e.Time, string(e.Kind), e.Message, e.Client, e.Control, e.Operator, e.RealIP, e.PublicIP, e.Node}, nil
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
		err := row.Scan(&e.ID, &e.Time, &kind, &e.Message, &e.Client, &e.Control, &e.Operator, &e.RealIP, &e.PublicIP, &e.Node)
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
