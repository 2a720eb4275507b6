package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard/switchboard/db"
	"github.com/switchboard/switchboard/internal/auth/password"
	"github.com/switchboard/switchboard/internal/peer"
	"github.com/switchboard/switchboard/internal/peer/control"
	"github.com/switchboard/switchboard/internal/peer/peertest"
	"github.com/switchboard/switchboard/internal/pg/pgtest"
	"github.com/switchboard/switchboard/relay/wire"
)

// TestPrimarySecondaryCluster runs a primary and a secondary as `switchboard
// serve` processes on one PostgreSQL, with Client processes:
//
//   - a Control on the primary reaches a Client held by the secondary
//     (browse names its node; the session is byte-exact both ways and
//     passes a half-close);
//   - the primary's console lists a session the secondary brokers, with
//     its node, and terminates it;
//   - kill -9 of the primary: its Client is on the secondary within 5 s,
//     and the secondary is no longer standby;
//   - the primary restarted: the Client returns, while a session opened
//     through the secondary before the return carries 64 MiB each way,
//     started before and finished after, byte-exact; the secondary goes
//     back to standby.
func TestPrimarySecondaryCluster(t *testing.T) {
	dbURL := pgtest.MustURL(t)
	dirA, dirB := t.TempDir(), t.TempDir()
	addrA, addrB := freePort(t), freePort(t)
	primary, secondary := "http://"+addrA, "http://"+addrB
	servePrimary := func() *exec.Cmd {
		cmd, _ := startProcess(t, nil, "serve", "--listen", addrA, "--database-url", dbURL, "--data-dir", dirA,
			"--gateway-key", testKey, "--node", "node-a", "--role", "primary", "--no-tls", "--shutdown-grace", "1s")
		waitHTTP(t, primary+"/readyz")
		return cmd
	}
	a := servePrimary()
	keyFile := filepath.Join(dirA, "secrets.key")
	startProcess(t, nil, "serve", "--listen", addrB, "--database-url", dbURL, "--data-dir", dirB,
		"--secrets-key-file", keyFile, "--node", "node-b", "--role", "secondary", "--no-tls", "--shutdown-grace", "1s",
		"--metrics-allow", "127.0.0.1/32")
	waitHTTP(t, secondary+"/readyz")

	echo, digest := echoServer(t), peertest.DigestServer(t)
	services := []string{"--service", "echo=" + echo, "--service", "digest=" + digest}
	onB, _ := startProcess(t, nil, append([]string{"client", "--gateway", secondary, "--key", testKey, "--name", "pc-b"}, services...)...)
	pcA, pcAOut := startProcess(t, nil, append([]string{"client", "--gateway", primary, "--secondary", secondary,
		"--key", testKey, "--name", "pc-a"}, services...)...)

	nodeOf := func(gw, client string) string {
		var b bytes.Buffer
		if run(context.Background(), []string{"control", "browse", "--json", "--key", testKey, "--gateway", gw}, nil, &b, io.Discard) != nil {
			return ""
		}
		var list []wire.ClientInfo
		if json.Unmarshal(b.Bytes(), &list) != nil {
			return ""
		}
		for _, c := range list {
			if c.Name == client {
				return c.Node
			}
		}
		return ""
	}
	waitFor(t, "pc-b on node-b in a browse of the primary", 20*time.Second, func() bool { return nodeOf(primary, "pc-b") == "node-b" })
	waitFor(t, "pc-a on node-a in a browse of the secondary", 20*time.Second, func() bool { return nodeOf(secondary, "pc-a") == "node-a" })
	readyz := func(gw string) string { return nodesGet(t, http.DefaultClient, gw+"/readyz") }
	standbyMetric := func() string {
		for _, line := range strings.Split(nodesGet(t, http.DefaultClient, secondary+"/metrics"), "\n") {
			if v, ok := strings.CutPrefix(line, "switchboard_node_standby "); ok {
				return v
			}
		}
		return "missing"
	}
	if got, metric := readyz(secondary), standbyMetric(); got != "ready: active\n" || metric != "0" {
		t.Fatalf("the secondary holding pc-b says %q, switchboard_node_standby %s", got, metric)
	}

	// Across nodes: Control on the primary, Client on the secondary.
	ctl := func(gw string) *control.Control {
		g, err := peer.ParseGateway(gw)
		if err != nil {
			t.Fatal(err)
		}
		return &control.Control{Dialer: peer.Dialer{Gateway: g, Timeout: 5 * time.Second}, Key: testKey, Name: "ctl"}
	}
	ctx := context.Background()
	conn, err := ctl(primary).Connect(ctx, "pc-b/echo")
	if err != nil {
		t.Fatalf("connect to pc-b through the primary: %v", err)
	}
	peertest.MustEchoBothWays(t, conn, 4<<20)
	conn.Close()
	conn, err = ctl(primary).Connect(ctx, "pc-b/digest")
	if err != nil {
		t.Fatal(err)
	}
	peertest.MustHalfClose(t, conn, bytes.Repeat([]byte("across "), 200_000))
	conn.Close()
	_, err = (&control.Control{Dialer: ctl(primary).Dialer, Key: "a different key entirely", Name: "ctl"}).Connect(ctx, "pc-b/echo")
	if err == nil || !strings.Contains(err.Error(), "security check failed") {
		t.Fatalf("connect with a key the gateway lacks: %v", err)
	}

	// Now the secondary holds no Client of its own: standby.
	_ = onB.Process.Signal(syscall.SIGTERM)
	if err := waitProcess(onB, 10*time.Second); err != nil {
		t.Fatalf("pc-b exit: %v", err)
	}
	waitFor(t, "the secondary in standby", 10*time.Second, func() bool { return readyz(secondary) == "ready: standby\n" })
	if metric := standbyMetric(); metric != "1" {
		t.Errorf("the secondary in standby: switchboard_node_standby %s", metric)
	}

	// kill -9 of the primary.
	if err := a.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = a.Wait()
	start := time.Now()
	waitFor(t, "pc-a on the secondary", 20*time.Second, func() bool { return nodeOf(secondary, "pc-a") == "node-b" })
	took := time.Since(start)
	fmt.Printf("cluster failover (kill -9 of the primary → its Client listed on the secondary): %s\n", took.Round(time.Millisecond))
	if took > 5*time.Second {
		t.Errorf("failover took %s, want under 5 s", took)
	}
	if got := readyz(secondary); got != "ready: active\n" {
		t.Errorf("the secondary holding pc-a says %q", got)
	}

	// A session through the secondary, carrying 64 MiB each way, spans
	// the primary's return.
	long, err := ctl(secondary).Connect(ctx, "pc-a/echo")
	if err != nil {
		t.Fatal(err)
	}
	defer long.Close()
	const chunk, chunks = 1 << 20, 64
	returned := make(chan struct{})
	var sent, got [sha256.Size]byte
	var wg sync.WaitGroup
	wg.Add(2)
	var werr, rerr error
	go func() {
		defer wg.Done()
		h := sha256.New()
		buf := make([]byte, chunk)
		for i := range chunks {
			if i == chunks-1 {
				<-returned // the last MiB only after the fail-back
			}
			for j := range buf {
				buf[j] = byte(i*7 + j*13)
			}
			h.Write(buf)
			if _, werr = long.Write(buf); werr != nil {
				return
			}
			time.Sleep(30 * time.Millisecond)
		}
		copy(sent[:], h.Sum(nil))
	}()
	go func() {
		defer wg.Done()
		h := sha256.New()
		_, rerr = io.CopyN(h, long, chunk*chunks)
		copy(got[:], h.Sum(nil))
	}()
	time.Sleep(300 * time.Millisecond)
	servePrimary()
	start = time.Now()
	waitFor(t, "pc-a back on the primary", 20*time.Second, func() bool { return nodeOf(primary, "pc-a") == "node-a" })
	fmt.Printf("cluster fail-back (primary answering again → its Client listed there): %s\n", time.Since(start).Round(time.Millisecond))
	close(returned)
	wg.Wait()
	if werr != nil || rerr != nil {
		t.Fatalf("the session through the secondary broke at the fail-back: write %v, read %v\nClient:\n%s", werr, rerr, pcAOut)
	}
	if sent != got {
		t.Fatal("the session through the secondary was not byte-exact across the fail-back")
	}
	long.Close()
	waitFor(t, "the secondary back in standby", 15*time.Second, func() bool { return readyz(secondary) == "ready: standby\n" })
	// The primary's console ends a session the secondary brokers.
	// (Last: with an operator, Controls must sign in.) The session is
	// the secondary's, to a Client on the primary.
	onSecondary, err := ctl(secondary).Connect(ctx, "pc-a/echo")
	if err != nil {
		t.Fatal(err)
	}
	defer onSecondary.Close()
	peertest.MustEchoBothWays(t, onSecondary, 1000)
	admin := adminClient(t, dbURL, primary)
	page := nodesGet(t, admin, primary+"/console/sessions")
	m := regexp.MustCompile(`data-session="([0-9a-f]+)"`).FindStringSubmatch(page)
	if m == nil || !strings.Contains(page, "node-b") {
		t.Fatalf("the primary's Active Sessions do not list the secondary's session:\n%s", page)
	}
	resp, err := admin.PostForm(primary+"/console/sessions/"+m[1]+"/terminate?node=node-b", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "Terminated the session of Control ctl with Client pc-a") {
		t.Fatalf("terminate through the primary's console: %s %s", resp.Status, body)
	}
	_ = onSecondary.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := onSecondary.Read(make([]byte, 1)); err == nil {
		t.Fatal("the secondary's session carries bytes after the primary's console ended it")
	}

	_ = pcA.Process.Signal(syscall.SIGTERM)
	_ = waitProcess(pcA, 10*time.Second)
}

// adminClient signs an administrator in to gw's console.
func adminClient(t *testing.T, dbURL, gw string) *http.Client {
	t.Helper()
	ctx := context.Background()
	st, err := db.Open(ctx, dbURL, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	hash, err := password.Hash("admin password 123")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.AddOperator(ctx, db.Operator{Name: "root", PasswordHash: hash, Role: db.RoleAdmin}); err != nil {
		t.Fatal(err)
	}
	jar, _ := cookiejar.New(nil)
	admin := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	resp, err := admin.PostForm(gw+"/console/signin", url.Values{"name": {"root"}, "password": {"admin password 123"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return admin
}
