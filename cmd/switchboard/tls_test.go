package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/peer"
	"github.com/switchboard/switchboard/internal/transport"
)

// TestSelfSignedFingerprintPinning: the gateway makes and keeps a
// self-signed certificate; a Control pinning its fingerprint gets through,
// one pinning another is refused with a message that says why.
func TestSelfSignedFingerprintPinning(t *testing.T) {
	cfg := baseConfig(t)
	cfg.GatewayKeys = []string{testKey}
	g := mustStartGatewayConfig(t, cfg)
	fp := g.Fingerprint()
	if !g.SelfSigned() || len(fp) != 64 {
		t.Fatalf("self-signed %v, fingerprint %q", g.SelfSigned(), fp)
	}
	gw := g.https()
	upper := strings.ToUpper(fp[:2]) + ":" + fp[2:] // people paste all sorts
	if _, err := runCLI(context.Background(), t, nil, "control", "browse", "--gateway", gw, "--key", testKey, "--fingerprint", upper); err != nil {
		t.Fatalf("the right pin was refused: %v", err)
	}
	wrong := strings.Repeat("ab", 32)
	_, err := runCLI(context.Background(), t, nil, "control", "browse", "--gateway", gw, "--key", testKey, "--fingerprint", wrong)
	if err == nil || !strings.Contains(err.Error(), "not the pinned "+wrong) {
		t.Fatalf("a wrong pin: err = %v", err)
	}
	// Without a pin the system roots do not know a self-signed certificate.
	if _, err := runCLI(context.Background(), t, nil, "control", "browse", "--gateway", gw, "--key", testKey); err == nil {
		t.Fatal("an unverified self-signed certificate was accepted")
	}

	// The certificate is kept: a restart on the same data dir keeps the pin.
	g.stop()
	cfg.GatewayKeys = nil
	g2 := mustStartGatewayConfig(t, cfg)
	if g2.Fingerprint() != fp {
		t.Fatal("the self-signed certificate changed over a restart")
	}
}

// TestSecondaryFingerprint: a primary and a secondary with self-signed
// certificates of their own are each pinned by their own fingerprint; the
// secondary pinned to the primary's is refused.
func TestSecondaryFingerprint(t *testing.T) {
	cfgA, cfgB := baseConfig(t), baseConfig(t)
	cfgA.GatewayKeys, cfgB.GatewayKeys = []string{testKey}, []string{testKey}
	a, b := mustStartGatewayConfig(t, cfgA), mustStartGatewayConfig(t, cfgB)
	primary, fpA, fpB := a.https(), a.Fingerprint(), b.Fingerprint()
	if fpA == fpB {
		t.Fatal("two gateways made the same self-signed certificate")
	}
	a.stop() // browses now fall back to the secondary
	ctx := context.Background()
	if _, err := runCLI(ctx, t, nil, "control", "browse", "--gateway", primary, "--secondary", b.https(), "--key", testKey,
		"--fingerprint", fpA, "--secondary-fingerprint", fpB); err != nil {
		t.Fatalf("browse through the secondary pinned by its own fingerprint: %v", err)
	}
	_, err := runCLI(ctx, t, nil, "control", "browse", "--gateway", primary, "--secondary", b.https(), "--key", testKey, "--fingerprint", fpA)
	if err == nil || !strings.Contains(err.Error(), "not the pinned "+fpA) {
		t.Fatalf("the secondary pinned to the primary's certificate: %v", err)
	}
	_, err = runCLI(ctx, t, nil, "control", "browse", "--gateway", primary, "--key", testKey, "--secondary-fingerprint", fpB)
	if err == nil || !strings.Contains(err.Error(), "give --secondary too") {
		t.Fatalf("--secondary-fingerprint without --secondary: %v", err)
	}
}

// TestBlockUnencrypted refuses plain-HTTP peers with an event and lets
// https peers in; a trusted TLS-terminating proxy counts as https.
func TestBlockUnencrypted(t *testing.T) {
	cfg := baseConfig(t)
	cfg.GatewayKeys = []string{testKey}
	cfg.BlockUnencrypted = true
	cfg.TrustedProxies = []string{"127.0.0.2"}
	g := mustStartGatewayConfig(t, cfg)

	_, err := g.control(testKey, "op").Browse(context.Background())
	if err == nil || !strings.Contains(err.Error(), "only encrypted connections") {
		t.Fatalf("plain browse: %v", err)
	}
	g.waitEvent(t, "Unencrypted connection refused from 127.0.0.1. This gateway requires encrypted communications")

	c := g.control(testKey, "op")
	c.Dialer, _ = pinnedDialer(g)
	if _, err := c.Browse(context.Background()); err != nil {
		t.Fatalf("https browse: %v", err)
	}

	// From the trusted proxy's address, X-Forwarded-Proto says https and
	// X-Forwarded-For names the real peer.
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
	conn, err := d.Dial("tcp", g.Addrs()[0].String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /relay/v1 HTTP/1.1\r\nHost: gw\r\nConnection: Upgrade\r\nUpgrade: switchboard-relay/1\r\nX-Forwarded-Proto: https\r\nX-Forwarded-For: 198.51.100.7\r\n\r\n")
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, _ := io.ReadAll(io.LimitReader(conn, 12))
	if string(line) != "HTTP/1.1 101" {
		t.Fatalf("a forwarded https request was answered %q", line)
	}
	// A proxy that is not trusted proves nothing with the same headers.
	conn2, err := net.Dial("tcp", g.Addrs()[0].String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()
	fmt.Fprintf(conn2, "GET /relay/v1 HTTP/1.1\r\nHost: gw\r\nConnection: Upgrade\r\nUpgrade: switchboard-relay/1\r\nX-Forwarded-Proto: https\r\nX-Forwarded-For: 198.51.100.8\r\n\r\n")
	_ = conn2.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, _ = io.ReadAll(io.LimitReader(conn2, 12))
	if string(line) != "HTTP/1.1 403" {
		t.Fatalf("an untrusted forwarded request was answered %q", line)
	}
}

// pinnedDialer dials the test gateway over https, pinning its certificate.
func pinnedDialer(g *testGateway) (peer.Dialer, error) {
	gw, err := peer.ParseGateway(g.https())
	return peer.Dialer{Gateway: gw, Fingerprint: g.Fingerprint(), Timeout: 5 * time.Second}, err
}

// TestOwnCertificateReplaced swaps the certificate files under a running
// gateway: new handshakes get the new certificate, connected Clients and
// their sessions carry on.
func TestOwnCertificateReplaced(t *testing.T) {
	dirA, dirB := t.TempDir(), t.TempDir()
	certA, keyA := writeSelfSigned(t, dirA)
	certB, keyB := writeSelfSigned(t, dirB)
	live := t.TempDir()
	cert, key := filepath.Join(live, "cert.pem"), filepath.Join(live, "key.pem")
	copyFile(t, certA, cert)
	copyFile(t, keyA, key)

	cfg := baseConfig(t)
	cfg.GatewayKeys = []string{testKey}
	cfg.TLSCert, cfg.TLSKey = cert, key
	g := mustStartGatewayConfig(t, cfg)
	fpA := g.Fingerprint()

	d, _ := pinnedDialer(g)
	a := g.startAgentDialer(t, d, testKey, "pc-cert", map[string]string{"echo": echoServer(t)})
	g.waitConnected(t, a)
	c := g.control(testKey, "op")
	c.Dialer = d
	sess, err := c.Connect(context.Background(), "pc-cert/echo")
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	mustEcho(t, sess, []byte("before the swap"))

	copyFile(t, keyB, key)
	copyFile(t, certB, cert)
	waitFor(t, "the new certificate to be served", 10*time.Second, func() bool {
		return servedFingerprint(t, g.Addrs()[0].String()) != fpA
	})
	if got := servedFingerprint(t, g.Addrs()[0].String()); got != g.Fingerprint() || got == fpA {
		t.Fatalf("served %s", got)
	}
	mustEcho(t, sess, []byte("after the swap, same session"))
	if !a.Connected() {
		t.Fatal("the Client was disconnected by the certificate swap")
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	// Write then rename, as an administrator's tooling (or certbot) does.
	tmp := to + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, to); err != nil {
		t.Fatal(err)
	}
}

func servedFingerprint(t *testing.T, addr string) string {
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) // we only read the certificate
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return transport.Fingerprint(conn.ConnectionState().PeerCertificates[0].Raw)
}

// tap is a TCP forwarder that records every byte both ways, standing in
// for someone capturing the network between a Client and the gateway.
type tap struct {
	addr string
	mu   sync.Mutex
	seen bytes.Buffer
}

func newTap(t *testing.T, target string) *tap {
	tp := &tap{}
	tp.addr = serveTCP(t, func(c net.Conn) {
		up, err := net.Dial("tcp", target)
		if err != nil {
			return
		}
		defer up.Close()
		done := make(chan struct{})
		go func() { io.Copy(io.MultiWriter(up, tp), c); up.(*net.TCPConn).CloseWrite(); close(done) }()
		io.Copy(io.MultiWriter(c, tp), up)
		c.(*net.TCPConn).CloseWrite()
		<-done
	})
	return tp
}

func (tp *tap) Write(p []byte) (int, error) {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return tp.seen.Write(p)
}

func (tp *tap) bytes() []byte {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return bytes.Clone(tp.seen.Bytes())
}

// TestWireCarriesNoSecrets captures a Client's and a Control's traffic: over
// https neither the gateway key nor the session's bytes appear; over plain
// HTTP (allowed here) the key still never does.
func TestWireCarriesNoSecrets(t *testing.T) {
	g := mustStartGateway(t)
	tp := newTap(t, g.Addrs()[0].String())
	secret := []byte("TOP-SECRET-SESSION-PAYLOAD-4242")

	for _, scheme := range []string{"https", "http"} {
		gw, err := peer.ParseGateway(scheme + "://" + tp.addr)
		if err != nil {
			t.Fatal(err)
		}
		d := peer.Dialer{Gateway: gw, Timeout: 5 * time.Second}
		if scheme == "https" {
			d.Fingerprint = g.Fingerprint()
		}
		name := "pc-wire-" + scheme
		a := g.startAgentDialer(t, d, testKey, name, map[string]string{"echo": echoServer(t)})
		g.waitConnected(t, a)
		c := g.control(testKey, "op")
		c.Dialer = d
		sess, err := c.Connect(context.Background(), name+"/echo")
		if err != nil {
			t.Fatal(err)
		}
		mustEcho(t, sess, secret)
		sess.Close()
		wire := tp.bytes()
		if bytes.Contains(wire, []byte(testKey)) {
			t.Fatalf("the gateway key crossed the wire over %s", scheme)
		}
		if scheme == "https" && bytes.Contains(wire, secret) {
			t.Fatal("session bytes crossed the wire in clear over https")
		}
		if scheme == "https" && len(wire) < 1000 {
			t.Fatalf("the tap saw only %d bytes: it is not in the path", len(wire))
		}
	}
	if !bytes.Contains(tp.bytes(), secret) {
		t.Fatal("over plain HTTP the tap should see the session: it is not in the path")
	}
}

// TestThroughHTTPProxy reaches the gateway through tinyproxy with CONNECT,
// with and without proxy authentication.
func TestThroughHTTPProxy(t *testing.T) {
	bin, err := exec.LookPath("tinyproxy")
	if err != nil {
		for _, p := range []string{"/usr/bin/tinyproxy", "/usr/sbin/tinyproxy"} {
			if _, e := os.Stat(p); e == nil {
				bin = p
			}
		}
		if bin == "" {
			t.Skip("the proxy test needs tinyproxy: apt-get install tinyproxy")
		}
	}
	g := mustStartGateway(t)
	for _, auth := range []bool{false, true} {
		t.Run(fmt.Sprintf("auth=%v", auth), func(t *testing.T) {
			proxy := startTinyproxy(t, bin, auth)
			gwURL := g.https()
			args := []string{"control", "browse", "--gateway", gwURL, "--key", testKey, "--fingerprint", g.Fingerprint()}
			if auth {
				if _, err := runCLI(context.Background(), t, nil, append(args, "--proxy", "http://"+proxy)...); err == nil ||
					!strings.Contains(err.Error(), "wants authentication") {
					t.Fatalf("no credentials: err = %v", err)
				}
				proxy = "switch:board-pass@" + proxy
			}
			agentArgs := []string{"client", "--gateway", gwURL, "--key", testKey, "--fingerprint", g.Fingerprint(),
				"--name", "pc-proxied", "--service", "echo=" + echoServer(t), "--proxy", "http://" + proxy}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); _, _ = runCLI(ctx, t, nil, agentArgs...) }()
			defer func() { cancel(); <-done }()
			waitFor(t, "the proxied Client to register", 15*time.Second, func() bool {
				out, err := runCLI(context.Background(), t, nil, append(args, "--proxy", "http://"+proxy)...)
				return err == nil && strings.Contains(out, "pc-proxied")
			})
		})
	}
}

func startTinyproxy(t *testing.T, bin string, auth bool) string {
	t.Helper()
	addr := freePort(t)
	host, port, _ := net.SplitHostPort(addr)
	dir := t.TempDir()
	conf := fmt.Sprintf("Port %s\nListen %s\nTimeout 60\nAllow 127.0.0.1\nMaxClients 50\nLogLevel Info\n", port, host)
	if auth {
		conf += "BasicAuth switch board-pass\n"
	}
	if os.Geteuid() == 0 {
		conf += "User nobody\nGroup nogroup\n"
	}
	path := filepath.Join(dir, "tinyproxy.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-d", "-c", path)
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("tinyproxy said:\n%s", out.String())
		}
	})
	waitFor(t, "tinyproxy to listen", 10*time.Second, func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return addr
}
