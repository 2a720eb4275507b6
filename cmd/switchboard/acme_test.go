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
	"strings"
	"testing"
	"time"

	"github.com/letsencrypt/challtestsrv"
	"github.com/letsencrypt/pebble/v2/ca"
	pebbledb "github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"

	"github.com/chromedp/chromedp"

	"github.com/switchboard/switchboard/internal/gateway"
	"github.com/switchboard/switchboard/internal/peer"
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

	dirURL, roots, acmeServer := startPebble(t, port)

	cfg := baseConfig(t)
	cfg.GatewayKeys = []string{testKey}
	cfg.Listen = []string{addr}
	const domain = "gw.switchboard.test"
	cfg.ACMEDomains = []string{domain}
	cfg.ACMEDirectory = dirURL
	cfg.ACMEEmail = "ops@example.com"
	g := startACMEGateway(t, cfg, acmeServer)

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

func startACMEGateway(t *testing.T, cfg gateway.Config, acmeServer *httptest.Server) *testGateway {
	t.Helper()
	cfg.ACMEClient = acmeServer.Client()
	return mustStartGatewayConfig(t, cfg)
}

// startPebble runs Pebble's ACME server in the test, validating on
// gatewayPort, and returns its directory URL, its root and its server.
func startPebble(t *testing.T, gatewayPort int) (string, *x509.CertPool, *httptest.Server) {
	t.Helper()
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
	validator := va.New(logger, 0, gatewayPort, false, dnsAddr, store)
	front := wfe.New(logger, store, validator, authority, []string{"pebble.letsencrypt.org"}, false, false, 0, 0)
	acmeServer := httptest.NewTLSServer(front.Handler())
	t.Cleanup(acmeServer.Close)
	roots := x509.NewCertPool()
	roots.AddCert(authority.GetRootCert(0).Cert)
	return acmeServer.URL + wfe.DirectoryPath, roots, acmeServer

}

// TestConsoleSwitchesToACME: an admin turns ACME on in the Security tab of a
// gateway running on its self-signed certificate; new handshakes then get a
// certificate from the authority, and the change is an event.
func TestConsoleSwitchesToACME(t *testing.T) {
	addr := freePort(t)
	_, portText, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(portText)
	dirURL, roots, acmeServer := startPebble(t, port)
	cfg := baseConfig(t)
	cfg.GatewayKeys = []string{testKey}
	cfg.Listen = []string{addr}
	g := startACMEGateway(t, cfg, acmeServer)
	if _, err := runCLI(context.Background(), t, strings.NewReader(adminPassword+"\n"),
		"operators", "--database-url", cfg.DatabaseURL, "add", adminName, "--admin"); err != nil {
		t.Fatal(err)
	}
	b := newBrowser(t)
	b.signIn(g)
	const domain = "console.switchboard.test"
	b.run("turn ACME on",
		chromedp.Navigate(g.https()+"/console/config/security"),
		chromedp.WaitVisible(`#acme_domains`, chromedp.ByQuery),
		chromedp.SendKeys(`#acme_domains`, domain, chromedp.ByQuery),
		chromedp.SetValue(`#acme_directory`, dirURL, chromedp.ByQuery),
		chromedp.Submit(`#acme_domains`, chromedp.ByQuery),
		chromedp.WaitVisible(`.flash.ok`, chromedp.ByQuery),
	)
	waitFor(t, "a certificate from the ACME server", 60*time.Second, func() bool {
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: domain})
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
	g.waitEvent(t, "Reloading configuration")
}
