package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/switchboard/switchboard/internal/metrics"
)

// serveConfig is everything `switchboard serve` is told at start.
type serveConfig struct {
	store       storeFlags
	listen      []string
	gatewayKeys []string
	tlsCert     string
	tlsKey      string
	maxClients  int
	cmpi        time.Duration
	logDir      string
	logMaxKB    int
	node        string
	grace       time.Duration
	logJSON     bool
	metrics     []netip.Prefix
	noTLS       bool
	acmeDomains []string
	acmeDir     string
	acmeEmail   string
	block       bool
	trusted     []string
	duoCA       string
	// explicit tells which flags were given (command line or environment);
	// nil means all, as for tests that build a serveConfig directly.
	explicit func(flag string) bool
	// keyPoll is how often stored keys are compared with the running set.
	// Half a second keeps "within a second" true at a negligible query rate.
	keyPoll time.Duration
}

// duoRoots reads --duo-ca; nil means the bundle Duo's library carries.
func (c serveConfig) duoRoots() (*x509.CertPool, error) {
	if c.duoCA == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(c.duoCA)
	if err != nil {
		return nil, fmt.Errorf("--duo-ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--duo-ca: %s holds no PEM certificate", c.duoCA)
	}
	return pool, nil
}

func (e *cmdEnv) serve(ctx context.Context, args []string) error {
	fs := newFlagSet("serve", `Usage: switchboard serve [--listen ADDR]... [--database-url URL] [--data-dir DIR] [--gateway-key KEY]... [--tls-cert F --tls-key F]

Runs a gateway: the relay endpoint for Clients and Controls on every listen
address. Without --database-url it runs a private PostgreSQL in the data dir.
No Client or Control is admitted until a gateway key exists (--gateway-key
here, or switchboard keys add).`, e.stderr)
	var cfg serveConfig
	cfg.store.add(fs)
	var listen, keys listFlag
	fs.Var(&listen, "listen", "address to listen on, IP:PORT or :PORT (repeatable; default :443, all interfaces)")
	fs.Var(&keys, "gateway-key", "a gateway key to add at start, at least 8 characters (repeatable)")
	fs.StringVar(&cfg.tlsCert, "tls-cert", "", "PEM certificate (chain) file for https; reloaded when the file is replaced")
	fs.StringVar(&cfg.tlsKey, "tls-key", "", "PEM private key file for https")
	var acmeDomains, trusted listFlag
	fs.Var(&acmeDomains, "acme-domain", "get a certificate for this DNS name from an ACME authority such as Let's Encrypt (repeatable)")
	fs.StringVar(&cfg.acmeDir, "acme-directory", "https://acme-v02.api.letsencrypt.org/directory", "ACME directory URL")
	fs.StringVar(&cfg.acmeEmail, "acme-email", "", "contact e-mail for the ACME account")
	fs.BoolVar(&cfg.noTLS, "no-tls", false, "serve plain HTTP only: no certificate at all (otherwise a self-signed one is made and kept when no other is given)")
	fs.BoolVar(&cfg.block, "block-unencrypted", false, "refuse Clients and Controls that do not use https")
	fs.Var(&trusted, "trusted-proxy", "address or CIDR of a TLS-terminating reverse proxy whose X-Forwarded-Proto/For are believed (repeatable)")
	fs.StringVar(&cfg.duoCA, "duo-ca", "", "PEM file of certificate authorities to trust for the Duo API host instead of the bundle Duo's library carries (an inspecting proxy, or a test)")
	fs.IntVar(&cfg.maxClients, "max-clients", 0, "licensed maximum of concurrent Clients; 0 is unlimited")
	cmpi := fs.Int("cmpi", 60, "Comms Management Packet Interval: seconds between a Client's heartbeats")
	fs.StringVar(&cfg.logDir, "log-dir", "", "folder of the GW001.log, GW002.log, ... event logs (default DATA-DIR/logs)")
	fs.IntVar(&cfg.logMaxKB, "log-max-kb", 1000, "maximum size of one event log file in KB")
	host, _ := os.Hostname()
	fs.StringVar(&cfg.node, "node", host, "this gateway node's name in events")
	fs.DurationVar(&cfg.grace, "shutdown-grace", 10*time.Second, "how long sessions may go on after a stop is asked for")
	fs.BoolVar(&cfg.logJSON, "log-json", false, "log as JSON instead of text")
	metricsAllow := fs.String("metrics-allow", "127.0.0.0/8,::1/128", "addresses or CIDR prefixes allowed to read /metrics; empty disables /metrics")
	pos, err := fs.parse(args)
	if err != nil {
		return err
	}
	if cfg.metrics, err = metrics.ParseAllow(*metricsAllow); err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("serve takes no arguments (got %q)", pos)
	}
	cfg.listen, cfg.gatewayKeys, cfg.acmeDomains, cfg.trusted = listen, keys, acmeDomains, trusted
	if len(cfg.listen) == 0 {
		cfg.listen = []string{":443"}
	}
	if *cmpi < 1 {
		return fmt.Errorf("--cmpi must be at least 1 second")
	}
	cfg.cmpi = time.Duration(*cmpi) * time.Second
	if (cfg.tlsCert == "") != (cfg.tlsKey == "") {
		return fmt.Errorf("--tls-cert and --tls-key go together")
	}
	modes := 0
	for _, on := range []bool{cfg.tlsCert != "", len(cfg.acmeDomains) > 0, cfg.noTLS} {
		if on {
			modes++
		}
	}
	if modes > 1 {
		return fmt.Errorf("choose one of --tls-cert, --acme-domain and --no-tls")
	}
	if cfg.noTLS && cfg.block {
		return fmt.Errorf("--block-unencrypted needs TLS: drop --no-tls")
	}
	cfg.explicit = fs.isSet
	log := newLogger(e.stderr, cfg.logJSON)
	g, err := startGateway(ctx, cfg, log)
	if err != nil {
		return err
	}
	for _, a := range g.listenAddrs() {
		fmt.Fprintf(e.stderr, "gateway listening on %s\n", a)
	}
	if fp := g.certs.Fingerprint(); g.isSelfSigned() && fp != "" {
		fmt.Fprintf(e.stderr, "self-signed certificate; Clients and Controls pin it with --fingerprint %s\n", fp)
	}
	if !g.relay.HasKeys() {
		fmt.Fprintln(e.stderr, "no gateway key is configured: Clients and Controls are refused until one is added with `switchboard keys add KEY`")
	}
	if n, err := g.db().CountAdmins(ctx); err == nil && n == 0 {
		fmt.Fprintln(e.stderr, "no console administrator exists yet: create one with `switchboard operators add NAME --admin`, then open /console")
	}
	return g.wait(ctx)
}
