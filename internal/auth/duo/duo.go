// Package duo is Switchboard's second factor by Duo Push: it asks Duo's Auth
// API (https://duo.com/docs/authapi) to send an operator's phone a push, and
// tells whether the operator approved it.
//
// It is a thin layer over Duo's own client, github.com/duosecurity/duo_api_golang
// and its authapi package, which sign every request. The layer exists because
// that client takes no context, retries rate-limited calls with sleeps that
// nothing can interrupt, does not report HTTP status codes, and mixes "Duo is
// down" with "Duo said no". Switchboard needs those apart:
//
//   - a Result with Outcome Deny is Duo's (or the operator's) answer: refuse
//     the sign-in;
//   - an error that is ErrUnavailable means Duo could not be asked: the caller
//     chooses between failing open and failing closed;
//   - ErrTimeout means the push was sent but not answered in time;
//   - an *APIError means Duo refused the request itself, which is a
//     configuration fault (wrong keys, wrong host, clock skew) and must never
//     be treated as an outage, or a wrong key would quietly fail open.
//
// The usual flow is preauth (is the operator enrolled, bypassed, locked out;
// has a push-capable phone?) then an asynchronous auth with factor push, then
// auth_status until the operator answers. Push does all of it; Start and
// Status do it in two steps for callers that poll from a web page.
//
// Tests use the local fake in package duotest, as Duo's service is not
// reachable from test machines.
package duo

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	duoapi "github.com/duosecurity/duo_api_golang"
	"github.com/duosecurity/duo_api_golang/authapi"
)

// Defaults for the Config fields left zero.
const (
	// DefaultTimeout bounds one HTTP call to Duo. Duo answers preauth and auth
	// in well under a second; ten seconds rides out a slow network without
	// keeping an operator staring at a spinner for long.
	DefaultTimeout = 10 * time.Second
	// DefaultPollInterval is the least time between two auth_status calls
	// of one Push. auth_status long-polls (Duo holds it until the status
	// changes), so this only paces calls that Duo answers at once.
	DefaultPollInterval = time.Second
	// DefaultPushType is the request type Duo Mobile shows on the push
	// ("<type>: <application name>"), so the operator knows what asks.
	DefaultPushType = "Switchboard sign-in"
)

// userAgent names Switchboard to Duo; the library appends its own name.
const userAgent = "switchboard"

// Config says which Duo Auth API application to use and how to reach it.
// Its String and GoString methods leave the secret key out, so a Config can
// be logged by mistake without leaking it.
type Config struct {
	// IntegrationKey is the Auth API application's integration key ("DI…").
	IntegrationKey string
	// SecretKey is the application's secret key. It signs each request and
	// is never sent, logged or put in an error text.
	SecretKey string
	// APIHost is the application's API hostname, e.g.
	// api-xxxxxxxx.duosecurity.com, or host:port for a test server. Not a URL.
	APIHost string
	// RootCAs verifies APIHost's certificate. nil means the CA bundle that
	// Duo's library pins for Duo's own hosts (Duo's recommended setting; it
	// does not trust the system's roots). Set it to use other roots, e.g.
	// x509.SystemCertPool() behind a TLS-inspecting proxy, or a test
	// server's pool.
	RootCAs *x509.CertPool
	// Timeout bounds each HTTP call to Duo; 0 means DefaultTimeout.
	Timeout time.Duration
	// PollInterval is the least time between two auth_status calls of
	// Push; 0 means DefaultPollInterval.
	PollInterval time.Duration
	// PushType is shown in Duo Mobile as the kind of request; "" means
	// DefaultPushType.
	PushType string
}

// String describes c without its secret key.
func (c Config) String() string {
	secret := "unset"
	if c.SecretKey != "" {
		secret = "set"
	}
	return fmt.Sprintf("duo.Config{IntegrationKey: %q, SecretKey: %s, APIHost: %q, Timeout: %v, PollInterval: %v, PushType: %q}",
		c.IntegrationKey, secret, c.APIHost, c.Timeout, c.PollInterval, c.PushType)
}

// GoString is String, so that %#v does not print the secret key either.
func (c Config) GoString() string { return c.String() }

// Client talks to one Duo Auth API application. It is safe for concurrent
// use, and cheap enough to make per sign-in.
type Client struct {
	// api is the template for each call: call copies it and gives the copy
	// an http.Client bound to that call's context (the library has no other
	// way to take a context). A pointer, so that printing a Client value
	// shows an address, not the secret key inside.
	api      *authapi.AuthApi
	base     *http.Transport
	host     string
	ikey     string
	timeout  time.Duration
	poll     time.Duration
	pushType string
}

// New checks cfg and makes a Client. It does not contact Duo: use Check for
// that, e.g. when an administrator saves the settings.
func New(cfg Config) (*Client, error) {
	// The error texts name the field, never its value, so that no secret
	// ends up in a log.
	switch {
	case strings.TrimSpace(cfg.IntegrationKey) == "":
		return nil, errors.New("duo: the integration key is empty")
	case strings.TrimSpace(cfg.SecretKey) == "":
		return nil, errors.New("duo: the secret key is empty")
	case strings.TrimSpace(cfg.APIHost) == "":
		return nil, errors.New("duo: the API host is empty")
	case strings.ContainsAny(cfg.APIHost, "/ \t"):
		return nil, fmt.Errorf("duo: the API host %q must be a host name such as api-xxxxxxxx.duosecurity.com, not a URL", cfg.APIHost)
	case cfg.Timeout < 0:
		return nil, errors.New("duo: the timeout is negative")
	case cfg.PollInterval < 0:
		return nil, errors.New("duo: the poll interval is negative")
	}
	c := &Client{
		host:     cfg.APIHost,
		ikey:     cfg.IntegrationKey,
		timeout:  cfg.Timeout,
		poll:     cfg.PollInterval,
		pushType: cfg.PushType,
	}
	if c.timeout == 0 {
		c.timeout = DefaultTimeout
	}
	if c.poll == 0 {
		c.poll = DefaultPollInterval
	}
	if c.pushType == "" {
		c.pushType = DefaultPushType
	}
	// The library builds its transport (proxy from the environment, its
	// pinned CA bundle) and lets us adjust it; we keep it as the base of our
	// own per-call clients, so a nil RootCAs keeps Duo's pinning.
	api := duoapi.NewDuoApi(cfg.IntegrationKey, cfg.SecretKey, cfg.APIHost, userAgent,
		duoapi.SetTransport(func(tr *http.Transport) {
			if tr.TLSClientConfig == nil {
				tr.TLSClientConfig = &tls.Config{}
			}
			if cfg.RootCAs != nil {
				tr.TLSClientConfig.RootCAs = cfg.RootCAs
			}
			tr.TLSClientConfig.MinVersion = tls.VersionTLS12
			tr.IdleConnTimeout = 90 * time.Second
			c.base = tr
		}))
	c.api = authapi.NewAuthApi(*api)
	return c, nil
}

// String describes c without its secret key. It has a value receiver so
// that it also covers a dereferenced Client.
func (c Client) String() string {
	return fmt.Sprintf("duo.Client{IntegrationKey: %q, APIHost: %q}", c.ikey, c.host)
}

// GoString is String, so that %#v does not print the secret key either.
func (c Client) GoString() string { return c.String() }

// CloseIdleConnections closes the kept-alive connections to Duo, whose
// reading goroutines would otherwise linger until Duo or the idle timeout
// closes them. Call it when dropping a Client that will not be used again.
func (c *Client) CloseIdleConnections() { c.base.CloseIdleConnections() }

// Outcome is what became of a push.
type Outcome int

// The outcomes. Deny is the zero value on purpose: a Result nobody filled
// in refuses the sign-in rather than letting it through.
const (
	// Deny: the operator refused the push, or Duo refused the operator
	// (not enrolled, locked out, no push device, marked as fraud, ...).
	Deny Outcome = iota
	// Allow: the operator approved, or Duo lets the operator in without a
	// second factor (a bypass user, or a policy such as trusted networks).
	Allow
	// Waiting: the push is out and not answered yet. Only Status returns it.
	Waiting
)

// String names o in lower case, as Duo does.
func (o Outcome) String() string {
	switch o {
	case Deny:
		return "deny"
	case Allow:
		return "allow"
	case Waiting:
		return "waiting"
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// Result is Duo's answer about one operator.
type Result struct {
	Outcome Outcome
	// Message is for people: Duo's status_msg, or Switchboard's own words
	// where they are clearer (e.g. "operator alice is not enrolled in Duo").
	Message string
	// Status is Duo's machine-readable word for the answer, for logs and
	// audit: preauth's result ("allow", "deny", "enroll") for an answer
	// given before any push, else auth_status's status ("pushed", "allow",
	// "deny", "fraud", "timeout", ...). It may be empty.
	Status string
}

// ErrUnavailable is wrapped by every error that means Duo could not be
// asked: no connection, a TLS failure, a timeout, an HTTP 5xx or 429
// answer, or an answer that is not Duo's JSON. The caller decides whether
// that fails open or closed. Duo refusing the operator is not this error but
// a Result with Outcome Deny, and Duo refusing the request is an *APIError.
var ErrUnavailable = errors.New("Duo is unavailable")

// ErrTimeout is returned by Push when its context's deadline passes before
// the operator answered (or, rarely, before Duo could be asked). Its errors
// also match context.DeadlineExceeded.
var ErrTimeout = errors.New("Duo Push was not answered in time")

// APIError is Duo refusing a request (its answer had stat "FAIL"): wrong
// integration or secret key, an API host of another kind of application, a
// clock too far off, a bad parameter. It is a fault in the configuration or
// in Switchboard, not an outage, so it is not ErrUnavailable: failing open on
// it would let a wrong key switch the second factor off.
type APIError struct {
	// Op is the Auth API call that failed, e.g. "preauth".
	Op string
	// Code, Message and Detail are Duo's code, message and message_detail,
	// e.g. 40103 "Invalid signature in request credentials".
	Code    int
	Message string
	Detail  string
}

// Error says what Duo refused and, for credential errors, what to check.
func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "duo %s: Duo refused the request: %d %s", e.Op, e.Code, e.Message)
	if e.Detail != "" {
		fmt.Fprintf(&b, " (%s)", e.Detail)
	}
	if e.Credentials() {
		b.WriteString(": check the integration key, secret key and API host of the Duo Auth API application, and this machine's clock")
	}
	return b.String()
}

// Credentials reports whether Duo rejected the request's credentials
// (codes 40101 to 40105: missing, unknown integration key, bad signature,
// missing header, bad date) rather than what it asked.
func (e *APIError) Credentials() bool { return e.Code >= 40101 && e.Code <= 40105 }

// Check makes one signed call (/auth/v2/check) to prove that the
// configuration works: nil, an *APIError for wrong keys, or ErrUnavailable.
func (c *Client) Check(ctx context.Context) error {
	var res *authapi.CheckResult
	err := c.call(ctx, "check", false, func(api *authapi.AuthApi) (err error) {
		res, err = api.Check()
		return err
	})
	if err != nil {
		return err
	}
	return failure("check", &res.StatResult)
}

// Start asks Duo about user and, if a push is needed, sends it without
// waiting for the answer. ip is the address the operator signs in from
// (Duo policies may use it; "" to leave it out); pushinfo is shown to the
// operator with the push (see below).
//
// When Duo decides at once it returns no txid and an immediate Result:
// Allow for a bypass user, Deny for a user who is locked out, not enrolled
// or has no phone that can take Duo Push. Otherwise it returns the push's
// txid, for Status.
//
// pushinfo is either Duo's URL-encoded key=value pairs (as url.Values.Encode
// makes them) or, if it holds no "=", plain text, which is sent as the one
// pair "request=<text>" so that Duo Mobile shows it whole.
func (c *Client) Start(ctx context.Context, user, ip, pushinfo string) (txid string, immediate *Result, err error) {
	if user == "" {
		return "", nil, errors.New("duo: no user name")
	}
	pre := []func(*url.Values){authapi.PreauthUsername(user)}
	if ip != "" {
		pre = append(pre, authapi.PreauthIpAddr(ip))
	}
	var pr *authapi.PreauthResult
	err = c.call(ctx, "preauth", false, func(api *authapi.AuthApi) (err error) {
		pr, err = api.Preauth(pre...)
		return err
	})
	if err != nil {
		return "", nil, err
	}
	if err := failure("preauth", &pr.StatResult); err != nil {
		return "", nil, err
	}
	resp := pr.Response
	switch resp.Result {
	case "allow":
		return "", &Result{Outcome: Allow, Status: resp.Result,
			Message: or(resp.Status_Msg, "Duo lets operator "+user+" in without a second factor")}, nil
	case "deny":
		return "", &Result{Outcome: Deny, Status: resp.Result,
			Message: "Duo denies operator " + user + ": " + or(resp.Status_Msg, "access denied")}, nil
	case "enroll":
		return "", &Result{Outcome: Deny, Status: resp.Result,
			Message: "operator " + user + " is not enrolled in Duo"}, nil
	case "auth":
	default:
		return "", nil, garbled("preauth", fmt.Sprintf("unknown result %q", resp.Result))
	}
	// Ask for a push only if a device can take one: with device=auto and
	// none, Duo would answer with an error rather than a clear refusal.
	canPush := false
	for _, d := range resp.Devices {
		for _, capability := range d.Capabilities {
			canPush = canPush || capability == "push"
		}
	}
	if !canPush {
		return "", &Result{Outcome: Deny, Status: resp.Result,
			Message: "operator " + user + " has no Duo Push device"}, nil
	}

	opts := []func(*url.Values){
		authapi.AuthUsername(user),
		authapi.AuthDevice("auto"),
		authapi.AuthAsync(),
		authapi.AuthType(c.pushType),
		authapi.AuthDisplayUsername(user),
	}
	if ip != "" {
		opts = append(opts, authapi.AuthIpAddr(ip))
	}
	if info := encodePushinfo(pushinfo); info != "" {
		opts = append(opts, authapi.AuthPushinfo(info))
	}
	var ar *authapi.AuthResult
	err = c.call(ctx, "auth", false, func(api *authapi.AuthApi) (err error) {
		ar, err = api.Auth("push", opts...)
		return err
	})
	if err != nil {
		return "", nil, err
	}
	if err := failure("auth", &ar.StatResult); err != nil {
		return "", nil, err
	}
	if ar.Response.Txid != "" {
		return ar.Response.Txid, nil, nil
	}
	// An async auth always answers with a txid; take a decided answer
	// rather than call it garbled, in case Duo ever decides at once.
	if r, ok := decided(ar.Response.Result, ar.Response.Status, ar.Response.Status_Msg); ok {
		return "", &r, nil
	}
	return "", nil, garbled("auth", "no txid and no result")
}

// Status makes one auth_status call for txid (from Start) and returns
// Waiting, Allow or Deny.
//
// Duo long-polls auth_status: it holds the call until the push's status
// changes. So when the call's deadline (Timeout, or ctx's deadline if
// sooner) passes while Duo holds it, Status returns Waiting and no error:
// no news is not an outage. A failure to reach Duo at all is still
// ErrUnavailable, and a cancelled ctx is returned as its error.
func (c *Client) Status(ctx context.Context, txid string) (Result, error) {
	if txid == "" {
		return Result{}, errors.New("duo: no txid")
	}
	var sr *authapi.AuthStatusResult
	err := c.call(ctx, "auth_status", true, func(api *authapi.AuthApi) (err error) {
		sr, err = api.AuthStatus(txid)
		return err
	})
	if errors.Is(err, errNoNews) {
		return Result{Outcome: Waiting, Message: "waiting for the operator to answer the push"}, nil
	}
	if err != nil {
		return Result{}, err
	}
	if err := failure("auth_status", &sr.StatResult); err != nil {
		return Result{}, err
	}
	resp := sr.Response
	if resp.Result == "waiting" {
		return Result{Outcome: Waiting, Status: resp.Status, Message: resp.Status_Msg}, nil
	}
	if r, ok := decided(resp.Result, resp.Status, resp.Status_Msg); ok {
		return r, nil
	}
	return Result{}, garbled("auth_status", fmt.Sprintf("unknown result %q", resp.Result))
}

// Push sends user a push (see Start) and waits for the answer, calling
// Status at most once per PollInterval, until Duo decides or ctx is done.
// If ctx's deadline passes first the error is ErrTimeout; if ctx is
// cancelled, ctx's error. The push itself cannot be withdrawn: Duo lets it
// expire on the phone. If Duo's own expiry of the push (about a minute)
// comes first, the Result is Deny with Status "timeout".
//
// A rate-limited auth_status (HTTP 429) is retried after a growing pause
// rather than ending the push, since the operator may still answer.
func (c *Client) Push(ctx context.Context, user, ip, pushinfo string) (Result, error) {
	txid, immediate, err := c.Start(ctx, user, ip, pushinfo)
	if err != nil {
		return Result{}, pushError(ctx, err)
	}
	if immediate != nil {
		return *immediate, nil
	}
	return c.Wait(ctx, txid)
}

// Wait polls auth_status for the push txid until it is answered or ctx
// ends (ErrTimeout for a deadline). A rate limit while polling slows the
// polling down instead of ending the wait.
func (c *Client) Wait(ctx context.Context, txid string) (Result, error) {
	backoff := c.poll
	for {
		began := time.Now()
		r, err := c.Status(ctx, txid)
		var pause time.Duration
		switch {
		case err == nil && r.Outcome != Waiting:
			return r, nil
		case err == nil:
			pause = c.poll - time.Since(began)
			backoff = c.poll
		case errors.Is(err, ErrRateLimited) && ctx.Err() == nil:
			pause = backoff
			backoff = min(2*backoff, 30*time.Second)
		default:
			return Result{}, pushError(ctx, err)
		}
		if err := sleep(ctx, pause); err != nil {
			return Result{}, pushError(ctx, err)
		}
	}
}

// sleep waits d, or less if ctx is done first, leaving no timer behind.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// pushError turns the end of ctx's deadline into ErrTimeout, whatever step
// Push was at; other errors pass unchanged.
func pushError(ctx context.Context, err error) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("duo push: %w (%w)", ErrTimeout, context.DeadlineExceeded)
	}
	return err
}

// decided maps an auth or auth_status answer that is final to a Result.
func decided(result, status, msg string) (Result, bool) {
	switch result {
	case "allow":
		return Result{Outcome: Allow, Status: status, Message: or(msg, "approved")}, true
	case "deny":
		return Result{Outcome: Deny, Status: status, Message: or(msg, "denied")}, true
	}
	return Result{}, false
}

// failure returns an *APIError for an answer whose stat is not "OK".
func failure(op string, s *duoapi.StatResult) error {
	if s.Stat == "OK" {
		return nil
	}
	if s.Stat != "FAIL" {
		return garbled(op, fmt.Sprintf("stat %q", s.Stat))
	}
	e := &APIError{Op: op}
	if s.Code != nil {
		e.Code = int(*s.Code)
	}
	if s.Message != nil {
		e.Message = *s.Message
	}
	if s.Message_Detail != nil {
		e.Detail = *s.Message_Detail
	}
	return e
}

// garbled is an answer that parsed but makes no sense: treated like any
// other failure to get a usable answer from Duo.
func garbled(op, what string) error {
	return fmt.Errorf("duo %s: %w: unexpected answer: %s", op, ErrUnavailable, what)
}

// encodePushinfo returns pushinfo as Duo's URL-encoded pairs (see Start).
func encodePushinfo(pushinfo string) string {
	if pushinfo == "" {
		return ""
	}
	if strings.Contains(pushinfo, "=") {
		if _, err := url.ParseQuery(pushinfo); err == nil {
			return pushinfo
		}
	}
	return url.Values{"request": {pushinfo}}.Encode()
}

func or(s, otherwise string) string {
	if s != "" {
		return s
	}
	return otherwise
}
