package main

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard/switchboard/internal/gateway"
	"github.com/switchboard/switchboard/internal/metrics"
)

func (e *cmdEnv) serve(ctx context.Context, args []string) error {
	fs := newFlagSet("serve", `Usage: switchboard serve [--listen ADDR]... [--database-url URL] [--data-dir DIR] [--gateway-key KEY]... [--tls-cert F --tls-key F]

Runs a gateway: the relay endpoint for Clients and Controls on every listen
address. Without --database-url it runs a private PostgreSQL in the data dir.
No Client or Control is admitted until a gateway key exists (--gateway-key
here, or switchboard keys add).`, e.stderr)
	var cfg gateway.Config
	addStoreFlags(fs, &cfg.Store)
	var listen, keys listFlag
	fs.Var(&listen, "listen", "address to listen on, IP:PORT or :PORT (repeatable; default :443, all interfaces)")
	fs.Var(&keys, "gateway-key", "a gateway key to add at start, at least 8 characters (repeatable); prefer --gateway-key-file or SWITCHBOARD_GATEWAY_KEY, which other users cannot see")
	keyFile := fs.String("gateway-key-file", "", "file of gateway keys to add at start, one per line (mode 600)")
	fs.StringVar(&cfg.TLSCert, "tls-cert", "", "PEM certificate (chain) file for https; reloaded when the file is replaced")
	fs.StringVar(&cfg.TLSKey, "tls-key", "", "PEM private key file for https")
	var acmeDomains, trusted listFlag
	fs.Var(&acmeDomains, "acme-domain", "get a certificate for this DNS name from an ACME authority such as Let's Encrypt (repeatable)")
	fs.StringVar(&cfg.ACMEDirectory, "acme-directory", "https://acme-v02.api.letsencrypt.org/directory", "ACME directory URL")
	fs.StringVar(&cfg.ACMEEmail, "acme-email", "", "contact e-mail for the ACME account")
	fs.BoolVar(&cfg.NoTLS, "no-tls", false, "serve plain HTTP only: no certificate at all (otherwise a self-signed one is made and kept when no other is given)")
	fs.BoolVar(&cfg.BlockUnencrypted, "block-unencrypted", false, "refuse Clients and Controls that do not use https")
	fs.Var(&trusted, "trusted-proxy", "address or CIDR of a TLS-terminating reverse proxy whose X-Forwarded-Proto/For are believed (repeatable)")
	fs.StringVar(&cfg.DuoCA, "duo-ca", "", "PEM file of certificate authorities to trust for the Duo API host instead of the bundle Duo's library carries (an inspecting proxy, or a test)")
	fs.StringVar(&cfg.SecretsKeyFile, "secrets-key-file", "", "file of the 32-byte key that encrypts TOTP secrets and the Duo secret key in the database (default DATA-DIR/secrets.key, made on the first start); every node of a cluster needs the same key")
	fs.IntVar(&cfg.MaxClients, "max-clients", 0, "licensed maximum of concurrent Clients; 0 is unlimited")
	cmpi := fs.Int("cmpi", 60, "Comms Management Packet Interval: seconds between a Client's heartbeats")
	fs.StringVar(&cfg.LogDir, "log-dir", "", "folder of the GW001.log, GW002.log, ... event logs (default DATA-DIR/logs)")
	fs.IntVar(&cfg.LogMaxKB, "log-max-kb", 1000, "maximum size of one event log file in KB")
	host, _ := os.Hostname()
	fs.StringVar(&cfg.Node, "node", host, "this gateway node's name in events and in the node registry; unique in a cluster (every node on the same database)")
	fs.StringVar(&cfg.Advertise, "advertise", "", "URL the other nodes of the cluster reach this one at (default: the first listen address, with the --node name as host when it listens on all interfaces; https unless --no-tls)")
	fs.IntVar(&cfg.BalanceSlack, "balance-slack", 50, "balanced nodes: how many Clients more than the mean (and 10% more) a node may hold before it moves Clients to the others")
	fs.StringVar(&cfg.Role, "role", "", "this node's role: standalone, primary, secondary or balanced; given, it is stored, otherwise the stored server role applies")
	fs.DurationVar(&cfg.Grace, "shutdown-grace", 10*time.Second, "how long sessions may go on after a stop is asked for")
	logJSON := fs.Bool("log-json", false, "log as JSON instead of text")
	metricsAllow := fs.String("metrics-allow", "127.0.0.0/8,::1/128", "addresses or CIDR prefixes allowed to read /metrics; empty disables /metrics")
	pos, err := fs.parse(args)
	if err != nil {
		return err
	}
	if cfg.MetricsAllow, err = metrics.ParseAllow(*metricsAllow); err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("serve takes no arguments (got %q)", pos)
	}
	if err := gateway.CheckRole(cfg.Role); err != nil {
		return err
	}
	if cfg.Advertise != "" {
		if u, err := url.Parse(cfg.Advertise); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("--advertise must be an http:// or https:// URL (got %q)", cfg.Advertise)
		}
	}
	fs.warnSecretFlags(e.stderr, map[string]string{"gateway-key": "--gateway-key-file or SWITCHBOARD_GATEWAY_KEY"})
	if fs.isSetOnCommandLine("database-url") && urlHasPassword(cfg.DatabaseURL) {
		fmt.Fprintln(e.stderr, "warning: the --database-url on the command line holds a password that every user of this machine can read (ps, /proc); use SWITCHBOARD_DATABASE_URL or a .pgpass file instead")
	}
	if *keyFile != "" {
		fileKeys, err := readKeysFile(*keyFile)
		if err != nil {
			return err
		}
		keys = append(keys, fileKeys...)
	}
	cfg.Listen, cfg.GatewayKeys, cfg.ACMEDomains, cfg.TrustedProxies = listen, keys, acmeDomains, trusted
	if len(cfg.Listen) == 0 {
		cfg.Listen = []string{":443"}
	}
	if *cmpi < 1 {
		return fmt.Errorf("--cmpi must be at least 1 second")
	}
	cfg.CMPI = time.Duration(*cmpi) * time.Second
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		return fmt.Errorf("--tls-cert and --tls-key go together")
	}
	modes := 0
	for _, on := range []bool{cfg.TLSCert != "", len(cfg.ACMEDomains) > 0, cfg.NoTLS} {
		if on {
			modes++
		}
	}
	if modes > 1 {
		return fmt.Errorf("choose one of --tls-cert, --acme-domain and --no-tls")
	}
	if cfg.NoTLS && cfg.BlockUnencrypted {
		return fmt.Errorf("--block-unencrypted needs TLS: drop --no-tls")
	}
	cfg.Explicit = fs.isSet
	cfg.Product, cfg.Version = product, version
	cfg.Logger = newLogger(e.stderr, *logJSON)
	g, err := gateway.Start(ctx, cfg)
	if err != nil {
		return err
	}
	e.printServeHints(ctx, g, cfg)
	return g.Run(ctx)
}

// printServeHints tells a new administrator what to do next, with commands
// that work for this very gateway (its data dir or database URL).
func (e *cmdEnv) printServeHints(ctx context.Context, g *gateway.Gateway, cfg gateway.Config) {
	scheme := "https"
	if cfg.NoTLS {
		scheme = "http"
	}
	for _, a := range g.Addrs() {
		fmt.Fprintf(e.stderr, "gateway listening on %s; the console is %s://%s/console\n", a, scheme, consoleHost(a))
	}
	if fp := g.Fingerprint(); g.SelfSigned() && fp != "" {
		fmt.Fprintf(e.stderr, "self-signed certificate; Clients and Controls pin it with --fingerprint %s\n", fp)
	}
	where := "--data-dir " + shellQuote(cfg.DataDir)
	if cfg.DatabaseURL != "" {
		// The URL may hold a password: point at it rather than print it.
		where = `--database-url "$SWITCHBOARD_DATABASE_URL"`
	}
	if !g.Relay().HasKeys() {
		fmt.Fprintf(e.stderr, "no gateway key is configured: Clients and Controls are refused until one is added with `switchboard keys %s add KEY`\n", where)
	}
	if n, err := g.DB().CountAdmins(ctx); err == nil && n == 0 {
		fmt.Fprintf(e.stderr, "no console administrator exists yet: create one with `switchboard operators %s add NAME --admin`, then open /console\n", where)
	}
}

// readKeysFile reads --gateway-key-file: one key a line; blank lines and
// lines starting with # are skipped.
func readKeysFile(path string) ([]string, error) {
	b, err := readPrivateFile("gateway-key-file", path)
	if err != nil {
		return nil, err
	}
	var keys []string
	for _, line := range strings.Split(b, "\n") {
		line = strings.TrimRight(line, "\r")
		if strings.TrimSpace(line) == "" || strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		keys = append(keys, line)
	}
	return keys, nil
}

// urlHasPassword reports whether a PostgreSQL URL or key=value string
// carries a password.
func urlHasPassword(s string) bool {
	if u, err := url.Parse(s); err == nil && u.User != nil {
		if _, ok := u.User.Password(); ok {
			return true
		}
	}
	return strings.Contains(s, "password=")
}

// consoleHost is how a browser on this machine reaches a listen address.
func consoleHost(a net.Addr) string {
	if tcp, ok := a.(*net.TCPAddr); ok && tcp.IP.IsUnspecified() {
		return net.JoinHostPort("localhost", strconv.Itoa(tcp.Port))
	}
	return a.String()
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-+:=@,") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
