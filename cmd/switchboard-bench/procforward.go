package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
)

// forwardEnv makes the bench binary, started again with it set to a
// target address, a plain forwarder process: it prints its listening
// address and forwards until its standard input closes. Two of them in a
// row are the relay's shape with the relay's process boundaries (the
// gateway and the Client agent are processes of their own), so that the
// cost of crossing processes is measured apart from the gateway's.
const forwardEnv = "SWITCHBOARD_BENCH_FORWARD_TO"

// With these set as well, the forwarder process terminates TLS on its
// listener (the certificate and key files) and/or dials its target over
// TLS (trusting the CA file): the same-shape floor of the relay over TLS.
const (
	forwardCertEnv = "SWITCHBOARD_BENCH_FORWARD_TLS_CERT"
	forwardKeyEnv  = "SWITCHBOARD_BENCH_FORWARD_TLS_KEY"
	forwardCAEnv   = "SWITCHBOARD_BENCH_FORWARD_TLS_CA"
)

// serveForwarder is main for a forwarder process.
func serveForwarder(target string) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listen on loopback: %w", err)
	}
	if certFile := os.Getenv(forwardCertEnv); certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, os.Getenv(forwardKeyEnv))
		if err != nil {
			ln.Close()
			return err
		}
		ln = tls.NewListener(ln, floorServerTLS(&cert))
	}
	dial := dialTCP(target)
	if caFile := os.Getenv(forwardCAEnv); caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			ln.Close()
			return err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			ln.Close()
			return fmt.Errorf("no certificate in %s", caFile)
		}
		dial = dialTLS(target, floorClientTLS(pool))
	}
	s := listenOn(ln, forwardDial(dial, pipeHalf))
	defer s.Close()
	fmt.Println(s.Addr())
	_, _ = io.Copy(io.Discard, os.Stdin) // until the parent goes away
	return nil
}

// floorServerTLS is the gateway's TLS server configuration
// (internal/transport.ServerConfig): Go's defaults, TLS 1.2 at least, so
// TLS 1.3 with AES-GCM where the CPU has AES instructions.
func floorServerTLS(cert *tls.Certificate) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{*cert},
		NextProtos:   []string{"h2", "http/1.1"},
		MinVersion:   tls.VersionTLS12,
	}
}

// floorClientTLS is a relay peer's TLS client configuration
// (internal/peer.Dialer): Go's defaults, http/1.1 in ALPN, a session cache.
func floorClientTLS(pool *x509.CertPool) *tls.Config {
	return &tls.Config{
		RootCAs:            pool,
		ServerName:         "127.0.0.1",
		NextProtos:         []string{"http/1.1"},
		ClientSessionCache: tls.NewLRUClientSessionCache(64),
	}
}

func dialTCP(target string) func(ctx context.Context) (net.Conn, error) {
	return func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", target)
	}
}

// dialTLS dials target and completes the TLS handshake.
func dialTLS(target string, cfg *tls.Config) func(ctx context.Context) (net.Conn, error) {
	return func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		raw, err := d.DialContext(ctx, "tcp", target)
		if err != nil {
			return nil, err
		}
		tc := tls.Client(raw, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			raw.Close()
			return nil, fmt.Errorf("TLS handshake with %s: %w", target, err)
		}
		return tc, nil
	}
}

// procForwarders are forwarder processes chained hops deep in front of
// each service.
type procForwarders struct {
	procs  []*exec.Cmd
	stdins []io.Closer
	front  map[string]string
	// pids[service][0] is the process nearest the service (the Client
	// agent's place), the last the one the bench dials (the gateway's).
	pids map[string][]int
}

// startProcForwarders chains hops plain forwarder processes.
func startProcForwarders(services map[string]string, hops int) (*procForwarders, error) {
	return startProcChain(services, hops, func(int) []string { return nil })
}

// startProcForwardersTLS is the same-shape floor of relay-tls: two
// forwarder processes, each terminating TLS with the bench's certificate,
// the front one a TLS client of the back one, the back one a plain TCP
// client of the service (as the Client agent is).
func startProcForwardersTLS(services map[string]string, cert *benchCert) (*procForwarders, error) {
	return startProcChain(services, 2, func(hop int) []string {
		env := []string{forwardCertEnv + "=" + cert.certFile, forwardKeyEnv + "=" + cert.keyFile}
		if hop > 0 {
			env = append(env, forwardCAEnv+"="+cert.certFile)
		}
		return env
	})
}

// startProcChain starts hops forwarder processes per service, hop 0 next
// to the service, each given env(hop) beside forwardEnv.
func startProcChain(services map[string]string, hops int, env func(hop int) []string) (*procForwarders, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("forwarder processes: %w", err)
	}
	f := &procForwarders{front: make(map[string]string), pids: make(map[string][]int)}
	for name, addr := range services {
		for hop := range hops {
			cmd := exec.Command(self)
			cmd.Env = append(os.Environ(), forwardEnv+"="+addr)
			cmd.Env = append(cmd.Env, env(hop)...)
			cmd.Stderr = os.Stderr
			stdin, err := cmd.StdinPipe()
			if err != nil {
				f.Close()
				return nil, err
			}
			out, err := cmd.StdoutPipe()
			if err != nil {
				f.Close()
				return nil, err
			}
			if err := cmd.Start(); err != nil {
				f.Close()
				return nil, fmt.Errorf("forwarder process for %s: %w", name, err)
			}
			f.procs, f.stdins = append(f.procs, cmd), append(f.stdins, stdin)
			f.pids[name] = append(f.pids[name], cmd.Process.Pid)
			line, err := bufio.NewReader(out).ReadString('\n')
			if err != nil {
				f.Close()
				return nil, fmt.Errorf("forwarder process for %s: %w", name, err)
			}
			addr = strings.TrimSpace(line)
		}
		f.front[name] = addr
	}
	return f, nil
}

// gatewayPID and agentPID are the processes in the gateway's and the
// Client agent's places in front of service.
func (f *procForwarders) gatewayPID(service string) int {
	p := f.pids[service]
	return p[len(p)-1]
}

func (f *procForwarders) agentPID(service string) int { return f.pids[service][0] }

// Close ends the processes by closing their standard input, the way they
// also end when the bench itself dies.
func (f *procForwarders) Close() {
	for _, in := range f.stdins {
		_ = in.Close()
	}
	for _, c := range f.procs {
		_ = c.Wait()
	}
}
