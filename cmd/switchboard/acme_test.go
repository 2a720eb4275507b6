package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log"
	"net"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/letsencrypt/challtestsrv"
	"github.com/letsencrypt/pebble/v2/ca"
	pebbledb "github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"

	"github.com/switchboard/switchboard/relay/peer"
)

// TestACMECertificateFromPebble runs Pebble, Let's Encrypt's test ACME
// server, in the test. The gateway obtains a certificate for "localhost"
// through a real tls-alpn-01 validation of its own port, and a session is
// then relayed over it, verified against Pebble's root.
func TestACMECertificateFromPebble(t *testing.T) {
	t.Setenv("PEBBLE_VA_NOSLEEP", "1")
	t.Setenv("PEBBLE_WFE_NONCEREJECT", "0")
	addr := freePort(t)
	_, portText, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(portText)

	logger := log.New(io.Discard, "", 0)
	// A DNS server of Pebble's own test kit answers 127.0.0.1 for every name,
	// so the validation authority finds the gateway by its DNS name.
	dnsAddr := freePort(t)
	dns, err := challtestsrv.New(challtestsrv.Config{DNSAddrs: []string{dnsAddr}, Log: logger})
	if err != nil {
		t.Fatal(err)
	}
	dns.SetDefaultDNSIPv4("127.0.0.1")
	dns.SetDefaultDNSIPv6("")
	go dns.Run()
	t.Cleanup(dns.Shutdown)
	store := pebbledb.NewMemoryStore()
	authority := ca.New(logger, store, "", "ecdsa", 0, 1, map[string]ca.Profile{"default": {Description: "default"}})
	// The validation authority checks tls-alpn-01 on the gateway's port.
	validator := va.New(logger, 0, port, false, dnsAddr, store)
	front := wfe.New(logger, store, validator, authority, []string{"pebble.letsencrypt.org"}, false, false, 0, 0)
	acmeServer := httptest.NewTLSServer(front.Handler())
	t.Cleanup(acmeServer.Close)

	cfg := baseConfig(t)
	cfg.gatewayKeys = []string{testKey}
	cfg.listen = []string{addr}
	const domain = "gw.switchboard.test"
	cfg.acmeDomains = []string{domain}
	cfg.acmeDir = acmeServer.URL + wfe.DirectoryPath
	cfg.acmeEmail = "ops@example.com"
	g := startACMEGateway(t, cfg, acmeServer)

	roots := x509.NewCertPool()
	roots.AddCert(authority.GetRootCert(0).Cert)
	gw, err := peer.ParseGateway("https://" + addr)
	if err != nil {
		t.Fatal(err)
	}
	d := peer.Dialer{Gateway: gw, TLS: &tls.Config{RootCAs: roots, ServerName: domain}, Timeout: 60 * time.Second}
	a := g.startAgentDialer(t, d, testKey, "pc-acme", map[string]string{"echo": echoServer(t)})
	waitFor(t, "a certificate and the Client's registration", 60*time.Second, a.Connected)
	c := g.control(testKey, "op")
	c.Dialer = d
	conn, err := c.Connect(context.Background(), "pc-acme/echo")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	mustEcho(t, conn, []byte("over a certificate from the ACME server"))

	tc, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: domain})
	if err != nil {
		t.Fatalf("the served certificate does not verify against the ACME root: %v", err)
	}
	leaf := tc.ConnectionState().PeerCertificates[0]
	tc.Close()
	if leaf.Issuer.String() == leaf.Subject.String() || leaf.VerifyHostname(domain) != nil {
		t.Fatalf("served certificate %s issued by %s", leaf.Subject, leaf.Issuer)
	}
}

func startACMEGateway(t *testing.T, cfg serveConfig, acmeServer *httptest.Server) *testGateway {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	g, err := startGatewayWith(ctx, cfg, testLogger(t), func(g *gateway) { g.acmeHTTPClient = acmeServer.Client() })
	if err != nil {
		cancel()
		t.Fatalf("start gateway: %v", err)
	}
	tg := &testGateway{gateway: g, t: t, cancel: cancel, done: make(chan error, 1), url: "http://" + g.listenAddrs()[0].String()}
	go func() { tg.done <- g.wait(ctx) }()
	t.Cleanup(tg.stop)
	return tg
}
