package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard/switchboard/internal/peer"
	"github.com/switchboard/switchboard/relay/wire"
)

// standbyState is one gateway's standby connection, kept (and replaced
// after each use) until a StandbyIdle passes without a session there.
type standbyState struct {
	until atomic.Int64 // unix nanoseconds
}

// refillDelay is how long after a session started on a standby its
// replacement is dialled: past the session's first exchanges, which the
// replacement's handshake would slow on a small machine.
const refillDelay = 10 * time.Millisecond

// standbyReadyTimeout bounds the wait for the gateway's Ready after the
// Client accepted on a standby: the gateway sends it at once.
const standbyReadyTimeout = 30 * time.Second

// keepStandby makes sure a standby connection to d's gateway is kept for
// StandbyIdle from now, starting one if there is none.
func (a *Agent) keepStandby(ctx context.Context, d *peer.Dialer) {
	if a.cfg.StandbyIdle < 0 || ctx.Err() != nil {
		return
	}
	until := time.Now().Add(a.cfg.StandbyIdle).UnixNano()
	key := d.Gateway.String()
	a.standbyMu.Lock()
	defer a.standbyMu.Unlock()
	if st := a.standbys[key]; st != nil {
		st.until.Store(until)
		return
	}
	st := &standbyState{}
	st.until.Store(until)
	a.standbys[key] = st
	a.sessions.Add(1)
	go func() {
		defer a.sessions.Done()
		a.runStandby(ctx, key, d, st)
	}()
}

// runStandby keeps one standby connection to d's gateway open until st
// expires: it dials one, waits for an Open on it, hands the session to a
// goroutine of its own and dials the next. Any failure ends it quietly;
// sessions then open on the control channel until the next session
// starts another.
func (a *Agent) runStandby(ctx context.Context, key string, d *peer.Dialer, st *standbyState) {
	defer func() {
		a.standbyMu.Lock()
		if a.standbys[key] == st {
			delete(a.standbys, key)
		}
		a.standbyMu.Unlock()
	}()
	log := a.log.With("gateway", key)
	for ctx.Err() == nil && time.Now().UnixNano() < st.until.Load() {
		conn, err := d.Dial(ctx)
		if err != nil {
			log.Debug("no standby connection", "err", err)
			return
		}
		if err := conn.SendKey(a.keys, wire.RoleStandby, a.cfg.Name, "", nil); err != nil {
			conn.Close()
			log.Debug("standby connection failed its handshake", "err", err)
			return
		}
		conn.ClearDeadline()
		o, err := waitOpen(ctx, conn, st)
		if err != nil {
			conn.Close()
			log.Debug("standby connection ended", "err", err)
			return
		}
		st.until.Store(time.Now().Add(a.cfg.StandbyIdle).UnixNano())
		// The replacement is dialled once this session has started (or
		// failed): its handshake would otherwise compete for the CPU with
		// the session's set-up.
		started := make(chan struct{})
		a.sessions.Add(1)
		go func() {
			defer a.sessions.Done()
			a.standbySession(ctx, conn, o, started)
		}()
		select {
		case <-started:
		case <-ctx.Done():
			return
		}
		t := time.NewTimer(refillDelay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
	}
}

// errStandbyIdle ends a standby that no session used in time.
var errStandbyIdle = errors.New("standby unused for the standby idle time")

// waitOpen waits on a standby connection for the gateway's Open until st
// expires (its expiry moves while it waits when sessions come the other
// way) or ctx ends.
func waitOpen(ctx context.Context, conn *peer.Conn, st *standbyState) (wire.Open, error) {
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	for {
		_ = conn.SetReadDeadline(time.Unix(0, st.until.Load()))
		t, payload, err := wire.ReadFrame(conn.Reader())
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				if time.Now().UnixNano() < st.until.Load() {
					continue
				}
				return wire.Open{}, errStandbyIdle
			}
			return wire.Open{}, err
		}
		switch t {
		case wire.TypeOpen:
			var o wire.Open
			if err := wire.Decode(t, payload, &o); err != nil {
				return wire.Open{}, err
			}
			if err := o.Check(); err != nil {
				_ = wire.WriteFrame(conn, wire.TypeOpenFailed, wire.OpenFailed{SessionID: cleanID(o.SessionID), Message: "the Client refused the request: " + err.Error()})
				return wire.Open{}, fmt.Errorf("gateway sent an open frame the Client refuses: %w", err)
			}
			return o, nil
		case wire.TypeError:
			var e wire.Error
			_ = wire.Decode(t, payload, &e)
			return wire.Open{}, &e
		default:
			return wire.Open{}, fmt.Errorf("unexpected %s frame on a standby connection", t)
		}
	}
}

// standbySession serves an Open that came on the standby connection conn:
// the local service first, then Accept (or OpenFailed) on conn, which
// carries the session from the gateway's Ready on.
func (a *Agent) standbySession(ctx context.Context, conn *peer.Conn, o wire.Open, started chan<- struct{}) {
	defer conn.Close()
	once := sync.OnceFunc(func() { close(started) })
	defer once()
	log := a.log.With("session", o.SessionID, "service", o.Service, "control", o.Control, "standby", true)
	fail := func(msg string) {
		_ = conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		_ = wire.WriteFrame(conn, wire.TypeOpenFailed, wire.OpenFailed{SessionID: o.SessionID, Message: msg})
	}
	addr, ok := a.cfg.Services[o.Service]
	if !ok {
		fail("service not offered")
		return
	}
	d := net.Dialer{Timeout: a.cfg.ServiceDialTimeout}
	local, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		log.Warn("cannot reach local service", "addr", addr, "err", err)
		fail("the service is not reachable on the Client")
		return
	}
	defer local.Close()
	_ = conn.SetDeadline(time.Now().Add(standbyReadyTimeout))
	if err := wire.WriteFrame(conn, wire.TypeAccept, wire.Accept{SessionID: o.SessionID}); err != nil {
		log.Warn("session accept failed", "err", err)
		return
	}
	var r wire.Ready
	if err := wire.Expect(conn.Reader(), wire.TypeReady, &r); err != nil {
		log.Warn("session refused", "err", err)
		return
	}
	conn.ClearDeadline()
	once()
	a.pipe(ctx, log, local, conn)
}
