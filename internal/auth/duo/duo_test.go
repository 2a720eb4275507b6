package duo_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/auth/duo"
	"github.com/switchboard/switchboard/internal/auth/duo/duotest"
)

const (
	ikey = "DIWJ8X6AEYOR5OMC6TQ1"
	skey = "Zh5eGmUq9zpfQnyUIu5OL9iWoMMv5ZNmk3zLJ4Ep"
)

// setup starts a fake Duo and a Client for it, with short intervals so the
// tests stay fast. edit may change the Config first.
func setup(t *testing.T, edit func(*duo.Config)) (*duotest.Server, *duo.Client) {
	t.Helper()
	srv := duotest.New(t, ikey, skey)
	cfg := duo.Config{
		IntegrationKey: ikey,
		SecretKey:      skey,
		APIHost:        srv.Host(),
		RootCAs:        srv.CertPool(),
		Timeout:        2 * time.Second,
		PollInterval:   10 * time.Millisecond,
	}
	if edit != nil {
		edit(&cfg)
	}
	c, err := duo.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return srv, c
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

// noSecret fails if err's text holds a secret key.
func noSecret(t *testing.T, err error, secrets ...string) {
	t.Helper()
	for _, s := range append(secrets, skey) {
		if err != nil && strings.Contains(err.Error(), s) {
			t.Errorf("error text holds a secret key: %v", err)
		}
	}
}

func TestPushAllow(t *testing.T) {
	srv, c := setup(t, nil)
	srv.SetUser("alice", duotest.Approve)
	srv.SetApproveAfter(150 * time.Millisecond)
	info := url.Values{"Control": {"laptop-7"}, "Target": {"db-1"}}.Encode()

	began := time.Now()
	res, err := c.Push(ctxFor(t, 5*time.Second), "alice", "192.0.2.7", info)
	if err != nil {
		t.Fatal(err)
	}
	if res.Outcome != duo.Allow || res.Status != "allow" || res.Message == "" {
		t.Errorf("result = %+v, want Allow with Duo's status and message", res)
	}
	if d := time.Since(began); d < 150*time.Millisecond {
		t.Errorf("allowed after %v, before the operator approved", d)
	}
	pushes := srv.Pushes()
	if len(pushes) != 1 {
		t.Fatalf("pushes = %+v, want one", pushes)
	}
	p := pushes[0]
	if p.User != "alice" || p.IP != "192.0.2.7" || p.PushInfo != info || p.Device != "auto" ||
		!p.Async || p.Type != duo.DefaultPushType || p.DisplayUsername != "alice" || p.TxID == "" {
		t.Errorf("push = %+v", p)
	}
	// auth_status long-polls, so waiting for the answer costs few calls.
	if n := srv.Requests("/auth/v2/auth_status"); n < 1 || n > 3 {
		t.Errorf("%d auth_status calls, want 1 to 3", n)
	}
	if n := srv.BadSignatures(); n != 0 {
		t.Errorf("%d bad signatures", n)
	}
}

func TestPushDeny(t *testing.T) {
	srv, c := setup(t, nil)
	srv.SetUser("bob", duotest.Deny)
	res, err := c.Push(ctxFor(t, 5*time.Second), "bob", "192.0.2.8", "")
	if err != nil {
		t.Fatal(err)
	}
	if res.Outcome != duo.Deny || res.Status != "deny" || res.Message == "" {
		t.Errorf("result = %+v, want Deny", res)
	}
	if len(srv.Pushes()) != 1 {
		t.Errorf("pushes = %+v, want one", srv.Pushes())
	}
}

func TestPushTimeout(t *testing.T) {
	srv, c := setup(t, nil)
	srv.SetUser("carol", duotest.Timeout)
	began := time.Now()
	res, err := c.Push(ctxFor(t, 300*time.Millisecond), "carol", "", "")
	if !errors.Is(err, duo.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want ErrTimeout", err)
	}
	if errors.Is(err, duo.ErrUnavailable) {
		t.Errorf("err = %v: an unanswered push is not an outage", err)
	}
	if res.Outcome != duo.Deny {
		t.Errorf("result = %+v: the zero Result must deny", res)
	}
	if d := time.Since(began); d > 2*time.Second {
		t.Errorf("returned after %v, long past the deadline", d)
	}
	if len(srv.Pushes()) != 1 {
		t.Errorf("pushes = %+v, want one", srv.Pushes())
	}
}

func TestEnroll(t *testing.T) {
	srv, c := setup(t, nil)
	// dave was never given to the fake: to Duo, not enrolled.
	res, err := c.Push(ctxFor(t, 5*time.Second), "dave", "192.0.2.9", "sign-in")
	if err != nil {
		t.Fatal(err)
	}
	if res.Outcome != duo.Deny || res.Message != "operator dave is not enrolled in Duo" || res.Status != "enroll" {
		t.Errorf("result = %+v", res)
	}
	if len(srv.Pushes()) != 0 {
		t.Errorf("pushes = %+v, want none", srv.Pushes())
	}
}

func TestBypass(t *testing.T) {
	srv, c := setup(t, nil)
	srv.SetUser("erin", duotest.Bypass)
	txid, res, err := c.Start(ctxFor(t, 5*time.Second), "erin", "192.0.2.10", "sign-in")
	if err != nil {
		t.Fatal(err)
	}
	if txid != "" || res == nil || res.Outcome != duo.Allow {
		t.Fatalf("Start = %q, %+v; want no txid and Allow", txid, res)
	}
	pres, err := c.Push(ctxFor(t, 5*time.Second), "erin", "", "")
	if err != nil || pres.Outcome != duo.Allow {
		t.Errorf("Push = %+v, %v; want Allow", pres, err)
	}
	if len(srv.Pushes()) != 0 {
		t.Errorf("pushes = %+v, want none", srv.Pushes())
	}
}

func TestLockedAndNoPushDevice(t *testing.T) {
	srv, c := setup(t, nil)
	srv.SetUser("frank", duotest.Locked)
	srv.SetUser("gina", duotest.NoPush)
	for user, want := range map[string]string{
		"frank": "Duo denies operator frank: Your account is disabled.",
		"gina":  "operator gina has no Duo Push device",
	} {
		res, err := c.Push(ctxFor(t, 5*time.Second), user, "", "")
		if err != nil {
			t.Fatalf("%s: %v", user, err)
		}
		if res.Outcome != duo.Deny || res.Message != want {
			t.Errorf("%s: result = %+v, want Deny %q", user, res, want)
		}
	}
	if len(srv.Pushes()) != 0 {
		t.Errorf("pushes = %+v, want none", srv.Pushes())
	}
}

func TestStartThenStatus(t *testing.T) {
	srv, c := setup(t, nil)
	srv.SetUser("hal", duotest.Approve)
	srv.SetApproveAfter(200 * time.Millisecond)
	ctx := ctxFor(t, 5*time.Second)
	txid, res, err := c.Start(ctx, "hal", "192.0.2.11", "Switchboard console sign-in")
	if err != nil || res != nil || txid == "" {
		t.Fatalf("Start = %q, %+v, %v; want a txid", txid, res, err)
	}
	// Plain text is sent as one key=value pair, so Duo Mobile shows it whole.
	if got, want := srv.Pushes()[0].PushInfo, "request=Switchboard+console+sign-in"; got != want {
		t.Errorf("pushinfo = %q, want %q", got, want)
	}
	// The first auth_status answers at once: the push is out.
	st, err := c.Status(ctx, txid)
	if err != nil || st.Outcome != duo.Waiting || st.Status != "pushed" {
		t.Fatalf("Status = %+v, %v; want Waiting (pushed)", st, err)
	}
	// The next is held by Duo until the operator answers.
	st, err = c.Status(ctx, txid)
	if err != nil || st.Outcome != duo.Allow {
		t.Fatalf("Status = %+v, %v; want Allow", st, err)
	}
	// An unknown txid is Duo refusing the request, not an outage.
	_, err = c.Status(ctx, "no-such-txid")
	var apiErr *duo.APIError
	if !errors.As(err, &apiErr) || apiErr.Code != 40002 || errors.Is(err, duo.ErrUnavailable) {
		t.Errorf("Status(unknown txid) err = %v, want APIError 40002", err)
	}
}

// A long poll that reaches the call's Timeout is no news, not an outage:
// Push goes on asking until the operator answers.
func TestLongPollOutlastsTimeout(t *testing.T) {
	srv, c := setup(t, func(cfg *duo.Config) { cfg.Timeout = 100 * time.Millisecond })
	srv.SetUser("ivy", duotest.Approve)
	srv.SetApproveAfter(450 * time.Millisecond)
	ctx := ctxFor(t, 5*time.Second)

	txid, _, err := c.Start(ctx, "ivy", "", "")
	if err != nil {
		t.Fatal(err)
	}
	if st, err := c.Status(ctx, txid); err != nil || st.Outcome != duo.Waiting {
		t.Fatalf("first Status = %+v, %v", st, err)
	}
	if st, err := c.Status(ctx, txid); err != nil || st.Outcome != duo.Waiting {
		t.Fatalf("held Status = %+v, %v; want Waiting when Timeout ends the long poll", st, err)
	}

	res, err := c.Push(ctx, "ivy", "", "")
	if err != nil || res.Outcome != duo.Allow {
		t.Fatalf("Push = %+v, %v; want Allow", res, err)
	}
}

func TestWrongSecretKey(t *testing.T) {
	const wrong = "this-is-not-the-secret-key-0123456789abc"
	srv, c := setup(t, func(cfg *duo.Config) { cfg.SecretKey = wrong })
	srv.SetUser("alice", duotest.Approve)

	res, err := c.Push(ctxFor(t, 5*time.Second), "alice", "", "")
	var apiErr *duo.APIError
	if !errors.As(err, &apiErr) {
		t.Fatalf("Push = %+v, %v; want an APIError", res, err)
	}
	if apiErr.Code != 40103 || !apiErr.Credentials() {
		t.Errorf("APIError = %+v, want 40103 (bad signature)", apiErr)
	}
	// Not an outage: failing open on a wrong key would disable the factor.
	if errors.Is(err, duo.ErrUnavailable) || errors.Is(err, duo.ErrTimeout) {
		t.Errorf("err = %v must be neither ErrUnavailable nor ErrTimeout", err)
	}
	if res.Outcome != duo.Deny {
		t.Errorf("result = %+v, want the zero Result (Deny)", res)
	}
	for _, want := range []string{"Invalid signature", "secret key"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("err = %q, want it to mention %q", err, want)
		}
	}
	noSecret(t, err, wrong)
	if n := srv.BadSignatures(); n != 1 {
		t.Errorf("%d bad signatures, want 1", n)
	}
	if len(srv.Pushes()) != 0 {
		t.Errorf("pushes = %+v, want none", srv.Pushes())
	}

	err = c.Check(ctxFor(t, 5*time.Second))
	if !errors.As(err, &apiErr) || apiErr.Code != 40103 {
		t.Errorf("Check = %v, want APIError 40103", err)
	}
	noSecret(t, err, wrong)
}

func TestWrongIntegrationKey(t *testing.T) {
	srv, c := setup(t, func(cfg *duo.Config) { cfg.IntegrationKey = "DIXXXXXXXXXXXXXXXXXX" })
	err := c.Check(ctxFor(t, 5*time.Second))
	var apiErr *duo.APIError
	if !errors.As(err, &apiErr) || apiErr.Code != 40102 {
		t.Errorf("Check = %v, want APIError 40102", err)
	}
	noSecret(t, err)
	if srv.BadSignatures() != 1 {
		t.Errorf("%d bad signatures, want 1", srv.BadSignatures())
	}
}

func TestCheck(t *testing.T) {
	_, c := setup(t, nil)
	if err := c.Check(ctxFor(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
}

func TestServerDown(t *testing.T) {
	unavailable := func(t *testing.T, c *duo.Client) {
		t.Helper()
		began := time.Now()
		res, err := c.Push(ctxFor(t, 5*time.Second), "alice", "", "")
		if !errors.Is(err, duo.ErrUnavailable) {
			t.Errorf("Push = %+v, %v; want ErrUnavailable", res, err)
		}
		if errors.Is(err, duo.ErrTimeout) || res.Outcome != duo.Deny {
			t.Errorf("Push = %+v, %v", res, err)
		}
		noSecret(t, err)
		if err := c.Check(ctxFor(t, 5*time.Second)); !errors.Is(err, duo.ErrUnavailable) {
			t.Errorf("Check = %v, want ErrUnavailable", err)
		}
		// In particular no retry sleeps: the library would sleep 1s and
		// more on each 429.
		if d := time.Since(began); d > time.Second {
			t.Errorf("took %v to report the outage", d)
		}
	}
	t.Run("503", func(t *testing.T) {
		srv, c := setup(t, nil)
		srv.SetUser("alice", duotest.Approve)
		srv.SetDown(true)
		unavailable(t, c)
	})
	t.Run("429", func(t *testing.T) {
		srv, c := setup(t, nil)
		srv.SetUser("alice", duotest.Approve)
		srv.SetRateLimited(true)
		unavailable(t, c)
		if n := srv.Requests("/auth/v2/preauth"); n != 1 {
			t.Errorf("preauth was called %d times, want once (no library retries)", n)
		}
	})
	t.Run("dropped connections", func(t *testing.T) {
		srv, c := setup(t, nil)
		srv.SetUser("alice", duotest.Approve)
		srv.SetDropConnections(true)
		unavailable(t, c)
	})
	t.Run("closed", func(t *testing.T) {
		srv, c := setup(t, nil)
		srv.SetUser("alice", duotest.Approve)
		srv.Close()
		unavailable(t, c)
	})
	t.Run("slow", func(t *testing.T) {
		srv, c := setup(t, func(cfg *duo.Config) { cfg.Timeout = 100 * time.Millisecond })
		srv.SetUser("alice", duotest.Approve)
		srv.SetDelay(time.Minute)
		unavailable(t, c)
	})
	t.Run("untrusted certificate", func(t *testing.T) {
		// nil RootCAs is Duo's pinned CA bundle, which does not hold the
		// fake's certificate.
		srv, c := setup(t, func(cfg *duo.Config) { cfg.RootCAs = nil })
		srv.SetUser("alice", duotest.Approve)
		_, err := c.Push(ctxFor(t, 5*time.Second), "alice", "", "")
		if !errors.Is(err, duo.ErrUnavailable) || !strings.Contains(err.Error(), "certificate") {
			t.Errorf("err = %v, want ErrUnavailable for the certificate", err)
		}
	})
}

// A rate-limited auth_status does not end a push: Push pauses and asks
// again, without the library's uninterruptible sleeps.
func TestRateLimitedWhilePolling(t *testing.T) {
	// The per-request timeout is generous: under -race on a loaded machine
	// a TLS request to the local Duo can take several hundred ms.
	srv, c := setup(t, func(cfg *duo.Config) { cfg.Timeout = 2 * time.Second })
	srv.SetUser("alice", duotest.Approve)
	srv.SetApproveAfter(600 * time.Millisecond)
	ctx := ctxFor(t, 10*time.Second)
	time.AfterFunc(150*time.Millisecond, func() { srv.SetRateLimited(true) })
	time.AfterFunc(400*time.Millisecond, func() { srv.SetRateLimited(false) })
	res, err := c.Push(ctx, "alice", "", "")
	if err != nil || res.Outcome != duo.Allow {
		t.Fatalf("Push = %+v, %v; want Allow", res, err)
	}

	// Outside Push, a rate-limited call is plainly unavailable.
	txid, _, err := c.Start(ctx, "alice", "", "")
	if err != nil {
		t.Fatal(err)
	}
	srv.SetRateLimited(true)
	if _, err := c.Status(ctx, txid); !errors.Is(err, duo.ErrUnavailable) || !strings.Contains(err.Error(), "429") {
		t.Errorf("Status = %v, want ErrUnavailable (HTTP 429)", err)
	}
}

// Duo failing in the middle of a push is an outage too.
func TestDownDuringPush(t *testing.T) {
	srv, c := setup(t, nil)
	srv.SetUser("alice", duotest.Timeout)
	ctx := ctxFor(t, 5*time.Second)
	txid, _, err := c.Start(ctx, "alice", "", "")
	if err != nil {
		t.Fatal(err)
	}
	srv.SetDown(true)
	if _, err := c.Status(ctx, txid); !errors.Is(err, duo.ErrUnavailable) {
		t.Errorf("Status = %v, want ErrUnavailable", err)
	}
}

func TestCancel(t *testing.T) {
	srv, c := setup(t, nil)
	srv.SetUser("alice", duotest.Timeout)
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(100*time.Millisecond, cancel)
	_, err := c.Push(ctx, "alice", "", "")
	if !errors.Is(err, context.Canceled) || errors.Is(err, duo.ErrUnavailable) || errors.Is(err, duo.ErrTimeout) {
		t.Errorf("err = %v, want context.Canceled only", err)
	}

	// Cancelled while Duo is slow to answer preauth: still the caller's doing.
	srv.SetDelay(time.Minute)
	ctx, cancel = context.WithCancel(t.Context())
	time.AfterFunc(100*time.Millisecond, cancel)
	_, _, err = c.Start(ctx, "alice", "", "")
	if !errors.Is(err, context.Canceled) || errors.Is(err, duo.ErrUnavailable) {
		t.Errorf("err = %v, want context.Canceled only", err)
	}
}

func TestNew(t *testing.T) {
	good := duo.Config{IntegrationKey: ikey, SecretKey: skey, APIHost: "api-12345678.duosecurity.com"}
	if _, err := duo.New(good); err != nil {
		t.Fatal(err)
	}
	for name, edit := range map[string]func(*duo.Config){
		"no ikey":          func(c *duo.Config) { c.IntegrationKey = "" },
		"no skey":          func(c *duo.Config) { c.SecretKey = " " },
		"no host":          func(c *duo.Config) { c.APIHost = "" },
		"URL host":         func(c *duo.Config) { c.APIHost = "https://api-12345678.duosecurity.com" },
		"negative timeout": func(c *duo.Config) { c.Timeout = -time.Second },
		"negative poll":    func(c *duo.Config) { c.PollInterval = -time.Second },
	} {
		cfg := good
		edit(&cfg)
		_, err := duo.New(cfg)
		if err == nil {
			t.Errorf("%s: no error", name)
		}
		noSecret(t, err)
	}
}

func TestSecretNotPrinted(t *testing.T) {
	cfg := duo.Config{IntegrationKey: ikey, SecretKey: skey, APIHost: "api-12345678.duosecurity.com"}
	c, err := duo.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		for _, v := range []any{cfg, &cfg, c, *c} {
			if s := fmt.Sprintf(verb, v); strings.Contains(s, skey) {
				t.Errorf("%s of %T prints the secret key: %s", verb, v, s)
			}
		}
	}
}

func TestOutcomeString(t *testing.T) {
	for o, want := range map[duo.Outcome]string{duo.Deny: "deny", duo.Allow: "allow", duo.Waiting: "waiting"} {
		if o.String() != want {
			t.Errorf("%d.String() = %q, want %q", int(o), o, want)
		}
	}
	var zero duo.Result
	if zero.Outcome != duo.Deny {
		t.Error("the zero Result must deny")
	}
}
