package relay

import (
	"context"
	"errors"
	"fmt"
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

// peerChannel is an AuthChannel over the Control's connection.
type peerChannel struct{ p *peerConn }

func (c peerChannel) Ask(ctx context.Context, factor, message string, wait time.Duration) (string, error) {
	_ = c.p.conn.SetDeadline(time.Now().Add(wait))
	stop := context.AfterFunc(ctx, func() { _ = c.p.conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := wire.WriteFrame(c.p.conn, wire.TypeAuthPrompt, wire.AuthPrompt{Factor: factor, Message: message, Answer: true}); err != nil {
		return "", err
	}
	var a wire.AuthAnswer
	if err := wire.Expect(c.p.r, wire.TypeAuthAnswer, &a); err != nil {
		return "", fmt.Errorf("relay: %s answer: %w", factor, err)
	}
	return a.Code, nil
}

func (c peerChannel) Tell(factor, message string, wait time.Duration) error {
	_ = c.p.conn.SetDeadline(time.Now().Add(wait))
	return wire.WriteFrame(c.p.conn, wire.TypeAuthPrompt, wire.AuthPrompt{Factor: factor, Message: message})
}

// authenticate signs in p's operator when the gateway has an
// Authenticator. On refusal it has told the Control why and closed p.
func (s *Server) authenticate(ctx context.Context, p *peerConn) (string, error) {
	if s.auth == nil {
		return "", nil
	}
	h := p.hello
	res, err := s.auth.Authenticate(ctx, AuthRequest{
		Role: h.Role, Control: h.Name, Target: h.Target,
		Operator: h.Operator, Password: h.Password, Token: h.Token, PublicIP: p.publicIP,
	}, peerChannel{p})
	if err != nil {
		var we *wire.Error
		if !errors.As(err, &we) {
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
