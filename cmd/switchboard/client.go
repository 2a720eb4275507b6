package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"

	"github.com/switchboard/switchboard/internal/peer"
	"github.com/switchboard/switchboard/internal/peer/agent"
	"github.com/switchboard/switchboard/internal/transport"
	"github.com/switchboard/switchboard/relay/wire"
)

// gatewayFlags are the flags every command that dials a gateway takes.
type gatewayFlags struct {
	gateway     string
	secondary   string
	key         string
	keyFile     string
	ca          string
	fingerprint string
	// secondaryFingerprint pins the secondary's certificate; "" pins it
	// to fingerprint (gateways that share one certificate).
	secondaryFingerprint string
	proxy                string
}

func (g *gatewayFlags) add(fs *flagSet) {
	fs.StringVar(&g.gateway, "gateway", "", "gateway address: https://host:port, http://host:port, or host:port (https)")
	fs.StringVar(&g.secondary, "secondary", "", "secondary gateway address, used while the primary (--gateway) is unreachable; same forms as --gateway")
	fs.StringVar(&g.key, "key", "", "gateway key (at least 8 characters); prefer --key-file or SWITCHBOARD_KEY, which other users cannot see")
	fs.StringVar(&g.keyFile, "key-file", "", "read the gateway key from this file (mode 600)")
	fs.StringVar(&g.ca, "ca", "", "PEM file of certificate authorities to trust for the gateway instead of the system's")
	fs.StringVar(&g.fingerprint, "fingerprint", "", "pin the gateway's certificate by its SHA-256 fingerprint (what a self-signed gateway prints at start)")
	fs.StringVar(&g.secondaryFingerprint, "secondary-fingerprint", "", "pin the secondary gateway's certificate by its SHA-256 fingerprint; default: --fingerprint")
	fs.StringVar(&g.proxy, "proxy", "", "HTTP proxy, http://[user:password@]host:port; default from HTTPS_PROXY/NO_PROXY; \"none\" for none")
}

// keySafer is what warnSecretFlags suggests instead of --key.
var keySafer = map[string]string{"key": "--key-file or SWITCHBOARD_KEY"}

// resolveKey reads --key-file when it is given.
func (g *gatewayFlags) resolveKey() error {
	if g.keyFile == "" {
		return nil
	}
	if g.key != "" {
		return fmt.Errorf("give the gateway key once: --key or --key-file")
	}
	k, err := readSecretFile("key-file", g.keyFile)
	if err != nil {
		return err
	}
	g.key = k
	return nil
}

func (g *gatewayFlags) dialer(userAgent string) (peer.Dialer, error) {
	if err := g.resolveKey(); err != nil {
		return peer.Dialer{}, err
	}
	if g.gateway == "" {
		return peer.Dialer{}, fmt.Errorf("--gateway is required")
	}
	if len(g.key) < wire.MinKeyLength {
		return peer.Dialer{}, fmt.Errorf("--key is required and must be at least %d characters", wire.MinKeyLength)
	}
	gw, err := peer.ParseGateway(g.gateway)
	if err != nil {
		return peer.Dialer{}, err
	}
	d := peer.Dialer{Gateway: gw, UserAgent: userAgent, Proxy: peer.ProxyFromEnvironment,
		SessionCache: tls.NewLRUClientSessionCache(64)}
	switch g.proxy {
	case "":
	case "none":
		d.Proxy = nil
	default:
		u, err := url.Parse(g.proxy)
		if err != nil || u.Scheme != "http" || u.Host == "" {
			return peer.Dialer{}, fmt.Errorf("--proxy: want http://[user:password@]host:port")
		}
		d.Proxy = func(peer.Gateway) (*url.URL, error) { return u, nil }
	}
	if g.fingerprint != "" {
		fp, err := transport.NormalizeFingerprint(g.fingerprint)
		if err != nil {
			return peer.Dialer{}, fmt.Errorf("--fingerprint: %w", err)
		}
		if !gw.TLS {
			return peer.Dialer{}, fmt.Errorf("--fingerprint pins a certificate: use an https:// gateway address")
		}
		d.Fingerprint = fp
	}
	if g.secondaryFingerprint != "" && g.secondary == "" {
		return peer.Dialer{}, fmt.Errorf("--secondary-fingerprint pins the secondary's certificate: give --secondary too")
	}
	if g.ca != "" {
		pem, err := os.ReadFile(g.ca)
		if err != nil {
			return peer.Dialer{}, fmt.Errorf("--ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return peer.Dialer{}, fmt.Errorf("--ca %s: no PEM certificates found", g.ca)
		}
		d.TLS = &tls.Config{RootCAs: pool}
	}
	return d, nil
}

// secondaryDialer is the dialer of --secondary, nil without one: primary's
// settings (key, proxy, CA, fingerprint) for another gateway. It pins
// --secondary-fingerprint when given, else --fingerprint (gateways that
// share one certificate); with neither, each gateway's chain is verified.
func (g *gatewayFlags) secondaryDialer(primary peer.Dialer) (*peer.Dialer, error) {
	if g.secondary == "" {
		return nil, nil
	}
	gw, err := peer.ParseGateway(g.secondary)
	if err != nil {
		return nil, fmt.Errorf("--secondary: %w", err)
	}
	if agent.SameGateway(gw, primary.Gateway) {
		return nil, fmt.Errorf("--secondary %s is the same gateway as --gateway %s: the secondary must be another gateway (or leave --secondary out)", gw, primary.Gateway)
	}
	d := primary
	d.Gateway = gw
	if g.secondaryFingerprint != "" {
		fp, err := transport.NormalizeFingerprint(g.secondaryFingerprint)
		if err != nil {
			return nil, fmt.Errorf("--secondary-fingerprint: %w", err)
		}
		d.Fingerprint = fp
	}
	if d.Fingerprint != "" && !gw.TLS {
		return nil, fmt.Errorf("a fingerprint pins a certificate: use an https:// secondary address")
	}
	if d.SessionCache != nil {
		d.SessionCache = tls.NewLRUClientSessionCache(64)
	}
	return &d, nil
}

const clientUsage = `Usage: switchboard client --gateway URL [--secondary URL] --key KEY [--name NAME] [--service NAME=HOST:PORT[,kind=vnc|ssh]]... [--config FILE]
       switchboard client install [the same flags] [--config-path FILE]
       switchboard client uninstall | status

Runs the Client agent: keeps an outbound connection to the gateway and lets
Controls holding the same key reach the services named here, and only those.
The settings can also live in a config file (--config) of "name = value"
lines using the flag names, e.g.

    gateway = https://gw.example.com:443
    secondary = https://gw2.example.com:443
    key = a-long-gateway-key
    service = ssh=127.0.0.1:22
    service = vnc=127.0.0.1:5900

Flags and environment variables override the file. Without --name the
machine's host name is used, so one file serves many machines.

With --secondary the Client moves to the secondary gateway when the primary
(--gateway) is unreachable, within a second or two of noticing, and returns
to the primary as soon as it answers again (it checks every 2 s). Sessions
in progress are not cut by either move.

install writes the settings to a config file readable only by its owner and
installs the agent as a system service (systemd on Linux, launchd on macOS,
a Windows service on Windows) that starts at boot.`

// clientFlags are the settings of a Client, shared by client and install.
type clientFlags struct {
	gf       gatewayFlags
	services listFlag
	kinds    map[string]string // set by resolve
	name     string
	config   string
	logJSON  bool
	// secondary is --secondary's dialer, set by resolve; nil without one.
	secondary *peer.Dialer
}

func (c *clientFlags) add(fs *flagSet) {
	c.gf.add(fs)
	fs.StringVar(&c.name, "name", "", "this Client's name (default: the host name)")
	fs.Var(&c.services, "service", "a local service to offer, NAME=HOST:PORT[,kind=vnc|ssh] (repeatable; the kind lets the browser console open it as a desktop or a terminal, and is implied by names starting with vnc or ssh)")
	fs.StringVar(&c.config, "config", "", "config file of name = value lines")
	fs.BoolVar(&c.logJSON, "log-json", false, "log as JSON instead of text")
}

// resolve applies the config file and checks the settings.
func (c *clientFlags) resolve(fs *flagSet) (peer.Dialer, map[string]string, error) {
	if c.config != "" {
		if err := applyConfigFile(fs, c.config); err != nil {
			return peer.Dialer{}, nil, err
		}
	}
	d, err := c.gf.dialer("switchboard-client/" + version)
	if err != nil {
		return peer.Dialer{}, nil, err
	}
	if c.secondary, err = c.gf.secondaryDialer(d); err != nil {
		return peer.Dialer{}, nil, err
	}
	svc, kinds, err := parseServices(c.services)
	if err != nil {
		return peer.Dialer{}, nil, err
	}
	c.kinds = kinds
	return d, svc, nil
}

func (e *cmdEnv) client(ctx context.Context, args []string) error {
	if len(args) > 0 {
		switch args[0] {
		case "install", "uninstall", "status":
			return e.clientService(ctx, args[0], args[1:])
		}
	}
	fs := newFlagSet("client", clientUsage, e.stderr)
	var cf clientFlags
	cf.add(fs)
	pos, err := fs.parse(args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("client takes no arguments (got %q)", pos)
	}
	fs.warnSecretFlags(e.stderr, keySafer)
	d, svc, err := cf.resolve(fs)
	if err != nil {
		return err
	}
	if cf.name == "" {
		if cf.name, err = os.Hostname(); err != nil {
			return fmt.Errorf("no --name and no host name: %w", err)
		}
	}
	a, err := agent.New(agent.Config{
		Dialer: d, Secondary: cf.secondary, Key: cf.gf.key, Name: cf.name, Services: svc, Kinds: cf.kinds, Version: version,
		Logger: newLogger(e.stderr, cf.logJSON),
	})
	if err != nil {
		return err
	}
	return runAsService(ctx, a.Run)
}

// parseServices reads NAME=HOST:PORT[,kind=vnc|ssh] entries: the address
// of each service and, where given, its kind for the browser console
// (otherwise its name implies one, wire.ServiceKind).
func parseServices(list []string) (addrs, kinds map[string]string, err error) {
	addrs = make(map[string]string, len(list))
	kinds = make(map[string]string)
	for _, s := range list {
		name, rest, ok := strings.Cut(s, "=")
		addr, opt, hasOpt := strings.Cut(rest, ",")
		if !ok || name == "" || addr == "" {
			return nil, nil, fmt.Errorf("--service %q: want NAME=HOST:PORT[,kind=vnc|ssh], e.g. ssh=127.0.0.1:22", s)
		}
		if _, dup := addrs[name]; dup {
			return nil, nil, fmt.Errorf("--service %s given twice", name)
		}
		if hasOpt {
			kind, ok := strings.CutPrefix(opt, "kind=")
			if !ok || (kind != wire.KindVNC && kind != wire.KindSSH) {
				return nil, nil, fmt.Errorf("--service %q: after the address only kind=vnc or kind=ssh may follow", s)
			}
			kinds[name] = kind
		}
		addrs[name] = addr
	}
	return addrs, kinds, nil
}

// applyConfigFile sets every flag the file names that was not set on the
// command line or in the environment.
func applyConfigFile(fs *flagSet, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("--config: %w", err)
	}
	defer f.Close()
	explicit := map[string]bool{}
	fs.VisitAll(func(fl *flag.Flag) {
		if fs.isSet(fl.Name) {
			explicit[fl.Name] = true
		}
	})
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return fmt.Errorf("%s:%d: want name = value", path, n)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		fl := fs.Lookup(k)
		if fl == nil || k == "config" {
			return fmt.Errorf("%s:%d: unknown setting %q", path, n, k)
		}
		if explicit[k] {
			continue
		}
		if err := fl.Value.Set(v); err != nil {
			return fmt.Errorf("%s:%d: %s: %w", path, n, k, err)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("--config: %w", err)
	}
	return nil
}

func newLogger(w interface{ Write([]byte) (int, error) }, asJSON bool) *slog.Logger {
	if asJSON {
		return slog.New(slog.NewJSONHandler(w, nil))
	}
	return slog.New(slog.NewTextHandler(w, nil))
}
