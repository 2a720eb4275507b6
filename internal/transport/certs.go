package transport

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"
)

// Fingerprint is the SHA-256 of a certificate's DER bytes, as lowercase
// hex: what Clients and Controls pin with --fingerprint.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// NormalizeFingerprint accepts the forms people paste (upper case, colons,
// a "sha256:" prefix) and returns the lowercase hex form, or an error.
func NormalizeFingerprint(s string) (string, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	s = strings.TrimPrefix(s, "sha256:")
	s = strings.ReplaceAll(s, ":", "")
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != sha256.Size {
		return "", errors.New("a certificate fingerprint is 64 hex digits (SHA-256), colons allowed")
	}
	return s, nil
}

// Store holds the gateway's current certificate; replacing it affects new
// handshakes only, so connected peers keep their sessions.
type Store struct {
	cert atomic.Pointer[tls.Certificate]
}

// Set installs a certificate.
func (s *Store) Set(c *tls.Certificate) { s.cert.Store(c) }

// Get is a tls.Config GetCertificate.
func (s *Store) Get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c := s.cert.Load()
	if c == nil {
		return nil, errors.New("no certificate configured")
	}
	return c, nil
}

// Fingerprint of the current certificate.
func (s *Store) Fingerprint() string {
	c := s.cert.Load()
	if c == nil || len(c.Certificate) == 0 {
		return ""
	}
	return Fingerprint(c.Certificate[0])
}

// ServerConfig is the gateway's TLS configuration around get. Browsers get
// HTTP/2, so that every console tab and its live stream share one
// connection (HTTP/1.1 allows a browser six per host, and each tab holds
// one open). The relay's peers and the other nodes offer only http/1.1 in
// ALPN and get it: their Upgrade does not exist in HTTP/2.
func ServerConfig(get func(*tls.ClientHelloInfo) (*tls.Certificate, error), extraProtos ...string) *tls.Config {
	return &tls.Config{
		GetCertificate: get,
		NextProtos:     append([]string{"h2", "http/1.1"}, extraProtos...),
		MinVersion:     tls.VersionTLS12,
	}
}

// LoadFiles reads a PEM certificate (chain) and key.
func LoadFiles(certFile, keyFile string) (*tls.Certificate, error) {
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load certificate %s: %w", certFile, err)
	}
	return &c, nil
}

// WatchFiles reloads the certificate files into s when either changes, until
// ctx is done. A broken replacement (a half-copied file, a key that does not
// match) is logged and the previous certificate stays.
func WatchFiles(ctx context.Context, s *Store, certFile, keyFile string, every time.Duration, log *slog.Logger) {
	stamp := func() string {
		var b strings.Builder
		for _, f := range []string{certFile, keyFile} {
			if fi, err := os.Stat(f); err == nil {
				fmt.Fprintf(&b, "%d/%d;", fi.ModTime().UnixNano(), fi.Size())
			}
		}
		return b.String()
	}
	last := stamp()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := stamp()
		if now == last {
			continue
		}
		c, err := LoadFiles(certFile, keyFile)
		if err != nil {
			log.Warn("certificate files changed but do not load; keeping the current certificate", "err", err)
			continue
		}
		last = now
		s.Set(c)
		log.Info("certificate reloaded", "file", certFile, "fingerprint", Fingerprint(c.Certificate[0]))
	}
}

// SelfSigned returns the gateway's self-signed certificate, generating it
// on first use and keeping it in dir, so its fingerprint (which peers pin)
// stays the same across restarts.
func SelfSigned(dir string, hosts []string) (*tls.Certificate, error) {
	certFile, keyFile := filepath.Join(dir, "selfsigned.crt"), filepath.Join(dir, "selfsigned.key")
	if c, err := LoadFiles(certFile, keyFile); err == nil {
		return c, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("self-signed certificate in %s: %w", dir, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("self-signed certificate: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("self-signed certificate: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("self-signed certificate: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "Switchboard gateway", Organization: []string{"Switchboard"}},
		NotBefore:    time.Now().Add(-time.Hour),
		// Peers pin the fingerprint rather than trust a chain, so a long
		// life costs nothing and spares a re-pinning every year.
		NotAfter:    time.Now().AddDate(20, 0, 0),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range append([]string{"localhost"}, hosts...) {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	tmpl.IPAddresses = append(tmpl.IPAddresses, net.IPv4(127, 0, 0, 1), net.IPv6loopback)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("self-signed certificate: %w", err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("self-signed certificate: %w", err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		return nil, fmt.Errorf("self-signed certificate: %w", err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, fmt.Errorf("self-signed certificate: %w", err)
	}
	return LoadFiles(certFile, keyFile)
}

// Protocols are the HTTP versions the gateway's servers speak: HTTP/1.1,
// plain or over TLS, and HTTP/2 over TLS where ALPN chose it. Unencrypted
// HTTP/2 (h2c) is not offered: no browser speaks it.
func Protocols() *http.Protocols {
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetHTTP2(true)
	return &p
}
