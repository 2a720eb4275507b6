package gateway

// Node-to-node links: how the nodes of a cluster ask each other for a
// session to a Client, for the sessions they broker, and for one of those
// to end (relay.Peers, and the console's cluster-wide Active Sessions).
//
// A link is one HTTP/1.1 upgrade to handlers.NodeLinkPath, protocol
// wire.NodeProtocol, on the other node's advertised URL: TLS whenever that
// URL is https, pinned to the certificate fingerprint the node renews in
// the nodes table with its lease. The request proves that the caller holds
// the installation's cluster secret (db.ClusterSecret, made once in
// PostgreSQL and never sent anywhere) without sending it:
//
//	Switchboard-Node:       the calling node's name
//	Switchboard-Node-To:    the called node's name
//	Switchboard-Node-Time:  Unix seconds
//	Switchboard-Node-Nonce: 32 random hex digits
//	Switchboard-Node-Mac:   hex HMAC-SHA256(secret, "switchboard node link v1\n" from "\n" to "\n" time "\n" nonce "\n")
//
// The called node answers 101 only to a MAC that checks, a time within
// linkSkew of its own clock (nodes are within MaxClockSkew of the
// database's) and a nonce it has not seen within twice that (a bounded
// memory of nonces, so a captured request cannot be replayed); anything
// else gets 403 and nothing more. Its 101 proves it holds the secret too:
//
//	Switchboard-Node-Proof: hex HMAC-SHA256(secret, "switchboard node link v1 reply\n" to "\n" from "\n" nonce "\n")
//
// After the 101 the caller sends one frame: NodeOpen (a session; see
// relay/cluster.go), NodeSessions (answered with SessionList frames),
// NodeEnd or NodeDrop (answered with Ready, or Error not_found).

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/switchboard/switchboard/db"
	"github.com/switchboard/switchboard/handlers"
	"github.com/switchboard/switchboard/internal/peer"
	"github.com/switchboard/switchboard/relay"
	"github.com/switchboard/switchboard/relay/wire"
)

const (
	hdrNodeFrom  = "Switchboard-Node"
	hdrNodeTo    = "Switchboard-Node-To"
	hdrNodeTime  = "Switchboard-Node-Time"
	hdrNodeNonce = "Switchboard-Node-Nonce"
	hdrNodeMAC   = "Switchboard-Node-Mac"
	hdrNodeProof = "Switchboard-Node-Proof"

	// linkSkew is how far a link request's time may be from this node's
	// clock: nodes are within 2×MaxClockSkew of each other, plus the time
	// a request takes.
	linkSkew = 30 * time.Second
	// linkNonces bounds the nonces remembered against replay (about 3 MB
	// at the bound); a node past it refuses links until old ones expire,
	// which at that rate means something is wrong.
	linkNonces = 1 << 16
	// linkDialTimeout bounds the TCP, TLS and upgrade of a link.
	linkDialTimeout = 5 * time.Second
	// linkAskTimeout bounds a session-list or end request to another node,
	// so that a console page never waits long for a slow node.
	linkAskTimeout = 2 * time.Second
)

// peers is relay.Peers, and serves the other nodes' links (http.Handler).
type peers struct {
	g      *Gateway
	secret []byte
	cache  tls.ClientSessionCache

	mu   sync.Mutex
	seen map[string]time.Time // nonce → when it may be forgotten
}

func newPeers(ctx context.Context, g *Gateway, st *db.DB) (*peers, error) {
	secret, err := st.ClusterSecret(ctx)
	if err != nil {
		return nil, err
	}
	return &peers{g: g, secret: secret, cache: tls.NewLRUClientSessionCache(64), seen: make(map[string]time.Time)}, nil
}

func (p *peers) mac(parts ...string) []byte {
	h := hmac.New(sha256.New, p.secret)
	for _, s := range parts {
		h.Write([]byte(s))
		h.Write([]byte{'\n'})
	}
	return h.Sum(nil)
}

func (p *peers) requestMAC(from, to, ts, nonce string) []byte {
	return p.mac("switchboard node link v1", from, to, ts, nonce)
}

func (p *peers) replyMAC(from, to, nonce string) []byte {
	return p.mac("switchboard node link v1 reply", to, from, nonce)
}

// errNotANode is all a caller that fails the check learns.
var errNotANode = errors.New("not a node of this cluster")

// verify checks a link request and returns the calling node's name.
func (p *peers) verify(r *http.Request) (string, error) {
	from, to := r.Header.Get(hdrNodeFrom), r.Header.Get(hdrNodeTo)
	ts, nonce := r.Header.Get(hdrNodeTime), r.Header.Get(hdrNodeNonce)
	if wire.CheckName("node", from) != nil || to != p.g.cfg.Node || from == to {
		return "", errNotANode
	}
	if len(nonce) != 32 || !lowerHex(nonce) {
		return "", errNotANode
	}
	got, err := hex.DecodeString(r.Header.Get(hdrNodeMAC))
	if err != nil || !hmac.Equal(got, p.requestMAC(from, to, ts, nonce)) {
		return "", errNotANode
	}
	// Only now, with the MAC good, is the rest worth looking at: nobody
	// without the secret can fill the nonce memory.
	sec, err := strconv.ParseInt(ts, 10, 64)
	now := time.Now()
	if err != nil || now.Sub(time.Unix(sec, 0)).Abs() > linkSkew {
		return "", fmt.Errorf("node %s: the link request's time is more than %s from this node's clock", from, linkSkew)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.seen[nonce]; ok {
		return "", fmt.Errorf("node %s: a link request replayed", from)
	}
	if len(p.seen) >= linkNonces {
		for n, until := range p.seen {
			if now.After(until) {
				delete(p.seen, n)
			}
		}
		if len(p.seen) >= linkNonces {
			return "", fmt.Errorf("node %s: too many link requests within %s", from, 2*linkSkew)
		}
	}
	p.seen[nonce] = now.Add(2 * linkSkew)
	return from, nil
}

// ServeHTTP serves a link from another node.
func (p *peers) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.EqualFold(r.Header.Get("Upgrade"), wire.NodeProtocol) {
		w.Header().Set("Upgrade", wire.NodeProtocol)
		http.Error(w, "this endpoint is for the nodes of a cluster", http.StatusUpgradeRequired)
		return
	}
	from, err := p.verify(r)
	if err != nil {
		p.g.log.Warn("cluster: node link refused", "remote", r.RemoteAddr, "err", err)
		http.Error(w, errNotANode.Error(), http.StatusForbidden)
		return
	}
	proof := http.Header{}
	proof.Set(hdrNodeProof, hex.EncodeToString(p.replyMAC(from, p.g.cfg.Node, r.Header.Get(hdrNodeNonce))))
	conn, br, err := handlers.SwitchProtocols(w, wire.NodeProtocol, proof)
	if err != nil {
		p.g.log.Error("cluster: node link", "err", err)
		return
	}
	p.serveLink(context.WithoutCancel(r.Context()), conn, br, from)
}

// serveLink answers the one request of a link; it owns conn.
func (p *peers) serveLink(ctx context.Context, conn net.Conn, br *bufio.Reader, from string) {
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	t, payload, err := wire.ReadFrameMax(br, wire.MaxHelloPayload)
	if err != nil {
		conn.Close()
		return
	}
	refuse := func(code, msg string) {
		_ = wire.WriteFrame(conn, wire.TypeError, wire.Error{Code: code, Message: msg})
		conn.Close()
	}
	switch t {
	case wire.TypeNodeOpen:
		var o wire.NodeOpen
		if err := wire.Decode(t, payload, &o); err != nil {
			refuse(wire.CodeBadRequest, "bad node-open frame")
			return
		}
		p.g.relay.ServeNodeOpen(ctx, conn, br, from, o)
	case wire.TypeNodeSessions:
		defer conn.Close()
		ss := p.g.relay.Sessions()
		const page = 1000
		for i := 0; ; i += page {
			end := min(i+page, len(ss))
			list := wire.SessionList{Sessions: make([]wire.SessionInfo, 0, end-i), More: end < len(ss)}
			for _, s := range ss[i:end] {
				list.Sessions = append(list.Sessions, wire.SessionInfo{
					ID: s.ID, Control: s.Control, Operator: s.Operator, ControlIP: s.ControlIP, Client: s.Client,
					ClientNode: s.ClientNode, Service: s.Service, Started: s.Started, BytesUp: s.BytesUp, BytesDown: s.BytesDown,
				})
			}
			if wire.WriteFrame(conn, wire.TypeSessionList, list) != nil || !list.More {
				return
			}
		}
	case wire.TypeNodeEnd:
		var e wire.NodeEnd
		if err := wire.Decode(t, payload, &e); err != nil || e.Check() != nil {
			refuse(wire.CodeBadRequest, "bad node-end frame")
			return
		}
		if !p.g.relay.TerminateSessionBy(e.SessionID, e.By) {
			refuse(wire.CodeNotFound, "that session has already ended")
			return
		}
		p.g.log.Info("cluster: session terminated at another node's request", "session", e.SessionID, "node", from, "by", e.By)
		_ = wire.WriteFrame(conn, wire.TypeReady, wire.Ready{SessionID: e.SessionID})
		conn.Close()
	case wire.TypeNodeDrop:
		var d wire.NodeDrop
		if err := wire.Decode(t, payload, &d); err != nil || d.Check() != nil {
			refuse(wire.CodeBadRequest, "bad node-drop frame")
			return
		}
		if !p.g.relay.DropClient(d.Client, d.KeyID, "", "disconnected by operator "+d.By+" (on node "+from+")") {
			refuse(wire.CodeNotFound, "that Client is no longer connected to node "+p.g.cfg.Node)
			return
		}
		p.g.log.Info("cluster: Client disconnected at another node's request", "client", d.Client, "node", from, "by", d.By)
		_ = wire.WriteFrame(conn, wire.TypeReady, wire.Ready{})
		conn.Close()
	default:
		refuse(wire.CodeBadRequest, "unexpected "+t.String()+" frame on a node link")
	}
}

// Locate is relay.Peers.
func (p *peers) Locate(ctx context.Context, name, keyID string) (relay.RemoteClient, error) {
	rows, err := p.g.DB().LocateClient(ctx, p.g.cfg.Node, name, keyID, db.NodeLease)
	if err != nil || len(rows) == 0 {
		return relay.RemoteClient{}, err
	}
	if rows[0].KeyID != keyID {
		return relay.RemoteClient{Mismatch: true}, nil
	}
	return relay.RemoteClient{Found: true, Node: rows[0].Node, Services: rows[0].Services}, nil
}

// Here is relay.Peers.
func (p *peers) Here() (string, string) {
	p.g.node.mu.Lock()
	url := p.g.node.url
	p.g.node.mu.Unlock()
	return url, p.g.Fingerprint()
}

// DialNode is relay.Peers: a link to node, authenticated both ways.
func (p *peers) DialNode(ctx context.Context, node string) (net.Conn, error) {
	n, err := p.g.DB().Node(ctx, node)
	if err != nil {
		return nil, err
	}
	if !n.LostAt.IsZero() || n.Age > db.NodeLease {
		return nil, fmt.Errorf("node %s is lost", node)
	}
	gw, err := peer.ParseGateway(n.AdvertiseURL)
	if err != nil {
		return nil, fmt.Errorf("node %s advertises %q: %w", node, n.AdvertiseURL, err)
	}
	d := peer.Dialer{Gateway: gw, Fingerprint: n.Fingerprint, Timeout: linkDialTimeout,
		UserAgent: "switchboard-node/" + p.g.cfg.Version, SessionCache: p.cache}
	var nb [16]byte
	_, _ = rand.Read(nb[:])
	from, nonce, ts := p.g.cfg.Node, hex.EncodeToString(nb[:]), strconv.FormatInt(time.Now().Unix(), 10)
	hdr := http.Header{}
	hdr.Set(hdrNodeFrom, from)
	hdr.Set(hdrNodeTo, node)
	hdr.Set(hdrNodeTime, ts)
	hdr.Set(hdrNodeNonce, nonce)
	hdr.Set(hdrNodeMAC, hex.EncodeToString(p.requestMAC(from, node, ts, nonce)))
	conn, br, resp, err := d.Upgrade(ctx, handlers.NodeLinkPath, wire.NodeProtocol, hdr)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", node, err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		msg := peer.ReadSmallBody(resp)
		conn.Close()
		return nil, fmt.Errorf("node %s refused the link: %s %s", node, resp.Status, msg)
	}
	proof, err := hex.DecodeString(resp.Header.Get(hdrNodeProof))
	if err != nil || !hmac.Equal(proof, p.replyMAC(from, node, nonce)) {
		conn.Close()
		return nil, fmt.Errorf("node %s (%s) did not prove it is a node of this cluster", node, n.AdvertiseURL)
	}
	_ = conn.SetDeadline(time.Time{})
	if br.Buffered() == 0 {
		return conn, nil
	}
	return &bufConn{Conn: conn, r: br}, nil
}

// bufConn is a link whose upgrade reader holds bytes past the response.
type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// CloseWrite passes a half-close on, as a session needs.
func (c *bufConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

// ask sends one request frame on a new link to node and hands the reply's
// reader to read.
func (p *peers) ask(ctx context.Context, node string, t wire.Type, v any, read func(r *bufio.Reader) error) error {
	ctx, cancel := context.WithTimeout(ctx, linkAskTimeout)
	defer cancel()
	conn, err := p.DialNode(ctx, node)
	if err != nil {
		return err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	_ = conn.SetDeadline(time.Now().Add(linkAskTimeout))
	if err := wire.WriteFrame(conn, t, v); err != nil {
		return fmt.Errorf("node %s: %w", node, err)
	}
	if err := read(bufio.NewReaderSize(conn, 4096)); err != nil {
		return fmt.Errorf("node %s: %w", node, err)
	}
	return nil
}

// maxRemoteSessions bounds what one node's answer may list.
const maxRemoteSessions = 100_000

// sessionsOf lists the sessions node brokers.
func (p *peers) sessionsOf(ctx context.Context, node string) ([]relay.SessionInfo, error) {
	var out []relay.SessionInfo
	err := p.ask(ctx, node, wire.TypeNodeSessions, wire.Empty{}, func(r *bufio.Reader) error {
		for {
			var list wire.SessionList
			if err := wire.Expect(r, wire.TypeSessionList, &list); err != nil {
				return err
			}
			for _, s := range list.Sessions {
				out = append(out, relay.SessionInfo{
					ID: s.ID, Control: s.Control, Operator: s.Operator, ControlIP: s.ControlIP, Client: s.Client,
					Service: s.Service, Started: s.Started, BytesUp: s.BytesUp, BytesDown: s.BytesDown,
					ClientNode: s.ClientNode, Node: node,
				})
			}
			if !list.More || len(out) > maxRemoteSessions {
				return nil
			}
		}
	})
	return out, err
}

// ClusterSessions lists the sessions of every live node, this one's first
// from memory; each is marked with the node that brokers it. Nodes that
// do not answer within linkAskTimeout are named in unreachable.
func (p *peers) ClusterSessions(ctx context.Context) (all []relay.SessionInfo, unreachable []string) {
	for _, s := range p.g.relay.Sessions() {
		s.Node = p.g.cfg.Node
		all = append(all, s)
	}
	nodes, err := p.g.DB().Nodes(ctx)
	if err != nil {
		return all, []string{"the other nodes (the database cannot be read)"}
	}
	type answer struct {
		node string
		ss   []relay.SessionInfo
		err  error
	}
	answers := make(chan answer)
	asked := 0
	for _, n := range nodes {
		if n.Name == p.g.cfg.Node || !n.LostAt.IsZero() || n.Age > db.NodeLease {
			continue
		}
		asked++
		go func() {
			ss, err := p.sessionsOf(ctx, n.Name)
			answers <- answer{n.Name, ss, err}
		}()
	}
	for range asked {
		a := <-answers
		if a.err != nil {
			p.g.log.Warn("cluster: cannot list another node's sessions", "node", a.node, "err", a.err)
			unreachable = append(unreachable, a.node)
			continue
		}
		all = append(all, a.ss...)
	}
	slices.SortFunc(all, func(a, b relay.SessionInfo) int { return a.Started.Compare(b.Started) })
	slices.Sort(unreachable)
	return all, unreachable
}

// errSessionGone is TerminateClusterSession's answer for a session that
// has ended already.
var errSessionGone = errors.New("that session has already ended")

// TerminateClusterSession ends session id, brokered by node (this one or
// another); by is the operator who asked.
func (p *peers) TerminateClusterSession(ctx context.Context, node, id, by string) error {
	if node == "" || node == p.g.cfg.Node {
		if !p.g.relay.TerminateSessionBy(id, by) {
			return errSessionGone
		}
		return nil
	}
	return p.ask(ctx, node, wire.TypeNodeEnd, wire.NodeEnd{SessionID: id, By: by}, func(r *bufio.Reader) error {
		var rd wire.Ready
		err := wire.Expect(r, wire.TypeReady, &rd)
		var we *wire.Error
		if errors.As(err, &we) && we.Code == wire.CodeNotFound {
			return errSessionGone
		}
		return err
	})
}

func lowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// checkAdvertise asks this node's own advertised URL for /healthz once it
// listens, and says clearly when the answer does not come from this node:
// the other nodes could not reach it, and Clients of other nodes would
// have their sessions with it relayed instead of coming here directly.
// It only warns: a URL may be reachable from everywhere but here (NAT
// without hairpin), and the node works either way.
func (p *peers) checkAdvertise(ctx context.Context) {
	url, fp := p.Here()
	if url == "" {
		return
	}
	gw, err := peer.ParseGateway(url)
	if err != nil {
		p.g.log.Error("cluster: --advertise is not a gateway URL", "advertise", url, "err", err)
		return
	}
	d := peer.Dialer{Gateway: gw, Fingerprint: fp, Timeout: 3 * time.Second, UserAgent: "switchboard-node/" + p.g.cfg.Version}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	name, err := healthzNode(ctx, &d)
	switch {
	case err != nil:
		p.g.log.Warn("cluster: this node's --advertise URL does not answer here; other nodes and their Clients must reach this node at it (sessions to this node's Clients from other nodes are relayed meanwhile)",
			"advertise", url, "err", err)
	case name != p.g.cfg.Node:
		p.g.log.Warn("cluster: this node's --advertise URL reaches another gateway; give each node a URL of its own",
			"advertise", url, "answered_by", name)
	default:
		p.g.log.Debug("cluster: --advertise reaches this node", "advertise", url)
	}
}

// healthzNode is the node name a gateway's /healthz answers with. It goes
// through peer.Dialer (the pin, a proxy) like every dial of a node; the
// Upgrade header it sends is one /healthz ignores.
func healthzNode(ctx context.Context, d *peer.Dialer) (string, error) {
	conn, _, resp, err := d.Upgrade(ctx, "/healthz", "none", nil)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("/healthz answered %s", resp.Status)
	}
	return resp.Header.Get(handlers.NodeHeader), nil
}

// errClientGone is DisconnectClusterClient's answer for a Client that
// left already.
var errClientGone = errors.New("that Client is no longer connected")

// DisconnectClusterClient closes the control channel of Client name (key
// keyID) that node holds; by is the operator asking. The Client's agent
// reconnects by itself, and its sessions go on.
func (p *peers) DisconnectClusterClient(ctx context.Context, node, name, keyID, by string) error {
	if node == "" || node == p.g.cfg.Node {
		if !p.g.relay.DropClient(name, keyID, "", "disconnected by operator "+by) {
			return errClientGone
		}
		return nil
	}
	return p.ask(ctx, node, wire.TypeNodeDrop, wire.NodeDrop{Client: name, KeyID: keyID, By: by}, func(r *bufio.Reader) error {
		var rd wire.Ready
		err := wire.Expect(r, wire.TypeReady, &rd)
		var we *wire.Error
		if errors.As(err, &we) && we.Code == wire.CodeNotFound {
			return errClientGone
		}
		return err
	})
}
