package gateway

// The LISTEN connection: how a node hears at once that another node's
// presence changed, or that a node joined, left or was lost (db/notify.go).
//
//   - A notification is a wake-up only: it makes the presence poll and
//     the placer read the tables now rather than at their next tick. The
//     tables are the truth, and the polls go on as before, so a lost
//     notification delays a change by a poll, never loses it.
//   - The connection is its own, outside the pool (application_name
//     "switchboard listen NODE"). A wait gives up every listenPing to
//     ping it, so that a connection cut without a word is noticed within
//     twice that.
//   - A connection that drops is opened again, after a jittered backoff
//     from listenMinBackoff doubling to listenMaxBackoff; a database that
//     is away is logged once. After every (re)connection the node reads
//     everything once (a full presence poll and a placer tick): the
//     notifications sent while nobody listened are gone.
//   - A node ignores its own notifications, and any payload it cannot
//     parse (whatever can NOTIFY on the database may send one).

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/switchboard/switchboard/db"
)

const (
	// listenPing is how long a wait lasts before the connection is
	// pinged, and how long the ping may take.
	listenPing = 5 * time.Second
	// listenMinBackoff and listenMaxBackoff bound the wait before opening
	// the connection again: a quick return after a blip, and no more than
	// a connection attempt every 10 s per node while the database is away.
	listenMinBackoff = 100 * time.Millisecond
	listenMaxBackoff = 10 * time.Second
)

// listener runs the LISTEN connection for the placer and the presence.
type listener struct {
	g    *Gateway
	p    *placer
	node string
	log  *slog.Logger

	// connects counts the connections opened, and pid is the last one's
	// backend process, for tests and for the log.
	connects atomic.Int64
	pid      atomic.Uint32
}

func newListener(g *Gateway, p *placer) *listener {
	return &listener{g: g, p: p, node: g.cfg.Node, log: g.log}
}

// appName is the listening connection's application_name.
func (l *listener) appName() string { return "switchboard listen " + l.node }

// wakeAll makes the presence poll and the placer read now; full makes the
// presence read every row.
func (l *listener) wakeAll(full bool) {
	if l.g.presence != nil {
		l.g.presence.pollSoon(full)
	}
	l.p.poke()
}

// run keeps a LISTEN connection open until ctx ends.
func (l *listener) run(ctx context.Context) {
	backoff := listenMinBackoff
	failing := false
	for {
		ln, err := l.g.DB().Listen(ctx, l.appName())
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if !failing {
				l.log.Warn("cluster: cannot open the LISTEN connection; changes on other nodes are seen at the next poll, retrying", "err", err)
				failing = true
			}
			if !listenSleep(ctx, backoff) {
				return
			}
			backoff = min(backoff*2, listenMaxBackoff)
			continue
		}
		if failing {
			l.log.Info("cluster: LISTEN connection open again")
			failing = false
		}
		l.connects.Add(1)
		l.pid.Store(ln.PID())
		// Whatever changed while nobody listened was not notified.
		l.wakeAll(true)
		start := time.Now()
		err = l.listen(ctx, ln)
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		ln.Close(cctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		l.log.Warn("cluster: LISTEN connection lost; reconnecting, and polling meanwhile", "err", err)
		if time.Since(start) > listenMaxBackoff {
			backoff = listenMinBackoff // it had worked for a while: a blip
		}
		if !listenSleep(ctx, backoff) {
			return
		}
		backoff = min(backoff*2, listenMaxBackoff)
	}
}

// listen waits for notifications on ln until it fails or ctx ends.
func (l *listener) listen(ctx context.Context, ln *db.Listener) error {
	for {
		wctx, cancel := context.WithTimeout(ctx, listenPing)
		w, err := ln.Wait(wctx)
		timedOut := wctx.Err() != nil
		cancel()
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err == nil:
			if w.Node != l.node {
				l.wakeAll(false)
			}
		case errors.Is(err, db.ErrBadWake):
			l.log.Debug("cluster: ignoring a notification", "err", err)
		case timedOut:
			pctx, cancel := context.WithTimeout(ctx, listenPing)
			err := ln.Ping(pctx)
			cancel()
			if err != nil {
				return err
			}
		default:
			return err
		}
	}
}

// listenSleep waits a jittered d (half to all of it), or until ctx ends (false).
func listenSleep(ctx context.Context, d time.Duration) bool {
	d = d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
