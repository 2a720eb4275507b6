// Package config is the gateway's runtime configuration: the settings an
// administrator changes in the console, how they are validated, and how
// they are kept as rows of the settings table. Flags seed them on the first
// start; from then on the stored values rule, so a change made in the
// console survives restarts.
package config

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Server roles, shown and stored; failover behaviour builds on them.
const (
	RoleStandalone = "standalone"
	RolePrimary    = "primary"
	RoleSecondary  = "secondary"
	RoleMember     = "load-balancing member"
)

// Roles lists the server roles in the order the console offers them.
var Roles = []string{RoleStandalone, RolePrimary, RoleSecondary, RoleMember}

// Config is everything the console can change at runtime.
type Config struct {
	Listen     []string      // IP:PORT or :PORT; ":443" is all interfaces
	CMPI       time.Duration // heartbeat interval
	MaxClients int           // licence limit; 0 is unlimited
	LogDir     string
	LogMaxKB   int
	ServerRole string
	// PeerGateways are the other gateways of a failover or load-balancing
	// set (host:port), shown and stored for the servers tab.
	PeerGateways []string
	// BlockUnencrypted refuses Clients and Controls that do not use TLS.
	BlockUnencrypted bool
	// TrustedProxies are the addresses (CIDR) of TLS-terminating reverse
	// proxies whose X-Forwarded-Proto and X-Forwarded-For are believed.
	TrustedProxies []string
	// TLSSource is where the certificate comes from: self-signed,
	// uploaded or acme (certificate files are a start flag, not a setting).
	TLSSource     string
	ACMEDomains   []string
	ACMEEmail     string
	ACMEDirectory string
}

// Validate reports the first problem in a form an administrator can act on.
func (c Config) Validate() error {
	if len(c.Listen) == 0 {
		return fmt.Errorf("give at least one listen address")
	}
	for _, a := range c.Listen {
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			return fmt.Errorf("listen address %q: want IP:PORT or :PORT", a)
		}
		if host != "" && net.ParseIP(host) == nil {
			return fmt.Errorf("listen address %q: %q is not an IP address", a, host)
		}
		if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
			return fmt.Errorf("listen address %q: port must be 0 (any free port) to 65535", a)
		}
	}
	if c.CMPI < time.Second || c.CMPI > time.Hour {
		return fmt.Errorf("CMPI must be between 1 and 3600 seconds")
	}
	if c.MaxClients < 0 {
		return fmt.Errorf("maximum Clients cannot be negative (0 is unlimited)")
	}
	if c.LogMaxKB < 1 {
		return fmt.Errorf("maximum log size must be at least 1 KB")
	}
	if c.LogDir == "" {
		return fmt.Errorf("give a log folder")
	}
	if !slices.Contains(Roles, c.ServerRole) {
		return fmt.Errorf("server role must be one of %s", strings.Join(Roles, ", "))
	}
	for _, p := range c.PeerGateways {
		if _, _, err := net.SplitHostPort(p); err != nil {
			return fmt.Errorf("peer gateway %q: want host:port", p)
		}
	}
	if _, err := ParsePrefixes(c.TrustedProxies); err != nil {
		return err
	}
	return nil
}

// SameListen reports whether two configurations listen on the same set of
// addresses, whatever their order.
func SameListen(a, b Config) bool {
	x, y := slices.Clone(a.Listen), slices.Clone(b.Listen)
	slices.Sort(x)
	slices.Sort(y)
	return slices.Equal(x, y)
}

// Setting names in the settings table.
const (
	keyListen     = "listen"
	keyCMPI       = "cmpi_seconds"
	keyMaxClients = "max_clients"
	keyLogDir     = "log_dir"
	keyLogMaxKB   = "log_max_kb"
	keyServerRole = "server_role"
	keyPeers      = "peer_gateways"
	keyBlock      = "block_unencrypted"
	keyProxies    = "trusted_proxies"
	keyTLSSource  = "tls_source"
	keyACMENames  = "acme_domains"
	keyACMEEmail  = "acme_email"
	keyACMEDir    = "acme_directory"
)

// Names lists every setting this package owns.
var Names = []string{keyListen, keyCMPI, keyMaxClients, keyLogDir, keyLogMaxKB, keyServerRole, keyPeers, keyBlock, keyProxies, keyTLSSource, keyACMENames, keyACMEEmail, keyACMEDir}

// Rows renders c as settings rows.
func (c Config) Rows() map[string]string {
	return map[string]string{
		keyListen:     strings.Join(c.Listen, ","),
		keyCMPI:       strconv.Itoa(int(c.CMPI / time.Second)),
		keyMaxClients: strconv.Itoa(c.MaxClients),
		keyLogDir:     c.LogDir,
		keyLogMaxKB:   strconv.Itoa(c.LogMaxKB),
		keyServerRole: c.ServerRole,
		keyPeers:      strings.Join(c.PeerGateways, ","),
		keyBlock:      strconv.FormatBool(c.BlockUnencrypted),
		keyProxies:    strings.Join(c.TrustedProxies, ","),
		keyTLSSource:  c.TLSSource,
		keyACMENames:  strings.Join(c.ACMEDomains, ","),
		keyACMEEmail:  c.ACMEEmail,
		keyACMEDir:    c.ACMEDirectory,
	}
}

// FromRows overlays stored rows on base; rows that are absent keep base's
// value. A stored value that no longer parses is an error, not ignored.
func FromRows(base Config, rows map[string]string) (Config, error) {
	c := base
	atoi := func(name string, dst *int) error {
		v, ok := rows[name]
		if !ok {
			return nil
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("config: stored %s %q: %w", name, v, err)
		}
		*dst = n
		return nil
	}
	if v, ok := rows[keyListen]; ok {
		c.Listen = splitList(v)
	}
	cmpi := int(c.CMPI / time.Second)
	if err := atoi(keyCMPI, &cmpi); err != nil {
		return Config{}, err
	}
	c.CMPI = time.Duration(cmpi) * time.Second
	if err := atoi(keyMaxClients, &c.MaxClients); err != nil {
		return Config{}, err
	}
	if err := atoi(keyLogMaxKB, &c.LogMaxKB); err != nil {
		return Config{}, err
	}
	if v, ok := rows[keyLogDir]; ok {
		c.LogDir = v
	}
	if v, ok := rows[keyServerRole]; ok {
		c.ServerRole = v
	}
	if v, ok := rows[keyPeers]; ok {
		c.PeerGateways = splitList(v)
	}
	if v, ok := rows[keyBlock]; ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return Config{}, fmt.Errorf("config: stored %s %q: %w", keyBlock, v, err)
		}
		c.BlockUnencrypted = b
	}
	if v, ok := rows[keyProxies]; ok {
		c.TrustedProxies = splitList(v)
	}
	if v, ok := rows[keyTLSSource]; ok {
		c.TLSSource = v
	}
	if v, ok := rows[keyACMENames]; ok {
		c.ACMEDomains = splitList(v)
	}
	if v, ok := rows[keyACMEEmail]; ok {
		c.ACMEEmail = v
	}
	if v, ok := rows[keyACMEDir]; ok {
		c.ACMEDirectory = v
	}
	return c, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == '\n' || r == ' ' }) {
		out = append(out, f)
	}
	return out
}

// SplitList parses a list typed in a form: commas, spaces or new lines.
func SplitList(s string) []string { return splitList(s) }

// Changes describes what differs between two configurations, for the
// event naming the operator who made the change.
func Changes(old, cur Config) []string {
	var out []string
	add := func(what, a, b string) {
		if a != b {
			out = append(out, fmt.Sprintf("%s from %s to %s", what, orNone(a), orNone(b)))
		}
	}
	add("listen addresses", strings.Join(old.Listen, ", "), strings.Join(cur.Listen, ", "))
	add("CMPI", old.CMPI.String(), cur.CMPI.String())
	add("maximum Clients", limit(old.MaxClients), limit(cur.MaxClients))
	add("log folder", old.LogDir, cur.LogDir)
	add("maximum log size", strconv.Itoa(old.LogMaxKB)+" KB", strconv.Itoa(cur.LogMaxKB)+" KB")
	add("server role", old.ServerRole, cur.ServerRole)
	add("peer gateways", strings.Join(old.PeerGateways, ", "), strings.Join(cur.PeerGateways, ", "))
	add("blocking of unencrypted peers", onOff(old.BlockUnencrypted), onOff(cur.BlockUnencrypted))
	add("trusted proxies", strings.Join(old.TrustedProxies, ", "), strings.Join(cur.TrustedProxies, ", "))
	add("certificate source", old.TLSSource, cur.TLSSource)
	add("ACME domains", strings.Join(old.ACMEDomains, ", "), strings.Join(cur.ACMEDomains, ", "))
	add("ACME e-mail", old.ACMEEmail, cur.ACMEEmail)
	add("ACME directory", old.ACMEDirectory, cur.ACMEDirectory)
	return out
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func limit(n int) string {
	if n <= 0 {
		return "unlimited"
	}
	return strconv.Itoa(n)
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// ParsePrefixes parses addresses or CIDR prefixes.
func ParsePrefixes(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, item := range list {
		if !strings.Contains(item, "/") {
			a, err := netip.ParseAddr(item)
			if err != nil {
				return nil, fmt.Errorf("%q is not an address or CIDR prefix", item)
			}
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(item)
		if err != nil {
			return nil, fmt.Errorf("%q is not an address or CIDR prefix", item)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}
