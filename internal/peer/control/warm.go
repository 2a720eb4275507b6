package control

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/switchboard/switchboard/internal/peer"
	"github.com/switchboard/switchboard/relay/wire"
)

// Defaults of the warm pool Forward keeps.
const (
	defaultWarm     = 2
	defaultWarmIdle = 30 * time.Second
	// refillDelay is how long after a session started its warm
	// connection is replaced: past the session's first exchanges (an ssh
	// handshake's), which the replacement's own handshake would slow on
	// a small machine.
	refillDelay = 10 * time.Millisecond
	// warmRetry is how long a pool that could not fill waits before it
	// tries again (on the next session): a gateway that refuses warm
	// connections, or is down, costs a dial per this interval at most.
	warmRetry = 5 * time.Second
)

// warmPool holds connections to the gateway that have done everything a
// session's connection does before it names its target: TCP, TLS, the
// upgrade, the challenge, the key's proof and the operator's token. A
// session taken from it costs one frame to the gateway and the gateway's
// answer. It refills in the background after each take, and a connection
// nobody took for idle is closed, so a Forward nobody uses holds none.
type warmPool struct {
	c    *Control
	ctx  context.Context
	size int
	idle time.Duration

	mu      sync.Mutex
	conns   []*warmConn
	filling int
	failed  time.Time // last fill that failed
	closed  bool
	wg      sync.WaitGroup
}

type warmConn struct {
	conn  *peer.Conn
	timer *time.Timer // retires it after idle
}

// newWarmPool returns the pool of c for Forward, or nil when c keeps none.
func newWarmPool(ctx context.Context, c *Control) *warmPool {
	size, idle := c.Warm, c.WarmIdle
	if size == 0 {
		size = defaultWarm
	}
	if idle <= 0 {
		idle = defaultWarmIdle
	}
	if size < 0 {
		return nil
	}
	return &warmPool{c: c, ctx: ctx, size: size, idle: idle}
}

// take returns a warm connection, or nil. The caller refills the pool
// (fill) once its session is open (refillDelay): a refill's handshake
// would otherwise compete for the CPU with the session it is meant to
// speed up.
func (p *warmPool) take() *peer.Conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.conns) > 0 {
		wc := p.conns[len(p.conns)-1]
		p.conns = p.conns[:len(p.conns)-1]
		if wc.timer.Stop() {
			return wc.conn
		}
	}
	return nil
}

// fill starts dialling the connections the pool lacks.
func (p *warmPool) fill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fillLocked()
}

func (p *warmPool) fillLocked() {
	if p.closed || time.Since(p.failed) < warmRetry || !p.c.canWarm() {
		return
	}
	for len(p.conns)+p.filling < p.size {
		p.filling++
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			conn, err := p.c.warm(p.ctx)
			p.add(conn, err)
		}()
	}
}

func (p *warmPool) add(conn *peer.Conn, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.filling--
	if err != nil {
		p.failed = time.Now()
		return
	}
	if p.closed {
		conn.Close()
		return
	}
	wc := &warmConn{conn: conn}
	wc.timer = time.AfterFunc(p.idle, func() {
		p.mu.Lock()
		for i, x := range p.conns {
			if x == wc {
				p.conns = append(p.conns[:i], p.conns[i+1:]...)
				break
			}
		}
		p.mu.Unlock()
		conn.Close()
	})
	p.conns = append(p.conns, wc)
}

// close closes the pool's connections and waits for its dials.
func (p *warmPool) close() {
	p.mu.Lock()
	p.closed = true
	conns := p.conns
	p.conns = nil
	p.mu.Unlock()
	for _, wc := range conns {
		if wc.timer.Stop() {
			wc.conn.Close()
		}
	}
	p.wg.Wait()
}

// canWarm reports whether a connection can be verified ahead of a session:
// with no operators to sign in, or with a token. A password sign-in may
// need a person and is not done in the background.
func (c *Control) canWarm() bool { return c.Operator == "" || c.token() != "" }

// warm dials a connection and has the gateway verify it (role warm).
func (c *Control) warm(ctx context.Context) (*peer.Conn, error) {
	conn, err := c.dial(ctx, false)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	token := c.token()
	err = conn.SendKey(c.clientKeys(), wire.RoleWarm, c.Name, "", func(h *wire.Hello) {
		h.Operator, h.Token = c.Operator, token
	})
	for err == nil {
		var t wire.Type
		var payload []byte
		t, payload, err = wire.ReadFrame(conn.Reader())
		if err != nil {
			break
		}
		switch t {
		case wire.TypeStandby:
			conn.ClearDeadline()
			return conn, nil
		case wire.TypeAuthOK:
			var ok wire.AuthOK
			if err = wire.Decode(t, payload, &ok); err == nil {
				c.setToken(ok)
			}
		case wire.TypeError:
			var e wire.Error
			if err = wire.Decode(t, payload, &e); err == nil {
				err = &e
			}
		default:
			// A prompt for a second factor, or a gateway without warm
			// connections: this one is not for the background.
			err = fmt.Errorf("warm connection: got %s frame", t)
		}
	}
	conn.Close()
	return nil, err
}

// connectPooled opens a session to target on a warm connection of pool,
// or as Connect does when there is none or it turns out closed.
func (c *Control) connectPooled(ctx context.Context, pool *warmPool, target string) (net.Conn, error) {
	if pool == nil {
		return c.Connect(ctx, target)
	}
	defer time.AfterFunc(refillDelay, pool.fill) // a no-op once the pool is closed
	conn := pool.take()
	if conn == nil {
		return c.Connect(ctx, target)
	}
	s, err := c.connectOn(ctx, conn, target)
	var we *wire.Error
	if err == nil || errors.As(err, &we) || ctx.Err() != nil {
		// The gateway's answer (a Client not found, a key mismatch) is
		// the session's answer: asking again cold would get the same.
		return s, err
	}
	// The gateway closed it meanwhile (a restart, its own limit).
	return c.Connect(ctx, target)
}

// connectOn names target on a warm connection and waits for Ready.
func (c *Control) connectOn(ctx context.Context, conn *peer.Conn, target string) (net.Conn, error) {
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	// As in hello: the gateway may take its open timeout for the Client.
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	err := wire.WriteFrame(conn, wire.TypeConnectTo, wire.ConnectTo{Target: target})
	var r wire.Ready
	if err == nil {
		err = wire.Expect(conn.Reader(), wire.TypeReady, &r)
	}
	if err == nil && ctx.Err() != nil {
		err = ctx.Err()
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("connect to %s via %s: %w", target, c.Dialer.Gateway, err)
	}
	conn.ClearDeadline()
	return conn.Stream(), nil
}
