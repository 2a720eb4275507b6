package signin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/switchboard/switchboard/db"
	"github.com/switchboard/switchboard/relay"
	"github.com/switchboard/switchboard/relay/wire"
)

// admission is the copy of what admitting Controls needs; see Load.
type admission struct {
	hasOps     bool
	require2FA bool
	ops        map[int64]db.OperatorState
	tokens     map[string]cachedToken // by string(hash)
	// read is when the snapshot was started.
	read time.Time
}

type cachedToken struct {
	db.KeptSignin
	// local: added by this node after read, to be kept by the next
	// refresh if its snapshot was started before it was added.
	local time.Time
}

// Default timings of the copy.
const (
	// DefaultRefresh is how often the copy is read again.
	DefaultRefresh = 3 * time.Second
	// lookupTimeout bounds the database lookups that admit a Control, so
	// that a database that hangs rather than refuses falls back to the
	// copy soon.
	lookupTimeout = 3 * time.Second
	// staleEvery is how often forgotten throttle state is deleted.
	staleEvery = 10 * time.Minute
)

// Load reads the copy of what admitting Controls needs: whether operators
// exist, each operator's name, role, enabled state and 2FA requirement,
// the 2FA settings, and the hash, operator, Control and expiry of every
// live Control token. The gateway calls it once at start, before it admits
// anyone, so that the relay goes on admitting through a database outage
// (the design's rule: the relay keeps relaying while PostgreSQL is briefly
// unreachable), from its first Control on.
//
// Run keeps the copy current: every Refresh (3 s), and at once for what
// this node changes or learns itself (a token it issues, a token the
// database no longer knows, whether operators exist). While the database
// answers, it is the database that decides; the copy decides only while
// the database cannot be reached (a lookup fails, or takes more than 3 s;
// then, until Run reads the copy again, nothing waits for the database):
//
//   - whether operators exist: from the copy, so a gateway without
//     operators keeps admitting Controls by key alone, and one with
//     operators never does;
//   - kept Control sign-ins (tokens): admitted from the copy if the token's
//     hash is there, unexpired, for the same Control, of an operator who is
//     enabled and, when 2FA is required (for all or for that operator), it
//     proved the second factor; a token that is not in the copy is told to
//     try again shortly (it may have been issued on another node since the
//     last refresh) rather than to sign in again;
//   - passwords: refused, with a message saying the database cannot be
//     reached. A password could be checked against a cached hash, but the
//     attempt could not be counted before it is checked (the throttle
//     lives in PostgreSQL, shared by every node), so an outage would open
//     a window for unthrottled guessing; nor would a password changed or
//     an operator disabled on another node be seen. No password hash is
//     kept in memory.
func (s *Service) Load(ctx context.Context) error {
	started := time.Now()
	snap, err := s.store.SigninSnapshot(ctx)
	if err != nil {
		return fmt.Errorf("signin: load operators and Control sign-ins: %w", err)
	}
	set, err := s.Settings(ctx)
	if err != nil && unreachable(err) {
		return fmt.Errorf("signin: load operators and Control sign-ins: %w", err)
	}
	if err != nil {
		// A stored setting that does not parse: fail closed, kept
		// sign-ins without a second factor are not admitted from the copy.
		s.log.Warn("cannot read the 2FA settings; the copy in memory requires 2FA", "err", err)
		set.Require2FA = true
	}
	a := &admission{
		hasOps: len(snap.Operators) > 0, require2FA: set.Require2FA, read: started,
		ops: make(map[int64]db.OperatorState, len(snap.Operators)), tokens: make(map[string]cachedToken, len(snap.Tokens)),
	}
	for _, o := range snap.Operators {
		a.ops[o.ID] = o
	}
	for _, t := range snap.Tokens {
		a.tokens[string(t.Hash)] = cachedToken{KeptSignin: t}
	}
	s.admMu.Lock()
	defer s.admMu.Unlock()
	if old := s.adm; old != nil {
		for h, t := range old.tokens {
			if t.local.After(started) {
				a.tokens[h] = t
				if _, ok := a.ops[t.OperatorID]; !ok {
					a.ops[t.OperatorID] = old.ops[t.OperatorID]
				}
			}
		}
	}
	s.adm = a
	s.setHasOps(a.hasOps)
	return nil
}

// Run keeps the copy current until ctx ends, and now and then deletes
// throttle state that no longer counts.
func (s *Service) Run(ctx context.Context) {
	s.running.Store(true)
	defer func() {
		s.running.Store(false)
		s.down.Store(false)
	}()
	t := time.NewTicker(s.refresh)
	defer t.Stop()
	stale := time.NewTicker(staleEvery)
	defer stale.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-stale.C:
			if !s.down.Load() {
				if err := s.store.DeleteStaleSignins(ctx, s.policy.Window, s.policy.KnownFor); err != nil && ctx.Err() == nil {
					s.log.Warn("cannot delete old sign-in throttles", "err", err)
				}
			}
			continue
		case <-t.C:
		}
		lctx, cancel := context.WithTimeout(ctx, max(s.refresh, lookupTimeout))
		err := s.Load(lctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil && unreachable(err):
			s.markDown(err)
		case err != nil:
			if !failing {
				s.log.Warn("cannot read operators and Control sign-ins; keeping the copy in memory", "err", err)
			}
			failing = true
		default:
			failing = false
			s.markUp()
		}
	}
}

// markDown notes that the database cannot be reached: until the copy can
// be read again, Controls are admitted from it and passwords refused.
func (s *Service) markDown(err error) {
	if !s.running.Load() {
		// Without Run nothing would notice the database is back: every
		// call keeps asking it first.
		return
	}
	if !s.down.Swap(true) {
		s.log.Warn("cannot reach the database: kept Control sign-ins are admitted from the copy in memory, password sign-ins are refused until it is back",
			"err", err)
	}
}

// noteTrouble logs a failed lookup that falls back to the copy, and
// switches to the copy when the database cannot be reached.
func (s *Service) noteTrouble(err error) {
	if unreachable(err) {
		s.markDown(err)
		return
	}
	s.log.Warn("the database could not answer a sign-in lookup: using the copy in memory", "err", err)
}

func (s *Service) markUp() {
	if s.down.Swap(false) {
		s.log.Info("the database answers again: sign-ins are checked there again")
	}
}

// storeTrouble turns a failed store call into the sign-in's error: when
// the database cannot be reached (rather than refusing a query), the
// Service switches to the copy.
func (s *Service) storeTrouble(ctx context.Context, err error) error {
	if ctx.Err() != nil || !unreachable(err) {
		return fmt.Errorf("signin: %w", err)
	}
	s.markDown(err)
	return fmt.Errorf("signin: %w: %w", ErrUnavailable, err)
}

// unreachable reports whether err means the database could not be
// reached, or is shutting down, rather than that it answered with an
// error.
func unreachable(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		// Class 08: connection exception; 57: operator intervention
		// (shutdown, cannot connect now).
		return strings.HasPrefix(pgErr.Code, "08") || strings.HasPrefix(pgErr.Code, "57")
	}
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	return errors.As(err, &connectErr) || errors.As(err, &netErr) || pgconn.Timeout(err) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE)
}

func (s *Service) setHasOps(has bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hasOps = 0
	if has {
		s.hasOps = 1
	}
}

// hasOperators asks the database and, when it cannot be reached, keeps to
// what it knew last (the copy, or the last answer): Controls admitted by
// key alone stay admitted through a database outage; Controls that must
// sign in are checked against the copy. It is asked on every Control
// connection, so that the first operator added binds the very next
// Control.
func (s *Service) hasOperators(ctx context.Context) (bool, error) {
	if !s.down.Load() {
		lctx, cancel := context.WithTimeout(ctx, lookupTimeout)
		has, err := s.store.HasOperators(lctx)
		cancel()
		if err == nil {
			s.setHasOps(has)
			return has, nil
		}
		if ctx.Err() != nil {
			return false, fmt.Errorf("signin: %w", err)
		}
		s.noteTrouble(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch s.hasOps {
	case 0:
		return false, nil
	case 1:
		return true, nil
	}
	return false, fmt.Errorf("signin: whether operators exist is not known yet: %w", ErrUnavailable)
}

// useToken admits a Control by its kept sign-in.
func (s *Service) useToken(ctx context.Context, req relay.AuthRequest) (relay.AuthResult, error) {
	hash := hashToken(req.Token)
	if !s.down.Load() {
		lctx, cancel := context.WithTimeout(ctx, lookupTimeout)
		tok, op, err := s.store.UseControlToken(lctx, hash)
		cancel()
		switch {
		case err == nil:
			s.rememberToken(db.KeptSignin{Hash: hash, OperatorID: op.ID, Control: tok.Control, ExpiresAt: tok.ExpiresAt, SecondFactor: tok.SecondFactor}, op, false)
			return s.checkToken(ctx, req, tok, op)
		case errors.Is(err, db.ErrNotFound):
			s.forgetToken(hash)
			return relay.AuthResult{}, errTokenInvalid
		case ctx.Err() != nil:
			return relay.AuthResult{}, fmt.Errorf("signin: %w", err)
		}
		s.noteTrouble(err)
	}
	return s.tokenFromCopy(req, hash)
}

var errTokenInvalid = refusal(wire.CodeTokenInvalid, "the Control's sign-in expired or was revoked: sign in again")

// checkToken applies the rules to a token the database returned.
func (s *Service) checkToken(ctx context.Context, req relay.AuthRequest, tok db.ControlToken, op db.Operator) (relay.AuthResult, error) {
	if op.Name != req.Operator || op.Disabled || tok.Control != req.Control {
		return relay.AuthResult{}, errTokenInvalid
	}
	// Throttles do not apply: a token is not guessed, and a pair locked by
	// someone else's failures must not end the operator's kept sign-ins.
	if !tok.SecondFactor {
		set, err := s.Settings(ctx)
		if err != nil {
			return relay.AuthResult{}, s.storeTrouble(ctx, err)
		}
		if set.Require2FA || op.Require2FA {
			// 2FA became required after this sign-in: it must be proved now.
			return relay.AuthResult{}, errTokenInvalid
		}
	}
	return relay.AuthResult{Operator: op.Name}, nil
}

// tokenFromCopy admits a kept sign-in from the copy, while the database
// cannot be reached.
func (s *Service) tokenFromCopy(req relay.AuthRequest, hash []byte) (relay.AuthResult, error) {
	s.admMu.RLock()
	defer s.admMu.RUnlock()
	a := s.adm
	if a == nil {
		return relay.AuthResult{}, refusal(wire.CodeUnavailable, ErrUnavailable.Error())
	}
	t, ok := a.tokens[string(hash)]
	if !ok {
		// Perhaps issued on another node since the last refresh.
		return relay.AuthResult{}, refusal(wire.CodeUnavailable,
			"the gateway cannot reach its database and does not know this Control's sign-in: try again shortly")
	}
	op, ok := a.ops[t.OperatorID]
	if !ok || !t.ExpiresAt.After(s.now()) || op.Name != req.Operator || op.Disabled || t.Control != req.Control ||
		(!t.SecondFactor && (a.require2FA || op.Require2FA)) {
		return relay.AuthResult{}, errTokenInvalid
	}
	s.log.Debug("Control admitted from the copy of sign-ins: the database cannot be reached", "operator", op.Name, "control", req.Control)
	return relay.AuthResult{Operator: op.Name}, nil
}

// rememberToken puts a token into the copy; local marks one this node
// issued, which a refresh begun before must not drop.
func (s *Service) rememberToken(t db.KeptSignin, op db.Operator, local bool) {
	s.admMu.Lock()
	defer s.admMu.Unlock()
	if s.adm == nil {
		return
	}
	s.adm.ops[op.ID] = db.OperatorState{ID: op.ID, Name: op.Name, Role: op.Role, Disabled: op.Disabled, Factor: op.Factor, Require2FA: op.Require2FA}
	c := cachedToken{KeptSignin: t}
	if local {
		c.local = time.Now()
	}
	s.adm.tokens[string(t.Hash)] = c
}

func (s *Service) forgetToken(hash []byte) {
	s.admMu.Lock()
	defer s.admMu.Unlock()
	if s.adm != nil {
		delete(s.adm.tokens, string(hash))
	}
}
