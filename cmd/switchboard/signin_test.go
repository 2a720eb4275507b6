package main

import (
	"context"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"github.com/switchboard/switchboard/db"
	"github.com/switchboard/switchboard/internal/auth/duo/duotest"
	"github.com/switchboard/switchboard/internal/auth/password"
	"github.com/switchboard/switchboard/internal/auth/signin"
	"github.com/switchboard/switchboard/internal/gateway"
	"github.com/switchboard/switchboard/internal/peer/control/gateways"
	"github.com/switchboard/switchboard/relay/wire"
)

const (
	opName     = "alice"
	opPassword = "alice's long password"
	duoIKey    = "DIXXXXXXXXXXXXXXXXXX"
	duoSKey    = "duo secret key that must stay secret"
)

// addOperator stores an operator with a password, as `operators add` does.
func addOperator(t *testing.T, g *testGateway, name, pw, role string) db.Operator {
	t.Helper()
	hash, err := password.Hash(pw)
	if err != nil {
		t.Fatal(err)
	}
	op, err := g.DB().AddOperator(context.Background(), db.Operator{Name: name, PasswordHash: hash, Role: role})
	if err != nil {
		t.Fatal(err)
	}
	return op
}

// enrolTOTP gives the operator an authenticator app, as the Account page
// does, and returns its secret for computing codes.
func enrolTOTP(t *testing.T, g *testGateway, name string) signin.Enrolment {
	t.Helper()
	enrol, err := signin.NewEnrolment("Switchboard", name)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.DB().SetTOTP(context.Background(), name, enrol.Secret); err != nil {
		t.Fatal(err)
	}
	return enrol
}

// controlProcess runs `switchboard control ARGS...` as a process, with stdin as the answers to its prompts, and a gateways file of its
// own; it returns everything the process printed.
func controlProcess(t *testing.T, gwFile, stdin string, env []string, args ...string) (string, error) {
	t.Helper()
	full := append([]string{"control"}, args...)
	full = append(full, "--gateways-file", gwFile)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary(t), full...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestControlSignIn: once an operator exists a Control must sign in; a
// password admits it when no 2FA is required, and the kept token spares
// the next command the prompt until an admin revokes it.
func TestControlSignIn(t *testing.T) {
	g := mustStartGateway(t)
	a := g.startAgent(t, testKey, "pc-ops", map[string]string{"echo": echoServer(t)})
	g.waitConnected(t, a)
	gwFile := filepath.Join(t.TempDir(), "gateways.json")
	browse := []string{"browse", "--gateway", g.url, "--key", testKey, "--name", "ctl-1"}

	out, err := controlProcess(t, gwFile, "", nil, browse...)
	if err != nil || !strings.Contains(out, "pc-ops") {
		t.Fatalf("with no operators the key alone must do: %v\n%s", err, out)
	}

	addOperator(t, g, opName, opPassword, db.RoleOperator)
	out, err = controlProcess(t, gwFile, "", nil, browse...)
	if err == nil || !strings.Contains(out, "requires operators to sign in") || strings.Contains(out, "pc-ops") {
		t.Fatalf("a Control without credentials must be refused: %v\n%s", err, out)
	}

	withUser := append(browse, "--user", opName)
	out, err = controlProcess(t, gwFile, "not the password\n", nil, withUser...)
	if err == nil || !strings.Contains(out, "wrong operator name or password") {
		t.Fatalf("a wrong password must be refused: %v\n%s", err, out)
	}
	g.waitEvent(t, "Sign-in failed for operator alice from 127.0.0.1")

	out, err = controlProcess(t, gwFile, opPassword+"\n", nil, withUser...)
	if err != nil || !strings.Contains(out, "pc-ops") || !strings.Contains(out, "Password for operator alice") {
		t.Fatalf("the password read at the prompt must admit: %v\n%s", err, out)
	}
	g.waitEvent(t, "Operator alice signed in from 127.0.0.1")
	fi, err := os.Stat(gwFile)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("gateways file mode %v, want 0600", fi.Mode().Perm())
	}
	if b, _ := os.ReadFile(gwFile); strings.Contains(string(b), opPassword) {
		t.Error("the password was written to the gateways file")
	}

	// The kept token: no prompt, nothing on stdin.
	out, err = controlProcess(t, gwFile, "", nil, withUser...)
	if err != nil || !strings.Contains(out, "pc-ops") || strings.Contains(out, "Password") {
		t.Fatalf("the kept sign-in must admit without a prompt: %v\n%s", err, out)
	}
	tokens, err := g.DB().ControlTokens(context.Background())
	if err != nil || len(tokens) != 1 || tokens[0].Operator != opName || tokens[0].Control != "ctl-1" {
		t.Fatalf("tokens = %+v, %v", tokens, err)
	}
	if _, err := g.DB().RevokeControlToken(context.Background(), tokens[0].ID); err != nil {
		t.Fatal(err)
	}
	out, err = controlProcess(t, gwFile, "", nil, withUser...)
	if err == nil || !strings.Contains(out, "Password for operator alice") {
		t.Fatalf("a revoked sign-in must ask again: %v\n%s", err, out)
	}
	out, err = controlProcess(t, gwFile, "", []string{"SWITCHBOARD_PASSWORD=" + opPassword}, withUser...)
	if err != nil || !strings.Contains(out, "pc-ops") {
		t.Fatalf("SWITCHBOARD_PASSWORD must sign in: %v\n%s", err, out)
	}

	// Requiring 2FA later ends what the kept sign-in admits: it proved no
	// second factor.
	set := signin.DefaultSettings
	set.Require2FA = true
	if err := signin.SaveSettings(context.Background(), g.DB(), set); err != nil {
		t.Fatal(err)
	}
	out, err = controlProcess(t, gwFile, "", nil, withUser...)
	if err == nil || !strings.Contains(out, "Password for operator alice") {
		t.Fatalf("a kept sign-in without 2FA must not admit once 2FA is required: %v\n%s", err, out)
	}
	set.Require2FA = false
	if err := signin.SaveSettings(context.Background(), g.DB(), set); err != nil {
		t.Fatal(err)
	}

	// The session carries the operator into the console and the events.
	c := g.control(testKey, "ctl-2")
	c.Operator, c.Password = opName, func(context.Context) (string, error) { return opPassword, nil }
	conn, err := c.Connect(context.Background(), "pc-ops/echo")
	if err != nil {
		t.Fatal(err)
	}
	mustEcho(t, conn, []byte("hello"))
	if ss := g.Relay().Sessions(); len(ss) != 1 || ss[0].Operator != opName {
		t.Errorf("sessions = %+v", ss)
	}
	conn.Close()
	if e := g.waitEvent(t, "Control ctl-2 connected to Client pc-ops"); e.Operator != opName {
		t.Errorf("session event operator = %q", e.Operator)
	}
}

// TestControlLockout: repeated failures lock the operator out from that
// address; while locked even the right password is refused from there.
func TestControlLockout(t *testing.T) {
	g := mustStartGateway(t)
	addOperator(t, g, opName, opPassword, db.RoleOperator)
	ctx := context.Background()
	c := g.control(testKey, "ctl")
	c.Operator = opName
	for i := range signin.DefaultPolicy.MaxFailures {
		c.Password = func(context.Context) (string, error) { return "wrong password " + string(rune('a'+i)), nil }
		if _, err := c.Browse(ctx); wireCode(err) != wire.CodeUnauthorized {
			t.Fatalf("failure %d: %v", i+1, err)
		}
	}
	g.waitEvent(t, "Operator alice locked out for 127.0.0.1")
	c.Password = func(context.Context) (string, error) { return opPassword, nil }
	_, err := c.Browse(ctx)
	if wireCode(err) != wire.CodeLocked {
		t.Fatalf("a locked (operator, address) must be refused even with its password: %v", err)
	}
	op, err := g.DB().Operator(ctx, opName)
	if err != nil || !op.LockedUntil.After(time.Now().Add(10*time.Minute)) {
		t.Errorf("locked until %v, %v", op.LockedUntil, err)
	}
	out, err := runCLI(ctx, t, nil, "operators", "--database-url", g.cfg.DatabaseURL, "list")
	if err != nil || !strings.Contains(out, "locked until") {
		t.Errorf("operators list must show the lock: %v\n%s", err, out)
	}
	if _, err := runCLI(ctx, t, nil, "operators", "--database-url", g.cfg.DatabaseURL, "unlock", opName); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Browse(ctx); err != nil {
		t.Fatalf("after operators unlock the password must admit: %v", err)
	}
}

// TestControlTOTP: with 2FA required the Control prompts for the code; a
// code computed here from the secret admits once and never again.
func TestControlTOTP(t *testing.T) {
	g := mustStartGateway(t)
	a := g.startAgent(t, testKey, "pc-totp", map[string]string{"echo": echoServer(t)})
	g.waitConnected(t, a)
	addOperator(t, g, opName, opPassword, db.RoleOperator)
	ctx := context.Background()
	enrol := enrolTOTP(t, g, opName)
	browse := []string{"browse", "--gateway", g.url, "--key", testKey, "--user", opName}

	// Enrolled but not required: the password alone does.
	out, err := controlProcess(t, filepath.Join(t.TempDir(), "gw.json"), opPassword+"\n", nil, browse...)
	if err != nil || !strings.Contains(out, "pc-totp") || strings.Contains(out, "TOTP code") {
		t.Fatalf("password only, no 2FA required: %v\n%s", err, out)
	}

	if _, err := runCLI(ctx, t, nil, "operators", "--database-url", g.cfg.DatabaseURL, "2fa", opName, "totp", "--require-2fa"); err != nil {
		t.Fatal(err)
	}
	code, err := totp.GenerateCode(enrol.Secret, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	out, err = controlProcess(t, filepath.Join(t.TempDir(), "gw.json"), opPassword+"\n000000\n", nil, browse...)
	if err == nil || !strings.Contains(out, "wrong or already used code") {
		t.Fatalf("a wrong code must be refused: %v\n%s", err, out)
	}
	out, err = controlProcess(t, filepath.Join(t.TempDir(), "gw.json"), opPassword+"\n"+code+"\n", nil, browse...)
	if err != nil || !strings.Contains(out, "TOTP code for operator alice") || !strings.Contains(out, "pc-totp") {
		t.Fatalf("password and the right code must admit: %v\n%s", err, out)
	}
	out, err = controlProcess(t, filepath.Join(t.TempDir(), "gw.json"), opPassword+"\n"+code+"\n", nil, browse...)
	if err == nil || !strings.Contains(out, "wrong or already used code") {
		t.Fatalf("a code must work once: %v\n%s", err, out)
	}

	// Connections opened at once sign in once: one password, one code.
	c := g.control(testKey, "ctl-parallel")
	c.Operator = opName
	var mu sync.Mutex
	passwords, codes := 0, 0
	c.Password = func(context.Context) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		passwords++
		return opPassword, nil
	}
	c.Code = func(context.Context, string) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		codes++
		return totp.GenerateCode(enrol.Secret, time.Now().Add(30*time.Second))
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := c.Connect(ctx, "pc-totp/echo")
			if err != nil {
				t.Error(err)
				return
			}
			mustEcho(t, conn, []byte("one sign-in"))
			conn.Close()
		}()
	}
	wg.Wait()
	if passwords != 1 || codes != 1 {
		t.Errorf("4 parallel connections asked %d times for the password and %d for a code, want 1 each", passwords, codes)
	}

	// A gateway that stops ends a sign-in waiting for its code.
	waiting := make(chan struct{})
	c2 := g.control(testKey, "ctl-waits")
	c2.Operator = opName
	c2.Password = func(context.Context) (string, error) { return opPassword, nil }
	c2.Code = func(ctx context.Context, _ string) (string, error) {
		close(waiting)
		<-ctx.Done()
		return "", ctx.Err()
	}
	bctx, bcancel := context.WithTimeout(ctx, 20*time.Second)
	defer bcancel()
	browseErr := make(chan error, 1)
	go func() { _, err := c2.Browse(bctx); browseErr <- err }()
	<-waiting
	stopped := time.Now()
	g.stop()
	if took := time.Since(stopped); took > 4*time.Second {
		t.Errorf("the gateway took %v to stop with a sign-in waiting", took)
	}
	bcancel()
	if err := <-browseErr; err == nil {
		t.Error("the waiting Control was admitted")
	}
}

// TestControlTOTPForEveryone: 2FA required for all operators from the 2FA
// settings, not per operator.
func TestControlTOTPForEveryone(t *testing.T) {
	g := mustStartGateway(t)
	addOperator(t, g, opName, opPassword, db.RoleOperator)
	ctx := context.Background()
	enrol := enrolTOTP(t, g, opName)
	browse := []string{"browse", "--gateway", g.url, "--key", testKey, "--user", opName}
	set := signin.DefaultSettings
	set.Require2FA = true
	if err := signin.SaveSettings(ctx, g.DB(), set); err != nil {
		t.Fatal(err)
	}
	out, err := controlProcess(t, filepath.Join(t.TempDir(), "gw.json"), opPassword+"\n", nil, browse...)
	if err == nil || !strings.Contains(out, "TOTP code for operator alice") {
		t.Fatalf("2FA for all must ask alice for her code: %v\n%s", err, out)
	}
	code, err := totp.GenerateCode(enrol.Secret, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	out, err = controlProcess(t, filepath.Join(t.TempDir(), "gw.json"), opPassword+"\n"+code+"\n", nil, browse...)
	if err != nil {
		t.Fatalf("2FA for all with the right code: %v\n%s", err, out)
	}
}

// duoGateway starts a gateway that trusts the local Duo and points its 2FA
// settings at it.
func duoGateway(t *testing.T, duo *duotest.Server, mutate func(*signin.Settings)) *testGateway {
	t.Helper()
	caFile := filepath.Join(t.TempDir(), "duo-ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: duo.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	g := mustStartGateway(t, func(c *gateway.Config) { c.DuoCA = caFile })
	set := signin.DefaultSettings
	set.DuoIntegrationKey, set.DuoSecretKey, set.DuoAPIHost = duoIKey, duoSKey, duo.Host()
	set.DuoTimeout = 5 * time.Second
	if mutate != nil {
		mutate(&set)
	}
	if err := signin.SaveSettings(context.Background(), g.DB(), set); err != nil {
		t.Fatal(err)
	}
	return g
}

// TestControlDuo: Duo Push through a local server speaking Duo's Auth API,
// which checks every request's signature: approved, denied, unanswered,
// and Duo unreachable with fail closed and fail open.
func TestControlDuo(t *testing.T) {
	duo := duotest.New(t, duoIKey, duoSKey)
	g := duoGateway(t, duo, nil)
	a := g.startAgent(t, testKey, "pc-duo", map[string]string{"echo": echoServer(t)})
	g.waitConnected(t, a)
	ctx := context.Background()
	for _, name := range []string{"bob", "carol", "dave"} {
		addOperator(t, g, name, opPassword, db.RoleOperator)
		if err := g.DB().SetSecondFactor(ctx, name, db.FactorDuo, true); err != nil {
			t.Fatal(err)
		}
	}
	duo.SetUser("bob", duotest.Approve)
	duo.SetApproveAfter(500 * time.Millisecond)
	duo.SetUser("carol", duotest.Deny)
	duo.SetUser("dave", duotest.Timeout)
	env := []string{"SWITCHBOARD_PASSWORD=" + opPassword}
	browse := func(user string) (string, error) {
		return controlProcess(t, filepath.Join(t.TempDir(), "gw.json"), "", env,
			"browse", "--gateway", g.url, "--key", testKey, "--user", user)
	}

	out, err := browse("bob")
	if err != nil || !strings.Contains(out, "Duo Push sent") || !strings.Contains(out, "pc-duo") {
		t.Fatalf("an approved push must admit: %v\n%s", err, out)
	}
	g.waitEvent(t, "Operator bob signed in from 127.0.0.1")
	if p := duo.Pushes(); len(p) != 1 || p[0].User != "bob" {
		t.Errorf("pushes = %+v", p)
	}

	out, err = browse("carol")
	if err == nil || !strings.Contains(out, "denied") {
		t.Fatalf("a denied push must refuse: %v\n%s", err, out)
	}
	g.waitEvent(t, "Sign-in failed for operator carol from 127.0.0.1")

	out, err = browse("dave")
	if err == nil || !strings.Contains(out, "not answered in time") {
		t.Fatalf("an unanswered push must refuse: %v\n%s", err, out)
	}
	g.waitEvent(t, "Sign-in failed for operator dave from 127.0.0.1")
	if n := duo.BadSignatures(); n != 0 {
		t.Errorf("%d requests with bad signatures", n)
	}

	duo.SetDown(true)
	out, err = browse("bob")
	if err == nil || !strings.Contains(out, "Duo cannot be reached") {
		t.Fatalf("Duo down must fail closed: %v\n%s", err, out)
	}
	if strings.Contains(out, duoSKey) {
		t.Error("the Duo secret key reached the Control")
	}
	set, err := signin.LoadSettings(ctx, g.DB())
	if err != nil {
		t.Fatal(err)
	}
	set.DuoFailOpen = true
	if err := signin.SaveSettings(ctx, g.DB(), set); err != nil {
		t.Fatal(err)
	}
	out, err = browse("bob")
	if err != nil || !strings.Contains(out, "pc-duo") {
		t.Fatalf("Duo down with fail open must admit: %v\n%s", err, out)
	}
	g.waitEvent(t, "Duo unreachable. Operator bob admitted from 127.0.0.1 without Duo Push (fail open)")

	// Rate limiting is no outage: anyone with the password could provoke
	// it, so even fail open refuses.
	duo.SetDown(false)
	duo.SetRateLimited(true)
	out, err = browse("bob")
	if err == nil || !strings.Contains(out, "Duo cannot be reached") {
		t.Fatalf("Duo rate limiting must fail closed even with fail open: %v\n%s", err, out)
	}
	// Nor does a missing integration: Duo chosen but not configured.
	duo.SetRateLimited(false)
	if err := g.DB().SetSetting(ctx, "duo_api_host", ""); err != nil {
		t.Fatal(err)
	}
	out, err = browse("bob")
	if err == nil || !strings.Contains(out, "not configured") {
		t.Fatalf("Duo not configured must refuse even with fail open: %v\n%s", err, out)
	}
}

// TestControlGateways: remembered gateways, two at one address with
// different keys, used by name for browse and connect.
func TestControlGateways(t *testing.T) {
	const keyB = "second-key-456"
	g := mustStartGateway(t, withKeys(testKey, keyB))
	echo := echoServer(t)
	a := g.startAgent(t, testKey, "pc-first", map[string]string{"echo": echo})
	b := g.startAgent(t, keyB, "pc-second", map[string]string{"echo": echo})
	g.waitConnected(t, a)
	g.waitConnected(t, b)
	gwFile := filepath.Join(t.TempDir(), "cfg", "gateways.json")
	ctx := context.Background()
	run := func(args ...string) (string, error) {
		return runCLI(ctx, t, nil, append(append([]string{"control", "gateways"}, args...), "--gateways-file", gwFile)...)
	}
	if _, err := run("add", "office", "--gateway", g.url, "--key", testKey, "--description", "main office"); err != nil {
		t.Fatal(err)
	}
	if _, err := run("add", "lab", "--gateway", g.url, "--key", keyB); err != nil {
		t.Fatal(err)
	}
	if _, err := run("add", "office", "--gateway", g.url, "--key", keyB); !errors.Is(err, gateways.ErrExists) {
		t.Errorf("a second entry called office: %v", err)
	}
	out, err := run("list")
	if err != nil || !strings.Contains(out, "office") || !strings.Contains(out, "main office") || !strings.Contains(out, "lab") || strings.Contains(out, testKey) {
		t.Fatalf("list: %v\n%s", err, out)
	}
	fi, err := os.Stat(gwFile)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("gateways file: %v %v", fi, err)
	}

	browse := func(name string) string {
		out, err := runCLI(ctx, t, nil, "control", "browse", name, "--gateways-file", gwFile)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	if out := browse("office"); !strings.Contains(out, "pc-first") || strings.Contains(out, "pc-second") {
		t.Errorf("office sees:\n%s", out)
	}
	if out := browse("lab"); !strings.Contains(out, "pc-second") || strings.Contains(out, "pc-first") {
		t.Errorf("lab sees:\n%s", out)
	}

	listen := freePort(t)
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := runCLI(cctx, t, nil, "control", "connect", "lab", "pc-second/echo", "--listen", listen, "--gateways-file", gwFile)
		done <- err
	}()
	conn := dialRetry(t, listen)
	mustEcho(t, conn, []byte("through a remembered gateway"))
	conn.Close()
	cancel()
	if err := <-done; err != nil {
		t.Errorf("connect: %v", err)
	}

	if _, err := run("remove", "lab"); err != nil {
		t.Fatal(err)
	}
	if _, err := runCLI(ctx, t, nil, "control", "browse", "lab", "--gateways-file", gwFile); err == nil {
		t.Error("a removed gateway still browses")
	}
	if err := os.Chmod(gwFile, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := runCLI(ctx, t, nil, "control", "browse", "office", "--gateways-file", gwFile); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("a gateways file others can read must be refused: %v", err)
	}
}

// dialRetry connects to addr once something listens there.
func dialRetry(t *testing.T, addr string) net.Conn {
	t.Helper()
	var conn net.Conn
	waitFor(t, addr+" to listen", 10*time.Second, func() bool {
		var err error
		conn, err = net.Dial("tcp", addr)
		return err == nil
	})
	return conn
}

// TestDisablingEndsSessions: an admin who disables an operator on the
// console ends that operator's sessions, and only theirs.
func TestDisablingEndsSessions(t *testing.T) {
	g := consoleGateway(t)
	a := g.startAgent(t, testKey, "pc-dis", map[string]string{"echo": echoServer(t)})
	g.waitConnected(t, a)
	addOperator(t, g, opName, opPassword, db.RoleOperator)
	ctx := context.Background()
	alice := g.control(testKey, "ctl-alice")
	alice.Operator, alice.Password = opName, func(context.Context) (string, error) { return opPassword, nil }
	aliceConn, err := alice.Connect(ctx, "pc-dis/echo")
	if err != nil {
		t.Fatal(err)
	}
	defer aliceConn.Close()
	adminConn, err := g.signedControl(testKey, "ctl-admin").Connect(ctx, "pc-dis/echo")
	if err != nil {
		t.Fatal(err)
	}
	defer adminConn.Close()

	client := g.httpsClient()
	client.Jar, _ = cookiejar.New(nil)
	resp, err := client.PostForm(g.https()+"/console/signin", url.Values{"name": {adminName}, "password": {adminPassword}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	resp, err = client.PostForm(g.https()+"/console/config/operators/"+opName,
		url.Values{"role": {db.RoleOperator}, "disabled": {"1"}, "factor": {""}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "Saved operator alice") {
		t.Fatalf("disabling alice:\n%s", body)
	}
	_ = aliceConn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := aliceConn.Read(make([]byte, 1)); err == nil {
		t.Error("the disabled operator's session is still open")
	}
	mustEcho(t, adminConn, []byte("still here"))
	if _, err := alice.Browse(ctx); err == nil {
		t.Error("a disabled operator's kept sign-in still admits")
	}
}
