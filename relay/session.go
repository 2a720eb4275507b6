package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard/switchboard/internal/audit/event"
	"github.com/switchboard/switchboard/relay/wire"
)

// session is one relayed byte stream between a Control and a Client service.
type session struct {
	id           string
	control      string
	operator     string // who signed in at the Control; "" for key only
	controlKeyID string
	controlIP    string
	client       *client
	service      string
	started      time.Time
	up, down     counter // bytes Control→Client and Client→Control

	a, b     net.Conn // Control side, Client side
	stopOnce sync.Once
	// via is the node holding the Client when it is not this one.
	via string
	// hopFor is the node that brokered a session this node only relays
	// (its Client accepted here): that node lists and records it.
	hopFor string
	// endedBy is the operator who terminated it from a console.
	endedBy atomic.Pointer[string]
}

// terminate cuts both sides; the splice then ends and cleans up.
func (x *session) terminate() {
	x.stopOnce.Do(func() {
		x.a.Close()
		x.b.Close()
	})
}

// SessionInfo describes an active session, for the console.
type SessionInfo struct {
	ID        string
	Control   string
	Operator  string // "" when the Control was admitted by key alone
	ControlIP string
	Client    string
	Service   string
	Started   time.Time
	BytesUp   int64 // Control to Client
	BytesDown int64 // Client to Control
	// ClientNode is the node holding the Client, "" for this one.
	ClientNode string
	// Node is the node that brokers the session; the relay leaves it ""
	// for its own, and a cluster-wide list fills it in.
	Node string
}

// Sessions lists the active sessions, oldest first.
func (s *Server) Sessions() []SessionInfo {
	s.mu.Lock()
	xs := make([]*session, 0, len(s.sessions))
	for _, x := range s.sessions {
		xs = append(xs, x)
	}
	s.mu.Unlock()
	// Outside the lock: a spliced direction's count is a system call.
	out := make([]SessionInfo, 0, len(xs))
	for _, x := range xs {
		if x.hopFor != "" {
			continue
		}
		out = append(out, SessionInfo{
			ID: x.id, Control: x.control, Operator: x.operator, ControlIP: x.controlIP, Client: x.client.name,
			Service: x.service, Started: x.started, BytesUp: x.up.Load(), BytesDown: x.down.Load(), ClientNode: x.via,
		})
	}
	slices.SortFunc(out, func(a, b SessionInfo) int { return a.Started.Compare(b.Started) })
	return out
}

// TerminateSession cuts one session; false if there is no such session.
func (s *Server) TerminateSession(id string) bool { return s.TerminateSessionBy(id, "") }

// TerminateSessionBy cuts one session on operator by's request, which a
// console session's page then names (LocalSession.EndedBy).
func (s *Server) TerminateSessionBy(id, by string) bool {
	s.mu.Lock()
	x := s.sessions[id]
	s.mu.Unlock()
	if x == nil || x.hopFor != "" {
		return false
	}
	if by != "" {
		x.endedBy.Store(&by)
	}
	x.terminate()
	return true
}

// pendingOpen is a session waiting for its Client's accept connection.
type pendingOpen struct {
	client *client
	accept chan *peerConn // the Client's accept connection
	failed chan string    // the Client's reason for not accepting
	lost   chan struct{}  // the standby that carried the Open closed
}

// serveConnect brokers a session for a Control and then splices it.
func (s *Server) serveConnect(ctx context.Context, p *peerConn) error {
	ckey, operator, err := s.admitControl(ctx, p)
	if err != nil {
		return err
	}
	return s.connect(ctx, p, ckey, operator)
}

// admitControl checks a Control's key and signs its operator in. On
// refusal it has told the Control why and closed p.
func (s *Server) admitControl(ctx context.Context, p *peerConn) (Key, string, error) {
	h := p.hello
	ckey, ok := s.keys.check(p.nonce, h)
	if !ok {
		clientName, _, _ := strings.Cut(h.Target, "/")
		s.emit(event.ControlSecurityFailed(h.Name, clientName, p.publicIP))
		s.refuse(p, wire.CodeUnauthorized, "security check failed: the gateway key is not valid on this gateway")
		return Key{}, "", fmt.Errorf("relay: %s from %s: bad key", h.Role, p.publicIP)
	}
	operator, err := s.authenticate(ctx, p)
	if err != nil {
		return Key{}, "", err
	}
	return ckey, operator, nil
}

// connect brokers the session p.hello.Target names for an admitted
// Control and then splices it.
func (s *Server) connect(ctx context.Context, p *peerConn, ckey Key, operator string) error {
	h := p.hello
	clientName, service, _ := strings.Cut(h.Target, "/")
	c, mismatch := s.findClient(clientName, ckey.KeyID)
	if c == nil && s.peers != nil {
		// Another node may hold it, even under this key when a Client of
		// that name here holds another.
		rc := s.locate(ctx, clientName, ckey.KeyID)
		if rc.Found {
			return s.connectRemote(ctx, p, operator, ckey.KeyID, clientName, service, rc)
		}
		mismatch = mismatch || rc.Mismatch
	}
	if c == nil {
		if mismatch {
			s.emit(event.KeyMismatch(h.Name, clientName, p.publicIP))
			s.refuse(p, wire.CodeKeyMismatch, "security check failed: Client "+quote(clientName)+" does not hold this Control's gateway key")
			return fmt.Errorf("relay: connect %q from %s: key mismatch", clientName, p.publicIP)
		}
		s.refuse(p, wire.CodeNotFound, "no Client named "+quote(clientName)+" is connected")
		return fmt.Errorf("relay: connect %q from %s: no such client", clientName, p.publicIP)
	}
	if service == "" {
		if len(c.services) != 1 {
			s.refuse(p, wire.CodeBadRequest, fmt.Sprintf("Client %q offers %s: name one as CLIENT/SERVICE", c.name, serviceList(c.services)))
			return fmt.Errorf("relay: connect %q: no service named", clientName)
		}
		service = c.services[0]
	}
	if !c.offers(service) {
		s.refuse(p, wire.CodeNotFound, fmt.Sprintf("Client %q does not offer service %q (it offers %s)", c.name, service, serviceList(c.services)))
		return fmt.Errorf("relay: connect %q: no service %q", clientName, service)
	}

	id, po, abandon := s.pend(c)
	defer abandon()

	// The Control waits for Ready as long as the Client may take to accept.
	_ = p.conn.SetDeadline(time.Now().Add(s.openTimeout + 5*time.Second))
	open := wire.Open{SessionID: id, Service: service, Control: h.Name}
	onChannel := func() error {
		if err := c.send(wire.TypeOpen, open); err != nil {
			s.sessionFailed(p, c.name, operator, "the Client did not take the session request")
			s.refuse(p, wire.CodeUnavailable, "Client "+quote(c.name)+" did not take the session request")
			return fmt.Errorf("relay: connect %q: %w", clientName, err)
		}
		return nil
	}
	if !s.openOnStandby(clientKey{c.name, c.keyID}, open) {
		if err := onChannel(); err != nil {
			return err
		}
	}
	timer := time.NewTimer(s.openTimeout)
	defer timer.Stop()
	var acc *peerConn
	for acc == nil {
		select {
		case <-po.lost:
			// The standby closed under the Open (the Client retired it at that
			// moment, or went away): ask on the control channel instead.
			if err := onChannel(); err != nil {
				return err
			}
		case acc = <-po.accept:
		case reason := <-po.failed:
			abandon()
			return s.clientFailed(p, c.name, operator, service, reason)
		case <-timer.C:
			abandon()
			s.sessionFailed(p, c.name, operator, fmt.Sprintf("the Client did not answer within %s", s.openTimeout))
			s.refuse(p, wire.CodeUnavailable, fmt.Sprintf("Client %q did not answer the session request within %s", c.name, s.openTimeout))
			return fmt.Errorf("relay: connect %q/%s: client did not answer", clientName, service)
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
	x := &session{
		id: id, control: h.Name, operator: operator, controlKeyID: ckey.KeyID, controlIP: p.publicIP,
		client: c, service: service, started: time.Now(), a: p.conn, b: acc.conn,
	}
	return s.runSession(ctx, x, p, acc, true, nil)
}

// clientFailed answers a Control whose Client could not open service.
func (s *Server) clientFailed(p *peerConn, client, operator, service, reason string) error {
	s.sessionFailed(p, client, operator, fmt.Sprintf("the Client could not open service %s: %s", service, reason))
	s.refuse(p, wire.CodeUnavailable, fmt.Sprintf("Client %q could not open service %q: %s", client, service, reason))
	return fmt.Errorf("relay: connect %q/%s: client failed: %s", client, service, reason)
}

// checkClientKey checks the key of a Client's session connection (an
// accept or a standby); on refusal it has told the peer and closed it.
func (s *Server) checkClientKey(p *peerConn) (Key, error) {
	h := p.hello
	key, ok := s.keys.check(p.nonce, h)
	if !ok {
		s.emit(event.ClientSecurityFailed(h.Name, "", p.publicIP))
		s.refuse(p, wire.CodeUnauthorized, "security check failed: the gateway key is not valid on this gateway")
		return Key{}, fmt.Errorf("relay: %s from %s: bad key", h.Role, p.publicIP)
	}
	return key, nil
}

// sessionFailed records a session the Control asked for that never began.
func (s *Server) sessionFailed(p *peerConn, client, operator, reason string) {
	e := event.SessionFailed(p.hello.Name, client, p.publicIP, reason)
	e.Operator = operator
	s.emit(e)
}

// pend registers a session request for c under a fresh ID. abandon
// withdraws it; it is safe to call more than once, and answers an accept
// that took the request in the meantime rather than leaving it waiting
// for a Ready.
func (s *Server) pend(c *client) (id string, po *pendingOpen, abandon func()) {
	for {
		id = newID()
		if po, abandon, ok := s.pendAs(id, c); ok {
			return id, po, abandon
		}
	}
}

// pendAs is pend under a given ID; false if a request of that ID waits.
func (s *Server) pendAs(id string, c *client) (po *pendingOpen, abandon func(), ok bool) {
	po = &pendingOpen{client: c, accept: make(chan *peerConn, 1), failed: make(chan string, 1), lost: make(chan struct{}, 1)}
	s.mu.Lock()
	if s.pending[id] != nil {
		s.mu.Unlock()
		return nil, nil, false
	}
	s.pending[id] = po
	s.mu.Unlock()
	done := false
	abandon = func() {
		if done {
			return
		}
		done = true
		s.mu.Lock()
		if s.pending[id] == po {
			delete(s.pending, id)
		}
		s.mu.Unlock()
		select {
		case late := <-po.accept:
			s.refuse(late, wire.CodeNotFound, "the session request is no longer waiting")
		default:
		}
	}
	return po, abandon, true
}

// runSession lists x, sends Ready (to b only when readyB: a Client that
// got its Ready from another node must not get a second one as session
// bytes), splices until both directions end, and records the session.
// fromA, when set, is the source of a's bytes instead of a's connection.
// A hop (a session relayed for another node) is that node's to record.
func (s *Server) runSession(ctx context.Context, x *session, a, b *peerConn, readyB bool, fromA io.Reader) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		b.conn.Close()
		s.refuse(a, wire.CodeShutdown, "gateway is shutting down")
		return ErrClosed
	}
	s.sessions[x.id] = x
	s.mu.Unlock()
	s.version.Add(1)
	defer func() {
		s.mu.Lock()
		if s.sessions[x.id] == x {
			delete(s.sessions, x.id)
		}
		s.mu.Unlock()
		s.version.Add(1)
	}()

	if fromA == nil {
		fromA = readerFor(a)
	}
	fromB := readerFor(b)
	// The kernel's counts start before Ready: the peers send nothing
	// after their hello until they read it, so every byte received from
	// here on is the session's.
	x.up.k, x.down.k = baseline(fromA), baseline(fromB)
	ready := wire.Ready{SessionID: x.id}
	sides := []net.Conn{a.conn}
	if readyB {
		sides = []net.Conn{b.conn, a.conn}
	}
	for _, conn := range sides {
		if err := wire.WriteFrame(conn, wire.TypeReady, ready); err != nil {
			x.terminate()
			return fmt.Errorf("relay: session %s: %w", x.id, err)
		}
	}
	_ = a.conn.SetDeadline(time.Time{})
	_ = b.conn.SetDeadline(time.Time{})
	record := x.hopFor == ""
	if record {
		started := event.SessionStarted(x.control, x.client.name, x.controlIP)
		started.Operator = x.operator
		s.emit(started)
	}
	stop := context.AfterFunc(ctx, x.terminate)
	s.splice(x, fromA, fromB)
	stop()
	x.terminate()
	if record {
		ended := event.SessionEnded(x.control, x.client.name, x.controlIP)
		ended.Operator = x.operator
		s.emit(ended)
	}
	return nil
}

// readerFor is the side's source of session bytes: the bare connection when
// the handshake left nothing buffered (peers must not send before Ready, so
// that is the normal case and keeps splice(2) possible).
func readerFor(p *peerConn) io.Reader {
	if p.r == nil || p.r.Buffered() == 0 {
		return p.conn
	}
	return io.MultiReader(io.LimitReader(p.r, int64(p.r.Buffered())), p.conn)
}

func serviceList(ss []string) string {
	if len(ss) == 0 {
		return "no services"
	}
	return strings.Join(ss, ", ")
}

// findClient finds the Client named name that holds keyID. When none does
// but a Client of that name holds another key, mismatch is true.
func (s *Server) findClient(name, keyID string) (c *client, mismatch bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.clients[clientKey{name, keyID}]; c != nil {
		return c, false
	}
	for k := range s.clients {
		if k.name == name {
			return nil, true
		}
	}
	return nil, false
}

// serveAccept hands a Client's session connection to the waiting Control.
func (s *Server) serveAccept(p *peerConn) error {
	h := p.hello
	key, err := s.checkClientKey(p)
	if err != nil {
		return err
	}
	s.mu.Lock()
	po := s.pending[h.Target]
	if po != nil && (po.client.name != h.Name || po.client.keyID != key.KeyID) {
		po = nil
	}
	if po != nil {
		delete(s.pending, h.Target)
		// Under the lock, so that a Control giving up (abandon) either
		// finds the request still pending or finds this accept in the
		// channel. It never blocks: one accept per request, buffer of one.
		po.accept <- p
	}
	s.mu.Unlock()
	if po == nil {
		s.refuse(p, wire.CodeNotFound, "no session request "+quote(h.Target)+" is waiting for this Client")
		return fmt.Errorf("relay: accept %q from %s: no such session", h.Target, p.publicIP)
	}
	return nil
}

// openFailed passes a Client's refusal to the waiting Control.
func (s *Server) openFailed(c *client, of wire.OpenFailed) {
	s.mu.Lock()
	po := s.pending[of.SessionID]
	s.mu.Unlock()
	if po == nil || po.client != c {
		return
	}
	select {
	case po.failed <- wire.CleanMessage(of.Message):
	default:
	}
}

// splice copies both ways until both directions end. A direction that ends
// cleanly (EOF) half-closes its destination, so the other side sees EOF and
// can still answer; an error on either side tears the whole session down.
func (s *Server) splice(x *session, fromControl, fromClient io.Reader) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		// An error (a reset) on this side ends the session at once, not
		// when the other direction happens to end.
		if err := s.copyHalf(x.b, fromControl, &x.up, &s.bytesUp); err != nil {
			x.terminate()
		}
	}()
	if err := s.copyHalf(x.a, fromClient, &x.down, &s.bytesDown); err != nil {
		x.terminate()
	}
	<-done
}

type closeWriter interface{ CloseWrite() error }

// copyBufSize is the buffer of one direction of a session while it copies.
const copyBufSize = 32 << 10

var copyBufs = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

// counter counts one direction of a session so that the console's counts
// are live, even for a trickle of interactive bytes: by every write of the
// copying loop, or, while the kernel splices the direction, from the
// source socket's own count of bytes received (kernelCount).
type counter struct {
	n    atomic.Int64
	live atomic.Pointer[kernelCount] // set while the kernel splices
	k    *kernelCount                // the source's count, taken before Ready (baseline)
}

// baseline starts the kernel's count of what src receives, when src is a
// bare TCP connection on a kernel that counts; nil otherwise.
func baseline(src io.Reader) *kernelCount {
	if c := bareTCP(src); c != nil {
		return newKernelCount(c)
	}
	return nil
}

// bareConn is a connection wrapped for its first bytes only (the
// listener's TLS-or-plain sniffing): Bare is the connection underneath
// once those are read.
type bareConn interface {
	Bare() (net.Conn, bool)
}

// bareTCP is the *net.TCPConn that x is, or wraps with nothing left to
// replay; nil for anything else (TLS, a buffered reader).
func bareTCP(x any) *net.TCPConn {
	if b, ok := x.(bareConn); ok {
		c, ok := b.Bare()
		if !ok {
			return nil
		}
		x = c
	}
	c, _ := x.(*net.TCPConn)
	return c
}

// Load is the bytes copied so far.
func (c *counter) Load() int64 {
	if k := c.live.Load(); k != nil {
		if v, ok := k.read(); ok {
			return v
		}
	}
	return c.n.Load()
}

// pending is what Load counts that the Server's totals do not have yet:
// a splice adds its bytes to them when it ends.
func (c *counter) pending() int64 {
	if c.live.Load() == nil {
		return 0
	}
	return c.Load()
}

// copyHalf copies src to dst. Between two bare TCP connections (plain
// http, nothing buffered) it lets the kernel splice (io.Copy through
// *net.TCPConn.ReadFrom, splice(2) on Linux): no copy through user space,
// and the live count comes from TCP_INFO. Otherwise (TLS, a buffered
// reader, a link of another node, a kernel without the byte counters) it
// copies in a loop that counts every write; see docs/benchmarks.md for
// what each costs.
func (s *Server) copyHalf(dst net.Conn, src io.Reader, n *counter, total *atomic.Int64) error {
	if d, sc := bareTCP(dst), bareTCP(src); d != nil && sc != nil && n.k != nil {
		return spliceHalf(d, sc, n, n.k, total)
	}
	return copyLoop(dst, src, n, total)
}

// spliceHalf is copyHalf for two TCP connections.
func spliceHalf(dst, src *net.TCPConn, c *counter, k *kernelCount, total *atomic.Int64) error {
	c.live.Store(k)
	n, err := io.Copy(dst, src)
	c.n.Store(n)
	c.live.Store(nil)
	total.Add(n)
	if err != nil {
		return err
	}
	_ = dst.CloseWrite()
	return nil
}

// copyLoop is copyHalf through a pooled buffer, so an idle session holds
// none while it waits in Read... except the one it waits with.
func copyLoop(dst net.Conn, src io.Reader, c *counter, total *atomic.Int64) error {
	n := &c.n
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	for {
		nr, rerr := src.Read(buf)
		if nr > 0 {
			nw, werr := dst.Write(buf[:nr])
			n.Add(int64(nw))
			total.Add(int64(nw))
			if werr != nil {
				return werr
			}
		}
		if errors.Is(rerr, io.EOF) {
			if cw, ok := dst.(closeWriter); ok {
				_ = cw.CloseWrite()
			}
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}
