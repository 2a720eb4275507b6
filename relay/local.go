package relay

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/switchboard/switchboard/relay/wire"
)

// LocalControl is a Control inside the gateway process: the console,
// opening a session for a signed-in operator (a desktop or a terminal in
// the browser). It proves no key: the caller has checked that the operator
// may reach the Client, and the session runs under the Client's own key.
type LocalControl struct {
	Name     string // the Control's name in events and Active Sessions, "console:<operator>"
	Operator string
	KeyID    string // the key the Client holds
	PublicIP string // the browser's address
}

// LocalSession is a session a LocalControl opened.
type LocalSession struct {
	net.Conn // the Control's end of the session's bytes
	ID       string
	x        *session
}

// EndedBy is who terminated the session from a console, once it ended
// that way; "" otherwise.
func (l *LocalSession) EndedBy() string {
	if l.x == nil {
		return ""
	}
	if by := l.x.endedBy.Load(); by != nil {
		return *by
	}
	return ""
}

// ConnectLocal opens a session to target ("client/service") for lc and
// returns it once the Client accepted, or the gateway's refusal as a
// *wire.Error: the same brokering, events, listing and termination as a
// connect over the network, across the cluster too. ctx bounds the
// session's life, not just its set-up.
func (s *Server) ConnectLocal(ctx context.Context, lc LocalControl, target string) (*LocalSession, error) {
	if err := wire.CheckTarget(target); err != nil {
		return nil, err
	}
	if err := wire.CheckText("control", lc.Name, wire.MaxNameLen); err != nil {
		return nil, err
	}
	gw, ctl, err := pipePair()
	if err != nil {
		return nil, fmt.Errorf("relay: local session: %w", err)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		gw.Close()
		ctl.Close()
		return nil, ErrClosed
	}
	s.serving.Add(1)
	s.mu.Unlock()
	p := &peerConn{conn: gw, publicIP: lc.PublicIP,
		hello: wire.Hello{Role: wire.RoleConnect, Name: lc.Name, Target: target}}
	go func() {
		defer s.serving.Done()
		if err := s.connect(ctx, p, Key{KeyID: lc.KeyID}, lc.Operator); err != nil {
			s.log.Debug("relay: local session ended", "control", lc.Name, "target", target, "err", err)
		}
	}()

	stop := context.AfterFunc(ctx, func() { ctl.Close() })
	defer stop()
	_ = ctl.SetReadDeadline(time.Now().Add(s.openTimeout + 10*time.Second))
	var r wire.Ready
	if err := wire.Expect(ctl, wire.TypeReady, &r); err != nil {
		ctl.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	_ = ctl.SetReadDeadline(time.Time{})
	s.mu.Lock()
	x := s.sessions[r.SessionID]
	s.mu.Unlock()
	return &LocalSession{Conn: ctl, ID: r.SessionID, x: x}, nil
}
