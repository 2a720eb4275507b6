// Package control is the operator's side of Switchboard as a library: it
// browses the Clients a gateway key can see and opens sessions to their
// services, signing in as an operator when the gateway asks for one. The
// `switchboard control` commands and the tests are built on it.
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

// Control talks to one gateway with one key.
type Control struct {
	Dialer peer.Dialer
	// Secondary, when set, is the gateway tried when Dialer's (the
	// primary) cannot be reached: its dial fails (refused, reset, TLS, an
	// HTTP error). A refusal of the key or of the sign-in comes from a
	// gateway that answered and is returned as it is, without trying the
	// secondary.
	Secondary *peer.Dialer
	// Key is the gateway key. It must not change once the Control has
	// connected: the ClientKey derived from it is kept.
	Key string
	// KeyCache, when set, keeps the key's ClientKey beyond this process (the
	// gateways file of remembered gateways): a hit skips the deliberately
	// slow KDF, which a Control started per connection (ssh's
	// ProxyCommand) would otherwise pay on every start. Without it the
	// ClientKey is kept in memory only.
	KeyCache peer.KeyCache
	// Name identifies this Control in the gateway's events and console.
	Name string

	// Operator is who signs in when the gateway has operators.
	Operator string
	// Password asks for the operator's password. It is called only when
	// no token is held or the gateway refused the one held.
	Password func(ctx context.Context) (string, error)
	// Code asks for a TOTP code; prompt says what for.
	Code func(ctx context.Context, prompt string) (string, error)
	// Notify shows what the gateway is waiting for (a Duo Push approval).
	Notify func(message string)
	// Token is a sign-in kept from an earlier run; SaveToken is told of
	// new ones (and of a refused one, with an empty Token) so that they
	// outlive this process.
	Token     string
	SaveToken func(wire.AuthOK)

	// Warm is how many connections Forward keeps verified ahead of its
	// sessions, so that a session opens with one frame to the gateway
	// instead of a handshake: zero means 2, a negative value none.
	// WarmIdle retires one nobody took; zero means 30 s.
	Warm     int
	WarmIdle time.Duration

	mu        sync.Mutex // guards Token: Forward connects from several goroutines
	signingIn sync.Mutex // one password sign-in at a time

	keysOnce sync.Once
	keys     *peer.ClientKeys
	derive   func(salt []byte, key string) []byte // tests count derivations; nil: the default
}

// clientKeys is the key with its ClientKey, derived (or found in KeyCache)
// on the first handshake and kept for every later one.
func (c *Control) clientKeys() *peer.ClientKeys {
	c.keysOnce.Do(func() {
		c.keys = &peer.ClientKeys{Key: c.Key, Cache: c.KeyCache, Derive: c.derive}
	})
	return c.keys
}

// ErrCleartextPassword refuses to send a password where it could be read.
var ErrCleartextPassword = errors.New("refusing to send the operator password over unencrypted http://: use an https:// gateway URL")

// Browse lists the Clients that hold the Control's key.
func (c *Control) Browse(ctx context.Context) ([]wire.ClientInfo, error) {
	conn, t, payload, err := c.open(ctx, wire.RoleBrowse, "")
	if err != nil {
		return nil, fmt.Errorf("browse %s: %w", c.Dialer.Gateway, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	var out []wire.ClientInfo
	for {
		var list wire.ClientList
		if t != wire.TypeClientList {
			return nil, fmt.Errorf("browse %s: got %s frame, want %s", c.Dialer.Gateway, t, wire.TypeClientList)
		}
		if err := wire.Decode(t, payload, &list); err != nil {
			return nil, fmt.Errorf("browse %s: %w", c.Dialer.Gateway, err)
		}
		out = append(out, list.Clients...)
		if !list.More {
			return out, nil
		}
		if t, payload, err = wire.ReadFrame(conn.Reader()); err != nil {
			return nil, fmt.Errorf("browse %s: %w", c.Dialer.Gateway, err)
		}
	}
}

// Connect opens one session to target ("client" or "client/service") and
// returns its byte stream.
func (c *Control) Connect(ctx context.Context, target string) (net.Conn, error) {
	conn, t, payload, err := c.open(ctx, wire.RoleConnect, target)
	if err != nil {
		return nil, fmt.Errorf("connect to %s via %s: %w", target, c.Dialer.Gateway, err)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	var r wire.Ready
	if t != wire.TypeReady {
		conn.Close()
		return nil, fmt.Errorf("connect to %s via %s: got %s frame, want %s", target, c.Dialer.Gateway, t, wire.TypeReady)
	}
	if err := wire.Decode(t, payload, &r); err != nil {
		conn.Close()
		return nil, fmt.Errorf("connect to %s via %s: %w", target, c.Dialer.Gateway, err)
	}
	if ctx.Err() != nil {
		conn.Close()
		return nil, ctx.Err()
	}
	conn.ClearDeadline()
	return conn.Stream(), nil
}

// open dials, says Hello, signs in when asked and returns the first frame
// of the role's answer. A kept token the gateway refuses is forgotten and
// the sign-in repeated with the password.
func (c *Control) open(ctx context.Context, role, target string) (*peer.Conn, wire.Type, []byte, error) {
	if token := c.token(); token != "" || c.Operator == "" {
		conn, t, payload, err := c.attempt(ctx, role, target, "", token)
		var we *wire.Error
		if token == "" || !errors.As(err, &we) || we.Code != wire.CodeTokenInvalid {
			return conn, t, payload, err
		}
		c.dropToken(token)
	}
	// One sign-in at a time: Forward's other connections wait for its
	// token instead of each asking for a password and a code (and spending
	// one another's TOTP codes).
	c.signingIn.Lock()
	defer c.signingIn.Unlock()
	if token := c.token(); token != "" {
		return c.attempt(ctx, role, target, "", token)
	}
	if c.Password == nil {
		return nil, 0, nil, fmt.Errorf("operator %s needs a password and none can be asked for", c.Operator)
	}
	if !c.Dialer.Gateway.TLS && !c.Dialer.Gateway.Loopback() {
		return nil, 0, nil, ErrCleartextPassword
	}
	pw, err := c.Password(ctx)
	if err != nil {
		return nil, 0, nil, fmt.Errorf("password for operator %s: %w", c.Operator, err)
	}
	return c.attempt(ctx, role, target, pw, "")
}

// attempt is one connection: dial, Hello with pw or token, sign-in.
func (c *Control) attempt(ctx context.Context, role, target, pw, token string) (*peer.Conn, wire.Type, []byte, error) {
	conn, err := c.dial(ctx, pw != "")
	if err != nil {
		return nil, 0, nil, err
	}
	t, payload, err := c.hello(ctx, conn, role, target, pw, token)
	if err != nil {
		conn.Close()
		return nil, 0, nil, err
	}
	return conn, t, payload, nil
}

// dial connects to the primary and, when that fails, to the secondary.
// withPassword refuses a secondary where the password could be read, as
// open does for the primary.
func (c *Control) dial(ctx context.Context, withPassword bool) (*peer.Conn, error) {
	conn, err := c.Dialer.Dial(ctx)
	if err == nil || c.Secondary == nil || ctx.Err() != nil {
		return conn, err
	}
	if withPassword && !c.Secondary.Gateway.TLS && !c.Secondary.Gateway.Loopback() {
		return nil, fmt.Errorf("%w; not trying the secondary %s: %w", err, c.Secondary.Gateway, ErrCleartextPassword)
	}
	sconn, serr := c.Secondary.Dial(ctx)
	if serr != nil {
		return nil, fmt.Errorf("%w; secondary: %w", err, serr)
	}
	return sconn, nil
}

// hello sends the Hello and answers sign-in prompts until the first frame
// that is not about signing in.
func (c *Control) hello(ctx context.Context, conn *peer.Conn, role, target, pw, token string) (wire.Type, []byte, error) {
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	err := conn.SendKey(c.clientKeys(), role, c.Name, target, func(h *wire.Hello) {
		h.Operator = c.Operator
		if pw != "" {
			h.Password = pw
		} else {
			h.Token = token
		}
	})
	if err != nil {
		return 0, nil, err
	}
	// The gateway may take its open timeout (15 s) to get the Client's
	// answer: more than is left of the dial's deadline.
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	for {
		t, payload, err := wire.ReadFrame(conn.Reader())
		if err != nil {
			return 0, nil, err
		}
		switch t {
		case wire.TypeError:
			var e wire.Error
			if err := wire.Decode(t, payload, &e); err != nil {
				return 0, nil, err
			}
			return 0, nil, &e
		case wire.TypeAuthPrompt:
			var p wire.AuthPrompt
			if err := wire.Decode(t, payload, &p); err != nil {
				return 0, nil, err
			}
			// A person answers now: wait as long as the gateway does.
			wait := 5 * time.Minute
			if p.WaitSeconds > 0 {
				wait = time.Duration(p.WaitSeconds)*time.Second + 30*time.Second
			}
			_ = conn.SetDeadline(time.Now().Add(wait))
			if !p.Answer {
				if c.Notify != nil {
					c.Notify(p.Message)
				}
				continue
			}
			if c.Code == nil {
				return 0, nil, fmt.Errorf("the gateway asks for a %s code and none can be asked for", p.Factor)
			}
			code, err := c.Code(ctx, p.Message)
			if err != nil {
				return 0, nil, fmt.Errorf("%s code: %w", p.Factor, err)
			}
			if err := wire.WriteFrame(conn, wire.TypeAuthAnswer, wire.AuthAnswer{Code: code}); err != nil {
				return 0, nil, err
			}
		case wire.TypeAuthOK:
			var ok wire.AuthOK
			if err := wire.Decode(t, payload, &ok); err != nil {
				return 0, nil, err
			}
			c.setToken(ok)
			_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
		default:
			return t, payload, nil
		}
	}
}

func (c *Control) token() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.Token
}

// dropToken forgets token unless another connection already replaced it.
func (c *Control) dropToken(token string) {
	c.mu.Lock()
	same := c.Token == token
	c.mu.Unlock()
	if same {
		c.setToken(wire.AuthOK{})
	}
}

func (c *Control) setToken(ok wire.AuthOK) {
	c.mu.Lock()
	c.Token = ok.Token
	c.mu.Unlock()
	if c.SaveToken != nil {
		c.SaveToken(ok)
	}
}

// Forward accepts connections on ln until ctx is done and turns each into a
// session to target, like ssh -L. A session that cannot be opened closes its
// local connection and is reported to onError; the listener keeps going.
func (c *Control) Forward(ctx context.Context, ln net.Listener, target string, onError func(error)) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	pool := newWarmPool(ctx, c)
	if pool != nil {
		defer pool.close()
		pool.fill()
	}
	for {
		local, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("accept on %s: %w", ln.Addr(), err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer local.Close()
			remote, err := c.connectPooled(ctx, pool, target)
			if err != nil {
				if onError != nil {
					onError(err)
				}
				return
			}
			defer remote.Close()
			unstop := context.AfterFunc(ctx, func() { local.Close(); remote.Close() })
			defer unstop()
			peer.Pipe(local, remote)
		}()
	}
}
