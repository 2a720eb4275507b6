// Package relay is the gateway's core: it admits Clients and Controls that
// prove a gateway key, keeps the registry of connected Clients, applies the
// key-matching rules and the licence limit, brokers sessions and splices
// their bytes, and drops Clients whose heartbeats stop.
//
// It knows nothing of HTTP or of storage. The HTTP layer upgrades a request
// and hands the connection to Server.Accept; keys arrive through SetKeys and
// facts leave through an event.Sink.
package relay

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard/switchboard/internal/audit/event"
	"github.com/switchboard/switchboard/relay/wire"
)

// Config is the relay's configuration at start.
type Config struct {
	Node       string        // this gateway node's name, stamped on events
	Salt       []byte        // the installation's key salt (see wire.Verifier)
	MaxClients int           // licence limit; <= 0 is unlimited
	CMPI       time.Duration // heartbeat interval told to Clients; 0 is wire.DefaultCMPI
	Events     event.Sink
	Logger     *slog.Logger
	// Auth signs in Controls' operators; nil admits Controls by key alone.
	Auth Authenticator
	// Presence hears of every Client connection that registers and ends,
	// so that other nodes of a cluster can find it; nil for none.
	Presence Presence
	// Directory lists the Clients of every node of a cluster for browse
	// and the console; nil lists this node's alone.
	Directory Directory
	// Cluster tells how many Clients the other nodes of a cluster hold,
	// so that MaxClients is the licence of the whole cluster; nil counts
	// this node's Clients alone.
	Cluster Cluster
	// Peers reaches the other nodes of a cluster, for sessions to their
	// Clients; nil: a Control reaches this node's Clients alone.
	Peers Peers
	// Placer steers Clients between the nodes of a cluster; nil: none.
	Placer Placer

	// HandshakeTimeout bounds the time from upgrade to a verified Hello.
	// Ten seconds is ample on any real link and short enough that a stalled
	// or hostile peer cannot hold a slot for long. Zero means 10 s.
	HandshakeTimeout time.Duration
	// OpenTimeout bounds how long a Control waits for the Client to accept a
	// session (it dials its local service first). Zero means 15 s.
	OpenTimeout time.Duration
}

// Server is the relay core. Its methods are safe for concurrent use.
type Server struct {
	node             string
	events           event.Sink
	log              *slog.Logger
	handshakeTimeout time.Duration
	openTimeout      time.Duration
	auth             Authenticator
	presence         Presence
	directory        Directory
	cluster          Cluster
	peers            Peers
	placer           Placer

	keys       keyring
	maxClients atomic.Int64
	// closedToClients, when set, is why new Client registrations are
	// refused (SetAdmitClients).
	closedToClients atomic.Pointer[string]
	cmpi            atomic.Int64 // nanoseconds

	mu       sync.Mutex
	clients  map[clientKey]*client
	sessions map[string]*session
	pending  map[string]*pendingOpen
	standbys map[clientKey][]*standby
	nStandby int
	closed   bool
	// stopping is done once Close or Shutdown begins: sign-ins waiting
	// for a person end then.
	stopping context.Context
	stop     context.CancelFunc

	bytesUp, bytesDown atomic.Int64
	nWarm              atomic.Int64 // warm Control connections waiting
	opensOnStandby     atomic.Int64
	warmConnects       atomic.Int64
	serving            sync.WaitGroup // connections being served
	version            atomic.Uint64  // bumped when Clients or sessions come or go
}

// Version changes whenever a Client or a session comes or goes, so live
// views can tell cheaply whether to render again.
func (s *Server) Version() uint64 { return s.version.Load() }

type clientKey struct{ name, keyID string }

// New returns a relay with no keys: it refuses every Client and Control until
// SetKeys gives it some.
func New(cfg Config) *Server {
	s := &Server{
		node:             cfg.Node,
		events:           cfg.Events,
		log:              cfg.Logger,
		handshakeTimeout: cfg.HandshakeTimeout,
		openTimeout:      cfg.OpenTimeout,
		auth:             cfg.Auth,
		presence:         cfg.Presence,
		directory:        cfg.Directory,
		cluster:          cfg.Cluster,
		peers:            cfg.Peers,
		placer:           cfg.Placer,
		clients:          make(map[clientKey]*client),
		sessions:         make(map[string]*session),
		pending:          make(map[string]*pendingOpen),
		standbys:         make(map[clientKey][]*standby),
	}
	s.stopping, s.stop = context.WithCancel(context.Background())
	s.keys.salt = cfg.Salt
	if s.events == nil {
		s.events = event.SinkFunc(func(event.Event) {})
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.handshakeTimeout == 0 {
		s.handshakeTimeout = 10 * time.Second
	}
	if s.openTimeout == 0 {
		s.openTimeout = 15 * time.Second
	}
	s.maxClients.Store(int64(cfg.MaxClients))
	s.SetCMPI(cfg.CMPI)
	return s
}

func (s *Server) emit(e event.Event) {
	if e.Node == "" {
		e.Node = s.node
	}
	s.events.Emit(e)
}

// SetKeys replaces the gateway keys. Connections holding a key that is no
// longer there are closed; everything else is untouched. It reports whether
// anything changed.
func (s *Server) SetKeys(keys []Key) bool {
	removed, changed := s.keys.replace(keys)
	if len(removed) > 0 {
		gone := make(map[string]bool, len(removed))
		for _, id := range removed {
			gone[id] = true
		}
		s.dropKeys(gone)
	}
	return changed
}

// SetAdmitClients opens the node to new Client registrations, or closes
// it with a reason told to each Client refused (wire.CodeUnavailable, so
// the Client goes to its secondary or another node). Clients registered
// already stay.
func (s *Server) SetAdmitClients(admit bool, reason string) {
	if admit {
		s.closedToClients.Store(nil)
		return
	}
	s.closedToClients.Store(&reason)
}

// HasKeys reports whether any key admits connections.
func (s *Server) HasKeys() bool { return !s.keys.empty() }

// SetMaxClients changes the licence limit; Clients already in stay in.
func (s *Server) SetMaxClients(n int) { s.maxClients.Store(int64(n)) }

// CMPI is the current heartbeat interval.
func (s *Server) CMPI() time.Duration { return time.Duration(s.cmpi.Load()) }

// SetCMPI changes the heartbeat interval and tells every connected Client.
func (s *Server) SetCMPI(d time.Duration) {
	if d <= 0 {
		d = wire.DefaultCMPI
	}
	// The wire carries whole seconds: a shorter interval would reach the
	// Client as 0 (its default, 60 s) while the gateway dropped it after
	// three of its own.
	d = max(d.Round(time.Second), time.Second)
	if time.Duration(s.cmpi.Swap(int64(d))) == d {
		return
	}
	cfg := wire.Config{CMPISeconds: int(d / time.Second)}
	for _, c := range s.snapshotClients() {
		// Each send has its own deadline; a goroutine per Client keeps one
		// stuck Client from delaying the rest.
		go c.send(wire.TypeConfig, cfg)
	}
}

func (s *Server) snapshotClients() []*client {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*client, 0, len(s.clients))
	for _, c := range s.clients {
		out = append(out, c)
	}
	return out
}

// deadAfter is how long a Client may stay silent before it is dropped: three
// intervals, so two lost heartbeats are tolerated.
func (s *Server) deadAfter() time.Duration { return 3 * s.CMPI() }

// ErrClosed is returned for connections that arrive after Close.
var ErrClosed = errors.New("relay: server closed")

// Accept serves conn on a goroutine of its own and returns at once; errors
// go to the logger at debug level (they are the peers' mistakes, and each
// that matters is an event).
func (s *Server) Accept(ctx context.Context, conn net.Conn, r *bufio.Reader, publicIP string) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		conn.Close()
		return
	}
	s.serving.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.serving.Done()
		if err := s.serve(ctx, conn, r, publicIP); err != nil {
			s.log.Debug("relay connection ended", "remote", publicIP, "err", err)
		}
	}()
}

// serve runs one upgraded connection until it ends. r holds any bytes the
// HTTP layer read past the request; publicIP is the peer's address as seen
// by the gateway. serve owns conn and closes it.
func (s *Server) serve(ctx context.Context, conn net.Conn, r *bufio.Reader, publicIP string) error {
	// A stop ends a handshake at once instead of at its deadline.
	stopHandshake := context.AfterFunc(s.stopping, func() { conn.Close() })
	h, nonce, err := s.handshake(conn, r)
	if !stopHandshake() && err == nil {
		err = ErrClosed
	}
	if err != nil {
		conn.Close()
		return err
	}
	p := &peerConn{conn: conn, r: r, publicIP: publicIP, nonce: nonce, hello: h}
	if err := h.Check(); err != nil {
		return s.refuseHello(p, err)
	}
	if h.Handshake != wire.HandshakeVersion {
		return s.refuseVersion(p)
	}
	switch h.Role {
	case wire.RoleClient:
		return s.serveClient(ctx, p)
	case wire.RoleBrowse:
		return s.serveBrowse(ctx, p)
	case wire.RoleConnect:
		return s.serveConnect(ctx, p)
	case wire.RoleAccept:
		return s.serveAccept(p)
	case wire.RoleWarm:
		return s.serveWarm(ctx, p)
	case wire.RoleStandby:
		return s.serveStandby(p)
	}
	s.refuse(p, wire.CodeBadRequest, "unknown role "+quote(h.Role))
	return fmt.Errorf("relay: unknown role %q from %s", h.Role, publicIP)
}

type peerConn struct {
	conn     net.Conn
	r        *bufio.Reader
	publicIP string
	nonce    []byte
	hello    wire.Hello
}

func (s *Server) handshake(conn net.Conn, r *bufio.Reader) (wire.Hello, []byte, error) {
	_ = conn.SetDeadline(time.Now().Add(s.handshakeTimeout))
	nonce := make([]byte, 32)
	_, _ = rand.Read(nonce)
	ch := wire.Challenge{Version: wire.HandshakeVersion, Nonce: nonce, Salt: s.keys.salt, Node: s.node}
	if err := wire.WriteFrame(conn, wire.TypeChallenge, ch); err != nil {
		return wire.Hello{}, nil, fmt.Errorf("relay: handshake: %w", err)
	}
	h, err := wire.ReadHello(r)
	if err != nil {
		_ = wire.WriteFrame(conn, wire.TypeError, wire.Error{Code: wire.CodeBadRequest, Message: fmt.Sprintf("expected a hello frame of at most %d bytes", wire.MaxHelloPayload)})
		return wire.Hello{}, nil, fmt.Errorf("relay: handshake: %w", err)
	}
	if s.isClosed() {
		_ = wire.WriteFrame(conn, wire.TypeError, wire.Error{Code: wire.CodeShutdown, Message: "gateway is shutting down"})
		return wire.Hello{}, nil, ErrClosed
	}
	if !s.HasKeys() {
		_ = wire.WriteFrame(conn, wire.TypeError, wire.Error{Code: wire.CodeNoKeys, Message: "no gateway key is configured on this gateway; connections are refused until an administrator adds one"})
		return wire.Hello{}, nil, fmt.Errorf("relay: refused %s from %s: no gateway keys", h.Role, conn.RemoteAddr())
	}
	return h, nonce, nil
}

// refuseHello turns away a Hello with a field out of bounds. Nothing the
// peer sent has been believed yet, so the refusal is a security event that
// holds only the escaped, truncated form of what it claimed (event.Safe),
// and the peer learns which field failed but not whether its key is valid.
func (s *Server) refuseHello(p *peerConn, err error) error {
	h := p.hello
	switch h.Role {
	case wire.RoleBrowse:
		s.emit(event.BrowseSecurityFailed(p.publicIP))
	case wire.RoleConnect, wire.RoleWarm:
		client, _, _ := strings.Cut(h.Target, "/")
		s.emit(event.ControlSecurityFailed(h.Name, client, p.publicIP))
	default:
		s.emit(event.ClientSecurityFailed(h.Name, h.RealIP, p.publicIP))
	}
	s.refuse(p, wire.CodeBadRequest, "hello refused: "+err.Error())
	return fmt.Errorf("relay: hello from %s: %w", p.publicIP, err)
}

// refuse sends an Error frame and closes the connection.
func (s *Server) refuse(p *peerConn, code, msg string) {
	_ = p.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_ = wire.WriteFrame(p.conn, wire.TypeError, wire.Error{Code: code, Message: msg})
	p.conn.Close()
}

func quote(s string) string { return fmt.Sprintf("%q", s) }

func newID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Closed reports whether Shutdown or Close was called.
func (s *Server) Closed() bool { return s.isClosed() }

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// serveBrowse lists the Clients that hold the Control's key.
func (s *Server) serveBrowse(ctx context.Context, p *peerConn) error {
	defer p.conn.Close()
	key, ok := s.keys.check(p.nonce, p.hello)
	if !ok {
		s.emit(event.BrowseSecurityFailed(p.publicIP))
		s.refuse(p, wire.CodeUnauthorized, "security check failed: the gateway key is not valid on this gateway")
		return fmt.Errorf("relay: browse from %s: bad key", p.publicIP)
	}
	if _, err := s.authenticate(ctx, p); err != nil {
		return err
	}
	infos := s.browseList(ctx, key.KeyID)
	_ = p.conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
	const page = 500
	for i := 0; ; i += page {
		end := min(i+page, len(infos))
		list := wire.ClientList{Clients: infos[i:end], More: end < len(infos)}
		if err := wire.WriteFrame(p.conn, wire.TypeClientList, list); err != nil {
			return fmt.Errorf("relay: browse from %s: %w", p.publicIP, err)
		}
		if !list.More {
			return nil
		}
	}
}

// ClientInfo describes a connected Client, for browse and the console.
type ClientInfo struct {
	wire.ClientInfo
	KeyID    string
	KeyLabel string
}

// Clients lists every Client connected to this node, sorted by name.
func (s *Server) Clients() []ClientInfo {
	cs := s.snapshotClients()
	out := make([]ClientInfo, 0, len(cs))
	for _, c := range cs {
		key, _ := s.keys.lookup(c.keyID)
		out = append(out, ClientInfo{ClientInfo: s.clientInfo(c), KeyID: c.keyID, KeyLabel: key.Label})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// ClientsForKey lists the Clients holding keyID connected to this node,
// sorted by name.
func (s *Server) ClientsForKey(keyID string) []wire.ClientInfo {
	var out []wire.ClientInfo
	for _, c := range s.snapshotClients() {
		if c.keyID == keyID {
			out = append(out, s.clientInfo(c))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// clientInfo is c as browse shows it, with this node's name.
func (s *Server) clientInfo(c *client) wire.ClientInfo {
	in := c.info()
	in.Node = s.node
	return in
}

// Presence hears of Client connections as they register and end, with
// the connection's random id. Its methods are called on the relay's
// connection goroutines and must not block: queue, and write elsewhere.
type Presence interface {
	Registered(Registration)
	Unregistered(name, keyID, connID string)
}

// Cluster counts the Clients of the other nodes of a cluster, for the
// licence limit (MaxClients), which holds for the whole cluster: a Client
// is admitted while this node's Clients plus OtherClients stay below it.
// A Client is counted once wherever it is: OtherClients leaves out a row
// of the very Client asking (same name and key), since one failing over or
// moving uses no new licence. It is called with the relay's lock held, on
// every Client registration, so it must answer from memory and never
// block (no database round trip).
type Cluster interface {
	OtherClients(name, keyID string) int
}

// Registration is one registered Client connection.
type Registration struct {
	ClientInfo
	ConnID string
}

// Directory lists the Clients of every node of a cluster, with their
// node's name (wire.ClientInfo.Node).
type Directory interface {
	// ClientsForKey lists the Clients holding keyID, on every node.
	ClientsForKey(ctx context.Context, keyID string) ([]wire.ClientInfo, error)
	// Clients lists every Client of the cluster, with its KeyID.
	Clients(ctx context.Context) ([]ClientInfo, error)
}

// directoryTimeout bounds a Directory lookup: a database that does not
// answer in this time is treated as away.
const directoryTimeout = 3 * time.Second

// browseList is what a browse for keyID returns: this node's Clients (the
// truth for this node) and, with a Directory, the other nodes' Clients.
// When the Directory fails (a database outage) the browse lists this
// node's Clients alone and the failure is logged: the wire's ClientList
// has no field to say so, and a Control still sees every Client it can
// reach through this node.
func (s *Server) browseList(ctx context.Context, keyID string) []wire.ClientInfo {
	local := s.ClientsForKey(keyID)
	if s.directory == nil {
		return local
	}
	dctx, cancel := context.WithTimeout(ctx, directoryTimeout)
	defer cancel()
	all, err := s.directory.ClientsForKey(dctx, keyID)
	if err != nil {
		s.log.Warn("browse: cannot list the other nodes' Clients; listing this node's alone", "err", err)
		return local
	}
	here := make(map[string]bool, len(local))
	for _, c := range local {
		here[c.Name] = true
	}
	out := local
	for _, c := range all {
		if c.Node != s.node && !here[c.Name] {
			here[c.Name] = true
			out = append(out, c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// ClusterClients lists every Client of the cluster: this node's own, and
// the other nodes' from the Directory (none without one). With an error
// (the Directory failed) it still returns this node's Clients.
func (s *Server) ClusterClients(ctx context.Context) ([]ClientInfo, error) {
	local := s.Clients()
	if s.directory == nil {
		return local, nil
	}
	dctx, cancel := context.WithTimeout(ctx, directoryTimeout)
	defer cancel()
	all, err := s.directory.Clients(dctx)
	if err != nil {
		return local, err
	}
	here := make(map[clientKey]bool, len(local))
	for _, c := range local {
		here[clientKey{c.Name, c.KeyID}] = true
	}
	out := local
	for _, c := range all {
		k := clientKey{c.Name, c.KeyID}
		if c.Node == s.node || here[k] {
			continue
		}
		here[k] = true
		key, _ := s.keys.lookup(c.KeyID)
		c.KeyLabel = key.Label
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Registrations lists this node's Client connections with their ids.
func (s *Server) Registrations() []Registration {
	cs := s.snapshotClients()
	out := make([]Registration, 0, len(cs))
	for _, c := range cs {
		out = append(out, c.registration(s.node))
	}
	return out
}

// DropClient ends this node's connection of the Client name of keyID
// because the Client is connected elsewhere now (to another node of the
// cluster): the connection is told reason and closed, and, as with a
// connection replaced on this node, no "Disconnected" event is written,
// since the Client is still connected. A non-empty connID drops only that
// connection, so a newer one of the same Client is never cut by a
// decision taken about an older one. It reports whether it dropped one.
func (s *Server) DropClient(name, keyID, connID, reason string) bool {
	s.mu.Lock()
	c := s.clients[clientKey{name, keyID}]
	s.mu.Unlock()
	if c == nil || (connID != "" && c.connID != connID) {
		return false
	}
	c.replaced.Store(true)
	c.close(wire.Goodbye{Reason: reason})
	return true
}

// Stats are counters for metrics and the console.
type Stats struct {
	Clients   int
	Sessions  int
	BytesUp   int64 // Control to Client
	BytesDown int64 // Client to Control
	// Standbys is the Clients' standby connections waiting for an Open;
	// Warm the Controls' verified connections waiting for a target.
	Standbys, Warm int
	// OpensOnStandby and WarmConnects count, since start, the Opens sent
	// on a standby and the targets named on a warm connection: how often
	// the warm paths are taken.
	OpensOnStandby, WarmConnects int64
}

// Stats reports current counts and bytes relayed since start.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	st := Stats{Clients: len(s.clients), Standbys: s.nStandby, Warm: int(s.nWarm.Load()),
		OpensOnStandby: s.opensOnStandby.Load(), WarmConnects: s.warmConnects.Load()}
	xs := make([]*session, 0, len(s.sessions))
	for _, x := range s.sessions {
		xs = append(xs, x)
	}
	s.mu.Unlock()
	// Outside the lock: a spliced direction's count is a system call,
	// and registrations wait on the lock.
	for _, x := range xs {
		if x.hopFor == "" {
			st.Sessions++
		}
		// The bytes of directions the kernel splices reach the totals
		// when they end.
		st.BytesUp += x.up.pending()
		st.BytesDown += x.down.pending()
	}
	st.BytesUp += s.bytesUp.Load()
	st.BytesDown += s.bytesDown.Load()
	return st
}

// dropKeys disconnects every Client and session that used a removed key.
func (s *Server) dropKeys(gone map[string]bool) {
	s.drop(func(c *client) bool { return gone[c.keyID] },
		func(x *session) bool { return gone[x.controlKeyID] || gone[x.client.keyID] },
		"the gateway key this Client uses was removed")
}

// DropAll ends every connection and session but keeps accepting new ones:
// what a change of listening addresses needs.
func (s *Server) DropAll() {
	s.drop(func(*client) bool { return true }, func(*session) bool { return true }, "the gateway's listening addresses changed")
}

// Close ends every connection and refuses new ones. Sessions in progress are
// cut: callers wanting a grace period use Shutdown first.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.stop()
	s.drop(func(*client) bool { return true }, func(*session) bool { return true }, "the gateway is stopping")
}

// drop ends the sessions and Clients the predicates select; Clients are
// told why. Sessions go first so none outlives its Client's channel.
func (s *Server) drop(pickClient func(*client) bool, pickSession func(*session) bool, reason string) {
	s.mu.Lock()
	var cs []*client
	for _, c := range s.clients {
		if pickClient(c) {
			cs = append(cs, c)
		}
	}
	var ss []*session
	for _, x := range s.sessions {
		if pickSession(x) {
			ss = append(ss, x)
		}
	}
	s.dropStandbysLocked(pickClient)
	s.mu.Unlock()
	for _, x := range ss {
		x.terminate()
	}
	for _, c := range cs {
		c.close(wire.Goodbye{Reason: reason})
	}
}

// Shutdown refuses new connections and sessions, tells Clients the gateway is
// going, and waits for sessions in progress to end until ctx is done; then
// it closes everything.
func (s *Server) Shutdown(ctx context.Context) {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.stop()
	// Clients hear it first, so they can reconnect elsewhere at once; their
	// sessions run on connections of their own and may finish.
	s.drop(func(*client) bool { return true }, func(*session) bool { return false }, "the gateway is stopping")
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	// Sessions relayed for other nodes count too: cutting one would cut
	// another node's session.
	for s.allSessions() > 0 {
		select {
		case <-ctx.Done():
			s.Close()
			return
		case <-t.C:
		}
	}
	s.Close()
}

func (s *Server) allSessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// Wait waits until every accepted connection has been served, so that their events
// (Client disconnected, ...) are emitted before the caller's stop event.
func (s *Server) Wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() { s.serving.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("relay: connections still closing: %w", ctx.Err())
	}
}
