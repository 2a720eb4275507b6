// Package peer opens connections to a gateway from the outside: it parses a
// gateway address, dials it (TLS or plain), performs the HTTP upgrade and
// reads the gateway's challenge. The Client agent and the Control both use
// it; what they say after the challenge is theirs.
package peer

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/switchboard/switchboard/relay/wire"
)

// Gateway is a parsed gateway address.
type Gateway struct {
	TLS  bool
	Host string // host:port
}

// ParseGateway accepts "https://host[:port]", "http://host[:port]" or a bare
// "host[:port]", which means https. The default port is 443 for both
// schemes, the gateway's default listening port.
func ParseGateway(s string) (Gateway, error) {
	if s == "" {
		return Gateway{}, fmt.Errorf("gateway address is empty")
	}
	g := Gateway{TLS: true}
	rest := s
	if i := strings.Index(s, "://"); i >= 0 {
		u, err := url.Parse(s)
		if err != nil {
			return Gateway{}, fmt.Errorf("gateway address %q: %w", s, err)
		}
		switch u.Scheme {
		case "https":
		case "http":
			g.TLS = false
		default:
			return Gateway{}, fmt.Errorf("gateway address %q: scheme must be http or https", s)
		}
		if u.Path != "" && u.Path != "/" {
			return Gateway{}, fmt.Errorf("gateway address %q: a path is not allowed", s)
		}
		rest = u.Host
	}
	if rest == "" {
		return Gateway{}, fmt.Errorf("gateway address %q has no host", s)
	}
	if _, _, err := net.SplitHostPort(rest); err != nil {
		rest = net.JoinHostPort(strings.Trim(rest, "[]"), "443")
	}
	g.Host = rest
	return g, nil
}

// Loopback reports whether the gateway is on this machine (localhost or a
// loopback address), where nothing sent to it crosses a network.
func (g Gateway) Loopback() bool {
	host, _, err := net.SplitHostPort(g.Host)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (g Gateway) String() string {
	if g.TLS {
		return "https://" + g.Host
	}
	return "http://" + g.Host
}

// Dialer holds what every connection to one gateway needs.
type Dialer struct {
	Gateway Gateway
	// TLS configures https gateways; nil means the system roots and the
	// gateway's host name.
	TLS *tls.Config
	// UserAgent is sent with the upgrade request.
	UserAgent string
	// Timeout bounds dialling plus the upgrade; zero means 15 s.
	Timeout time.Duration
	// Fingerprint, when set, pins the gateway's certificate by the SHA-256
	// of its DER bytes (lowercase hex) instead of verifying a chain: what a
	// self-signed gateway certificate needs.
	Fingerprint string
	// SessionCache lets later TLS connections resume the first one's
	// session: a Client's session connections then skip the full
	// handshake. Nil means every connection does a full one.
	SessionCache tls.ClientSessionCache
	// Proxy chooses an HTTP proxy for the gateway; nil means none.
	// ProxyFromEnvironment follows HTTPS_PROXY and NO_PROXY.
	Proxy func(Gateway) (*url.URL, error)
}

// To is a Dialer for another node of the same cluster, at rawURL, that
// the gateway this Dialer reaches named (in Open, Move or Nodes). It keeps
// the proxy, timeout, user agent and trusted roots; a certificate pin is
// for one gateway only, so it is replaced by fingerprint (the other node's,
// as its cluster knows it), and without one the chain is verified.
func (d *Dialer) To(rawURL, fingerprint string) (*Dialer, error) {
	gw, err := ParseGateway(rawURL)
	if err != nil {
		return nil, err
	}
	o := *d
	o.Gateway = gw
	o.Fingerprint = fingerprint
	if o.TLS != nil && o.TLS.ServerName != "" {
		o.TLS = o.TLS.Clone()
		o.TLS.ServerName = ""
	}
	return &o, nil
}

// Conn is an upgraded connection that has read the gateway's challenge.
type Conn struct {
	net.Conn
	r         *bufio.Reader
	gateway   Gateway
	Challenge wire.Challenge
}

// Dial connects, upgrades and reads the challenge. The handshake deadline is
// left set; Hello clears it once the handshake is over.
func (d *Dialer) Dial(ctx context.Context) (*Conn, error) {
	conn, br, resp, err := d.Upgrade(ctx, wire.Path, wire.Protocol, nil)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		msg := readSmallBody(resp)
		conn.Close()
		return nil, fmt.Errorf("gateway %s refused the relay connection: %s %s", d.Gateway, resp.Status, msg)
	}
	var ch wire.Challenge
	if err := wire.Expect(br, wire.TypeChallenge, &ch); err != nil {
		conn.Close()
		return nil, fmt.Errorf("gateway %s: %w", d.Gateway, err)
	}
	if ctx.Err() != nil {
		conn.Close()
		return nil, fmt.Errorf("gateway %s: %w", d.Gateway, ctx.Err())
	}
	return &Conn{Conn: conn, r: br, gateway: d.Gateway, Challenge: ch}, nil
}

// Upgrade connects (through the proxy, with TLS for https) and sends an
// HTTP/1.1 upgrade to protocol at path with header added. It returns the
// connection, its reader (which may hold bytes past the response) and the
// response, whatever its status; the caller checks it and closes conn.
// The deadline of Timeout is left set on conn.
func (d *Dialer) Upgrade(ctx context.Context, path, protocol string, header http.Header) (net.Conn, *bufio.Reader, *http.Response, error) {
	timeout := d.Timeout
	if timeout == 0 {
		timeout = 15 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	nd := net.Dialer{KeepAlive: 30 * time.Second}
	var proxy *url.URL
	if d.Proxy != nil {
		var err error
		if proxy, err = d.Proxy(d.Gateway); err != nil {
			return nil, nil, nil, fmt.Errorf("choose a proxy for %s: %w", d.Gateway, err)
		}
	}
	var raw net.Conn
	var err error
	if proxy != nil {
		raw, err = dialProxy(ctx, &nd, proxy, d.Gateway.Host)
	} else {
		raw, err = nd.DialContext(ctx, "tcp", d.Gateway.Host)
		if err != nil {
			err = fmt.Errorf("connect to gateway %s: %w", d.Gateway, err)
		}
	}
	if err != nil {
		return nil, nil, nil, err
	}
	conn := raw
	deadline, _ := ctx.Deadline()
	_ = raw.SetDeadline(deadline)
	// Close the socket if ctx ends while a read or write blocks.
	stop := context.AfterFunc(ctx, func() { _ = raw.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	if d.Gateway.TLS {
		cfg := d.TLS.Clone()
		if cfg == nil {
			cfg = &tls.Config{}
		}
		if cfg.ServerName == "" {
			cfg.ServerName, _, _ = net.SplitHostPort(d.Gateway.Host)
		}
		// The relay needs HTTP/1.1's Upgrade: never negotiate h2.
		cfg.NextProtos = []string{"http/1.1"}
		if d.SessionCache != nil && cfg.ClientSessionCache == nil {
			cfg.ClientSessionCache = d.SessionCache
		}
		if d.Fingerprint != "" {
			pin := d.Fingerprint
			// The pin replaces chain verification, not verification.
			cfg.InsecureSkipVerify = true
			cfg.VerifyConnection = func(cs tls.ConnectionState) error {
				if len(cs.PeerCertificates) == 0 {
					return fmt.Errorf("the gateway sent no certificate")
				}
				sum := sha256.Sum256(cs.PeerCertificates[0].Raw)
				if got := hex.EncodeToString(sum[:]); got != pin {
					return fmt.Errorf("the gateway's certificate fingerprint is %s, not the pinned %s: refusing to connect (a different gateway, or a machine in the middle)", got, pin)
				}
				return nil
			}
		}
		tc := tls.Client(raw, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			raw.Close()
			return nil, nil, nil, fmt.Errorf("TLS handshake with gateway %s: %w", d.Gateway, err)
		}
		conn = tc
	}

	var req strings.Builder
	req.WriteString("GET " + path + " HTTP/1.1\r\n" +
		"Host: " + d.Gateway.Host + "\r\n" +
		"Connection: Upgrade\r\n" +
		"Upgrade: " + protocol + "\r\n" +
		"User-Agent: " + d.UserAgent + "\r\n")
	for k, vs := range header {
		for _, v := range vs {
			req.WriteString(k + ": " + v + "\r\n")
		}
	}
	req.WriteString("\r\n")
	if _, err := conn.Write([]byte(req.String())); err != nil {
		conn.Close()
		return nil, nil, nil, fmt.Errorf("gateway %s: send upgrade: %w", d.Gateway, err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodGet})
	if err != nil {
		conn.Close()
		return nil, nil, nil, fmt.Errorf("gateway %s: read upgrade response: %w", d.Gateway, err)
	}
	if ctx.Err() != nil {
		conn.Close()
		return nil, nil, nil, fmt.Errorf("gateway %s: %w", d.Gateway, ctx.Err())
	}
	return conn, br, resp, nil
}

// ReadSmallBody is the start of a refusal's body, for an error message.
func ReadSmallBody(resp *http.Response) string { return readSmallBody(resp) }

func readSmallBody(resp *http.Response) string {
	defer resp.Body.Close()
	b := make([]byte, 512)
	n, _ := resp.Body.Read(b)
	return strings.TrimSpace(string(b[:n]))
}

// Send writes a Hello proving key for this connection's challenge. The
// ClientKey is derived once per process and salt (wire.NewHello); peers
// that keep their own, the Client agent and the Control, use SendKey.
func (c *Conn) Send(key, role, name, target string, fill func(*wire.Hello)) error {
	if err := c.checkChallenge(); err != nil {
		return err
	}
	return c.send(wire.NewHello(c.Challenge, key, role, name, target), fill)
}

// SendKey writes a Hello proving keys' gateway key for this connection's
// challenge, deriving its ClientKey only if keys has none for the
// gateway's salt.
func (c *Conn) SendKey(keys *ClientKeys, role, name, target string, fill func(*wire.Hello)) error {
	if err := c.checkChallenge(); err != nil {
		return err
	}
	return c.send(wire.NewHelloWithClientKey(c.Challenge, keys.ClientKey(c.Challenge.Salt), role, name, target), fill)
}

// checkChallenge refuses a gateway of another handshake version before
// anything is derived or sent: a proof it cannot check would only come back
// as a wrong key.
func (c *Conn) checkChallenge() error {
	if err := wire.CheckChallenge(c.Challenge); err != nil {
		return fmt.Errorf("gateway %s: %w", c.gateway, err)
	}
	return nil
}

func (c *Conn) send(h wire.Hello, fill func(*wire.Hello)) error {
	if fill != nil {
		fill(&h)
	}
	return wire.WriteFrame(c.Conn, wire.TypeHello, h)
}

// Read reads from the connection, first draining whatever the handshake
// reader already holds.
func (c *Conn) Read(p []byte) (int, error) {
	if c.r != nil {
		if c.r.Buffered() > 0 {
			return c.r.Read(p)
		}
		c.r = nil
	}
	return c.Conn.Read(p)
}

// Reader is the connection's frame reader.
func (c *Conn) Reader() *bufio.Reader {
	if c.r == nil {
		c.r = bufio.NewReaderSize(c.Conn, 512)
	}
	return c.r
}

// Stream returns the connection for raw session bytes after Ready: the bare
// connection when nothing is buffered, so io.Copy can splice it.
func (c *Conn) Stream() net.Conn {
	if c.r == nil || c.r.Buffered() == 0 {
		return c.Conn
	}
	return c
}

// ClearDeadline ends the handshake's deadline.
func (c *Conn) ClearDeadline() { _ = c.Conn.SetDeadline(time.Time{}) }

// CloseWrite half-closes the connection so the other side sees EOF.
func (c *Conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}
