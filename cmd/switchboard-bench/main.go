// Command switchboard-bench measures how close a Switchboard gateway comes
// to a plain TCP forwarder, and what idle Clients cost it.
//
// In one process tree on loopback it starts an echo and a sink service, a
// plain forwarder in front of them (io.Copy both ways: splice(2) on Linux),
// real gateways (`switchboard serve`, plain HTTP and TLS, each with its
// embedded PostgreSQL) and a Client agent process per gateway offering both
// services. Through every path it measures, the same way and interleaved
// over several rounds, bulk throughput (one and eight streams), 64-byte
// ping-pong latency and session set-up time, and prints the medians with
// their ratio to the forwarder next to the project's targets. Then it
// connects N idle Clients to a fresh gateway and reports the gateway's
// memory, goroutines and heartbeat CPU per Client.
//
// The failover part (failover.go) runs a primary and a secondary gateway on
// one PostgreSQL with N in-process Client agents given both, kills the
// primary with SIGKILL, restarts it, and reports how long the Clients took
// to reach the secondary and to come back, whether sessions opened through
// the secondary lived through the fail-back, and what a cross-node session
// costs against a same-node one.
//
//	go run ./cmd/switchboard-bench [--rounds 5] [--clients 10000] [--json]
//	go run ./cmd/switchboard-bench --only failover [--failover-clients 1000]
//
// Benchmarks print figures; nothing here asserts a time.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

type options struct {
	rounds      int
	bulkMB      int
	parallelMB  int
	streams     int
	pings       int
	msgSize     int
	sessions    int
	only        string
	setupGap    time.Duration
	warmClients int

	clients   int
	workers   int
	hbEvery   time.Duration
	cpuWindow time.Duration
	settle    time.Duration

	failover failoverOpts

	bin     string
	keepDir bool
	json    bool
}

func main() {
	if target := os.Getenv(forwardEnv); target != "" {
		if err := serveForwarder(target); err != nil {
			fmt.Fprintln(os.Stderr, "switchboard-bench forwarder:", err)
			os.Exit(1)
		}
		return
	}
	var o options
	flag.IntVar(&o.rounds, "rounds", 5, "interleaved rounds over every path; 0 skips the path measurements")
	flag.IntVar(&o.bulkMB, "bulk-mb", 256, "MiB sent to the sink by the single-stream bulk test")
	flag.IntVar(&o.parallelMB, "parallel-mb", 64, "MiB sent to the sink by each stream of the parallel bulk test")
	flag.IntVar(&o.streams, "streams", 8, "streams of the parallel bulk test")
	flag.IntVar(&o.pings, "pings", 5000, "ping-pong round trips per path and round")
	flag.IntVar(&o.msgSize, "msg-size", 64, "ping-pong message size in bytes")
	flag.IntVar(&o.sessions, "sessions", 100, "sessions opened per path and round by the set-up test, paced and then back to back")
	flag.DurationVar(&o.setupGap, "setup-gap", 20*time.Millisecond, "pause before each paced session of the set-up test, in which warm connections refill")
	flag.StringVar(&o.only, "only", "bulk,pingpong,setup,oneshot,bridge,failover,idle", "parts to run (comma-separated): the path measurements bulk, pingpong, setup and oneshot; bridge (the console's desktop WebSocket against a Control); failover; idle")
	flag.IntVar(&o.clients, "clients", 10000, "idle Clients to connect to a fresh gateway; 0 skips the idle test")
	flag.IntVar(&o.warmClients, "warm-clients", 1000, "of the idle Clients, how many then open a standby connection (as after a session), to measure a warm Client's cost; 0 skips it")
	flag.IntVar(&o.workers, "connect-workers", 64, "idle Clients connecting at once")
	flag.DurationVar(&o.hbEvery, "hb-every", 5*time.Second, "heartbeat interval of idle Clients during the CPU window")
	flag.DurationVar(&o.cpuWindow, "cpu-window", 20*time.Second, "length of each idle CPU window")
	flag.DurationVar(&o.settle, "settle", 120*time.Second, "longest wait for the gateway to settle after the idle Clients connect")
	flag.IntVar(&o.failover.clients, "failover-clients", 1000, "Clients of the failover test (with a primary and a secondary); 0 skips it")
	flag.IntVar(&o.failover.cycles, "failover-cycles", 3, "kill -9 and restart cycles of the primary")
	flag.IntVar(&o.failover.sessions, "failover-sessions", 8, "sessions through the secondary kept streaming across the fail-back")
	flag.IntVar(&o.failover.rate, "failover-session-rate", 4<<20, "bytes per second each of those sessions sends (and gets echoed)")
	flag.DurationVar(&o.failover.probe, "probe-interval", 2*time.Second, "how often a Client on the secondary probes the primary (agent ProbeInterval)")
	flag.DurationVar(&o.failover.limit, "failover-limit", 60*time.Second, "longest wait for all Clients to fail over, or back")
	flag.IntVar(&o.failover.crossMB, "cross-mb", 256, "MiB sent by each bulk sample of the cross-node session comparison")
	flag.IntVar(&o.failover.pings, "cross-pings", 2000, "1-byte round trips per ping-pong sample of the cross-node comparison")
	flag.IntVar(&o.failover.rounds, "cross-rounds", 5, "interleaved rounds of the cross-node comparison")
	flag.StringVar(&o.bin, "switchboard", "", "switchboard binary to run (default: go build ./cmd/switchboard)")
	flag.BoolVar(&o.keepDir, "keep", false, "keep the temporary directory (gateway logs, data dirs)")
	flag.BoolVar(&o.json, "json", false, "print the figures as JSON")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := run(ctx, o)
	if rep != nil {
		if o.json {
			err = errors.Join(err, rep.writeJSON(os.Stdout))
		} else {
			rep.writeTable(os.Stdout)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "switchboard-bench:", err)
		os.Exit(1)
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

func run(ctx context.Context, o options) (*report, error) {
	only := map[string]bool{}
	for _, m := range strings.Split(o.only, ",") {
		switch m = strings.TrimSpace(m); m {
		case "bulk", "pingpong", "setup", "oneshot", "failover", "idle", "bridge":
			only[m] = true
		case "":
		default:
			return nil, fmt.Errorf("--only: unknown part %q (the parts: bulk, pingpong, setup, oneshot, failover, idle, bridge)", m)
		}
	}
	if !only["idle"] {
		o.clients = 0
	}
	if !only["failover"] {
		o.failover.clients = 0
	}
	// Each idle Client is one socket here and one in the gateway; each
	// failover Client is one here (two while it probes) and one in a gateway.
	sockets := max(o.clients, 2*o.failover.clients)
	nofile, err := raiseNoFile(uint64(sockets) + 4096)
	if err != nil {
		return nil, err
	}
	if sockets+1024 > int(nofile) {
		return nil, fmt.Errorf("--clients %d and --failover-clients %d need about %d open files per process, but RLIMIT_NOFILE is %d here (raise the hard limit)",
			o.clients, o.failover.clients, sockets+1024, nofile)
	}
	dir, err := os.MkdirTemp("", "switchboard-bench-")
	if err != nil {
		return nil, fmt.Errorf("temporary directory: %w", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, fmt.Errorf("temporary directory: %w", err)
	}
	if o.keepDir {
		logf("keeping %s", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	if o.bin == "" {
		logf("building switchboard")
		if o.bin, err = buildSwitchboard(ctx, dir); err != nil {
			return nil, err
		}
	}
	rep := newReport(o, nofile)
	if o.rounds > 0 && (only["bulk"] || only["pingpong"] || only["setup"] || only["oneshot"]) {
		if err := runPaths(ctx, o, dir, only, rep); err != nil {
			return rep, err
		}
	}
	if only["bridge"] {
		if err := runBridge(ctx, o, dir, rep); err != nil {
			return rep, err
		}
	}
	if o.failover.clients > 0 {
		if err := runFailover(ctx, o, dir, rep); err != nil {
			return rep, err
		}
	}
	if o.clients > 0 {
		if err := runIdle(ctx, o, dir, rep); err != nil {
			return rep, err
		}
	}
	return rep, nil
}
