package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/switchboard/switchboard/internal/peer/control"
)

// benchKey is the gateway key of every bench gateway, Client and Control.
const benchKey = "switchboard-bench-key"

// benchClient is the name of the Client agent offering echo and sink.
const benchClient = "bench"

// stopGrace bounds the wait for a child process after SIGTERM.
const stopGrace = 30 * time.Second

// runPaths starts the services, forwarders, gateways and agents, measures
// every path in interleaved rounds and stops everything again.
func runPaths(ctx context.Context, o options, dir string, only map[string]bool, rep *report) (err error) {
	tg, err := startTargets()
	if err != nil {
		return err
	}
	defer tg.Close()
	fwd, err := startForwarders(tg.addrs(), 1, pipeHalf)
	if err != nil {
		return err
	}
	defer fwd.Close()
	fwdRW, err := startForwarders(tg.addrs(), 1, readWriteHalf)
	if err != nil {
		return err
	}
	defer fwdRW.Close()
	fwd2, err := startForwarders(tg.addrs(), 2, pipeHalf)
	if err != nil {
		return err
	}
	defer fwd2.Close()
	fwd2p, err := startProcForwarders(tg.addrs(), 2)
	if err != nil {
		return err
	}
	defer fwd2p.Close()
	cert, err := makeCert(dir)
	if err != nil {
		return err
	}
	fwdTLS, err := startProcForwardersTLS(tg.addrs(), cert)
	if err != nil {
		return err
	}
	defer fwdTLS.Close()

	paths := []path{
		tcpPath("forwarder", false, fwd.front),
		tcpPath("forwarder-rw32k", true, fwdRW.front),
		tcpPath("forwarder-2hop", true, fwd2.front),
		procPath(tcpPath(floorHTTP, true, fwd2p.front), fwd2p, ""),
		procPath(tlsPath(floorTLS, true, fwdTLS.front, cert), fwdTLS, ""),
	}
	var relays []relayGateway
	for _, gw := range []struct {
		name  string
		cert  *benchCert
		floor string
	}{{"relay-http", nil, floorHTTP}, {"relay-tls", cert, floorTLS}} {
		logf("starting gateway %s", gw.name)
		g, err := startGateway(ctx, dir, "gateway-"+gw.name, gatewayOpts{bin: o.bin, key: benchKey, cmpi: 60, cert: gw.cert})
		if err != nil {
			return err
		}
		defer func() { err = errors.Join(err, g.Stop(stopGrace)) }()
		ca := ""
		if gw.cert != nil {
			ca = gw.cert.certFile
		}
		ag, err := startAgent(dir, "agent-"+gw.name, o.bin, g, benchKey, benchClient, tg.addrs(), ca)
		if err != nil {
			return err
		}
		// Stops before its gateway (defers run last-in first-out).
		defer func() { err = errors.Join(err, ag.Stop(stopGrace)) }()
		ctl := &control.Control{Dialer: g.Dialer(), Key: benchKey, Name: "bench-control"}
		if err := waitClient(ctx, ctl, benchClient, 30*time.Second); err != nil {
			return fmt.Errorf("%s: %w (agent log %s)", gw.name, err, ag.log.Name())
		}
		p := relayPath(gw.name, ctl, benchClient)
		p.Floor, p.GatewayPID, p.AgentPID = gw.floor, g.PID(), ag.PID()
		if only["setup"] {
			// Set-up as a user sees it: a Control of its own (as the
			// `control connect --listen` process is) serving a local
			// listener with Forward; its ClientKey derived beforehand.
			fctl := &control.Control{Dialer: g.Dialer(), Key: benchKey, Name: "bench-listen"}
			if err := waitClient(ctx, fctl, benchClient, 30*time.Second); err != nil {
				return fmt.Errorf("%s: %w", gw.name, err)
			}
			lf, err := startListenForward(ctx, fctl, benchClient+"/"+svcEcho)
			if err != nil {
				return err
			}
			// Stops before the agent and the gateway.
			defer func() { err = errors.Join(err, lf.Close()) }()
			p.SetupDial, p.SetupErr = lf.Dial, lf.Err
		}
		paths = append(paths, p)
		relays = append(relays, relayGateway{name: gw.name, g: g, ca: ca})
	}
	for _, p := range paths {
		rep.addPath(p)
	}

	// The CPU time of the processes in the gateway's and the agent's
	// places over both bulk tests of a round, per path.
	cpu := map[string]*cpuUse{}
	bulkBytes := int64(o.bulkMB) << 20
	parBytes := int64(o.parallelMB) << 20
	steps := []struct {
		group string
		run   func(p path) error
	}{
		{"bulk", func(p path) error {
			cpu[p.Name] = &cpuUse{}
			v, err := cpu[p.Name].around(p, bulkBytes, func() (float64, error) { return bulk(ctx, p, 1, bulkBytes) })
			if err == nil {
				rep.sample(p.Name, mBulk1, v)
			}
			return err
		}},
		{"bulk", func(p path) error {
			u := cpu[p.Name]
			v, err := u.around(p, int64(o.streams)*parBytes, func() (float64, error) { return bulk(ctx, p, o.streams, parBytes) })
			if err == nil {
				rep.sample(p.Name, mBulkN, v)
				if p.GatewayPID != 0 {
					rep.sample(p.Name, mGatewayCPU, u.gateway.Seconds()/(float64(u.bytes)/1e9))
					rep.sample(p.Name, mAgentCPU, u.agent.Seconds()/(float64(u.bytes)/1e9))
				}
			}
			return err
		}},
		{"pingpong", func(p path) error {
			l, err := pingPong(ctx, p, o.pings, o.pings/10, o.msgSize)
			if err == nil {
				rep.sample(p.Name, mPingP50, l.P50)
				rep.sample(p.Name, mPingP99, l.P99)
			}
			return err
		}},
		{"setup", func(p path) error {
			// Paced, as a person's (or a script's) sessions come: the warm
			// connections refill between them.
			l, err := setup(ctx, p, o.sessions, o.setupGap)
			if err != nil {
				return err
			}
			rep.sample(p.Name, mSetupP50, l.P50)
			rep.sample(p.Name, mSetupP99, l.P99)
			// Back to back: faster than the refills, so mostly cold.
			l, err = setup(ctx, p, o.sessions, 0)
			if err == nil {
				rep.sample(p.Name, mSetupBurstP50, l.P50)
			}
			return err
		}},
	}
	for r := range o.rounds {
		logf("round %d of %d", r+1, o.rounds)
		if only["oneshot"] {
			if err := oneshotRound(ctx, o.bin, dir, relays, rep); err != nil {
				return err
			}
		}
		for _, s := range steps {
			if !only[s.group] {
				continue
			}
			// Interleaved: every path once per step and round.
			for _, p := range paths {
				if err := s.run(p); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// Same-shape floors: two forwarder processes, as the gateway and the
// Client agent are, plain and over TLS.
const (
	floorHTTP = "forwarder-2proc"
	floorTLS  = "forwarder-tls-2proc"
)

// cpuUse sums the CPU time of a path's gateway and agent processes over
// the bulk tests of a round.
type cpuUse struct {
	gateway, agent time.Duration
	bytes          int64
}

// around runs a bulk test of n bytes, adding the CPU time p's processes
// spent meanwhile (their sessions' set-up included, a few ms at most).
func (u *cpuUse) around(p path, n int64, run func() (float64, error)) (float64, error) {
	if p.GatewayPID == 0 {
		return run()
	}
	g0, err1 := cpuTime(p.GatewayPID)
	a0, err2 := cpuTime(p.AgentPID)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	v, err := run()
	if err != nil {
		return 0, err
	}
	g1, err1 := cpuTime(p.GatewayPID)
	a1, err2 := cpuTime(p.AgentPID)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	u.gateway += g1 - g0
	u.agent += a1 - a0
	u.bytes += n
	return v, nil
}

// relayGateway is a gateway of the path measurements, for oneshot.
type relayGateway struct {
	name string
	g    *gateway
	ca   string // the CA file of its certificate, "" for plain http
	file string // a gateways file remembering it, made on first use
}

// oneshotRound times each one-shot command oneshotRuns times.
func oneshotRound(ctx context.Context, bin, dir string, relays []relayGateway, rep *report) error {
	for range oneshotRuns {
		d, err := oneshotBare(ctx, bin)
		if err != nil {
			return err
		}
		rep.addOneshot("switchboard version (bare start)", d)
		for i := range relays {
			r := &relays[i]
			d, err := oneshotStdio(ctx, bin, r.g, r.ca, "")
			if err != nil {
				return err
			}
			rep.addOneshot("control connect --stdio, "+r.name+", --key", d)
			if r.file == "" {
				if r.file, err = remember(ctx, bin, dir, r.g, r.ca); err != nil {
					return err
				}
			}
			if d, err = oneshotStdio(ctx, bin, r.g, r.ca, r.file); err != nil {
				return err
			}
			rep.addOneshot("control connect --stdio, "+r.name+", remembered", d)
		}
	}
	return nil
}

// waitClient waits until a browse with ctl's key lists the Client name.
func waitClient(ctx context.Context, ctl *control.Control, name string, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	var last error
	for {
		list, err := ctl.Browse(ctx)
		last = err
		for _, c := range list {
			if c.Name == name {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("Client %q did not register: %w (last browse: %v)", name, ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// runIdle measures idle Clients on a gateway of their own, so that nothing
// left over from the path measurements counts in its memory.
func runIdle(ctx context.Context, o options, dir string, rep *report) (err error) {
	logf("starting gateway for %d idle Clients", o.clients)
	g, err := startGateway(ctx, dir, "gateway-idle", gatewayOpts{bin: o.bin, key: benchKey, cmpi: 60})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, g.Stop(stopGrace)) }()
	// Let the fresh gateway finish starting (first key poll, first events).
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(3 * time.Second):
	}
	res, err := measureIdle(ctx, g, idleOpts{
		clients: o.clients, workers: o.workers, key: benchKey, warm: o.warmClients,
		window: o.cpuWindow, hbEvery: o.hbEvery, settle: o.settle, logf: logf,
	})
	if err != nil {
		return fmt.Errorf("idle Clients: %w", err)
	}
	rep.Idle = &res
	return nil
}
