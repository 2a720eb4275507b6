package pgtest

import (
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
)

// Proxy stands between a test's gateway and its database, so that a test
// can make the database vanish (Cut) and return (Restore) as an outage
// would, without stopping the server other tests share.
type Proxy struct {
	tb             testing.TB
	network        string
	listen, target string

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]struct{}
}

// NewProxy starts a proxy in front of the database at dbURL (a URL as
// MustURL gives) and returns it with the URL that goes through it.
func NewProxy(tb testing.TB, dbURL string) (*Proxy, string) {
	tb.Helper()
	cfg, err := pgx.ParseConfig(dbURL)
	if err != nil {
		tb.Fatal(err)
	}
	u, err := url.Parse(dbURL)
	if err != nil {
		tb.Fatal(err)
	}
	p := &Proxy{tb: tb, conns: map[net.Conn]struct{}{}}
	if strings.HasPrefix(cfg.Host, "/") {
		// A socket directory: ours must be short (sun_path).
		dir, err := os.MkdirTemp("", "sbpx")
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { os.RemoveAll(dir) })
		name := fmt.Sprintf(".s.PGSQL.%d", cfg.Port)
		p.network, p.target, p.listen = "unix", filepath.Join(cfg.Host, name), filepath.Join(dir, name)
		q := u.Query()
		q.Set("host", dir)
		u.RawQuery = q.Encode()
	} else {
		p.network, p.target, p.listen = "tcp", net.JoinHostPort(cfg.Host, fmt.Sprint(cfg.Port)), "127.0.0.1:0"
	}
	p.Restore()
	if p.network == "tcp" {
		p.listen = p.ln.Addr().String()
		u.Host = p.listen
	}
	tb.Cleanup(p.Cut)
	return p, u.String()
}

// Restore lets connections through again.
func (p *Proxy) Restore() {
	p.tb.Helper()
	if p.network == "unix" {
		os.Remove(p.listen)
	}
	ln, err := net.Listen(p.network, p.listen)
	if err != nil {
		p.tb.Fatal(err)
	}
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
}

func (p *Proxy) serve(c net.Conn) {
	s, err := net.Dial(p.network, p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if p.ln == nil {
		p.mu.Unlock()
		c.Close()
		s.Close()
		return
	}
	p.conns[c], p.conns[s] = struct{}{}, struct{}{}
	p.mu.Unlock()
	go func() { _, _ = io.Copy(s, c); s.Close() }()
	_, _ = io.Copy(c, s)
	c.Close()
}

// Cut breaks every connection and refuses new ones.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
}
