package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard/switchboard/internal/audit/event"
	"github.com/switchboard/switchboard/relay/wire"
)

// client is a registered Client's control channel. An idle Client is the
// gateway's most numerous object, so it holds no buffers and no goroutine
// beyond the one blocked reading its next frame; writes are rare and small
// and go straight to the socket under a mutex with a deadline.
type client struct {
	conn     net.Conn
	name     string
	keyID    string
	connID   string // random per connection, for presence
	realIP   string
	publicIP string
	os       string
	version  string
	services []string
	kinds    map[string]string // service → kind, for the browser console; nil when none
	node     string            // for a Client of another node (cross-node sessions)
	since    time.Time
	lastSeen atomic.Int64 // unix nanoseconds of the last frame read

	wmu      sync.Mutex
	closed   atomic.Bool
	replaced atomic.Bool            // a newer registration of the same Client took over
	bye      atomic.Pointer[string] // why the gateway closed the channel, if it did
}

// writeTimeout bounds one write to a Client's channel. Frames are tiny, so a
// Client that cannot take one in this time is stuck and gets dropped.
const writeTimeout = 10 * time.Second

// ack answers a heartbeat. Its write shares the channel's read deadline,
// lastSeen plus deadAfter, which is set for both directions in one call
// (two runtime timers moved later) rather than a write deadline set and
// cleared around every ack: a Client that cannot take 7 bytes by the time
// it would count as silent is dropped like a silent one. The ack is written
// pre-encoded. The ack holds wmu, so another sender's own deadline and
// clearing cannot interleave with it.
func (c *client) ack(deadline time.Time) error {
	c.wmu.Lock()
	_ = c.conn.SetDeadline(deadline)
	err := wire.WriteHeartbeatAck(c.conn)
	c.wmu.Unlock()
	if err != nil {
		c.conn.Close()
	}
	return err
}

func (c *client) send(t wire.Type, v any) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	err := wire.WriteFrame(c.conn, t, v)
	_ = c.conn.SetWriteDeadline(time.Time{})
	if err != nil {
		c.conn.Close()
	}
	return err
}

// close says goodbye and closes the channel; the read loop then unregisters.
func (c *client) close(bye wire.Goodbye) {
	if c.closed.Swap(true) {
		return
	}
	c.bye.Store(&bye.Reason)
	c.wmu.Lock()
	_ = c.conn.SetWriteDeadline(time.Now().Add(time.Second))
	_ = wire.WriteFrame(c.conn, wire.TypeGoodbye, bye)
	c.wmu.Unlock()
	c.conn.Close()
}

func (c *client) info() wire.ClientInfo {
	return wire.ClientInfo{
		Name:           c.name,
		RealIP:         c.realIP,
		PublicIP:       c.publicIP,
		OS:             c.os,
		Version:        c.version,
		ConnectedSince: c.since,
		LastHeartbeat:  time.Unix(0, c.lastSeen.Load()),
		Services:       c.services,
		ServiceKinds:   c.kinds,
	}
}

func (c *client) registration(node string) Registration {
	in := c.info()
	in.Node = node
	return Registration{ClientInfo: ClientInfo{ClientInfo: in, KeyID: c.keyID}, ConnID: c.connID}
}

func (c *client) offers(service string) bool {
	for _, s := range c.services {
		if s == service {
			return true
		}
	}
	return false
}

// serveClient registers a Client and runs its control channel.
func (s *Server) serveClient(ctx context.Context, p *peerConn) error {
	h := p.hello
	key, ok := s.keys.check(p.nonce, h)
	if !ok {
		s.emit(event.ClientSecurityFailed(h.Name, h.RealIP, p.publicIP))
		s.refuse(p, wire.CodeUnauthorized, "security check failed: the gateway key is not valid on this gateway")
		return fmt.Errorf("relay: client %q from %s: bad key", h.Name, p.publicIP)
	}
	if why := s.closedToClients.Load(); why != nil {
		s.refuse(p, wire.CodeUnavailable, *why)
		return fmt.Errorf("relay: client %q from %s: not admitting: %s", h.Name, p.publicIP, *why)
	}
	// serve checked every field (Hello.Check) before this.
	services := make([]string, 0, len(h.Services))
	var kinds map[string]string
	for _, sv := range h.Services {
		services = append(services, sv.Name)
		if k := wire.ServiceKind(sv.Name, sv.Kind); k != "" {
			if kinds == nil {
				kinds = make(map[string]string)
			}
			kinds[sv.Name] = k
		}
	}
	now := time.Now()
	c := &client{
		conn: p.conn, name: h.Name, keyID: key.KeyID, realIP: h.RealIP, publicIP: p.publicIP,
		os: h.OS, version: h.Version, services: services, kinds: kinds, since: now, connID: newID(),
	}
	c.lastSeen.Store(now.UnixNano())

	k := clientKey{h.Name, key.KeyID}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.refuse(p, wire.CodeShutdown, "gateway is shutting down")
		return ErrClosed
	}
	old := s.clients[k]
	limit := s.maxClients.Load()
	n := int64(len(s.clients))
	if old != nil {
		// The same Client registering again (its old connection died without
		// the gateway noticing yet) replaces itself: it uses no new licence.
		n--
	}
	// The licence is the cluster's: the Clients of the other nodes count
	// too, except this very Client's row there (it is moving here, and
	// uses no new licence). The refusal and its event are this node's.
	if limit > 0 && s.cluster != nil {
		n += int64(s.cluster.OtherClients(h.Name, key.KeyID))
	}
	if limit > 0 && n >= limit {
		s.mu.Unlock()
		s.emit(event.LicenceExceeded(h.Name, h.RealIP, p.publicIP))
		s.refuse(p, wire.CodeLicence, fmt.Sprintf("licence limit reached: at most %d Clients may be connected to this gateway (all nodes of its cluster together)", limit))
		return fmt.Errorf("relay: client %q from %s: licence limit %d", h.Name, p.publicIP, limit)
	}
	s.clients[k] = c
	s.mu.Unlock()
	s.version.Add(1)
	if s.presence != nil {
		s.presence.Registered(c.registration(s.node))
	}
	if old != nil {
		old.replaced.Store(true)
		old.close(wire.Goodbye{Reason: "replaced by a new connection of the same Client"})
	}

	welcome := wire.Welcome{CMPISeconds: int(s.CMPI() / time.Second), Node: s.node}
	if err := c.send(wire.TypeWelcome, welcome); err != nil {
		s.unregister(k, c)
		return fmt.Errorf("relay: client %q: %w", h.Name, err)
	}
	_ = p.conn.SetDeadline(time.Time{})
	s.emit(event.ClientConnected(c.name, c.realIP, c.publicIP))
	s.log.Info("client connected", "client", c.name, "real_ip", c.realIP, "public_ip", c.publicIP)
	s.place(c)

	err := s.clientLoop(ctx, c, p)
	s.unregister(k, c)
	c.closed.Store(true)
	p.conn.Close()
	if c.replaced.Load() {
		// The Client is still here on its new connection, whose
		// "connected" is already recorded: a Disconnected now would be
		// false and out of order.
		s.log.Info("client connection replaced", "client", c.name)
		return nil
	}
	gone := event.ClientDisconnected(c.name, c.realIP, c.publicIP)
	gone.Reason = c.endReason(err)
	s.emit(gone)
	s.log.Info("client disconnected", "client", c.name, "reason", gone.Reason)
	return nil
}

// endReason says, for the Disconnected event, why a channel ended.
func (c *client) endReason(err error) string {
	if bye := c.bye.Load(); bye != nil {
		return *bye
	}
	var silent *silenceError
	switch {
	case errors.As(err, &silent):
		return silent.Error()
	case err == nil, errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "the Client closed the connection"
	}
	return event.OneLine("connection lost: " + err.Error())
}

// silenceError ends a channel whose Client sent nothing for too long.
type silenceError struct{ d time.Duration }

func (e *silenceError) Error() string { return fmt.Sprintf("no heartbeat for %s", e.d) }

func errText(err error) string {
	if err == nil {
		return "closed"
	}
	return err.Error()
}

func (s *Server) unregister(k clientKey, c *client) {
	s.mu.Lock()
	if s.clients[k] == c {
		delete(s.clients, k)
	}
	s.mu.Unlock()
	s.version.Add(1)
	if s.presence != nil {
		s.presence.Unregistered(c.name, c.keyID, c.connID)
	}
}

// clientLoop reads the control channel until it ends. Heartbeats are answered
// inline; a Client silent for deadAfter is dropped even if its TCP
// connection never closes.
func (s *Server) clientLoop(ctx context.Context, c *client, p *peerConn) error {
	// The handshake reader may be the HTTP server's 4 KiB buffer. Keep it
	// only while it holds bytes, so an idle Client costs no buffer.
	fr := wire.NewChannelReader(p.conn)
	if p.r != nil && p.r.Buffered() > 0 {
		fr.R = p.r
	} else {
		p.r = nil
	}
	stop := context.AfterFunc(ctx, func() { c.conn.Close() })
	defer stop()
	// Every frame moves the read deadline to deadAfter from then; a
	// heartbeat does it together with its ack (see ack).
	_ = c.conn.SetReadDeadline(time.Now().Add(s.deadAfter()))
	for {
		t, payload, err := fr.Next(wire.MaxPeerFrame)
		if err != nil {
			var ne interface{ Timeout() bool }
			if errors.As(err, &ne) && ne.Timeout() {
				return &silenceError{s.deadAfter()}
			}
			return err
		}
		if p.r != nil && fr.R == p.r && p.r.Buffered() == 0 {
			fr.R, p.r = p.conn, nil // let the handshake's buffer go
		}
		now := time.Now()
		c.lastSeen.Store(now.UnixNano())
		deadline := now.Add(s.deadAfter())
		switch t {
		case wire.TypeHeartbeat:
			if err := c.ack(deadline); err != nil {
				return err
			}
			continue
		case wire.TypeOpenFailed:
			var of wire.OpenFailed
			if err := wire.Decode(t, payload, &of); err != nil {
				return err
			}
			s.openFailed(c, of)
		default:
			_ = c.send(wire.TypeError, wire.Error{Code: wire.CodeBadRequest, Message: "unexpected " + t.String() + " frame"})
			return fmt.Errorf("unexpected %s frame", t)
		}
		_ = c.conn.SetReadDeadline(deadline)
	}
}
