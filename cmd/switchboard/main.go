// Command switchboard is the one binary of Switchboard: the gateway (serve),
// the Client agent (client), the Control (control) and the administration
// commands (keys, ...).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

const product = "Switchboard"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) && !errors.Is(err, errUsage) {
			fmt.Fprintln(os.Stderr, "switchboard:", err)
		}
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		os.Exit(1)
	}
}

// errUsage means the usage text was already printed.
var errUsage = errors.New("usage")

const usage = `Switchboard relays remote-control sessions between Controls and Clients
that both connect outbound to a gateway.

Usage:
  switchboard serve     [flags]                 run a gateway
  switchboard keys      add KEY | list | remove KEY
  switchboard operators add NAME [--admin] | list | passwd NAME | disable NAME | ...
  switchboard client    [flags]                 run the Client agent
  switchboard control   browse  [flags]
  switchboard control   connect [flags] CLIENT[/SERVICE] (--listen ADDR | --stdio)
  switchboard version

Every command explains its flags with --help. Every flag can also be set by
an environment variable: --gateway-key is SWITCHBOARD_GATEWAY_KEY.
`

// run is the whole program, callable from tests with its own streams.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	env := &cmdEnv{stdin: stdin, stdout: stdout, stderr: stderr}
	switch args[0] {
	case "serve":
		return env.serve(ctx, args[1:])
	case "keys":
		return env.keys(ctx, args[1:])
	case "operators":
		return env.operators(ctx, args[1:])
	case "client":
		return env.client(ctx, args[1:])
	case "control":
		return env.control(ctx, args[1:])
	case "version", "--version", "-version":
		fmt.Fprintf(stdout, "%s %s\n", product, version)
		return nil
	case "help", "-h", "--help", "-help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprintf(stderr, "unknown command %q\n\n%s", args[0], usage)
	return errUsage
}

// cmdEnv carries a run's standard streams to the commands.
type cmdEnv struct {
	stdin          io.Reader
	stdout, stderr io.Writer
}
