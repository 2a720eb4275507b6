package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/user"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/switchboard/switchboard/internal/peer"
	"github.com/switchboard/switchboard/internal/peer/control"
	"github.com/switchboard/switchboard/internal/peer/control/gateways"
	"github.com/switchboard/switchboard/internal/transport"
	"github.com/switchboard/switchboard/relay/wire"
)

const controlUsage = `Usage:
  switchboard control browse  [NAME] [--gateway URL [--secondary URL] --key KEY] [--user OPERATOR] [--json]
  switchboard control connect [NAME] [--gateway URL [--secondary URL] --key KEY] [--user OPERATOR] CLIENT[/SERVICE] (--listen ADDR | --stdio)
  switchboard control gateways add NAME --gateway URL [--secondary URL] --key KEY [--user OPERATOR] [--description TEXT] [--fingerprint SHA256] [--secondary-fingerprint SHA256]
  switchboard control gateways list | remove NAME

NAME is a gateway remembered with "control gateways add"; without one, give
--gateway and --key. When the gateway has operators, sign in with --user:
the password is asked for (or read from SWITCHBOARD_PASSWORD or
--password-file), then a TOTP code or a Duo Push approval when the gateway
requires one. A successful sign-in is kept for a while in the gateways file
so that the next command does not ask again.

With --secondary (or a remembered gateway's secondary) a primary that cannot
be reached is replaced by the secondary; a primary that refuses the key or
the sign-in is not.`

func (e *cmdEnv) control(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprintln(e.stderr, controlUsage)
		return errUsage
	}
	switch args[0] {
	case "browse":
		return e.controlBrowse(ctx, args[1:])
	case "connect":
		return e.controlConnect(ctx, args[1:])
	case "gateways":
		return e.controlGateways(args[1:])
	case "-h", "--help", "help":
		fmt.Fprintln(e.stdout, controlUsage)
		return nil
	}
	fmt.Fprintf(e.stderr, "unknown control command %q\n%s\n", args[0], controlUsage)
	return errUsage
}

func defaultControlName() string {
	who := "control"
	if u, err := user.Current(); err == nil && u.Username != "" {
		who = u.Username
	}
	host, _ := os.Hostname()
	if host == "" {
		return who
	}
	return who + "@" + host
}

// controlFlags are what browse and connect share: where to go, who signs in.
type controlFlags struct {
	gf           gatewayFlags
	name         string
	user         string
	passwordFile string
	file         string
}

func (c *controlFlags) add(fs *flagSet) {
	c.gf.add(fs)
	fs.StringVar(&c.name, "name", defaultControlName(), "this Control's name, shown in the gateway's events")
	fs.StringVar(&c.user, "user", "", "operator to sign in as, when the gateway has operators")
	fs.StringVar(&c.passwordFile, "password-file", "", "read the operator's password from this file instead of asking")
	fs.StringVar(&c.file, "gateways-file", "", "file of remembered gateways and kept sign-ins (default: the user's config folder)")
}

// build makes the Control: from a remembered gateway when entry is not
// empty (flags given as well override its fields), else from the flags.
func (c *controlFlags) build(fs *flagSet, entry string, p *prompter) (*control.Control, error) {
	// The file is read only when needed, so ad-hoc use with --gateway and
	// --key works on a machine with no config folder.
	var gwFile *gateways.File
	var rememberedKey string
	var err error
	if entry != "" {
		if gwFile, err = c.gatewaysFile(); err != nil {
			return nil, err
		}
		e, ok := gwFile.Lookup(entry)
		if !ok {
			return nil, fmt.Errorf("no remembered gateway called %q in %s (see: switchboard control gateways list)", entry, gwFile.Path())
		}
		rememberedKey = e.Key
		if !fs.isSet("gateway") {
			c.gf.gateway = e.Gateway
		}
		if !fs.isSet("secondary") && !fs.isSet("gateway") {
			c.gf.secondary = e.Secondary
		}
		if !fs.isSet("key") && !fs.isSet("key-file") {
			c.gf.key = e.Key
		}
		if !fs.isSet("user") {
			c.user = e.User
		}
		if !fs.isSet("fingerprint") {
			c.gf.fingerprint = e.Fingerprint
		}
		if !fs.isSet("secondary-fingerprint") && !fs.isSet("secondary") {
			c.gf.secondaryFingerprint = e.SecondaryFingerprint
		}
	}
	d, err := c.gf.dialer("switchboard-control/" + version)
	if err != nil {
		return nil, err
	}
	sec, err := c.gf.secondaryDialer(d)
	if err != nil {
		return nil, err
	}
	ctl := &control.Control{Dialer: d, Secondary: sec, Key: c.gf.key, Name: c.name, Operator: c.user}
	// A remembered gateway keeps its key's ClientKey in the file, so that
	// the next run (connect --stdio runs once per ssh connection) skips
	// the KDF. Not for a --key given on the command line: the file keeps
	// secrets of the gateways it remembers only.
	if gwFile != nil && c.gf.key == rememberedKey {
		ctl.KeyCache = gwFile.KeyCache(c.gf.key, func(err error) {
			fmt.Fprintln(p.out, "warning: the derived gateway key could not be kept:", err)
		})
	}
	if c.user == "" {
		return ctl, nil
	}
	if gwFile == nil {
		if gwFile, err = c.gatewaysFile(); err != nil {
			return nil, err
		}
	}
	ctl.Password = func(ctx context.Context) (string, error) {
		if c.passwordFile != "" {
			b, err := os.ReadFile(c.passwordFile)
			if err != nil {
				return "", fmt.Errorf("--password-file: %w", err)
			}
			return strings.TrimRight(string(b), "\r\n"), nil
		}
		if pw, ok := os.LookupEnv("SWITCHBOARD_PASSWORD"); ok {
			return pw, nil
		}
		return p.ask(ctx, fmt.Sprintf("Password for operator %s at %s: ", c.user, d.Gateway), true)
	}
	ctl.Code = func(ctx context.Context, prompt string) (string, error) {
		return p.ask(ctx, prompt+": ", false)
	}
	ctl.Notify = func(msg string) { fmt.Fprintln(p.out, msg) }
	id := gateways.TokenID(d.Gateway.String(), c.gf.key, c.user)
	if t, ok := gwFile.Token(id); ok {
		ctl.Token = t.Value
	}
	ctl.SaveToken = func(ok wire.AuthOK) {
		if ok.Token == "" {
			gwFile.ForgetToken(id)
		} else {
			gwFile.SetToken(id, gateways.Token{Value: ok.Token, Operator: ok.Operator, Expires: ok.Expires})
		}
		if err := gwFile.Save(); err != nil {
			fmt.Fprintln(p.out, "warning: the sign-in could not be kept:", err)
		}
	}
	return ctl, nil
}

func (c *controlFlags) gatewaysFile() (*gateways.File, error) {
	path := c.file
	if path == "" {
		var err error
		if path, err = gateways.DefaultPath(); err != nil {
			return nil, fmt.Errorf("find the gateways file: %w (give --gateways-file)", err)
		}
	}
	return gateways.Load(path)
}

func (e *cmdEnv) controlBrowse(ctx context.Context, args []string) error {
	fs := newFlagSet("control browse", `Usage: switchboard control browse [NAME] [--gateway URL --key KEY] [--user OPERATOR] [--json]

Lists the Clients connected to the gateway that hold the same key. NAME is a
gateway remembered with "control gateways add".`, e.stderr)
	var cf controlFlags
	cf.add(fs)
	asJSON := fs.Bool("json", false, "print JSON for scripts")
	pos, err := fs.parse(args)
	if err != nil {
		return err
	}
	fs.warnSecretFlags(e.stderr, keySafer)
	if len(pos) > 1 {
		return fmt.Errorf("browse takes at most one remembered gateway NAME (got %q)", pos)
	}
	entry := ""
	if len(pos) == 1 {
		entry = pos[0]
	}
	p := e.newPrompter(false)
	defer p.close()
	c, err := cf.build(fs, entry, p)
	if err != nil {
		return err
	}
	clients, err := c.Browse(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		if clients == nil {
			return enc.Encode([]any{})
		}
		return enc.Encode(clients)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tREAL IP\tPUBLIC IP\tCONNECTED SINCE\tLAST HEARTBEAT\tSERVICES")
	for _, cl := range clients {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", cl.Name, cl.RealIP, cl.PublicIP,
			cl.ConnectedSince.Local().Format(time.DateTime), cl.LastHeartbeat.Local().Format(time.DateTime),
			strings.Join(cl.Services, ","))
	}
	return tw.Flush()
}

func (e *cmdEnv) controlConnect(ctx context.Context, args []string) error {
	fs := newFlagSet("control connect", `Usage: switchboard control connect [NAME] [--gateway URL --key KEY] CLIENT[/SERVICE] (--listen ADDR | --stdio)

Opens sessions to a Client's service. With --listen every connection
accepted on ADDR becomes one session (like ssh -L). With --stdio standard
input and output are the session, for use as an ssh ProxyCommand:

    ssh -o ProxyCommand='switchboard control connect --gateway gw:443 --key K --stdio %h/ssh' user@pc-17

NAME is a gateway remembered with "control gateways add". SERVICE may be
left out when the Client offers exactly one.`, e.stderr)
	var cf controlFlags
	cf.add(fs)
	listen := fs.String("listen", "", "local address to accept connections on, e.g. 127.0.0.1:2222")
	stdio := fs.Bool("stdio", false, "use standard input and output as one session")
	pos, err := fs.parse(args)
	if err != nil {
		return err
	}
	fs.warnSecretFlags(e.stderr, keySafer)
	entry := ""
	switch len(pos) {
	case 1:
	case 2:
		entry, pos = pos[0], pos[1:]
	default:
		return fmt.Errorf("connect needs [NAME] CLIENT[/SERVICE] (got %d arguments)", len(pos))
	}
	if (*listen == "") == !*stdio {
		return fmt.Errorf("give exactly one of --listen ADDR and --stdio")
	}
	p := e.newPrompter(*stdio)
	defer p.close()
	c, err := cf.build(fs, entry, p)
	if err != nil {
		return err
	}
	target := pos[0]
	if *stdio {
		conn, err := c.Connect(ctx, target)
		if err != nil {
			return err
		}
		stdioConn := &stdioConn{in: e.stdin, out: e.stdout}
		stop := context.AfterFunc(ctx, func() { conn.Close() })
		defer stop()
		peer.Pipe(stdioConn, conn)
		return nil
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	fmt.Fprintf(e.stderr, "forwarding %s to %s via %s\n", ln.Addr(), target, c.Dialer.Gateway)
	return c.Forward(ctx, ln, target, func(err error) {
		fmt.Fprintln(e.stderr, "session failed:", err)
	})
}

func (e *cmdEnv) controlGateways(args []string) error {
	fs := newFlagSet("control gateways", `Usage:
  switchboard control gateways add NAME --gateway URL [--secondary URL] --key KEY [--user OPERATOR] [--description TEXT] [--fingerprint SHA256] [--secondary-fingerprint SHA256]
  switchboard control gateways list
  switchboard control gateways remove NAME

Remembers gateways for "control browse NAME" and "control connect NAME ...".
Several entries may share an address with different keys. The file holds
keys and kept sign-ins and is readable by its owner only.`, e.stderr)
	var cf controlFlags
	cf.add(fs)
	desc := fs.String("description", "", "with add: a note shown by list")
	pos, err := fs.parse(args)
	if err != nil {
		return err
	}
	fs.warnSecretFlags(e.stderr, keySafer)
	if len(pos) == 0 {
		fs.Usage()
		return errUsage
	}
	f, err := cf.gatewaysFile()
	if err != nil {
		return err
	}
	switch verb, rest := pos[0], pos[1:]; {
	case verb == "add" && len(rest) == 1:
		if err := cf.gf.resolveKey(); err != nil {
			return err
		}
		if cf.gf.fingerprint != "" {
			fp, err := transport.NormalizeFingerprint(cf.gf.fingerprint)
			if err != nil {
				return fmt.Errorf("--fingerprint: %w", err)
			}
			cf.gf.fingerprint = fp
		}
		if cf.gf.secondary != "" {
			gw, err := peer.ParseGateway(cf.gf.gateway)
			if err != nil {
				return fmt.Errorf("--gateway: %w", err)
			}
			if _, err := cf.gf.secondaryDialer(peer.Dialer{Gateway: gw, Fingerprint: cf.gf.fingerprint}); err != nil {
				return err
			}
		}
		err := f.Add(gateways.Entry{Name: rest[0], Gateway: cf.gf.gateway, Secondary: cf.gf.secondary, Key: cf.gf.key, User: cf.user,
			Description: *desc, Fingerprint: cf.gf.fingerprint, SecondaryFingerprint: normalizedOrEmpty(cf.gf.secondaryFingerprint)})
		if err != nil {
			return err
		}
		if err := f.Save(); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "remembered gateway %s (%s) in %s\n", rest[0], cf.gf.gateway, f.Path())
		return nil
	case verb == "list" && len(rest) == 0:
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tGATEWAY\tSECONDARY\tUSER\tDESCRIPTION")
		for _, g := range f.Entries() {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", g.Name, g.Gateway, g.Secondary, g.User, g.Description)
		}
		return tw.Flush()
	case verb == "remove" && len(rest) == 1:
		if err := f.Remove(rest[0]); err != nil {
			return err
		}
		if err := f.Save(); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "forgot gateway %s\n", rest[0])
		return nil
	}
	fs.Usage()
	return errUsage
}

// stdioConn makes standard input and output one end of a session. Closing
// its write side closes standard output, which is how a ProxyCommand tells
// ssh that the session has ended.
type stdioConn struct {
	in  io.Reader
	out io.Writer
}

func (s *stdioConn) Read(p []byte) (int, error)  { return s.in.Read(p) }
func (s *stdioConn) Write(p []byte) (int, error) { return s.out.Write(p) }

func (s *stdioConn) CloseWrite() error {
	if c, ok := s.out.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

func (s *stdioConn) Close() error {
	if c, ok := s.in.(io.Closer); ok {
		_ = c.Close()
	}
	return s.CloseWrite()
}

// normalizedOrEmpty is a fingerprint in the stored form; one that does not
// parse was refused by secondaryDialer before this is called.
func normalizedOrEmpty(fp string) string {
	if fp == "" {
		return ""
	}
	n, err := transport.NormalizeFingerprint(fp)
	if err != nil {
		return fp
	}
	return n
}
