package relay

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/switchboard/switchboard/relay/wire"
)

// Authenticator signs in the operator behind a Control once its key has
// been checked. The relay knows nothing of operators: it passes on what the
// Control sent and talks to the Control for the second factor.
type Authenticator interface {
	// Authenticate returns who signed in ("" when the gateway has no
	// operators and the key alone admits). A refusal is a *wire.Error, sent
	// to the Control as it is; any other error is refused as unavailable.
	Authenticate(ctx context.Context, req AuthRequest, ch AuthChannel) (AuthResult, error)
}

// AuthRequest is what a Control presented.
type AuthRequest struct {
	Role     string // wire.RoleBrowse or wire.RoleConnect
	Control  string // the Control's name
	Target   string // connect only
	Operator string
	Password string
	Token    string
	PublicIP string
}

// AuthResult is a successful sign-in. Token is set when a new one was
// issued (sign-in with a password).
type AuthResult struct {
	Operator string
	Token    string
	Expires  time.Time
}

// AuthChannel is the Control, for the second factor.
type AuthChannel interface {
	// Ask shows message and waits up to wait for the Control's answer.
	Ask(ctx context.Context, factor, message string, wait time.Duration) (string, error)
	// Tell shows message; the Control keeps waiting for up to wait.
	Tell(factor, message string, wait time.Duration) error
}

// peerChannel is an AuthChannel over the Control's connection. While the
// Control waits (Tell), it watches the connection so that a Control that
// goes away cancels the sign-in instead of leaving a push to be approved
// for nobody.
type peerChannel struct {
	p        *peerConn
	cancel   context.CancelFunc
	watching chan struct{} // closed when the watcher has stopped
}

func (c *peerChannel) Ask(ctx context.Context, factor, message string, wait time.Duration) (string, error) {
	_ = c.p.conn.SetDeadline(time.Now().Add(wait))
	stop := context.AfterFunc(ctx, func() { _ = c.p.conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	prompt := wire.AuthPrompt{Factor: factor, Message: message, Answer: true, WaitSeconds: int(wait / time.Second)}
	if err := wire.WriteFrame(c.p.conn, wire.TypeAuthPrompt, prompt); err != nil {
		return "", err
	}
	var a wire.AuthAnswer
	if err := wire.Expect(c.p.r, wire.TypeAuthAnswer, &a); err != nil {
		return "", fmt.Errorf("relay: %s answer: %w", factor, err)
	}
	return a.Code, nil
}

func (c *peerChannel) Tell(factor, message string, wait time.Duration) error {
	_ = c.p.conn.SetDeadline(time.Now().Add(wait))
	prompt := wire.AuthPrompt{Factor: factor, Message: message, WaitSeconds: int(wait / time.Second)}
	if err := wire.WriteFrame(c.p.conn, wire.TypeAuthPrompt, prompt); err != nil {
		return err
	}
	if c.watching == nil {
		c.watching = make(chan struct{})
		go func() {
			defer close(c.watching)
			// The Control sends nothing while it waits: any byte, EOF or
			// error means it is gone or broken. Peek consumes nothing.
			if _, err := c.p.r.Peek(1); !errors.Is(err, os.ErrDeadlineExceeded) {
				c.cancel()
			}
		}()
	}
	return nil
}

// stop ends the watcher, if any, before the connection is used again.
func (c *peerChannel) stop() {
	if c.watching == nil {
		return
	}
	_ = c.p.conn.SetReadDeadline(time.Unix(1, 0))
	<-c.watching
	_ = c.p.conn.SetReadDeadline(time.Time{})
}

// authenticate signs in p's operator when the gateway has an
// Authenticator. On refusal it has told the Control why and closed p. The
// sign-in ends early when the gateway closes or the Control goes away.
func (s *Server) authenticate(ctx context.Context, p *peerConn) (string, error) {
	if s.auth == nil {
		return "", nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	unstop := context.AfterFunc(s.stopping, cancel)
	defer unstop()
	h := p.hello
	ch := &peerChannel{p: p, cancel: cancel}
	res, err := s.auth.Authenticate(ctx, AuthRequest{
		Role: h.Role, Control: h.Name, Target: h.Target,
		Operator: h.Operator, Password: h.Password, Token: h.Token, PublicIP: p.publicIP,
	}, ch)
	ch.stop()
	if err == nil && ctx.Err() != nil {
		err = ctx.Err()
	}
	if err != nil {
		var we *wire.Error
		switch {
		case errors.As(err, &we):
		case ctx.Err() != nil:
			we = &wire.Error{Code: wire.CodeShutdown, Message: "the sign-in was cut short: the gateway is stopping or the Control went away"}
		default:
			s.log.Warn("operator sign-in could not be checked", "control", h.Name, "err", err)
			we = &wire.Error{Code: wire.CodeUnavailable, Message: "the gateway cannot check operator sign-ins right now; try again shortly"}
		}
		s.refuse(p, we.Code, we.Message)
		return "", fmt.Errorf("relay: %s from %s: sign-in refused: %w", h.Role, p.publicIP, err)
	}
	_ = p.conn.SetDeadline(time.Now().Add(s.handshakeTimeout))
	if res.Token != "" {
		ok := wire.AuthOK{Operator: res.Operator, Token: res.Token, Expires: res.Expires}
		if err := wire.WriteFrame(p.conn, wire.TypeAuthOK, ok); err != nil {
			p.conn.Close()
			return "", fmt.Errorf("relay: %s from %s: %w", h.Role, p.publicIP, err)
		}
	}
	return res.Operator, nil
}
