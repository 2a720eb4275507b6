// Package transport is how bytes reach the gateway: one listening port that
// speaks TLS to peers that start a TLS handshake and plain HTTP to those
// that do not (so blocking unencrypted peers can be a decision with an event
// rather than a silent failure), and the gateway's certificate, from an
// administrator's files (reloaded when replaced), from an ACME authority
// such as Let's Encrypt, or self-signed, generated once and kept.
package transport

import (
	"bufio"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"time"
)

// sniffTimeout bounds the wait for a new connection's first byte. It is the
// same bound a slow HTTP client gets for its headers.
const sniffTimeout = 10 * time.Second

// recordTypeHandshake is the first byte of every TLS connection.
const recordTypeHandshake = 0x16

// Listener accepts TCP connections and hands out *tls.Conn for those that
// start a TLS handshake and the plain connection for the others. Peeking
// happens in a goroutine per connection, so a silent peer never holds up
// Accept.
type Listener struct {
	ln    net.Listener
	tls   *tls.Config // nil: plain only
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
	err   error
	errMu sync.Mutex
	wg    sync.WaitGroup

	mu       sync.Mutex
	sniffing map[net.Conn]struct{} // closed by Close, so no sniff outlives it
}

// Listen wraps ln. With cfg nil every connection is served plain.
func Listen(ln net.Listener, cfg *tls.Config) *Listener {
	l := &Listener{ln: ln, tls: cfg, conns: make(chan net.Conn), done: make(chan struct{}), sniffing: map[net.Conn]struct{}{}}
	l.wg.Add(1)
	go l.acceptLoop()
	return l
}

func (l *Listener) acceptLoop() {
	defer l.wg.Done()
	for {
		c, err := l.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(5 * time.Millisecond)
				continue
			}
			l.errMu.Lock()
			l.err = err
			l.errMu.Unlock()
			l.Close()
			return
		}
		l.wg.Add(1)
		go l.sniff(c)
	}
}

func (l *Listener) sniff(c net.Conn) {
	defer l.wg.Done()
	if l.tls == nil {
		l.deliver(c)
		return
	}
	l.mu.Lock()
	l.sniffing[c] = struct{}{}
	l.mu.Unlock()
	_ = c.SetReadDeadline(time.Now().Add(sniffTimeout))
	br := bufio.NewReaderSize(c, 16) // bufio's minimum; Peek(1) reads what is there
	first, err := br.Peek(1)
	_ = c.SetReadDeadline(time.Time{})
	l.mu.Lock()
	delete(l.sniffing, c)
	l.mu.Unlock()
	if err != nil {
		c.Close()
		return
	}
	pc := &peekedConn{Conn: c, r: br}
	if first[0] == recordTypeHandshake {
		l.deliver(tls.Server(pc, l.tls))
		return
	}
	l.deliver(pc)
}

func (l *Listener) deliver(c net.Conn) {
	select {
	case l.conns <- c:
	case <-l.done:
		c.Close()
	}
}

// Accept returns the next connection, TLS or plain.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		l.errMu.Lock()
		defer l.errMu.Unlock()
		if l.err != nil {
			return nil, l.err
		}
		return nil, net.ErrClosed
	}
}

// Close stops accepting; connections being sniffed are closed.
func (l *Listener) Close() error {
	var err error
	l.once.Do(func() {
		close(l.done)
		err = l.ln.Close()
		l.mu.Lock()
		for c := range l.sniffing {
			c.Close()
		}
		l.mu.Unlock()
	})
	return err
}

// Addr is the listening address.
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }

// peekedConn replays the bytes read to tell TLS from plain; once they are
// read the connection is bare again.
type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (p *peekedConn) Read(b []byte) (int, error) {
	if p.r != nil {
		if p.r.Buffered() > 0 {
			return p.r.Read(b)
		}
		p.r = nil
	}
	return p.Conn.Read(b)
}

// Bare is the connection underneath once the peeked bytes have been
// read, so that a relay can splice it (splice(2) needs the *net.TCPConn);
// false while some are left. Call it from the goroutine that reads.
func (p *peekedConn) Bare() (net.Conn, bool) {
	if p.r != nil && p.r.Buffered() > 0 {
		return nil, false
	}
	return p.Conn, true
}

// CloseWrite passes a half-close on to the TCP connection.
func (p *peekedConn) CloseWrite() error {
	if cw, ok := p.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return p.Conn.Close()
}

// NetConn is the TCP connection underneath, for a data path that wants to
// splice: valid once the peeked byte has been read, which the HTTP request
// line always does.
func (p *peekedConn) NetConn() net.Conn { return p.Conn }
