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
	"net/netip"
	"sync"
	"time"

	"github.com/switchboard/switchboard/db"
	"github.com/switchboard/switchboard/internal/audit/event"
	"github.com/switchboard/switchboard/internal/auth/duo"
	"github.com/switchboard/switchboard/internal/auth/password"
	"github.com/switchboard/switchboard/relay"
	"github.com/switchboard/switchboard/relay/wire"
)

// Store is the part of the database sign-ins need.
type Store interface {
	SettingsStore
	Operator(ctx context.Context, name string) (db.Operator, error)
	HasOperators(ctx context.Context) (bool, error)
	BeginSignin(ctx context.Context, id int64, limit int, lockFor time.Duration) (bool, error)
	SigninFailed(ctx context.Context, id int64, limit int, lockFor time.Duration) (bool, error)
	SigninStepPassed(ctx context.Context, id int64) error
	SigninSucceeded(ctx context.Context, id int64) error
	UseTOTPStep(ctx context.Context, id, step int64) (bool, error)
	AddControlToken(ctx context.Context, hash []byte, operatorID int64, control, publicIP string, expires time.Time, secondFactor bool) error
	UseControlToken(ctx context.Context, hash []byte) (db.ControlToken, db.Operator, error)
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
	// unknown counts failures for names that are not operators, so that a
	// lockout answers the same whether or not the name exists.
	unknown map[string]*addressFailures
	hasOps  int // last known HasOperators: -1 unknown, 0 no, 1 yes
}

type addressFailures struct {
	count int
	since time.Time
}

// New returns a Service.
func New(cfg Config) *Service {
	s := &Service{
		store: cfg.Store, events: cfg.Events, log: cfg.Logger, policy: cfg.Policy,
		duoRoots: cfg.DuoRoots, now: cfg.Now, addresses: make(map[string]*addressFailures),
		unknown: make(map[string]*addressFailures), hasOps: -1,
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
	ErrDuoConfig      = errors.New("Duo Push is this operator's second factor but the Duo integration is not configured (2FA tab): sign-in refused")
	ErrNoCode         = errors.New("no code was received in time")
	ErrNoFactor       = errors.New("a second factor is required but this operator has none: enrol TOTP on the console's Account page, or ask an administrator to choose Duo Push")
)

// ValidName reports whether name can be an operator's: 1 to 64
// characters, none of them a control character. Names go into events and
// log lines, where a line break would forge a line.
func ValidName(name string) bool {
	if name == "" || len(name) > 64 {
		return false
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// shownName is a name as events may show it.
func shownName(name string) string {
	if ValidName(name) {
		return name
	}
	return "(invalid name)"
}

// CheckPassword checks name and password from ip. Every attempt is counted
// before it is checked, per account and per address, so that parallel
// guesses cannot outrun the lockout; failures are events. An unknown name
// costs the same time as a wrong password and is locked out alike.
func (s *Service) CheckPassword(ctx context.Context, name, pw, ip string) (db.Operator, error) {
	if !s.beginAddress(ip) {
		s.events.Emit(event.SigninFailed(shownName(name), ip))
		return db.Operator{}, ErrThrottled
	}
	op, err := s.store.Operator(ctx, name)
	if errors.Is(err, db.ErrNotFound) || (err == nil && !ValidName(name)) {
		password.CheckDummy(pw)
		s.events.Emit(event.SigninFailed(shownName(name), ip))
		if s.unknownFailed(name) {
			return db.Operator{}, ErrLocked
		}
		return db.Operator{}, ErrBadCredentials
	}
	if err != nil {
		s.endAddress(ip)
		return db.Operator{}, fmt.Errorf("signin: %w", err)
	}
	if err := s.begin(ctx, op, ip); err != nil {
		return db.Operator{}, err
	}
	if err := password.Check(op.PasswordHash, pw); err != nil || op.Disabled {
		s.failed(ctx, op, ip)
		return db.Operator{}, ErrBadCredentials
	}
	if err := s.store.SigninStepPassed(ctx, op.ID); err != nil {
		return db.Operator{}, fmt.Errorf("signin: %w", err)
	}
	return op, nil
}

// begin counts one attempt on op's account, refusing it while locked.
func (s *Service) begin(ctx context.Context, op db.Operator, ip string) error {
	ok, err := s.store.BeginSignin(ctx, op.ID, s.policy.MaxFailures, s.policy.LockFor)
	if err != nil {
		s.endAddress(ip)
		return fmt.Errorf("signin: %w", err)
	}
	if !ok {
		// Not even checked: a locked account must not become an oracle.
		s.events.Emit(event.SigninFailed(op.Name, ip))
		return ErrLocked
	}
	return nil
}

// CheckTOTP checks a TOTP code of op's. Each code is accepted once, and
// each attempt counts towards the lockout before it is checked.
func (s *Service) CheckTOTP(ctx context.Context, op db.Operator, code, ip string) error {
	if op.TOTPSecret == "" {
		return ErrNoFactor
	}
	if !s.beginAddress(ip) {
		s.events.Emit(event.SigninFailed(op.Name, ip))
		return ErrThrottled
	}
	if err := s.begin(ctx, op, ip); err != nil {
		return err
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
	s.failed(ctx, op, ip)
	return ErrBadCode
}

// Failed ends an attempt begun with BeginPush whose push was denied in
// the console.
func (s *Service) Failed(ctx context.Context, op db.Operator, ip string) { s.failed(ctx, op, ip) }

// failed ends a counted attempt that failed: an event, and the lockout
// when the count has reached the limit.
func (s *Service) failed(ctx context.Context, op db.Operator, ip string) {
	s.events.Emit(event.SigninFailed(op.Name, ip))
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
	s.endAddress(ip)
	if err := s.store.SigninSucceeded(ctx, op.ID); err != nil {
		return fmt.Errorf("signin: %w", err)
	}
	s.events.Emit(event.OperatorSignedIn(op.Name, ip))
	return nil
}

// addressKey buckets an address: IPv6 by its /64, which one site or one
// attacker usually holds whole, so that rotating addresses within it gains
// nothing.
func addressKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil || a.Is4() || a.Is4In6() {
		return ip
	}
	p, _ := a.Prefix(64)
	return p.String()
}

// beginAddress counts an attempt from ip before it is checked and reports
// whether the address may try; a success takes it back (endAddress).
func (s *Service) beginAddress(ip string) bool {
	return s.count(s.addresses, addressKey(ip), s.policy.MaxAddressFailures, s.policy.AddressWindow)
}

func (s *Service) endAddress(ip string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a := s.addresses[addressKey(ip)]; a != nil && a.count > 0 {
		a.count--
	}
}

// unknownFailed counts a failure for a name that is no operator and
// reports whether that name is now "locked", as a real one would be.
func (s *Service) unknownFailed(name string) bool {
	if len(name) > 64 {
		name = name[:64]
	}
	return !s.count(s.unknown, name, s.policy.MaxFailures, s.policy.LockFor)
}

// maxTracked bounds each failure table; when full, windows that ended are
// dropped, then the oldest.
const maxTracked = 100_000

// count adds one to key's count in table within window and reports
// whether the count was below limit before.
func (s *Service) count(table map[string]*addressFailures, key string, limit int, window time.Duration) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	a := table[key]
	if a == nil || now.Sub(a.since) > window {
		if a == nil && len(table) >= maxTracked {
			evict(table, now, window)
		}
		a = &addressFailures{since: now}
		table[key] = a
	}
	if a.count >= limit {
		return false
	}
	a.count++
	return true
}

func evict(table map[string]*addressFailures, now time.Time, window time.Duration) {
	var oldestKey string
	var oldest time.Time
	for k, v := range table {
		if now.Sub(v.since) > window {
			delete(table, k)
			continue
		}
		if oldestKey == "" || v.since.Before(oldest) {
			oldestKey, oldest = k, v.since
		}
	}
	if len(table) >= maxTracked {
		delete(table, oldestKey)
	}
}

// Settings reads the 2FA settings.
func (s *Service) Settings(ctx context.Context) (Settings, error) { return LoadSettings(ctx, s.store) }

// Duo returns a Duo client for the current settings.
func (s *Service) Duo(set Settings) (*duo.Client, error) {
	if !set.DuoConfigured() {
		// Never an outage: failing open must not turn a missing
		// configuration into no second factor at all.
		return nil, ErrDuoConfig
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
	twoFA := set.Require2FA || op.Require2FA
	if twoFA {
		if err := s.secondFactor(ctx, op, set, req, ch); err != nil {
			return relay.AuthResult{}, refusalFor(err)
		}
	}
	if err := s.Completed(ctx, op, req.PublicIP); err != nil {
		return relay.AuthResult{}, err
	}
	token, expires, err := s.issueToken(ctx, op, req, set.TokenTTL, twoFA)
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
			s.log.Debug("no TOTP code", "operator", op.Name, "err", err)
			s.events.Emit(event.SigninFailed(op.Name, req.PublicIP))
			return ErrNoCode
		}
		return s.CheckTOTP(ctx, op, code, req.PublicIP)
	case op.Factor == db.FactorDuo:
		what := "Switchboard: Control " + req.Control + " browses"
		if req.Role == wire.RoleConnect {
			what = "Switchboard: Control " + req.Control + " connects to " + req.Target
		}
		return s.Push(ctx, op, set, req.PublicIP, what, func() error {
			return ch.Tell(wire.FactorDuo, "Duo Push sent to "+op.Name+"'s phone: approve it to continue", set.DuoTimeout+15*time.Second)
		})
	default:
		s.events.Emit(event.SigninFailed(op.Name, req.PublicIP))
		return ErrNoFactor
	}
}

// BeginPush counts a Duo Push attempt before it is sent, so that pushes
// are throttled like passwords.
func (s *Service) BeginPush(ctx context.Context, op db.Operator, ip string) error {
	if !s.beginAddress(ip) {
		s.events.Emit(event.SigninFailed(op.Name, ip))
		return ErrThrottled
	}
	return s.begin(ctx, op, ip)
}

// Push sends op a Duo Push, tells the person (sent) and waits for the
// answer or set.DuoTimeout. It fails open only when Duo cannot be reached
// before a push went out and an administrator chose so.
func (s *Service) Push(ctx context.Context, op db.Operator, set Settings, ip, pushinfo string, sent func() error) error {
	client, err := s.Duo(set)
	if err != nil {
		s.events.Emit(event.SigninFailed(op.Name, ip))
		return err
	}
	defer client.CloseIdleConnections()
	if err := s.BeginPush(ctx, op, ip); err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, set.DuoTimeout)
	defer cancel()
	txid, res, err := client.Start(pctx, op.Name, ip, pushinfo)
	if err != nil {
		return s.DuoError(ctx, op, set, ip, err, false)
	}
	if res == nil {
		if err := sent(); err != nil {
			// The Control is gone: nothing was guessed, nothing counts.
			if uerr := s.store.SigninStepPassed(ctx, op.ID); uerr != nil {
				s.log.Warn("could not uncount a sign-in attempt", "operator", op.Name, "err", uerr)
			}
			return fmt.Errorf("signin: %w", err)
		}
		r, err := client.Wait(pctx, txid)
		if err != nil {
			return s.DuoError(ctx, op, set, ip, err, true)
		}
		res = &r
	}
	if res.Outcome == duo.Allow {
		return nil
	}
	s.failed(ctx, op, ip)
	return ErrDuoDenied
}

// DuoError turns a failure to get an answer from Duo into the sign-in's
// outcome: nil when failing open, a refusal otherwise. sent tells whether
// a push had gone out: from then on nothing fails open, or an attacker
// holding the password could cut the answer off and walk in.
func (s *Service) DuoError(ctx context.Context, op db.Operator, set Settings, ip string, err error, sent bool) error {
	uncount := func() {
		if err := s.store.SigninStepPassed(ctx, op.ID); err != nil {
			s.log.Warn("could not uncount a sign-in attempt", "operator", op.Name, "err", err)
		}
	}
	switch {
	case errors.Is(err, duo.ErrTimeout) && ctx.Err() == nil:
		s.failed(ctx, op, ip)
		return ErrDuoTimeout
	case ctx.Err() != nil:
		uncount()
		return ctx.Err()
	case errors.Is(err, duo.ErrUnavailable) && !errors.Is(err, duo.ErrRateLimited) && !sent && set.DuoFailOpen:
		s.log.Warn("Duo could not be reached: failing open as configured", "operator", op.Name, "err", err)
		s.events.Emit(event.DuoFailOpen(op.Name, ip))
		return nil
	}
	// An outage, a rate limit, or Duo refusing the gateway's own
	// credentials: not the operator's guess, so it does not count towards
	// the lockout, and the sign-in is refused.
	s.log.Warn("Duo could not answer: sign-in refused", "operator", op.Name, "push_sent", sent, "err", err)
	uncount()
	s.events.Emit(event.SigninFailed(op.Name, ip))
	return ErrDuoUnavailable
}

func (s *Service) useToken(ctx context.Context, req relay.AuthRequest) (relay.AuthResult, error) {
	tok, op, err := s.store.UseControlToken(ctx, hashToken(req.Token))
	if err != nil && !errors.Is(err, db.ErrNotFound) {
		return relay.AuthResult{}, err
	}
	invalid := refusal(wire.CodeTokenInvalid, "the Control's sign-in expired or was revoked: sign in again")
	if err != nil || op.Name != req.Operator || op.Disabled || tok.Control != req.Control {
		return relay.AuthResult{}, invalid
	}
	if op.LockedUntil.After(s.now()) {
		return relay.AuthResult{}, refusalFor(ErrLocked)
	}
	if !tok.SecondFactor {
		set, err := s.Settings(ctx)
		if err != nil {
			return relay.AuthResult{}, err
		}
		if set.Require2FA || op.Require2FA {
			// 2FA became required after this sign-in: it must be proved now.
			return relay.AuthResult{}, invalid
		}
	}
	return relay.AuthResult{Operator: op.Name}, nil
}

func (s *Service) issueToken(ctx context.Context, op db.Operator, req relay.AuthRequest, ttl time.Duration, secondFactor bool) (string, time.Time, error) {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	token := base64.RawURLEncoding.EncodeToString(b)
	expires := s.now().Add(ttl).Truncate(time.Second)
	if err := s.store.AddControlToken(ctx, hashToken(token), op.ID, req.Control, req.PublicIP, expires, secondFactor); err != nil {
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
// database outage; Controls that must sign in are refused. It is asked on
// every Control connection, so that the first operator added binds the very
// next Control.
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

// refusalCodes are the sign-in refusals and the wire code a Control is
// told for each; any other error is the gateway's own trouble.
var refusalCodes = []struct {
	err  error
	code string
}{
	{ErrLocked, wire.CodeLocked}, {ErrThrottled, wire.CodeLocked},
	{ErrBadCredentials, wire.CodeUnauthorized}, {ErrBadCode, wire.CodeUnauthorized},
	{ErrDuoDenied, wire.CodeUnauthorized}, {ErrDuoTimeout, wire.CodeUnauthorized},
	{ErrNoFactor, wire.CodeUnauthorized}, {ErrNoCode, wire.CodeUnauthorized},
	{ErrDuoUnavailable, wire.CodeUnavailable}, {ErrDuoConfig, wire.CodeUnavailable},
}

// IsRefusal reports whether err refuses a sign-in (its text is safe to
// show) rather than reporting a failure of the gateway.
func IsRefusal(err error) bool { return refusalCode(err) != "" }

func refusalCode(err error) string {
	for _, r := range refusalCodes {
		if errors.Is(err, r.err) {
			return r.code
		}
	}
	return ""
}

// refusalFor maps a sign-in error to what the Control is told.
func refusalFor(err error) error {
	if code := refusalCode(err); code != "" {
		return refusal(code, err.Error())
	}
	return err
}
