package relay

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/switchboard/switchboard/internal/audit/event"
	"github.com/switchboard/switchboard/relay/wire"
)

// Warm paths. A session's set-up used to be two connections' worth of
// handshakes (TCP, TLS, upgrade, challenge, Hello) on its critical path:
// the Control's and then, after Open, the Client's. A Control that
// expects more sessions keeps warm connections (role warm), verified
// before they are needed; a Client that had a session recently keeps a
// standby connection (role standby) on which the gateway sends the next
// Open. Matching the two is then a frame each way.

const (
	// maxStandbyPerClient bounds the standby connections one Client
	// (name and key) may keep on a node: one is what the agent keeps; the
	// second covers its replacement arriving before the old one closes.
	maxStandbyPerClient = 2
	// maxStandbys bounds them per node, whoever opens them: a key holder
	// could otherwise hold connections under made-up names.
	maxStandbys = 8192
	// standbyLife is the longest the gateway keeps an unused standby; the
	// agent closes its own much sooner once its sessions stop.
	standbyLife = 10 * time.Minute
	// warmLife is the longest a warm Control connection may wait for its
	// target; the Control retires its own sooner.
	warmLife = 2 * time.Minute
)

// standby is a Client's session connection waiting for an Open.
type standby struct {
	p *peerConn
	c *client // name and key only: what drop's predicates look at
	// session is the ID of the session whose Open it was given, or empty
	// while it waits (guarded by Server.mu).
	session string
}

// serveStandby keeps a Client's standby connection until the gateway
// gives it a session (openOnStandby) or either side closes it, and then
// hands its answer to the waiting Control.
func (s *Server) serveStandby(p *peerConn) error {
	h := p.hello
	key, err := s.checkClientKey(p)
	if err != nil {
		return err
	}
	k := clientKey{h.Name, key.KeyID}
	st := &standby{p: p, c: &client{name: h.Name, keyID: key.KeyID}}
	if msg := s.addStandby(k, st); msg != "" {
		s.refuse(p, wire.CodeUnavailable, msg)
		return fmt.Errorf("relay: standby of %q from %s: %s", h.Name, p.publicIP, msg)
	}
	unstop := context.AfterFunc(s.stopping, func() { p.conn.Close() })
	defer unstop()
	// The Client sends nothing until it has an Open: a read is how the
	// gateway learns that it went away, and its deadline bounds an unused
	// standby.
	_ = p.conn.SetDeadline(time.Now().Add(standbyLife))
	t, payload, err := wire.ReadFrameMax(p.r, wire.MaxPeerFrame)

	s.mu.Lock()
	listed := s.removeStandbyLocked(k, st)
	id := st.session
	po := s.pending[id]
	s.mu.Unlock()
	if listed || id == "" {
		p.conn.Close()
		if err == nil {
			err = fmt.Errorf("a %s frame before any open", t)
		}
		return fmt.Errorf("relay: standby of %q ended unused: %w", h.Name, err)
	}
	lost := func(why error) error {
		p.conn.Close()
		if po != nil {
			select {
			case po.lost <- struct{}{}:
			default:
			}
		}
		return fmt.Errorf("relay: standby of %q lost with session %s: %w", h.Name, id, why)
	}
	if err != nil {
		return lost(err)
	}
	switch t {
	case wire.TypeAccept:
		var a wire.Accept
		if err := wire.Decode(t, payload, &a); err != nil || a.SessionID != id {
			return lost(errors.Join(err, fmt.Errorf("accept for %q", a.SessionID)))
		}
	case wire.TypeOpenFailed:
		var of wire.OpenFailed
		if err := wire.Decode(t, payload, &of); err != nil {
			return lost(err)
		}
		p.conn.Close()
		if po != nil {
			select {
			case po.failed <- wire.CleanMessage(of.Message):
			default:
			}
		}
		return nil
	default:
		return lost(fmt.Errorf("unexpected %s frame", t))
	}
	s.mu.Lock()
	ok := po != nil && s.pending[id] == po
	if ok {
		delete(s.pending, id)
		po.accept <- p // as in serveAccept: under the lock, never blocks
	}
	s.mu.Unlock()
	if !ok {
		s.refuse(p, wire.CodeNotFound, "the session request is no longer waiting")
		return fmt.Errorf("relay: standby of %q: session %s no longer waits", h.Name, id)
	}
	return nil
}

// addStandby lists st, or says why it cannot be.
func (s *Server) addStandby(k clientKey, st *standby) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return "gateway is shutting down"
	case s.peers == nil && s.clients[k] == nil:
		// Alone, a node only brokers sessions to Clients registered on it;
		// in a cluster a Client keeps standbys on the nodes that broker
		// its sessions (Open.Gateway), where it is not registered.
		return "no Client named " + quote(k.name) + " is registered here"
	case len(s.standbys[k]) >= maxStandbyPerClient:
		return "this Client has enough standby connections"
	case s.nStandby >= maxStandbys:
		return "the gateway holds as many standby connections as it takes"
	}
	s.standbys[k] = append(s.standbys[k], st)
	s.nStandby++
	return ""
}

// removeStandbyLocked unlists st; false if it was not listed.
func (s *Server) removeStandbyLocked(k clientKey, st *standby) bool {
	list := s.standbys[k]
	for i, x := range list {
		if x == st {
			list = append(list[:i], list[i+1:]...)
			if len(list) == 0 {
				delete(s.standbys, k)
			} else {
				s.standbys[k] = list
			}
			s.nStandby--
			return true
		}
	}
	return false
}

// openOnStandby sends o on one of k's standby connections, which then
// carries the session: true if one took it. The newest standby goes first
// (the oldest is the likeliest to be closing). A standby that fails the
// write is closed and the next one tried.
func (s *Server) openOnStandby(k clientKey, o wire.Open) bool {
	for {
		s.mu.Lock()
		list := s.standbys[k]
		if len(list) == 0 {
			s.mu.Unlock()
			return false
		}
		st := list[len(list)-1]
		s.removeStandbyLocked(k, st)
		st.session = o.SessionID
		s.mu.Unlock()

		_ = st.p.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
		err := wire.WriteFrame(st.p.conn, wire.TypeOpen, o)
		_ = st.p.conn.SetWriteDeadline(time.Time{})
		if err == nil {
			s.opensOnStandby.Add(1)
			return true
		}
		// Its reader must not report the session lost: it is not this
		// standby's any more.
		s.mu.Lock()
		st.session = ""
		s.mu.Unlock()
		st.p.conn.Close()
	}
}

// dropStandbysLocked closes the standby connections pick selects.
func (s *Server) dropStandbysLocked(pick func(*client) bool) {
	for _, list := range s.standbys {
		for _, st := range list {
			if pick(st.c) {
				st.p.conn.Close()
			}
		}
	}
}

// serveWarm verifies a Control's warm connection now and serves it as a
// connect once the Control names its target.
func (s *Server) serveWarm(ctx context.Context, p *peerConn) error {
	h := p.hello
	if h.Password != "" {
		// A password sign-in may need a person (a code, a push) and says
		// what for; a warm connection knows no target yet.
		s.refuse(p, wire.CodeBadRequest, "a warm connection signs in with a token only")
		return fmt.Errorf("relay: warm from %s with a password", p.publicIP)
	}
	ckey, operator, err := s.admitControl(ctx, p)
	if err != nil {
		return err
	}
	if err := wire.WriteFrame(p.conn, wire.TypeStandby, wire.Empty{}); err != nil {
		p.conn.Close()
		return fmt.Errorf("relay: warm from %s: %w", p.publicIP, err)
	}
	unstop := context.AfterFunc(s.stopping, func() { p.conn.Close() })
	_ = p.conn.SetDeadline(time.Now().Add(warmLife))
	var to wire.ConnectTo
	s.nWarm.Add(1)
	err = wire.Expect(p.r, wire.TypeConnectTo, &to)
	s.nWarm.Add(-1)
	if !unstop() {
		err = ErrClosed
	}
	if err != nil {
		// The Control retired it unused, or went away: nothing to record.
		p.conn.Close()
		return fmt.Errorf("relay: warm from %s ended unused: %w", p.publicIP, err)
	}
	if err := wire.CheckTarget(to.Target); err != nil {
		s.refuse(p, wire.CodeBadRequest, "connect-to refused: "+err.Error())
		return fmt.Errorf("relay: warm from %s: %w", p.publicIP, err)
	}
	if _, ok := s.keys.lookup(ckey.KeyID); !ok {
		client, _, _ := strings.Cut(to.Target, "/")
		s.emit(event.ControlSecurityFailed(h.Name, client, p.publicIP))
		s.refuse(p, wire.CodeUnauthorized, "security check failed: the gateway key is not valid on this gateway")
		return fmt.Errorf("relay: warm from %s: key removed while it waited", p.publicIP)
	}
	p.hello.Role, p.hello.Target = wire.RoleConnect, to.Target
	s.warmConnects.Add(1)
	return s.connect(ctx, p, ckey, operator)
}
