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

	"github.com/switchboard/switchboard/control"
	"github.com/switchboard/switchboard/relay/peer"
)

const controlUsage = `Usage:
  switchboard control browse  --gateway URL --key KEY [--json]
  switchboard control connect --gateway URL --key KEY CLIENT[/SERVICE] (--listen ADDR | --stdio)`

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

func (e *cmdEnv) controlBrowse(ctx context.Context, args []string) error {
	fs := newFlagSet("control browse", `Usage: switchboard control browse --gateway URL --key KEY [--json]

Lists the Clients connected to the gateway that hold the same key.`, e.stderr)
	var gf gatewayFlags
	gf.add(fs)
	name := fs.String("name", defaultControlName(), "this Control's name, shown in the gateway's events")
	asJSON := fs.Bool("json", false, "print JSON for scripts")
	pos, err := fs.parse(args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("browse takes no arguments (got %q)", pos)
	}
	d, err := gf.dialer("switchboard-control/" + version)
	if err != nil {
		return err
	}
	c := &control.Control{Dialer: d, Key: gf.key, Name: *name}
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
	fs := newFlagSet("control connect", `Usage: switchboard control connect --gateway URL --key KEY CLIENT[/SERVICE] (--listen ADDR | --stdio)

Opens sessions to a Client's service. With --listen every connection
accepted on ADDR becomes one session (like ssh -L). With --stdio standard
input and output are the session, for use as an ssh ProxyCommand:

    ssh -o ProxyCommand='switchboard control connect --gateway gw:443 --key K --stdio %h/ssh' user@pc-17

SERVICE may be left out when the Client offers exactly one.`, e.stderr)
	var gf gatewayFlags
	gf.add(fs)
	name := fs.String("name", defaultControlName(), "this Control's name, shown in the gateway's events")
	listen := fs.String("listen", "", "local address to accept connections on, e.g. 127.0.0.1:2222")
	stdio := fs.Bool("stdio", false, "use standard input and output as one session")
	pos, err := fs.parse(args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("connect needs exactly one CLIENT[/SERVICE] (got %d)", len(pos))
	}
	if (*listen == "") == !*stdio {
		return fmt.Errorf("give exactly one of --listen ADDR and --stdio")
	}
	d, err := gf.dialer("switchboard-control/" + version)
	if err != nil {
		return err
	}
	c := &control.Control{Dialer: d, Key: gf.key, Name: *name}
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
	fmt.Fprintf(e.stderr, "forwarding %s to %s via %s\n", ln.Addr(), target, d.Gateway)
	return c.Forward(ctx, ln, target, func(err error) {
		fmt.Fprintln(e.stderr, "session failed:", err)
	})
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
