// Package signin decides whether an operator may in: the password, checked
// in constant time and throttled; the second factor (TOTP or Duo Push);
// and the short lived tokens that spare a Control from signing in on every
// browse. The console and the relay (through relay.Authenticator) both use
// it, so an operator meets the same rules and the same events everywhere.
//
// # Throttling
//
// Failures must slow an attacker down without giving anyone a way to lock
// an operator out (with an account lock, five wrong passwords from anywhere
// would keep the only admin out of the console and every Control out, for
// as long as someone keeps sending them). The rules, with DefaultPolicy's
// numbers:
//
//   - Per (operator, address): 5 attempts, none more than 15 minutes after
//     the previous, lock that pair for 15 minutes: "Operator NAME locked out
//     for ADDRESS". The operator can still sign in from anywhere else. An
//     address is an IPv4 address or an IPv6 /64.
//   - Per address: 20 failures in 15 minutes refuse the address, whatever
//     operator names it tries (kept in each node's memory).
//   - Per operator, from all addresses: no lock, but past 5 attempts within
//     15 minutes (none more than 15 minutes after the previous) every
//     further attempt from an address not known for the operator makes the
//     next such attempt wait 1 s, then 2 s, 4 s, ... up to 30 s; one that
//     comes early is refused unchecked ("try again in N seconds"). An
//     address is known for the operator for 30 days after a successful
//     sign-in from it: known addresses are never delayed, so the operator's
//     usual place keeps working while a distributed guesser elsewhere gets
//     about two guesses a minute. A second factor's code or push follows a
//     right password, whose attempt was delayed already, and is not delayed
//     again.
//
// An attempt (a password, a TOTP code or a Duo Push) is counted as a failure
// when it begins, before it is checked, and taken back when it succeeds;
// attempts of one operator are counted one at a time under that operator's
// row lock, so parallel guesses gain nothing. A successful sign-in clears
// its pair and makes its address known. The per-operator state lives in
// PostgreSQL, so every node of a cluster applies the same throttle;
// `switchboard operators unlock NAME` clears all of it for one operator.
// Names that are no operator are throttled alike, in memory, so that
// refusals say nothing about which names exist. Kept Control sign-ins
// (tokens) are never throttled: they are not guessed.
//
// # Database outages
//
// The relay admits Controls through an outage from a copy in memory of
// whether operators exist, the operators (name, role, enabled, 2FA) and the
// hashes of live Control tokens, read at start (Load) and kept current
// (Run): kept sign-ins go on working. Password sign-ins, at the console and
// from Controls, are refused while the database cannot be reached
// (ErrUnavailable): their attempts could not be counted. See Load.
//
// # Secrets at rest
//
// TOTP secrets and the Duo secret key are stored sealed (AES-256-GCM,
// internal/auth/sealed) with a key kept out of the database; see
// ProtectSecrets.
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
	"math"
	"sync"
	"sync/atomic"
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
	BeginSignin(ctx context.Context, id int64, address string, secondFactor bool, l db.SigninLimits) (db.SigninGate, error)
	SigninFailed(ctx context.Context, id int64, address string, l db.SigninLimits) (bool, error)
	SigninStepPassed(ctx context.Context, id int64, address string) error
	SigninCompleted(ctx context.Context, id int64, address string, knownFor time.Duration) error
	DeleteStaleSignins(ctx context.Context, window, knownFor time.Duration) error
	UseTOTPStep(ctx context.Context, id, step int64) (bool, error)
	AddControlToken(ctx context.Context, hash []byte, operatorID int64, control, publicIP string, expires time.Time, secondFactor bool) error
	UseControlToken(ctx context.Context, hash []byte) (db.ControlToken, db.Operator, error)
	SigninSnapshot(ctx context.Context) (db.SigninSnapshot, error)
}

// Config builds a Service.
type Config struct {
	Store  Store
	Events event.Sink
	Logger *slog.Logger
	Policy Policy // zero fields are DefaultPolicy's
	// DuoRoots verifies Duo's API host; nil is the CA bundle Duo's library
	// carries for Duo's own hosts. An inspecting proxy or a test's local
	// Duo needs its own pool.
	DuoRoots *x509.CertPool
	Now      func() time.Time
	// Refresh is how often Run reads the copy of operators and Control
	// sign-ins again; zero is DefaultRefresh.
	Refresh time.Duration
}

// Service checks sign-ins. Its methods are safe for concurrent use.
// Without Load and Run it checks everything in the database, and keeps
// only whether operators exist for an outage.
type Service struct {
	store    Store
	events   event.Sink
	log      *slog.Logger
	policy   Policy
	duoRoots *x509.CertPool
	now      func() time.Time
	refresh  time.Duration

	mu        sync.Mutex
	addresses map[string]*addressFailures
	// ghostPairs and ghostNames throttle names that are not operators, so
	// that refusals answer the same whether or not the name exists.
	ghostPairs map[string]*ghostPair
	ghostNames map[string]*ghostName
	hasOps     int // last known HasOperators: -1 unknown, 0 no, 1 yes

	// The copy of what admits Controls (admission.go).
	admMu   sync.RWMutex
	adm     *admission
	running atomic.Bool // Run is keeping the copy current
	down    atomic.Bool // the database cannot be reached: use the copy
}

var _ relay.Authenticator = (*Service)(nil)

// New returns a Service.
func New(cfg Config) *Service {
	s := &Service{
		store: cfg.Store, events: cfg.Events, log: cfg.Logger, policy: cfg.Policy.withDefaults(),
		duoRoots: cfg.DuoRoots, now: cfg.Now, refresh: cfg.Refresh, addresses: make(map[string]*addressFailures),
		ghostPairs: make(map[string]*ghostPair), ghostNames: make(map[string]*ghostName), hasOps: -1,
	}
	if s.refresh <= 0 {
		s.refresh = DefaultRefresh
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
	ErrLocked         = errors.New("too many failed sign-ins for this operator from your address: try again later")
	ErrThrottled      = errors.New("too many failed sign-ins from your address: try again later")
	ErrBadCode        = errors.New("wrong or already used code")
	ErrDuoDenied      = errors.New("the Duo Push was denied")
	ErrDuoTimeout     = errors.New("the Duo Push was not answered in time")
	ErrDuoUnavailable = errors.New("Duo cannot be reached, so the second factor cannot be checked: sign-in refused")
	ErrDuoConfig      = errors.New("Duo Push is this operator's second factor but the Duo integration is not configured (2FA tab): sign-in refused")
	ErrNoCode         = errors.New("no code was received in time")
	ErrNoFactor       = errors.New("a second factor is required but this operator has none: enrol TOTP on the console's Account page, or ask an administrator to choose Duo Push")
	// ErrDuoSecretUnreadable is ErrDuoConfig: the stored Duo secret key
	// cannot be decrypted with this gateway's secrets key.
	ErrDuoSecretUnreadable error = &kindError{ErrDuoConfig, "the Duo secret key cannot be decrypted with this gateway's secrets key " +
		"(secrets.key lost or replaced, or another on this node): an administrator must enter the Duo secret key again on the console's 2FA tab: sign-in refused"}
)

// The gateway's own trouble, not a refusal of the operator: the console
// shows them as an internal error (and logs them), the relay tells the
// Control that the sign-in cannot be checked now, with these texts.
var (
	// ErrUnavailable: the database cannot be reached, so neither the
	// password can be checked nor the attempt counted.
	ErrUnavailable = errors.New("the gateway cannot reach its database, so passwords cannot be checked right now: try again shortly " +
		"(Controls that signed in before keep working)")
	// ErrTOTPUnreadable: the operator's TOTP secret cannot be decrypted
	// with this gateway's secrets key.
	ErrTOTPUnreadable = errors.New("this operator's TOTP enrolment cannot be decrypted with the gateway's secrets key " +
		"(secrets.key lost or replaced, or another on this node): an administrator must reset it with " +
		"`switchboard operators reset-totp NAME`, then the operator enrols an authenticator app again: sign-in refused")
)

// kindError is an error with its own text that is also another (errors.Is).
type kindError struct {
	kind error
	msg  string
}

func (e *kindError) Error() string        { return e.msg }
func (e *kindError) Is(target error) bool { return target == e.kind }

// DelayError refuses an attempt that came during the operator-wide delay;
// it is ErrThrottled.
type DelayError struct{ Wait time.Duration }

func (e *DelayError) Error() string {
	n := int(math.Ceil(e.Wait.Seconds()))
	if n == 1 {
		return "too many failed sign-ins for this operator: try again in 1 second"
	}
	return fmt.Sprintf("too many failed sign-ins for this operator: try again in %d seconds", n)
}

// Is makes a DelayError ErrThrottled.
func (e *DelayError) Is(target error) bool { return target == ErrThrottled }

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
// before it is checked (see the package doc); failures are events. An
// unknown name costs the same time as a wrong password and is throttled
// alike. While the database cannot be reached it fails with ErrUnavailable.
func (s *Service) CheckPassword(ctx context.Context, name, pw, ip string) (db.Operator, error) {
	if s.down.Load() {
		return db.Operator{}, fmt.Errorf("signin: %w", ErrUnavailable)
	}
	if !s.beginAddress(ip) {
		s.events.Emit(event.SigninFailed(shownName(name), ip))
		return db.Operator{}, ErrThrottled
	}
	op, err := s.store.Operator(ctx, name)
	if errors.Is(err, db.ErrNotFound) || (err == nil && !ValidName(name)) {
		return db.Operator{}, s.ghostAttempt(name, pw, ip)
	}
	if err != nil {
		s.endAddress(ip)
		return db.Operator{}, s.storeTrouble(ctx, err)
	}
	if err := s.begin(ctx, op, ip, false); err != nil {
		return db.Operator{}, err
	}
	if err := password.Check(op.PasswordHash, pw); err != nil || op.Disabled {
		s.failed(ctx, op, ip)
		return db.Operator{}, ErrBadCredentials
	}
	if err := s.store.SigninStepPassed(ctx, op.ID, addressKey(ip)); err != nil {
		return db.Operator{}, s.storeTrouble(ctx, err)
	}
	return op, nil
}

// ConfirmPassword checks the password of an operator who is signed in
// already and types it again before a sensitive change of their own
// (changing it, enrolling an app, new recovery codes): counted, throttled
// and refused exactly as a sign-in's password, but a success signs no one
// in (no event, no last sign-in).
func (s *Service) ConfirmPassword(ctx context.Context, name, pw, ip string) (db.Operator, error) {
	op, err := s.CheckPassword(ctx, name, pw, ip)
	if err != nil {
		return db.Operator{}, err
	}
	s.endAddress(ip)
	return op, nil
}

// ghostAttempt is an attempt for a name that is no operator: throttled,
// timed and answered as a wrong password of an operator would be.
func (s *Service) ghostAttempt(name, pw, ip string) error {
	s.events.Emit(event.SigninFailed(shownName(name), ip))
	if err := gateError(s.ghostBegin(name, ip)); err != nil {
		return err
	}
	password.CheckDummy(pw)
	s.ghostFailed(name, ip)
	return ErrBadCredentials
}

// gateError is the refusal of a gate that is not OK, nil for one that is.
func gateError(g db.SigninGate) error {
	switch {
	case g.OK:
		return nil
	case g.Wait > 0:
		return &DelayError{Wait: g.Wait}
	}
	return ErrLocked
}

// begin counts one attempt of op's from ip, or refuses it. secondFactor
// tells an attempt at the second factor, which follows a right password.
func (s *Service) begin(ctx context.Context, op db.Operator, ip string, secondFactor bool) error {
	gate, err := s.store.BeginSignin(ctx, op.ID, addressKey(ip), secondFactor, s.policy.limits())
	if err != nil {
		s.endAddress(ip)
		return s.storeTrouble(ctx, err)
	}
	if err := gateError(gate); err != nil {
		// Not even checked: a refused attempt must not become an oracle.
		s.events.Emit(event.SigninFailed(op.Name, ip))
		return err
	}
	return nil
}

// CheckTOTP checks a TOTP code of op's, or one of op's recovery codes
// (recovery.go). Each code is accepted once, and each attempt counts
// before it is checked. A recovery code works even when the TOTP secret
// cannot be decrypted: it is the way back in then.
func (s *Service) CheckTOTP(ctx context.Context, op db.Operator, code, ip string) error {
	if op.TOTPSecret == "" {
		return ErrNoFactor
	}
	recovery, isRecovery := recoveryCode(code)
	if op.TOTPUnreadable && !isRecovery {
		return s.totpUnreadable(op, ip)
	}
	if s.down.Load() {
		return fmt.Errorf("signin: %w", ErrUnavailable)
	}
	if !s.beginAddress(ip) {
		s.events.Emit(event.SigninFailed(op.Name, ip))
		return ErrThrottled
	}
	if err := s.begin(ctx, op, ip, true); err != nil {
		return err
	}
	if isRecovery {
		return s.checkRecovery(ctx, op, recovery, ip)
	}
	step, ok := totpStep(op.TOTPSecret, code, s.now())
	if ok {
		used, err := s.store.UseTOTPStep(ctx, op.ID, step)
		if err != nil {
			return s.storeTrouble(ctx, err)
		}
		if used {
			return nil
		}
	}
	s.failed(ctx, op, ip)
	return ErrBadCode
}

// totpUnreadable refuses a sign-in whose TOTP secret cannot be decrypted,
// and tells the administrator what to do.
func (s *Service) totpUnreadable(op db.Operator, ip string) error {
	s.log.Error("the TOTP enrolment of an operator cannot be decrypted with this gateway's secrets key: "+
		"reset it with `switchboard operators reset-totp NAME` and have the operator enrol again", "operator", op.Name)
	s.events.Emit(event.SigninFailed(op.Name, ip))
	return fmt.Errorf("signin: %w", ErrTOTPUnreadable)
}

// Failed ends an attempt begun with BeginPush whose push was denied in
// the console.
func (s *Service) Failed(ctx context.Context, op db.Operator, ip string) { s.failed(ctx, op, ip) }

// failed ends a counted attempt that failed: an event, and the lock of
// the (operator, address) pair when it has reached the limit.
func (s *Service) failed(ctx context.Context, op db.Operator, ip string) {
	s.events.Emit(event.SigninFailed(op.Name, ip))
	addr := addressKey(ip)
	locked, err := s.store.SigninFailed(ctx, op.ID, addr, s.policy.limits())
	if err != nil {
		s.log.Warn("could not count a failed sign-in", "operator", op.Name, "err", err)
		return
	}
	if locked {
		s.events.Emit(event.OperatorLockedOut(op.Name, addr, ip))
	}
}

// uncount takes back a counted attempt that was no guess.
func (s *Service) uncount(ctx context.Context, op db.Operator, ip string) {
	if err := s.store.SigninStepPassed(ctx, op.ID, addressKey(ip)); err != nil {
		s.log.Warn("could not uncount a sign-in attempt", "operator", op.Name, "err", err)
	}
}

// Completed records a successful sign-in: its attempts are cleared and
// its address becomes known for the operator.
func (s *Service) Completed(ctx context.Context, op db.Operator, ip string) error {
	s.endAddress(ip)
	if err := s.store.SigninCompleted(ctx, op.ID, addressKey(ip), s.policy.KnownFor); err != nil {
		return s.storeTrouble(ctx, err)
	}
	s.events.Emit(event.OperatorSignedIn(op.Name, ip))
	return nil
}

// Settings reads the 2FA settings.
func (s *Service) Settings(ctx context.Context) (Settings, error) { return LoadSettings(ctx, s.store) }

// Duo returns a Duo client for the current settings.
func (s *Service) Duo(set Settings) (*duo.Client, error) {
	if set.DuoSecretUnreadable && set.DuoSecretKey == "" {
		s.log.Error("the stored Duo secret key cannot be decrypted with this gateway's secrets key: enter it again on the console's 2FA tab")
		return nil, ErrDuoSecretUnreadable
	}
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
		return relay.AuthResult{}, refusalFor(s.storeTrouble(ctx, err))
	}
	twoFA := set.Require2FA || op.Require2FA
	if twoFA {
		if err := s.secondFactor(ctx, op, set, req, ch); err != nil {
			return relay.AuthResult{}, refusalFor(err)
		}
	}
	if err := s.Completed(ctx, op, req.PublicIP); err != nil {
		return relay.AuthResult{}, refusalFor(err)
	}
	token, expires, err := s.issueToken(ctx, op, req, set.TokenTTL, twoFA)
	if err != nil {
		return relay.AuthResult{}, refusalFor(err)
	}
	return relay.AuthResult{Operator: op.Name, Token: token, Expires: expires}, nil
}

// secondFactor asks the Control for the operator's factor.
func (s *Service) secondFactor(ctx context.Context, op db.Operator, set Settings, req relay.AuthRequest, ch relay.AuthChannel) error {
	switch {
	case op.Factor == db.FactorTOTP && op.TOTPUnreadable:
		return s.totpUnreadable(op, req.PublicIP)
	case op.Factor == db.FactorTOTP && op.TOTPSecret != "":
		code, err := ch.Ask(ctx, wire.FactorTOTP, "TOTP code for operator "+op.Name+" (or one of your recovery codes)", 2*time.Minute)
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
	return s.begin(ctx, op, ip, true)
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
			s.uncount(ctx, op, ip)
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
	switch {
	case errors.Is(err, duo.ErrTimeout) && ctx.Err() == nil:
		s.failed(ctx, op, ip)
		return ErrDuoTimeout
	case ctx.Err() != nil:
		s.uncount(context.WithoutCancel(ctx), op, ip)
		return ctx.Err()
	case errors.Is(err, duo.ErrUnavailable) && !errors.Is(err, duo.ErrRateLimited) && !sent && set.DuoFailOpen:
		s.log.Warn("Duo could not be reached: failing open as configured", "operator", op.Name, "err", err)
		s.events.Emit(event.DuoFailOpen(op.Name, ip))
		return nil
	}
	// An outage, a rate limit, or Duo refusing the gateway's own
	// credentials: not the operator's guess, so it does not count towards
	// the throttle, and the sign-in is refused.
	s.log.Warn("Duo could not answer: sign-in refused", "operator", op.Name, "push_sent", sent, "err", err)
	s.uncount(ctx, op, ip)
	s.events.Emit(event.SigninFailed(op.Name, ip))
	return ErrDuoUnavailable
}

func (s *Service) issueToken(ctx context.Context, op db.Operator, req relay.AuthRequest, ttl time.Duration, secondFactor bool) (string, time.Time, error) {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	token := base64.RawURLEncoding.EncodeToString(b)
	expires := s.now().Add(ttl).Truncate(time.Second)
	hash := hashToken(token)
	if err := s.store.AddControlToken(ctx, hash, op.ID, req.Control, req.PublicIP, expires, secondFactor); err != nil {
		return "", time.Time{}, s.storeTrouble(ctx, err)
	}
	s.rememberToken(db.KeptSignin{Hash: hash, OperatorID: op.ID, Control: req.Control, ExpiresAt: expires, SecondFactor: secondFactor}, op, true)
	return token, expires, nil
}

// hashToken is what is stored of a token: a token is 256 random bits, so a
// plain hash is enough to make a stolen table useless.
func hashToken(t string) []byte {
	h := sha256.Sum256([]byte(t))
	return h[:]
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

// refusalFor maps a sign-in error to what the Control is told. The
// gateway's own trouble that has a message of its own is told with it.
func refusalFor(err error) error {
	var we *wire.Error
	switch {
	case errors.As(err, &we):
		return we
	case refusalCode(err) != "":
		return refusal(refusalCode(err), err.Error())
	case errors.Is(err, ErrUnavailable):
		return refusal(wire.CodeUnavailable, ErrUnavailable.Error())
	case errors.Is(err, ErrTOTPUnreadable):
		return refusal(wire.CodeUnavailable, ErrTOTPUnreadable.Error())
	}
	return err
}
