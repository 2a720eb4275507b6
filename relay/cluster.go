package relay

// The relay's part in a cluster of gateway nodes: sessions to Clients that
// another node holds, and steering Clients between nodes. Finding the
// other nodes, and the authenticated links to them, are the caller's
// (Peers); which node a Client belongs on is the caller's too (Placer).
//
// A cross-node session, Control on node A and Client on node B:
//
//  1. A finds the Client's node in presence (Peers.Locate) and opens a
//     link to B (Peers.DialNode) on which it sends NodeOpen, naming its own
//     advertised URL.
//  2. B sends Open to the Client with that URL. The Client dials A for the
//     accept connection, and A splices it to the Control as it would a
//     Client of its own, then closes the link: no extra hop.
//  3. A Client that cannot reach A accepts on B instead; B then sends Ready
//     on the link and on the accept connection and splices the two, while
//     A splices the link to the Control: one extra hop.
//
// Either way the session is A's: its events, its entry in A's Sessions,
// its termination from A's console. B keeps a relayed session as a hop,
// which its own list leaves out.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"time"

	"github.com/switchboard/switchboard/internal/audit/event"
	"github.com/switchboard/switchboard/relay/wire"
)

// Peers reaches the other nodes of a cluster.
type Peers interface {
	// Locate finds the Client named name in the presence of the other
	// nodes: the node holding it with keyID, or Mismatch when another
	// node holds that name under another key only.
	Locate(ctx context.Context, name, keyID string) (RemoteClient, error)
	// DialNode opens an authenticated link to the node named node, ready
	// for one NodeOpen frame.
	DialNode(ctx context.Context, node string) (net.Conn, error)
	// Here is the URL (and certificate fingerprint, "" for none or a
	// certificate from a public CA) that a Client of another node dials
	// to reach this node.
	Here() (url, fingerprint string)
}

// RemoteClient is where Locate found a Client.
type RemoteClient struct {
	Found    bool
	Mismatch bool
	Node     string
	Services []string
}

// Placer decides where Clients belong among the nodes of a cluster.
type Placer interface {
	// Place is called once a Client registered here (Welcome sent), on
	// the Client's own goroutine; it must answer from memory.
	Place(r Registration) Placement
}

// Placement is what a Client just registered is told, and recorded.
type Placement struct {
	// Nodes, when set, is sent to the Client: where it may register when
	// this node is gone.
	Nodes *wire.Nodes
	// Move, when set, asks the Client to register elsewhere.
	Move *wire.Move
	// Events are recorded as this node's (a Client switching to the
	// secondary, or returning to the primary).
	Events []event.Event
}

// locateTimeout bounds the presence lookup and the link set-up of a
// cross-node session.
const locateTimeout = 3 * time.Second

// locate asks the other nodes for a Client this node does not hold.
func (s *Server) locate(ctx context.Context, name, keyID string) RemoteClient {
	if s.peers == nil {
		return RemoteClient{}
	}
	lctx, cancel := context.WithTimeout(ctx, locateTimeout)
	defer cancel()
	rc, err := s.peers.Locate(lctx, name, keyID)
	if err != nil {
		s.log.Warn("cluster: cannot look the Client up on the other nodes", "client", name, "err", err)
		return RemoteClient{}
	}
	return rc
}

// linkResult is the outcome of asking another node for a session.
type linkResult struct {
	conn net.Conn
	r    *bufio.Reader
	err  error
}

// connectRemote brokers a session to a Client that node rc.Node holds.
// The Control's key and operator are checked already.
func (s *Server) connectRemote(ctx context.Context, p *peerConn, operator, keyID, clientName, service string, rc RemoteClient) error {
	h := p.hello
	if service == "" {
		if len(rc.Services) != 1 {
			s.refuse(p, wire.CodeBadRequest, fmt.Sprintf("Client %q offers %s: name one as CLIENT/SERVICE", clientName, serviceList(rc.Services)))
			return fmt.Errorf("relay: connect %q: no service named", clientName)
		}
		service = rc.Services[0]
	}
	if !slices.Contains(rc.Services, service) {
		s.refuse(p, wire.CodeNotFound, fmt.Sprintf("Client %q does not offer service %q (it offers %s)", clientName, service, serviceList(rc.Services)))
		return fmt.Errorf("relay: connect %q: no service %q", clientName, service)
	}
	// The Client is not registered here; this stands for it in the
	// pending request (an accept must match its name and key) and in the
	// session.
	stand := &client{name: clientName, keyID: keyID, services: rc.Services, node: rc.Node}
	id, po, abandon := s.pend(stand)
	defer abandon()

	_ = p.conn.SetDeadline(time.Now().Add(s.openTimeout + 5*time.Second))
	url, fp := s.peers.Here()
	lctx, cancelLink := context.WithCancel(ctx)
	var links chan linkResult // nil (never ready) until the link is asked
	askLink := func() {
		links = make(chan linkResult, 1)
		go func() {
			links <- s.askNode(lctx, rc.Node, wire.NodeOpen{
				SessionID: id, Client: clientName, KeyID: keyID, Service: service, Control: h.Name,
				ControlIP: p.publicIP, Operator: operator, Gateway: url, Fingerprint: fp,
			})
		}()
	}
	// A standby the Client keeps here (it had sessions brokered by this
	// node lately) takes the Open at once, with no link to its node.
	if !s.openOnStandby(clientKey{clientName, keyID}, wire.Open{SessionID: id, Service: service, Control: h.Name}) {
		askLink()
	}
	// Whatever ends the wait, a link not used is closed.
	linkUsed := false
	defer func() {
		cancelLink()
		if !linkUsed && links != nil {
			go func() {
				if lr := <-links; lr.conn != nil {
					lr.conn.Close()
				}
			}()
		}
	}()

	timer := time.NewTimer(s.openTimeout)
	defer timer.Stop()
	var b *peerConn
	direct := false
	for b == nil {
		select {
		case <-po.lost:
			if links == nil {
				askLink()
			}
		case acc := <-po.accept:
			b, direct = acc, true
		case reason := <-po.failed: // from a standby here
			abandon()
			return s.clientFailed(p, clientName, operator, service, reason)
		case lr := <-links:
			linkUsed = true
			if lr.err != nil {
				abandon()
				var we *wire.Error
				if errors.As(lr.err, &we) {
					s.sessionFailed(p, clientName, operator, "node "+rc.Node+": "+we.Message)
					s.refuse(p, we.Code, we.Message)
				} else {
					s.sessionFailed(p, clientName, operator, "the Client's node "+rc.Node+" cannot be reached")
					s.refuse(p, wire.CodeUnavailable, fmt.Sprintf("Client %q is connected to node %s, which this gateway cannot reach now", clientName, rc.Node))
				}
				return fmt.Errorf("relay: connect %q on node %s: %w", clientName, rc.Node, lr.err)
			}
			b = &peerConn{conn: lr.conn, r: lr.r, publicIP: rc.Node}
			// A direct accept that came in meanwhile is answered by abandon.
		case <-timer.C:
			abandon()
			s.sessionFailed(p, clientName, operator, fmt.Sprintf("the Client did not answer within %s", s.openTimeout))
			s.refuse(p, wire.CodeUnavailable, fmt.Sprintf("Client %q did not answer the session request within %s", clientName, s.openTimeout))
			return fmt.Errorf("relay: connect %q/%s on node %s: client did not answer", clientName, service, rc.Node)
		case <-ctx.Done():
			abandon()
			s.refuse(p, wire.CodeShutdown, "gateway is shutting down")
			return ctx.Err()
		case <-s.stopping.Done():
			abandon()
			s.refuse(p, wire.CodeShutdown, "gateway is shutting down")
			return ErrClosed
		}
	}
	abandon()
	if direct {
		// The other node's wait ends when the link closes.
		cancelLink()
	}
	x := &session{
		id: id, control: h.Name, operator: operator, controlKeyID: keyID, controlIP: p.publicIP,
		client: stand, service: service, started: time.Now(), a: p.conn, b: b.conn, via: rc.Node,
	}
	// Over the link, the Client has its Ready from the other node already:
	// one here would reach it as session bytes.
	return s.runSession(ctx, x, p, b, direct, nil)
}

// askNode sends NodeOpen on a new link to node and waits for its answer:
// Ready (the Client accepted there: the link carries the session now) or
// an Error. ctx ending closes the link.
func (s *Server) askNode(ctx context.Context, node string, o wire.NodeOpen) linkResult {
	dctx, cancel := context.WithTimeout(ctx, locateTimeout)
	conn, err := s.peers.DialNode(dctx, node)
	cancel()
	if err != nil {
		return linkResult{err: err}
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(s.openTimeout + 5*time.Second))
	if err := wire.WriteFrame(conn, wire.TypeNodeOpen, o); err != nil {
		stop()
		conn.Close()
		return linkResult{err: fmt.Errorf("node %s: send node-open: %w", node, err)}
	}
	r := bufio.NewReaderSize(conn, 512)
	var rd wire.Ready
	err = wire.Expect(r, wire.TypeReady, &rd)
	if !stop() {
		conn.Close()
		return linkResult{err: fmt.Errorf("node %s: %w", node, context.Cause(ctx))}
	}
	if err != nil {
		conn.Close()
		return linkResult{err: err}
	}
	_ = conn.SetDeadline(time.Time{})
	return linkResult{conn: conn, r: r}
}

// ServeNodeOpen runs the far end of a cross-node session link: from is
// the authenticated node that sent o, conn and r the link. It asks the
// Client for the session and, when the Client accepts here rather than at
// the sending node, relays between the two. It owns conn and closes it.
func (s *Server) ServeNodeOpen(ctx context.Context, conn net.Conn, r *bufio.Reader, from string, o wire.NodeOpen) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		conn.Close()
		return
	}
	s.serving.Add(1)
	s.mu.Unlock()
	defer s.serving.Done()
	if err := s.serveNodeOpen(ctx, conn, r, from, o); err != nil {
		s.log.Debug("cluster: node session ended", "from", from, "err", err)
	}
}

func (s *Server) serveNodeOpen(ctx context.Context, conn net.Conn, r *bufio.Reader, from string, o wire.NodeOpen) error {
	link := &peerConn{conn: conn, r: r, publicIP: from}
	if err := o.Check(); err != nil {
		s.refuse(link, wire.CodeBadRequest, "node-open refused: "+err.Error())
		return fmt.Errorf("relay: node-open from %s: %w", from, err)
	}
	c, _ := s.findClient(o.Client, o.KeyID)
	if c == nil {
		s.refuse(link, wire.CodeNotFound, fmt.Sprintf("Client %q is no longer connected to node %s", o.Client, s.node))
		return fmt.Errorf("relay: node-open %q from %s: no such client", o.Client, from)
	}
	if !c.offers(o.Service) {
		s.refuse(link, wire.CodeNotFound, fmt.Sprintf("Client %q does not offer service %q (it offers %s)", c.name, o.Service, serviceList(c.services)))
		return fmt.Errorf("relay: node-open %q: no service %q", o.Client, o.Service)
	}
	po, abandon, ok := s.pendAs(o.SessionID, c)
	if !ok {
		s.refuse(link, wire.CodeBadRequest, "session "+quote(o.SessionID)+" is pending already")
		return fmt.Errorf("relay: node-open from %s: session %s twice", from, o.SessionID)
	}
	defer abandon()
	_ = conn.SetDeadline(time.Now().Add(s.openTimeout + 5*time.Second))
	open := wire.Open{SessionID: o.SessionID, Service: o.Service, Control: o.Control, Gateway: o.Gateway, Fingerprint: o.Fingerprint}
	if err := c.send(wire.TypeOpen, open); err != nil {
		s.refuse(link, wire.CodeUnavailable, "Client "+quote(c.name)+" did not take the session request")
		return fmt.Errorf("relay: node-open %q: %w", o.Client, err)
	}
	// The sending node sends nothing more until it reads Ready: the link
	// becoming readable means it gave up, or took the Client's accept
	// itself. Peek keeps whatever it reads for the session.
	gone := make(chan struct{})
	go func() {
		_, _ = r.Peek(1)
		close(gone)
	}()
	timer := time.NewTimer(s.openTimeout)
	defer timer.Stop()
	var acc *peerConn
	select {
	case acc = <-po.accept:
	case <-gone:
		return nil
	case reason := <-po.failed:
		abandon()
		s.refuse(link, wire.CodeUnavailable, fmt.Sprintf("Client %q could not open service %q: %s", c.name, o.Service, reason))
		return fmt.Errorf("relay: node-open %q/%s: client failed: %s", o.Client, o.Service, reason)
	case <-timer.C:
		abandon()
		s.refuse(link, wire.CodeUnavailable, fmt.Sprintf("Client %q did not answer the session request within %s", c.name, s.openTimeout))
		return fmt.Errorf("relay: node-open %q/%s: client did not answer", o.Client, o.Service)
	case <-ctx.Done():
		abandon()
		s.refuse(link, wire.CodeShutdown, "gateway is shutting down")
		return ctx.Err()
	case <-s.stopping.Done():
		abandon()
		s.refuse(link, wire.CodeShutdown, "gateway is shutting down")
		return ErrClosed
	}
	abandon()
	x := &session{
		id: o.SessionID, control: o.Control, operator: o.Operator, controlKeyID: o.KeyID, controlIP: o.ControlIP,
		client: c, service: o.Service, started: time.Now(), a: conn, b: acc.conn, hopFor: from,
	}
	link.r = nil
	return s.runSession(ctx, x, &peerConn{conn: conn, r: nil}, acc, true, waitReader{gone: gone, r: r})
}

// waitReader reads the link only once the watcher's Peek has returned, so
// that two goroutines never read it at once.
type waitReader struct {
	gone <-chan struct{}
	r    *bufio.Reader
}

func (w waitReader) Read(p []byte) (int, error) {
	<-w.gone
	return w.r.Read(p)
}

var _ io.Reader = waitReader{}

// SendClients sends one frame to every Client registered here, each on a
// goroutine of its own so that one stuck Client delays nobody.
func (s *Server) SendClients(t wire.Type, v any) {
	for _, c := range s.snapshotClients() {
		go c.send(t, v)
	}
}

// MoveClients asks up to n of this node's Clients, the most recently
// connected first (they have the least to lose), to register at m.Gateway,
// and returns their names. A Client moving is told once per call.
func (s *Server) MoveClients(n int, m wire.Move) []string {
	cs := s.snapshotClients()
	slices.SortFunc(cs, func(a, b *client) int { return b.since.Compare(a.since) })
	var out []string
	for _, c := range cs {
		if len(out) >= n {
			break
		}
		if c.closed.Load() {
			continue
		}
		go c.send(wire.TypeMove, m)
		out = append(out, c.name)
	}
	return out
}

// place tells a Client just registered what the Placer decided.
func (s *Server) place(c *client) {
	if s.placer == nil {
		return
	}
	pl := s.placer.Place(c.registration(s.node))
	for _, e := range pl.Events {
		s.emit(e)
	}
	if pl.Nodes != nil {
		_ = c.send(wire.TypeNodes, *pl.Nodes)
	}
	if pl.Move != nil {
		_ = c.send(wire.TypeMove, *pl.Move)
	}
}
