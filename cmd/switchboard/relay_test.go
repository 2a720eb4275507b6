package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/db"
	"github.com/switchboard/switchboard/internal/audit/event"
	"github.com/switchboard/switchboard/internal/peer/agent"
	"github.com/switchboard/switchboard/relay/wire"
)

// TestKeyMatching walks the key-matching table of the design brief.
func TestKeyMatching(t *testing.T) {
	const keyA, keyB, keyX = "key-alpha-123", "key-bravo-456", "key-not-on-gw"
	g := mustStartGateway(t, withKeys(keyA, keyB))
	echo := echoServer(t)
	ctx := context.Background()

	pcA := g.startAgent(t, keyA, "pc-a", map[string]string{"echo": echo})
	g.waitConnected(t, pcA)

	t.Run("client key not on the gateway cannot connect", func(t *testing.T) {
		a := g.startAgent(t, keyX, "pc-x", map[string]string{"echo": echo})
		e := g.waitEvent(t, "Security check failed for Client pc-x (127.0.0.1). Terminating connection from 127.0.0.1")
		if e.Kind != event.KindSecurity || e.Client != "pc-x" {
			t.Errorf("event = %+v", e)
		}
		if a.Connected() {
			t.Error("Client with a foreign key is connected")
		}
	})

	t.Run("same key everywhere: the control sees and reaches the client", func(t *testing.T) {
		c := g.control(keyA, "op-a")
		list, err := c.Browse(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 1 || list[0].Name != "pc-a" || !slices.Equal(list[0].Services, []string{"echo"}) {
			t.Fatalf("browse = %+v", list)
		}
		if list[0].RealIP != "127.0.0.1" || list[0].PublicIP != "127.0.0.1" || list[0].ConnectedSince.IsZero() || list[0].LastHeartbeat.IsZero() {
			t.Errorf("browse details = %+v", list[0])
		}
		conn, err := c.Connect(ctx, "pc-a/echo")
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		mustEcho(t, conn, []byte("hello through the relay"))
	})

	t.Run("control with another valid key neither sees nor reaches the client", func(t *testing.T) {
		c := g.control(keyB, "op-b")
		list, err := c.Browse(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 0 {
			t.Fatalf("browse with key B lists %+v", list)
		}
		_, err = c.Connect(ctx, "pc-a/echo")
		if wireCode(err) != wire.CodeKeyMismatch {
			t.Fatalf("connect err = %v, want code %s", err, wire.CodeKeyMismatch)
		}
		g.waitEvent(t, "Client/Control security check failed for Control op-b. Rejecting connection request to Client pc-a from 127.0.0.1")
	})

	t.Run("control key not on the gateway cannot browse or connect", func(t *testing.T) {
		c := g.control(keyX, "op-x")
		_, err := c.Browse(ctx)
		if wireCode(err) != wire.CodeUnauthorized {
			t.Fatalf("browse err = %v", err)
		}
		g.waitEvent(t, "Security check failed for Control browse. Terminating connection from 127.0.0.1")
		_, err = c.Connect(ctx, "pc-a/echo")
		if wireCode(err) != wire.CodeUnauthorized {
			t.Fatalf("connect err = %v", err)
		}
		g.waitEvent(t, "Security check failed for Control op-x. Rejecting connection request to Client pc-a from 127.0.0.1")
	})
}

func mustEcho(t testing.TB, conn net.Conn, msg []byte) {
	t.Helper()
	if _, err := conn.Write(msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(conn, got); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Time{})
	if !bytes.Equal(got, msg) {
		t.Fatalf("echo = %q, want %q", got, msg)
	}
}

// TestRelay64MiBBothWays sends 64 MiB of random bytes through an echo
// service and checks every byte that comes back, while it is still sending.
func TestRelay64MiBBothWays(t *testing.T) {
	g := mustStartGateway(t)
	a := g.startAgent(t, testKey, "pc-bulk", map[string]string{"echo": echoServer(t)})
	g.waitConnected(t, a)
	conn, err := g.control(testKey, "op").Connect(context.Background(), "pc-bulk/echo")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	const size = 64 << 20
	data := make([]byte, size)
	_, _ = rand.Read(data)
	want := sha256.Sum256(data)
	errc := make(chan error, 1)
	go func() {
		_, err := conn.Write(data)
		if err == nil {
			err = conn.(interface{ CloseWrite() error }).CloseWrite()
		}
		errc <- err
	}()
	h := sha256.New()
	n, err := io.Copy(h, conn)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if n != size || !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatalf("got %d bytes back with a different digest", n)
	}
	st := g.Relay().Stats()
	if st.BytesUp < size || st.BytesDown < size {
		t.Errorf("relay counted %d up, %d down; want at least %d each", st.BytesUp, st.BytesDown, size)
	}
}

// TestHalfClose checks that a Control's EOF reaches the service, which can
// still answer afterwards.
func TestHalfClose(t *testing.T) {
	g := mustStartGateway(t)
	counter := serveTCP(t, func(c net.Conn) {
		n, _ := io.Copy(io.Discard, c)
		fmt.Fprintf(c, "read %d bytes", n)
	})
	a := g.startAgent(t, testKey, "pc-hc", map[string]string{"count": counter})
	g.waitConnected(t, a)
	conn, err := g.control(testKey, "op").Connect(context.Background(), "pc-hc") // its only service
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write(bytes.Repeat([]byte("x"), 12345)); err != nil {
		t.Fatal(err)
	}
	if err := conn.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(conn)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "read 12345 bytes" {
		t.Fatalf("answer after half-close = %q", got)
	}
}

// TestConcurrentSessions runs 100 sessions through one Client at once, from
// two Controls.
func TestConcurrentSessions(t *testing.T) {
	g := mustStartGateway(t)
	a := g.startAgent(t, testKey, "pc-many", map[string]string{"echo": echoServer(t)})
	g.waitConnected(t, a)
	controls := [2]string{"op-1", "op-2"}
	var wg, echoed sync.WaitGroup
	release := make(chan struct{})
	errs := make(chan error, 100)
	for i := range 100 {
		wg.Add(1)
		echoed.Add(1)
		go func() {
			defer wg.Done()
			done := sync.OnceFunc(echoed.Done)
			defer done()
			conn, err := g.control(testKey, controls[i%2]).Connect(context.Background(), "pc-many/echo")
			if err != nil {
				errs <- err
				return
			}
			defer conn.Close()
			msg := bytes.Repeat([]byte{byte(i)}, 64<<10)
			go func() { _, _ = conn.Write(msg) }()
			got := make([]byte, len(msg))
			_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
			if _, err := io.ReadFull(conn, got); err != nil {
				errs <- fmt.Errorf("session %d: %w", i, err)
				return
			}
			if !bytes.Equal(got, msg) {
				errs <- fmt.Errorf("session %d: wrong bytes", i)
			}
			done()
			<-release // hold the session open until all 100 exist at once
		}()
	}
	echoed.Wait()
	if n := len(g.Relay().Sessions()); n != 100 && len(errs) == 0 {
		t.Errorf("%d sessions active at once, want 100", n)
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	waitFor(t, "sessions to end", 10*time.Second, func() bool { return len(g.Relay().Sessions()) == 0 })
	evs := g.events(t, db.EventFilter{Kind: event.KindSessionEnd})
	if len(evs) != 100 {
		t.Errorf("%d session end events, want 100", len(evs))
	}
}

// TestClientReconnectsAfterGatewayRestart stops the gateway under a Client
// and starts it again on the same address and database.
func TestClientReconnectsAfterGatewayRestart(t *testing.T) {
	cfg := baseConfig(t)
	cfg.GatewayKeys = []string{testKey}
	g := mustStartGatewayConfig(t, cfg)
	a := g.startAgent(t, testKey, "pc-back", map[string]string{"echo": echoServer(t)})
	g.waitConnected(t, a)
	g.stop()
	waitFor(t, "the Client to notice", 10*time.Second, func() bool { return !a.Connected() })

	cfg.Listen = []string{g.Addrs()[0].String()}
	cfg.GatewayKeys = nil // the key is in the database now
	g2 := mustStartGatewayConfig(t, cfg)
	waitFor(t, "the Client to come back", 15*time.Second, a.Connected)
	conn, err := g2.control(testKey, "op").Connect(context.Background(), "pc-back/echo")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	mustEcho(t, conn, []byte("back again"))
	msgs := messages(g2.events(t, db.EventFilter{Client: "pc-back"}))
	if n := strings.Count(strings.Join(msgs, "\n"), "Client pc-back connected"); n != 2 {
		t.Errorf("%d connect events over the restart, want 2: %q", n, msgs)
	}
}

// TestSilentClientDropped registers a Client by hand and then says nothing:
// the gateway must drop it after three CMPIs although the socket stays open.
func TestSilentClientDropped(t *testing.T) {
	g := mustStartGateway(t, withCMPI(time.Second))
	d := g.dialer()
	conn, err := d.Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.Send(testKey, wire.RoleClient, "pc-silent", "", func(h *wire.Hello) { h.RealIP = "10.1.2.3" }); err != nil {
		t.Fatal(err)
	}
	var w wire.Welcome
	if err := wire.Expect(conn.Reader(), wire.TypeWelcome, &w); err != nil {
		t.Fatal(err)
	}
	if w.CMPISeconds != 1 {
		t.Errorf("welcome CMPI = %d, want 1", w.CMPISeconds)
	}
	start := time.Now()
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	_, err = io.Copy(io.Discard, conn.Reader())
	if err != nil {
		t.Fatalf("gateway did not close the silent Client's connection: %v", err)
	}
	if el := time.Since(start); el < 2*time.Second || el > 10*time.Second {
		t.Errorf("dropped after %s, want about 3 s", el)
	}
	g.waitEvent(t, "Client pc-silent Disconnected")
	list, err := g.control(testKey, "op").Browse(context.Background())
	if err != nil || len(list) != 0 {
		t.Fatalf("browse after drop = %+v, %v", list, err)
	}
}

// TestLicenceLimit rejects the Client past the limit with the licence event.
func TestLicenceLimit(t *testing.T) {
	g := mustStartGateway(t, withMaxClients(1))
	a := g.startAgent(t, testKey, "pc-1", nil)
	g.waitConnected(t, a)
	b := g.startAgent(t, testKey, "pc-2", nil)
	g.waitEvent(t, "Licence exceed. Rejecting connection from Client pc-2 (127.0.0.1, 127.0.0.1)")
	if b.Connected() {
		t.Fatal("second Client connected past the licence limit")
	}
	if st := g.Relay().Stats(); st.Clients != 1 {
		t.Fatalf("%d Clients connected, want 1", st.Clients)
	}
}

// TestEventTextsInTableAndLogFile runs a Client and a session and checks
// the exact texts, in order, in PostgreSQL and in GW001.log.
func TestEventTextsInTableAndLogFile(t *testing.T) {
	g := mustStartGateway(t, withMaxClients(5))
	port := g.Addrs()[0].(*net.TCPAddr).Port
	a := g.startAgent(t, testKey, "pc-ev", map[string]string{"echo": echoServer(t)})
	g.waitConnected(t, a)
	conn, err := g.control(testKey, "op-ev").Connect(context.Background(), "pc-ev/echo")
	if err != nil {
		t.Fatal(err)
	}
	mustEcho(t, conn, []byte("x"))
	conn.Close()
	g.waitEvent(t, "Control op-ev disconnected from Client pc-ev")
	g.stop()

	want := []string{
		fmt.Sprintf("Switchboard %s, running on", version),
		fmt.Sprintf("Listening on port %d", port),
		"Gateway started. Max licensed connections: 5",
		"Client pc-ev connected",
		"Control op-ev connected to Client pc-ev",
		"Control op-ev disconnected from Client pc-ev",
		"Client pc-ev Disconnected",
		"Gateway stopped",
	}
	// The gateway is stopped, so read the database directly.
	evs := readEvents(t, g.cfg.DatabaseURL)
	got := messages(evs)
	if !containsInOrder(got, want) {
		t.Errorf("stored events %q\nwant in order %q", got, want)
	}
	for _, e := range evs {
		if e.Node != "test-node" || e.Time.IsZero() {
			t.Errorf("event %+v lacks node or time", e)
		}
	}
	text := g.logFileText(t)
	lines := strings.Split(strings.TrimSpace(text), "\n")
	var logged []string
	for _, l := range lines {
		// 29-Jun-22, 16:11:20, message
		parts := strings.SplitN(l, ", ", 3)
		if len(parts) != 3 {
			t.Fatalf("log line %q is not in the design's format", l)
		}
		if _, err := time.Parse(event.LogTimeLayout, parts[0]+", "+parts[1]); err != nil {
			t.Errorf("log line %q: %v", l, err)
		}
		logged = append(logged, parts[2])
	}
	if !containsInOrder(logged, want) {
		t.Errorf("GW log lines %q\nwant in order %q", logged, want)
	}
}

func readEvents(t testing.TB, url string) []event.Event {
	t.Helper()
	ctx := context.Background()
	d, err := db.Open(ctx, url, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	evs, err := d.Events(ctx, db.EventFilter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	slices.Reverse(evs)
	return evs
}

// containsInOrder reports whether every want is a prefix of some got line,
// in order.
func containsInOrder(got, want []string) bool {
	i := 0
	for _, g := range got {
		if i < len(want) && strings.HasPrefix(g, want[i]) {
			i++
		}
	}
	return i == len(want)
}

// TestLogRotation fills 1 KB log files and checks nothing is lost.
func TestLogRotation(t *testing.T) {
	g := mustStartGateway(t, withLogMaxKB(1))
	for i := range 40 {
		a := g.startAgent(t, testKey, fmt.Sprintf("pc-rot-%02d", i), nil)
		g.waitConnected(t, a)
	}
	g.stop()
	files := g.logFileText(t)
	for i := range 40 {
		if !strings.Contains(files, fmt.Sprintf("Client pc-rot-%02d connected", i)) {
			t.Errorf("event of pc-rot-%02d missing from the log files", i)
		}
	}
	names, _ := filepath.Glob(filepath.Join(g.LogDir(), "GW*.log"))
	if len(names) < 3 {
		t.Fatalf("%d log files, want several: %v", len(names), names)
	}
	for _, n := range names {
		if fi, err := os.Stat(n); err != nil || fi.Size() > 1024 {
			t.Errorf("%s: size %d > 1024 (%v)", n, fi.Size(), err)
		}
	}
	if !strings.HasSuffix(names[0], "GW001.log") || !strings.HasSuffix(names[1], "GW002.log") {
		t.Errorf("log file names %v", names)
	}
}

// TestWrongAndShortKeys: a short key is refused by the CLI before it is
// sent, and by the gateway with the security event when sent anyway.
func TestWrongAndShortKeys(t *testing.T) {
	g := mustStartGateway(t)
	err := run(context.Background(), []string{"client", "--gateway", g.url, "--key", "short"}, nil, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "at least 8") {
		t.Fatalf("client with short key: err = %v", err)
	}
	a, err := agent.New(agent.Config{Dialer: g.dialer(), Key: "short", Name: "pc-short"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = a.Run(ctx) }()
	g.waitEvent(t, "Security check failed for Client pc-short (127.0.0.1). Terminating connection from 127.0.0.1")
	cancel()
	<-done
	if st := g.Relay().Stats(); st.Clients != 0 {
		t.Fatalf("%d Clients connected with bad keys", st.Clients)
	}
}

// TestMalformedFrames sends garbage after the upgrade: the gateway answers
// with an error frame and closes, and keeps serving others.
func TestMalformedFrames(t *testing.T) {
	g := mustStartGateway(t)
	for name, payload := range map[string][]byte{
		"not json":       append([]byte{byte(wire.TypeHello), 0, 0, 0, 3}, "{{{"...),
		"oversized":      {byte(wire.TypeHello), 0xff, 0xff, 0xff, 0xff},
		"wrong type":     append([]byte{byte(wire.TypeHeartbeat), 0, 0, 0, 2}, "{}"...),
		"truncated":      {byte(wire.TypeHello), 0, 0, 1, 0, '{'},
		"unknown role":   frame(t, wire.TypeHello, wire.Hello{Role: "emperor", KeyID: "x"}),
		"empty key id":   frame(t, wire.TypeHello, wire.Hello{Role: wire.RoleBrowse}),
		"session hijack": frame(t, wire.TypeHello, wire.Hello{Role: wire.RoleAccept, Target: "nope"}),
	} {
		t.Run(name, func(t *testing.T) {
			d := g.dialer()
			conn, err := d.Dial(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := conn.Write(payload); err != nil {
				t.Fatal(err)
			}
			if name == "truncated" {
				_ = conn.CloseWrite()
			}
			_ = conn.SetReadDeadline(time.Now().Add(15 * time.Second))
			var x wire.Empty
			err = wire.Expect(conn.Reader(), wire.TypeWelcome, &x)
			if wireCode(err) == "" {
				t.Fatalf("want an error frame, got %v", err)
			}
			if _, err := io.Copy(io.Discard, conn.Reader()); err != nil {
				t.Fatalf("connection not closed after the error: %v", err)
			}
		})
	}
	a := g.startAgent(t, testKey, "pc-after", nil)
	g.waitConnected(t, a)
}

func frame(t testing.TB, typ wire.Type, v any) []byte {
	var b bytes.Buffer
	if err := wire.WriteFrame(&b, typ, v); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestNoKeysRefusesEveryone starts a gateway without keys.
func TestNoKeysRefusesEveryone(t *testing.T) {
	cfg := baseConfig(t)
	g := mustStartGatewayConfig(t, cfg)
	_, err := g.control(testKey, "op").Browse(context.Background())
	if wireCode(err) != wire.CodeNoKeys {
		t.Fatalf("browse on a keyless gateway: %v", err)
	}
	g.waitEvent(t, event.NoKeys().Message)
}

// TestKeysAtRuntime adds a key with the CLI while a Client waits for it,
// then removes it and sees the Client and its session cut.
func TestKeysAtRuntime(t *testing.T) {
	g := mustStartGateway(t)
	const newKey = "added-at-runtime"
	other := g.startAgent(t, testKey, "pc-other", map[string]string{"echo": echoServer(t)})
	g.waitConnected(t, other)
	keep, err := g.control(testKey, "op-keep").Connect(context.Background(), "pc-other/echo")
	if err != nil {
		t.Fatal(err)
	}
	defer keep.Close()

	a := g.startAgent(t, newKey, "pc-new", map[string]string{"echo": echoServer(t)})
	g.waitEvent(t, "Security check failed for Client pc-new (127.0.0.1). Terminating connection from 127.0.0.1")
	keysCmd := func(args ...string) string {
		var out bytes.Buffer
		all := append([]string{"keys", "--database-url", g.cfg.DatabaseURL}, args...)
		if err := run(context.Background(), all, nil, &out, io.Discard); err != nil {
			t.Fatalf("keys %v: %v", args, err)
		}
		return out.String()
	}
	keysCmd("add", newKey, "--label", "night shift")
	added := time.Now()
	g.waitEvent(t, "Reloading Gateway Keys")
	if d := time.Since(added); d > 2*time.Second {
		t.Errorf("key took effect after %s", d)
	}
	g.waitConnected(t, a)
	sess, err := g.control(newKey, "op-new").Connect(context.Background(), "pc-new/echo")
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	mustEcho(t, keep, []byte("undisturbed by the addition"))

	list := keysCmd("list")
	if !strings.Contains(list, "night shift") || strings.Contains(list, newKey) {
		t.Fatalf("keys list shows the key or lacks its label:\n%s", list)
	}
	keysCmd("remove", newKey)
	waitFor(t, "the Client of the removed key to go", 5*time.Second, func() bool { return !a.Connected() })
	_ = sess.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := sess.Read(make([]byte, 1)); err == nil {
		t.Fatal("session of a removed key still open")
	}
	mustEcho(t, keep, []byte("undisturbed by the removal"))
	if !other.Connected() {
		t.Fatal("Client of the remaining key was disconnected")
	}
}

// TestBindFailure occupies a port and starts a gateway on it.
func TestBindFailure(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	cfg := baseConfig(t)
	args := []string{"serve", "--database-url", cfg.DatabaseURL, "--data-dir", cfg.DataDir,
		"--listen", ln.Addr().String()}
	err = run(context.Background(), args, nil, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("failed to bind to listening port %d", port)) ||
		!strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("err = %v", err)
	}
	msgs := messages(readEvents(t, cfg.DatabaseURL))
	want := []string{fmt.Sprintf("Failed to bind to listening port %d", port), "Failed to start Gateway"}
	if !containsInOrder(msgs, want) {
		t.Fatalf("events %q, want %q", msgs, want)
	}
}

// TestShutdownLetsSessionsFinish stops a gateway with a session in
// progress: the Client is told at once, the session keeps working within
// the grace period, and the gateway stops as soon as it ends.
func TestShutdownLetsSessionsFinish(t *testing.T) {
	cfg := baseConfig(t)
	cfg.GatewayKeys = []string{testKey}
	cfg.Grace = 20 * time.Second
	g := mustStartGatewayConfig(t, cfg)
	a := g.startAgent(t, testKey, "pc-grace", map[string]string{"echo": echoServer(t)})
	g.waitConnected(t, a)
	conn, err := g.control(testKey, "op").Connect(context.Background(), "pc-grace/echo")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	stopped := make(chan struct{})
	go func() { g.stop(); close(stopped) }()
	waitFor(t, "the Client to be told", 5*time.Second, func() bool { return !a.Connected() })
	mustEcho(t, conn, []byte("still relaying during the grace period"))
	if _, err := g.control(testKey, "op").Connect(context.Background(), "pc-grace/echo"); err == nil {
		t.Fatal("a new session was accepted while stopping")
	}
	select {
	case <-stopped:
		t.Fatal("gateway stopped while a session was in progress")
	default:
	}
	begin := time.Now()
	conn.Close()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("gateway did not stop after the last session ended")
	}
	if d := time.Since(begin); d > 5*time.Second {
		t.Errorf("stop took %s after the last session", d)
	}
}

// TestListenChangeRebinds changes the stored listen address, as the
// console's General tab does: every connection and session ends with the
// design's event, and the gateway answers on the new port only.
func TestListenChangeRebinds(t *testing.T) {
	g := mustStartGateway(t)
	a := g.startAgent(t, testKey, "pc-move", map[string]string{"echo": echoServer(t)})
	g.waitConnected(t, a)
	conn, err := g.control(testKey, "op").Connect(context.Background(), "pc-move/echo")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	oldAddr := g.Addrs()[0].String()
	newAddr := freePort(t)

	cfg, err := g.StoredConfig(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listen = []string{newAddr}
	if err := g.DB().SetSettings(context.Background(), cfg.Rows()); err != nil {
		t.Fatal(err)
	}
	g.waitEvent(t, "Listen port has changed. All current connections and sessions will be terminated.")
	g.waitEvent(t, "Listening on port "+strings.Split(newAddr, ":")[1])
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Read(make([]byte, 1)); err == nil {
		t.Fatal("session survived the listen change")
	}
	waitFor(t, "the Client to be cut", 5*time.Second, func() bool { return !a.Connected() })
	if _, err := net.DialTimeout("tcp", oldAddr, time.Second); err == nil {
		t.Errorf("old address %s still accepts", oldAddr)
	}
	waitHTTP(t, "http://"+newAddr+"/healthz")
	if got := g.Addrs()[0].String(); got != newAddr {
		t.Errorf("listening on %s, want %s", got, newAddr)
	}
}

// TestServiceDownOnClient: a session to a service the Client cannot reach
// fails at once with the Client's reason, and the Client stays connected
// and serves the next session.
func TestServiceDownOnClient(t *testing.T) {
	g := mustStartGateway(t)
	down := freePort(t) // nothing listens there any more
	a := g.startAgent(t, testKey, "pc-down", map[string]string{"down": down, "echo": echoServer(t)})
	g.waitConnected(t, a)
	ctx := context.Background()
	start := time.Now()
	_, err := g.control(testKey, "op").Connect(ctx, "pc-down/down")
	if wireCode(err) != wire.CodeUnavailable || !strings.Contains(err.Error(), "not reachable on the Client") {
		t.Fatalf("connect to a dead service: %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the refusal took %v", took)
	}
	conn, err := g.control(testKey, "op").Connect(ctx, "pc-down/echo")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	mustEcho(t, conn, []byte("still serving"))
	if n := g.Relay().Stats().Sessions; n != 1 {
		t.Errorf("%d sessions, want the one echo session", n)
	}
}
