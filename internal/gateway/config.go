package gateway

import (
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/switchboard/switchboard/internal/config"
	"github.com/switchboard/switchboard/internal/transport"
)

// Config is everything a gateway is told at start. The runtime settings
// among them (listen addresses, CMPI, licence, log folder, security) seed
// the configuration stored in PostgreSQL; see Explicit.
type Config struct {
	// Store is where the database is: a URL, or an embedded PostgreSQL in
	// Store.DataDir, which also holds logs, the event spool and TLS files.
	Store

	Listen      []string
	GatewayKeys []string
	TLSCert     string
	TLSKey      string
	MaxClients  int
	CMPI        time.Duration
	LogDir      string // default DataDir/logs
	LogMaxKB    int
	Node        string
	// Advertise is the URL the other nodes of the cluster reach this one
	// at; empty derives it from the first listen address (see advertiseURL).
	Advertise string
	// Role is this node's role given at start: standalone, primary,
	// secondary or balanced. It wins over the stored server role and is
	// stored; empty keeps the stored one (see nodeRole).
	Role string
	// Heartbeat is how often the node renews its row in the node registry
	// (default 2 s); the lease is NodeLease.
	Heartbeat time.Duration
	// PresencePoll is how often the node compares its Clients with the
	// presence table, dropping those connected to another node since
	// (default 1 s; see presence.go).
	PresencePoll time.Duration
	// BalanceSlack is how many Clients over the mean (and 10% over) a
	// balanced node may hold before it moves any (placement.go); 0 is 50.
	BalanceSlack int
	// Now is the node's clock, compared with the database's at start
	// (MaxClockSkew); nil is time.Now. Tests give a skewed one.
	Now func() time.Time
	// Grace is how long sessions may go on after a stop is asked for.
	Grace time.Duration
	// MetricsAllow are the networks that may read /metrics; none disables it.
	MetricsAllow     []netip.Prefix
	NoTLS            bool
	ACMEDomains      []string
	ACMEDirectory    string
	ACMEEmail        string
	BlockUnencrypted bool
	TrustedProxies   []string
	// DuoCA is a PEM file of authorities trusted for the Duo API host
	// instead of the bundle Duo's library carries.
	DuoCA string
	// SecretsKeyFile is the 32-byte key that encrypts TOTP secrets and the
	// Duo secret key in the database; empty is DataDir/secrets.key, made on
	// the first start. Every node of a cluster needs the same key.
	SecretsKeyFile string
	// Explicit tells which settings were given at start (flag or
	// environment, by flag name): those win over the stored configuration.
	// Nil means all of them.
	Explicit func(flag string) bool
	// KeyPoll is how often stored keys are compared with the running set.
	// Half a second (the default) keeps "within a second" true at a
	// negligible query rate.
	KeyPoll time.Duration

	// Product and Version name the software in the first event.
	Product, Version string
	Logger           *slog.Logger
	// ACMEClient talks to the ACME directory; nil is the default client
	// (tests give one that trusts their own ACME server).
	ACMEClient *http.Client
}

// runtimeConfig is the runtime configuration the flags describe; it seeds
// the stored configuration on the first start.
func (cfg Config) runtimeConfig() config.Config {
	return config.Config{
		Listen: cfg.Listen, CMPI: cfg.CMPI, MaxClients: cfg.MaxClients,
		LogDir: cfg.LogDir, LogMaxKB: cfg.LogMaxKB, ServerRole: roleSetting(cfg.Role),
		BlockUnencrypted: cfg.BlockUnencrypted, TrustedProxies: cfg.TrustedProxies,
		TLSSource: transport.SourceSelfSigned, ACMEDomains: cfg.ACMEDomains, ACMEEmail: cfg.ACMEEmail, ACMEDirectory: cfg.ACMEDirectory,
	}
}

// duoRoots reads DuoCA; nil means the bundle Duo's library carries.
func (cfg Config) duoRoots() (*x509.CertPool, error) {
	if cfg.DuoCA == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(cfg.DuoCA)
	if err != nil {
		return nil, fmt.Errorf("--duo-ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--duo-ca: %s holds no PEM certificate", cfg.DuoCA)
	}
	return pool, nil
}

// withDefaults fills what a caller may leave out.
func (cfg Config) withDefaults() Config {
	if cfg.LogDir == "" {
		cfg.LogDir = filepath.Join(cfg.DataDir, "logs")
	}
	if cfg.KeyPoll == 0 {
		cfg.KeyPoll = 500 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.LogMaxKB == 0 {
		cfg.LogMaxKB = 1000
	}
	if cfg.CMPI == 0 {
		cfg.CMPI = time.Minute
	}
	if cfg.Heartbeat == 0 {
		cfg.Heartbeat = 2 * time.Second
	}
	if cfg.PresencePoll == 0 {
		cfg.PresencePoll = time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Product == "" {
		cfg.Product = "Switchboard"
	}
	return cfg
}
