// Package signin decides whether an operator may in: the password, checked
// in constant time and throttled per account and per source address with a
// temporary lockout; the second factor (TOTP or Duo Push); and the short
// lived tokens that spare a Control from signing in on every browse. The
// console and the relay (through relay.Authenticator) both use it, so an
// operator meets the same rules and the same events everywhere.
package signin

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/switchboard/switchboard/db"
	"github.com/switchboard/switchboard/event"
	"github.com/switchboard/switchboard/password"
	"github.com/switchboard/switchboard/relay"
	"github.com/switchboard/switchboard/relay/wire"
	"github.com/switchboard/switchboard/twofactor/duo"
)

// Store is the part of the database sign-ins need.
type Store interface {
	SettingsStore
	Operator(ctx context.Context, name string) (db.Operator, error)
	HasOperators(ctx context.Context) (bool, error)
	SigninFailed(ctx context.Context, id int64, limit int, lockFor time.Duration) (bool, error)
	SigninSucceeded(ctx context.Context, id int64) error
	UseTOTPStep(ctx context.Context, id, step int64) (bool, error)
	AddControlToken(ctx context.Context, hash []byte, operatorID int64, control, publicIP string, expires time.Time) error
	UseControlToken(ctx context.Context, hash []byte) (db.Operator, error)
}

// Policy is how hard sign-in failures are throttled.
type Policy struct {
	// MaxFailures consecutive failures lock an account for LockFor.
	MaxFailures int
	LockFor     time.Duration
	// MaxAddressFailures failures from one source address within
	// AddressWindow refuse further attempts from it until the window ends,
	// whichever accounts they name: that stops one address from guessing
	// across many accounts without locking any.
	MaxAddressFailures int
	AddressWindow      time.Duration
}

// DefaultPolicy locks an account after 5 failures for 15 minutes and an
// address after 20 failures in 15 minutes.
var DefaultPolicy = Policy{MaxFailures: 5, LockFor: 15 * time.Minute, MaxAddressFailures: 20, AddressWindow: 15 * time.Minute}

// Config builds a Service.
type Config struct {
	Store  Store
	Events event.Sink
	Logger *slog.Logger
	Policy Policy // zero is DefaultPolicy
	// DuoRoots verifies Duo's API host; nil is the CA bundle Duo's library
	// carries for Duo's own hosts. An inspecting proxy or a test's local
	// Duo needs its own pool.
	DuoRoots *x509.CertPool
	Now      func() time.Time
}

// Service checks sign-ins. Its methods are safe for concurrent use.
type Service struct {
	store    Store
	events   event.Sink
	log      *slog.Logger
	policy   Policy
	duoRoots *x509.CertPool
	now      func() time.Time

	mu        sync.Mutex
	addresses map[string]*addressFailures
	hasOps    int // last known HasOperators: -1 unknown, 0 no, 1 yes
}

type addressFailures struct {
	count int
	since time.Time
}

// New returns a Service.
func New(cfg Config) *Service {
	s := &Service{
		store: cfg.Store, events: cfg.Events, log: cfg.Logger, policy: cfg.Policy,
		duoRoots: cfg.DuoRoots, now: cfg.Now, addresses: make(map[string]*addressFailures), hasOps: -1,
	}
	if s.policy == (Policy{}) {
		s.policy = DefaultPolicy
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.events == nil {
		s.events = event.SinkFunc(func(event.Event) {})
	}
	return s
}

// Sign-in refusals. Their texts are safe to show to whoever signs in and
// say nothing about whether an operator exists.
var (
	ErrBadCredentials = errors.New("wrong operator name or password")
	ErrLocked         = errors.New("too many failed sign-ins: this account is locked for a while, try again later")
	ErrThrottled      = errors.New("too many failed sign-ins from your address: try again later")
	ErrBadCode        = errors.New("wrong or already used code")
	ErrDuoDenied      = errors.New("the Duo Push was denied")
	ErrDuoTimeout     = errors.New("the Duo Push was not answered in time")
	ErrDuoUnavailable = errors.New("Duo cannot be reached, so the second factor cannot be checked: sign-in refused")
	ErrNoFactor       = errors.New("a second factor is required but this operator has none: enrol TOTP on the console's Account page, or ask an administrator to choose Duo Push")
)

// CheckPassword checks name and password from ip. Failures are events and
// count towards the lockouts; an unknown name costs the same time as a
// wrong password.
func (s *Service) CheckPassword(ctx context.Context, name, pw, ip string) (db.Operator, error) {
	if s.addressBlocked(ip) {
		s.events.Emit(event.SigninFailed(name, ip))
		return db.Operator{}, ErrThrottled
	}
	op, err := s.store.Operator(ctx, name)
	if errors.Is(err, db.ErrNotFound) {
		password.CheckDummy(pw)
		s.failed(ctx, nil, name, ip)
		return db.Operator{}, ErrBadCredentials
	}
	if err != nil {
		return db.Operator{}, fmt.Errorf("signin: %w", err)
	}
	if op.LockedUntil.After(s.now()) {
		// Not even checked: a locked account must not become an oracle.
		s.events.Emit(event.SigninFailed(name, ip))
		return db.Operator{}, ErrLocked
	}
	if err := password.Check(op.PasswordHash, pw); err != nil || op.Disabled {
		s.failed(ctx, &op, name, ip)
		return db.Operator{}, ErrBadCredentials
	}
	return op, nil
}

// CheckTOTP checks a TOTP code of op's. Each code is accepted once.
func (s *Service) CheckTOTP(ctx context.Context, op db.Operator, code, ip string) error {
	if op.TOTPSecret == "" {
		return ErrNoFactor
	}
	step, ok := totpStep(op.TOTPSecret, code, s.now())
	if ok {
		used, err := s.store.UseTOTPStep(ctx, op.ID, step)
		if err != nil {
			return fmt.Errorf("signin: %w", err)
		}
		if used {
			return nil
		}
	}
	s.failed(ctx, &op, op.Name, ip)
	return ErrBadCode
}

// Failed records a failed second factor that was checked elsewhere (a Duo
// Push denied in the console).
func (s *Service) Failed(ctx context.Context, op db.Operator, ip string) {
	s.failed(ctx, &op, op.Name, ip)
}

// failed records one failure: an event, the address's count and, for a
// real account, its count towards the lockout.
func (s *Service) failed(ctx context.Context, op *db.Operator, name, ip string) {
	s.events.Emit(event.SigninFailed(name, ip))
	s.countAddress(ip)
	if op == nil {
		return
	}
	locked, err := s.store.SigninFailed(ctx, op.ID, s.policy.MaxFailures, s.policy.LockFor)
	if err != nil {
		s.log.Warn("could not count a failed sign-in", "operator", op.Name, "err", err)
		return
	}
	if locked {
		s.events.Emit(event.OperatorLockedOut(op.Name))
	}
}

// Completed records a successful sign-in.
func (s *Service) Completed(ctx context.Context, op db.Operator, ip string) error {
	if err := s.store.SigninSucceeded(ctx, op.ID); err != nil {
		return fmt.Errorf("signin: %w", err)
	}
	s.events.Emit(event.OperatorSignedIn(op.Name, ip))
	return nil
}

func (s *Service) addressBlocked(ip string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.addresses[ip]
	if a == nil {
		return false
	}
	if s.now().Sub(a.since) > s.policy.AddressWindow {
		delete(s.addresses, ip)
		return false
	}
	return a.count >= s.policy.MaxAddressFailures
}

// maxAddresses bounds the failure table; a flood of addresses forgets the
// oldest windows first rather than growing without bound.
const maxAddresses = 100_000

func (s *Service) countAddress(ip string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	a := s.addresses[ip]
	if a == nil || now.Sub(a.since) > s.policy.AddressWindow {
		if len(s.addresses) >= maxAddresses {
			for k, v := range s.addresses {
				if now.Sub(v.since) > s.policy.AddressWindow {
					delete(s.addresses, k)
				}
			}
			if len(s.addresses) >= maxAddresses {
				clear(s.addresses)
			}
		}
		a = &addressFailures{since: now}
		s.addresses[ip] = a
	}
	a.count++
}

// Settings reads the 2FA settings.
func (s *Service) Settings(ctx context.Context) (Settings, error) { return LoadSettings(ctx, s.store) }

// Duo returns a Duo client for the current settings.
func (s *Service) Duo(set Settings) (*duo.Client, error) {
	if !set.DuoConfigured() {
		return nil, fmt.Errorf("signin: Duo Push is chosen but the Duo integration is not configured on the 2FA tab: %w", ErrDuoUnavailable)
	}
	return duo.New(duo.Config{
		IntegrationKey: set.DuoIntegrationKey, SecretKey: set.DuoSecretKey, APIHost: set.DuoAPIHost, RootCAs: s.duoRoots,
	})
}

// Authenticate signs in a Control's operator; see relay.Authenticator.
func (s *Service) Authenticate(ctx context.Context, req relay.AuthRequest, ch relay.AuthChannel) (relay.AuthResult, error) {
	has, err := s.hasOperators(ctx)
	if err != nil {
		return relay.AuthResult{}, err
	}
	if !has {
		return relay.AuthResult{}, nil
	}
	if req.Operator == "" {
		return relay.AuthResult{}, refusal(wire.CodeAuthRequired, "this gateway requires operators to sign in: give --user NAME")
	}
	if req.Token != "" && req.Password == "" {
		return s.useToken(ctx, req)
	}
	if req.Password == "" {
		return relay.AuthResult{}, refusal(wire.CodeAuthRequired, "operator "+req.Operator+" must sign in with a password")
	}
	op, err := s.CheckPassword(ctx, req.Operator, req.Password, req.PublicIP)
	if err != nil {
		return relay.AuthResult{}, refusalFor(err)
	}
	set, err := s.Settings(ctx)
	if err != nil {
		return relay.AuthResult{}, err
	}
	if set.Require2FA || op.Require2FA {
		if err := s.secondFactor(ctx, op, set, req, ch); err != nil {
			return relay.AuthResult{}, refusalFor(err)
		}
	}
	if err := s.Completed(ctx, op, req.PublicIP); err != nil {
		return relay.AuthResult{}, err
	}
	token, expires, err := s.issueToken(ctx, op, req, set.TokenTTL)
	if err != nil {
		return relay.AuthResult{}, err
	}
	return relay.AuthResult{Operator: op.Name, Token: token, Expires: expires}, nil
}

// secondFactor asks the Control for the operator's factor.
func (s *Service) secondFactor(ctx context.Context, op db.Operator, set Settings, req relay.AuthRequest, ch relay.AuthChannel) error {
	switch {
	case op.Factor == db.FactorTOTP && op.TOTPSecret != "":
		code, err := ch.Ask(ctx, wire.FactorTOTP, "TOTP code for operator "+op.Name, 2*time.Minute)
		if err != nil {
			return fmt.Errorf("signin: waiting for the TOTP code: %w", err)
		}
		return s.CheckTOTP(ctx, op, code, req.PublicIP)
	case op.Factor == db.FactorDuo:
		if err := ch.Tell(wire.FactorDuo, "Duo Push sent to "+op.Name+"'s phone: approve it to continue", set.DuoTimeout+15*time.Second); err != nil {
			return fmt.Errorf("signin: %w", err)
		}
		what := "Switchboard: Control " + req.Control + " browses"
		if req.Role == wire.RoleConnect {
			what = "Switchboard: Control " + req.Control + " connects to " + req.Target
		}
		return s.Push(ctx, op, set, req.PublicIP, what)
	default:
		s.events.Emit(event.SigninFailed(op.Name, req.PublicIP))
		return ErrNoFactor
	}
}

// Push sends op a Duo Push and waits for the answer or set.DuoTimeout.
// With Duo unreachable it fails closed unless set.DuoFailOpen.
func (s *Service) Push(ctx context.Context, op db.Operator, set Settings, ip, pushinfo string) error {
	client, err := s.Duo(set)
	if err == nil {
		pctx, cancel := context.WithTimeout(ctx, set.DuoTimeout)
		defer cancel()
		defer client.CloseIdleConnections()
		var res duo.Result
		res, err = client.Push(pctx, op.Name, ip, pushinfo)
		if err == nil {
			if res.Outcome == duo.Allow {
				return nil
			}
			s.failed(ctx, &op, op.Name, ip)
			return ErrDuoDenied
		}
	}
	return s.DuoError(ctx, op, set, ip, err)
}

// DuoError turns a failure to get an answer from Duo into the sign-in's
// outcome: nil when failing open, a refusal otherwise.
func (s *Service) DuoError(ctx context.Context, op db.Operator, set Settings, ip string, err error) error {
	switch {
	case errors.Is(err, duo.ErrTimeout):
		s.failed(ctx, &op, op.Name, ip)
		return ErrDuoTimeout
	case errors.Is(err, duo.ErrUnavailable) || errors.Is(err, ErrDuoUnavailable):
		s.log.Warn("Duo could not be reached", "operator", op.Name, "fail_open", set.DuoFailOpen, "err", err)
		if set.DuoFailOpen {
			s.events.Emit(event.DuoFailOpen(op.Name, ip))
			return nil
		}
		s.events.Emit(event.SigninFailed(op.Name, ip))
		return ErrDuoUnavailable
	case ctx.Err() != nil:
		return ctx.Err()
	}
	s.failed(ctx, &op, op.Name, ip)
	return fmt.Errorf("signin: Duo: %w", err)
}

func (s *Service) useToken(ctx context.Context, req relay.AuthRequest) (relay.AuthResult, error) {
	op, err := s.store.UseControlToken(ctx, hashToken(req.Token))
	if err != nil && !errors.Is(err, db.ErrNotFound) {
		return relay.AuthResult{}, err
	}
	if err != nil || op.Name != req.Operator || op.Disabled {
		return relay.AuthResult{}, refusal(wire.CodeTokenInvalid, "the Control's sign-in expired or was revoked: sign in again")
	}
	return relay.AuthResult{Operator: op.Name}, nil
}

func (s *Service) issueToken(ctx context.Context, op db.Operator, req relay.AuthRequest, ttl time.Duration) (string, time.Time, error) {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	token := base64.RawURLEncoding.EncodeToString(b)
	expires := s.now().Add(ttl).Truncate(time.Second)
	if err := s.store.AddControlToken(ctx, hashToken(token), op.ID, req.Control, req.PublicIP, expires); err != nil {
		return "", time.Time{}, fmt.Errorf("signin: %w", err)
	}
	return token, expires, nil
}

// hashToken is what is stored of a token: a token is 256 random bits, so a
// plain hash is enough to make a stolen table useless.
func hashToken(t string) []byte {
	h := sha256.Sum256([]byte(t))
	return h[:]
}

// hasOperators asks the database, and when it cannot, keeps to what it
// knew last: Controls admitted by key alone stay admitted through a
// database outage; Controls that must sign in are refused.
func (s *Service) hasOperators(ctx context.Context) (bool, error) {
	has, err := s.store.HasOperators(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		if s.hasOps == 0 {
			return false, nil
		}
		return false, fmt.Errorf("signin: %w", err)
	}
	s.hasOps = 0
	if has {
		s.hasOps = 1
	}
	return has, nil
}

func refusal(code, msg string) *wire.Error { return &wire.Error{Code: code, Message: msg} }

// refusalFor maps a sign-in error to what the Control is told.
func refusalFor(err error) error {
	switch {
	case errors.Is(err, ErrLocked), errors.Is(err, ErrThrottled):
		return refusal(wire.CodeLocked, err.Error())
	case errors.Is(err, ErrBadCredentials), errors.Is(err, ErrBadCode), errors.Is(err, ErrDuoDenied),
		errors.Is(err, ErrDuoTimeout), errors.Is(err, ErrNoFactor):
		return refusal(wire.CodeUnauthorized, err.Error())
	case errors.Is(err, ErrDuoUnavailable):
		return refusal(wire.CodeUnavailable, err.Error())
	}
	return err
}
