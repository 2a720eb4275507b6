package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/switchboard/switchboard/internal/peer"
)

// buildSwitchboard compiles ./cmd/switchboard into dir, so the gateway and
// the Client agent run as the binary users run.
func buildSwitchboard(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "switchboard")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/switchboard/switchboard/cmd/switchboard")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build switchboard: %w", err)
	}
	return bin, nil
}

// proc is a child process the bench started and must stop.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan error
	log  *os.File
}

func startProc(name, logPath, bin string, args ...string) (*proc, error) {
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("%s: log file: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan error, 1), log: lf}
	go func() { p.done <- cmd.Wait() }()
	return p, nil
}

// PID is the child's process ID.
func (p *proc) PID() int { return p.cmd.Process.Pid }

// Stop sends SIGTERM and waits; after grace it kills.
func (p *proc) Stop(grace time.Duration) error {
	defer p.log.Close()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			return fmt.Errorf("%s: %w", p.name, err)
		}
		return nil
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s did not stop within %s after SIGTERM; killed", p.name, grace)
	}
}

// Kill is kill -9: the child gets no chance to clean up. It waits for the
// child to be gone.
func (p *proc) Kill() error {
	defer p.log.Close()
	if err := p.cmd.Process.Kill(); err != nil {
		return fmt.Errorf("kill %s: %w", p.name, err)
	}
	<-p.done
	return nil
}

// gateway is one running `switchboard serve`.
type gateway struct {
	*proc
	addr string // 127.0.0.1:port
	tls  *tls.Config
}

// URL is the gateway address a Client or Control is given.
func (g *gateway) URL() string {
	if g.tls != nil {
		return "https://" + g.addr
	}
	return "http://" + g.addr
}

// Dialer dials the gateway, trusting the bench's certificate for TLS.
// Dialer is the Control's dialer, with a TLS session cache as `switchboard
// control connect --listen` has, so that its sessions after the first resume
// TLS instead of doing full handshakes.
func (g *gateway) Dialer() peer.Dialer {
	return peer.Dialer{Gateway: peer.Gateway{TLS: g.tls != nil, Host: g.addr}, TLS: g.tls, UserAgent: "switchboard-bench",
		SessionCache: tls.NewLRUClientSessionCache(16)}
}

// HTTPClient reaches the gateway's own endpoints (/healthz, /metrics).
func (g *gateway) HTTPClient() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: g.tls}}
}

// gatewayOpts says how to start a gateway.
type gatewayOpts struct {
	bin, key string
	cmpi     int
	cert     *benchCert // nil: plain HTTP
	// dataDir and addr, when set, are the gateway's data dir and listen
	// address (a restart reuses both); otherwise a fresh data dir under
	// dir and a free loopback port.
	dataDir, addr string
	extra         []string // more serve flags
}

// startGateway runs a gateway and waits until /healthz answers: by default
// with an embedded PostgreSQL in a fresh data dir under dir, or as o says
// (o.extra may name a --database-url).
func startGateway(ctx context.Context, dir, name string, o gatewayOpts) (*gateway, error) {
	data, addr := o.dataDir, o.addr
	var err error
	if data == "" {
		if data, err = os.MkdirTemp(dir, name+"-data-"); err != nil {
			return nil, fmt.Errorf("%s data dir: %w", name, err)
		}
		// As root the embedded PostgreSQL runs as the postgres user, which
		// must be able to traverse the data dir.
		if err := os.Chmod(data, 0o755); err != nil {
			return nil, fmt.Errorf("%s data dir: %w", name, err)
		}
	}
	if addr == "" {
		if addr, err = freePort(); err != nil {
			return nil, err
		}
	}
	args := []string{"serve", "--listen", addr, "--data-dir", data, "--gateway-key", o.key,
		"--cmpi", fmt.Sprint(o.cmpi), "--log-dir", filepath.Join(data, "logs")}
	args = append(args, o.extra...)
	g := &gateway{addr: addr}
	if o.cert != nil {
		args = append(args, "--tls-cert", o.cert.certFile, "--tls-key", o.cert.keyFile)
		// A session cache, as the switchboard CLI has: session connections
		// resume TLS instead of a full handshake each.
		g.tls = &tls.Config{RootCAs: o.cert.pool, ClientSessionCache: tls.NewLRUClientSessionCache(64)}
	}
	g.proc, err = startProc(name, filepath.Join(dir, name+".log"), o.bin, args...)
	if err != nil {
		return nil, err
	}
	if err := waitHealthy(ctx, g, 90*time.Second); err != nil {
		_ = g.Stop(30 * time.Second)
		return nil, fmt.Errorf("%s (log %s): %w", name, g.log.Name(), err)
	}
	return g, nil
}

func waitHealthy(ctx context.Context, g *gateway, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	hc := g.HTTPClient()
	scheme := "http"
	if g.tls != nil {
		scheme = "https"
	}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+g.addr+"/healthz", nil)
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no healthy /healthz: %w (last: %v)", ctx.Err(), err)
		case err := <-g.done:
			g.done <- err
			return fmt.Errorf("gateway exited: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// startAgent runs `switchboard client` as a process offering services.
func startAgent(dir, name string, bin string, g *gateway, key, client string, services map[string]string, ca string) (*proc, error) {
	args := []string{"client", "--gateway", g.URL(), "--key", key, "--name", client}
	for svc, addr := range services {
		args = append(args, "--service", svc+"="+addr)
	}
	if ca != "" {
		args = append(args, "--ca", ca)
	}
	return startProc(name, filepath.Join(dir, name+".log"), bin, args...)
}

// benchCert is a self-signed certificate for 127.0.0.1.
type benchCert struct {
	certFile, keyFile string
	pool              *x509.CertPool
}

func makeCert(dir string) (*benchCert, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("certificate key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "switchboard-bench"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("create certificate: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("marshal certificate key: %w", err)
	}
	c := &benchCert{certFile: filepath.Join(dir, "cert.pem"), keyFile: filepath.Join(dir, "key.pem"), pool: x509.NewCertPool()}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := os.WriteFile(c.certFile, certPEM, 0o644); err != nil {
		return nil, fmt.Errorf("write certificate: %w", err)
	}
	if err := os.WriteFile(c.keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return nil, fmt.Errorf("write certificate key: %w", err)
	}
	c.pool.AppendCertsFromPEM(certPEM)
	return c, nil
}
