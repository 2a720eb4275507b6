package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/relay/wire"
)

// writeSelfSigned writes a certificate for 127.0.0.1 and its key.
func writeSelfSigned(t testing.TB, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "switchboard test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// runCLI runs a command in-process until ctx ends or it returns.
func runCLI(ctx context.Context, t testing.TB, stdin io.Reader, args ...string) (string, error) {
	t.Helper()
	// The command's logger and its messages share stderr, as they share
	// os.Stderr in production, so the buffers must take concurrent writes.
	var out, errOut syncBuffer
	err := run(ctx, args, stdin, &out, &errOut)
	if err != nil {
		t.Logf("switchboard %s: %v\n%s", strings.Join(args, " "), err, errOut.String())
	}
	return out.String(), err
}

// TestTLSWithConfigFileAndForward runs the gateway on https, a Client from a
// config file and a Control forwarding a local port, all through the CLI.
func TestTLSWithConfigFileAndForward(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeSelfSigned(t, dir)
	cfg := baseConfig(t)
	cfg.GatewayKeys = []string{testKey}
	cfg.TLSCert, cfg.TLSKey = cert, key
	g := mustStartGatewayConfig(t, cfg)
	gwURL := "https://" + g.Addrs()[0].String()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	t.Run("a peer that does not trust the certificate is refused", func(t *testing.T) {
		_, err := runCLI(ctx, t, nil, "control", "browse", "--gateway", gwURL, "--key", testKey)
		if err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Fatalf("err = %v, want a certificate error", err)
		}
	})

	conf := filepath.Join(dir, "client.conf")
	echo := echoServer(t)
	os.WriteFile(conf, []byte("# copied to every machine\ngateway = "+gwURL+"\nkey = "+testKey+
		"\nca = "+cert+"\nservice = echo="+echo+"\nservice = other=127.0.0.1:1,kind=vnc\nservice = sshd=127.0.0.1:2\n"), 0o600)
	clientDone := make(chan error, 1)
	go func() {
		_, err := runCLI(ctx, t, nil, "client", "--config", conf, "--name", "pc-tls")
		clientDone <- err
	}()

	var list []wire.ClientInfo
	waitFor(t, "the Client to show in browse --json", 15*time.Second, func() bool {
		out, err := runCLI(ctx, t, nil, "control", "browse", "--gateway", gwURL, "--key", testKey, "--ca", cert, "--json")
		return err == nil && json.Unmarshal([]byte(out), &list) == nil && len(list) == 1
	})
	if list[0].Name != "pc-tls" || strings.Join(list[0].Services, ",") != "echo,other,sshd" {
		t.Fatalf("browse = %+v", list[0])
	}
	// Kinds for the browser console: given (other), implied by the name
	// (sshd), none (echo).
	if k := list[0].ServiceKinds; len(k) != 2 || k["other"] != "vnc" || k["sshd"] != "ssh" {
		t.Fatalf("browse service kinds = %v, want other=vnc sshd=ssh", k)
	}

	fwd := freePort(t)
	go func() {
		_, _ = runCLI(ctx, t, nil, "control", "connect", "--gateway", gwURL, "--key", testKey, "--ca", cert,
			"pc-tls/echo", "--listen", fwd)
	}()
	var conn net.Conn
	waitFor(t, "the forwarded port", 10*time.Second, func() bool {
		var err error
		conn, err = net.Dial("tcp", fwd)
		return err == nil
	})
	mustEcho(t, conn, []byte("through TLS and a forwarded port"))
	conn.Close()
	conn2, err := net.Dial("tcp", fwd)
	if err != nil {
		t.Fatal(err)
	}
	mustEcho(t, conn2, []byte("second session on the same listener"))
	conn2.Close()

	t.Run("a service that is down is reported, not hung", func(t *testing.T) {
		_, err := runCLI(ctx, t, strings.NewReader(""), "control", "connect", "--gateway", gwURL, "--key", testKey, "--ca", cert,
			"--stdio", "pc-tls/other")
		if wireCode(err) != wire.CodeUnavailable {
			t.Fatalf("err = %v, want code %s", err, wire.CodeUnavailable)
		}
	})
	cancel()
	if err := <-clientDone; err != nil {
		t.Fatalf("client: %v", err)
	}
}

// TestEmbeddedDatabase runs serve with no --database-url, then manages keys
// through --data-dir while it runs and after it stopped.
func TestEmbeddedDatabase(t *testing.T) {
	dataDir, err := os.MkdirTemp("", "switchboard-embedded-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dataDir) })
	// The embedded PostgreSQL runs as the postgres user when we are root.
	if err := os.Chmod(dataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	addr := freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	serveDone := make(chan error, 1)
	go func() {
		_, err := runCLI(ctx, t, nil, "serve", "--listen", addr, "--data-dir", dataDir)
		serveDone <- err
	}()
	waitHTTP(t, "http://"+addr+"/healthz")

	if _, err := runCLI(context.Background(), t, nil, "keys", "--data-dir", dataDir, "add", "short"); err == nil {
		t.Fatal("a 5-character key was accepted")
	}
	if _, err := runCLI(context.Background(), t, strings.NewReader(testKey+"\n"), "keys", "--data-dir", dataDir, "add", "-", "--label", "stdin"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the new key to admit a Control", 5*time.Second, func() bool {
		_, err := runCLI(context.Background(), t, nil, "control", "browse", "--gateway", "http://"+addr, "--key", testKey)
		return err == nil
	})
	cancel()
	if err := <-serveDone; err != nil {
		t.Fatalf("serve: %v", err)
	}
	// With serve stopped, keys starts the database by itself.
	out, err := runCLI(context.Background(), t, nil, "keys", "--data-dir", dataDir, "list")
	if err != nil || !strings.Contains(out, "stdin") || strings.Contains(out, testKey) {
		t.Fatalf("keys list after stop: %v\n%s", err, out)
	}
	logs, _ := filepath.Glob(filepath.Join(dataDir, "logs", "GW*.log"))
	if len(logs) != 1 {
		t.Fatalf("log files %v", logs)
	}
}
