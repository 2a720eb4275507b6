package transport

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/acme/autocert"
)

// Certificate sources, as stored in settings and shown in the console.
const (
	SourceSelfSigned = "self-signed"
	SourceFiles      = "files"
	SourceUploaded   = "uploaded"
	SourceACME       = "acme"
)

// Manager owns the gateway's certificate and lets its source change while
// the gateway runs: new handshakes use the new source, connected peers keep
// their sessions. Its GetCertificate goes into the listeners' tls.Config
// once; everything else happens behind it.
type Manager struct {
	dir  string // where self-signed and uploaded certificates are kept
	log  *slog.Logger
	http *http.Client // for the ACME directory; nil is the default

	mu        sync.Mutex
	source    string
	detail    string // the files, or the ACME directory and domains
	store     Store
	acme      *autocert.Manager
	stopWatch context.CancelFunc
	wg        sync.WaitGroup
}

// NewManager keeps its certificates in dir.
func NewManager(dir string, client *http.Client, log *slog.Logger) *Manager {
	return &Manager{dir: dir, http: client, log: log}
}

// TLSConfig is the listeners' configuration; it stays valid across
// changes of source.
func (m *Manager) TLSConfig() *tls.Config {
	return ServerConfig(m.GetCertificate, ACMEProtocols...)
}

// GetCertificate answers a handshake from the current source.
func (m *Manager) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	m.mu.Lock()
	a := m.acme
	m.mu.Unlock()
	if a != nil {
		return a.GetCertificate(hello)
	}
	return m.store.Get(hello)
}

func (m *Manager) set(source, detail string, c *tls.Certificate, a *autocert.Manager) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stopWatch != nil {
		m.stopWatch()
		m.stopWatch = nil
	}
	m.source, m.detail, m.acme = source, detail, a
	if c != nil {
		m.store.Set(c)
	}
}

// UseSelfSigned serves the kept self-signed certificate, making it first.
func (m *Manager) UseSelfSigned(hosts []string) error {
	c, err := SelfSigned(m.dir, hosts)
	if err != nil {
		return err
	}
	m.set(SourceSelfSigned, "", c, nil)
	return nil
}

// UseFiles serves an administrator's files and reloads them when they are
// replaced, until the source changes or ctx ends.
func (m *Manager) UseFiles(ctx context.Context, certFile, keyFile string) error {
	c, err := LoadFiles(certFile, keyFile)
	if err != nil {
		return err
	}
	m.set(SourceFiles, certFile, c, nil)
	watchCtx, stop := context.WithCancel(ctx)
	m.mu.Lock()
	m.stopWatch = stop
	m.mu.Unlock()
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		WatchFiles(watchCtx, &m.store, certFile, keyFile, 2*time.Second, m.log)
	}()
	return nil
}

func (m *Manager) uploadedFiles() (string, string) {
	return filepath.Join(m.dir, "uploaded.crt"), filepath.Join(m.dir, "uploaded.key")
}

// UseUploaded serves a certificate uploaded earlier, if there is one.
func (m *Manager) UseUploaded() error {
	c, err := LoadFiles(m.uploadedFiles())
	if err != nil {
		return err
	}
	m.set(SourceUploaded, "", c, nil)
	return nil
}

// Upload checks, keeps and serves a certificate and key given as PEM, and
// returns its fingerprint.
func (m *Manager) Upload(certPEM, keyPEM []byte) (string, error) {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return "", err
	}
	certFile, keyFile := m.uploadedFiles()
	if err := os.MkdirAll(m.dir, 0o700); err != nil {
		return "", err
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		return "", err
	}
	if err := os.WriteFile(certFile, certPEM, 0o644); err != nil {
		return "", err
	}
	m.set(SourceUploaded, "", &pair, nil)
	return Fingerprint(pair.Certificate[0]), nil
}

// UseACME gets certificates for domains from an ACME authority, answering
// its tls-alpn-01 challenges on the gateway's own port.
func (m *Manager) UseACME(domains []string, directoryURL, email string) error {
	if len(domains) == 0 {
		return errors.New("give at least one DNS name for the ACME certificate")
	}
	for _, d := range domains {
		if !strings.Contains(d, ".") || strings.ContainsAny(d, " /:") {
			return fmt.Errorf("%q is not a DNS name an ACME authority can certify", d)
		}
	}
	a := ACME(domains, directoryURL, email, filepath.Join(m.dir, "acme"), m.http)
	m.set(SourceACME, directoryURL+" for "+strings.Join(domains, ", "), nil, a)
	return nil
}

// Info describes the certificate in use.
type Info struct {
	Source      string
	Detail      string
	Fingerprint string
	Subject     string
	Names       []string
	NotAfter    time.Time
}

// Info reports the source and, when one is loaded, the certificate.
func (m *Manager) Info() Info {
	m.mu.Lock()
	info := Info{Source: m.source, Detail: m.detail}
	m.mu.Unlock()
	if info.Source == SourceACME {
		return info
	}
	info.Fingerprint = m.store.Fingerprint()
	if c, err := m.store.Get(nil); err == nil && len(c.Certificate) > 0 {
		if leaf, err := x509.ParseCertificate(c.Certificate[0]); err == nil {
			info.Subject, info.NotAfter = leaf.Subject.String(), leaf.NotAfter
			info.Names = leaf.DNSNames
			for _, ip := range leaf.IPAddresses {
				info.Names = append(info.Names, ip.String())
			}
		}
	}
	return info
}

// Fingerprint of the certificate served now (empty for ACME).
func (m *Manager) Fingerprint() string { return m.Info().Fingerprint }

// Close stops watching files.
func (m *Manager) Close() {
	m.mu.Lock()
	if m.stopWatch != nil {
		m.stopWatch()
	}
	m.mu.Unlock()
	m.wg.Wait()
}
