package main

// The failover measurement: a primary and a secondary `switchboard serve`
// on one PostgreSQL, N Client agents with both addresses, kill -9 of the
// primary, its restart, and sessions through the secondary that must live
// through the fail-back; then a cross-node session against a same-node one.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard/switchboard/internal/peer"
	"github.com/switchboard/switchboard/internal/peer/agent"
	"github.com/switchboard/switchboard/internal/peer/control"
	"github.com/switchboard/switchboard/internal/pg/pgembed"
)

// Node names of the failover pair.
const (
	primaryNode   = "primary-1"
	secondaryNode = "secondary-1"
	crossClient   = "fo-cross"
)

// failoverOpts says how big the failover measurement is.
type failoverOpts struct {
	clients  int           // Client agents with a primary and a secondary
	cycles   int           // kill -9 and restart cycles
	sessions int           // sessions through the secondary kept across the fail-back
	probe    time.Duration // the agents' ProbeInterval
	limit    time.Duration // longest wait for any one phase
	crossMB  int           // MiB sent by each bulk sample of the cross-node comparison
	pings    int           // 1-byte round trips per ping-pong sample
	rounds   int           // interleaved rounds of the cross-node comparison
	rate     int           // bytes per second each kept session sends
}

// failoverResult is what the failover measurement found.
type failoverResult struct {
	Clients         int     `json:"clients"`
	ProbeIntervalMs float64 `json:"probe_interval_ms"`
	// RegisterSeconds is how long the N Clients took to register on the
	// primary at the start (all started at once).
	RegisterSeconds float64 `json:"register_s"`
	// StartState is the secondary's /readyz body, and StartPresenceMs how
	// long a browse through it took to list every Client on the primary,
	// once all had registered at the start.
	StartState      string  `json:"start_state"`
	StartPresenceMs float64 `json:"start_presence_ms"`
	Cycles          int     `json:"cycles"`
	// Per-Client times over every cycle: from kill -9 of the primary to
	// the Client's registration on the secondary, and from the primary's
	// restart (its process started) to the Client's registration there.
	Failover spread `json:"failover_ms"`
	Failback spread `json:"failback_ms"`
	// Sessions opened through the secondary while the Clients were on it,
	// kept streaming through the fail-back (K per cycle); lost is how many
	// did not end byte-exact.
	Sessions        int           `json:"sessions"`
	SessionsLost    int           `json:"sessions_lost"`
	SessionFailures []string      `json:"session_failures,omitempty"`
	PerCycle        []cycleResult `json:"per_cycle"`
	// LogNotes are the gateways' warnings and errors, counted by message.
	LogNotes []string     `json:"log_notes,omitempty"`
	Cross    *crossResult `json:"cross_node,omitempty"`
}

// cycleResult is one kill -9 and restart of the primary.
type cycleResult struct {
	FailoverMaxMs  float64 `json:"failover_all_ms"`
	PrimaryStartMs float64 `json:"primary_start_ms"` // the restarted primary's /healthz
	FailbackMaxMs  float64 `json:"failback_all_ms"`
	// How long after the last agent got there a browse through the
	// secondary listed every Client on the node the agents reported
	// (presence in PostgreSQL); -1: not within the wait.
	PresenceSecondaryMs float64 `json:"presence_secondary_ms"`
	PresencePrimaryMs   float64 `json:"presence_primary_ms"`
	// The secondary's /readyz body with the Clients on it, and after they left.
	StateOnSecondary string  `json:"state_on_secondary"`
	StateAfter       string  `json:"state_after"`
	Sessions         int     `json:"sessions"`
	SessionsLost     int     `json:"sessions_lost"`
	SessionMiB       float64 `json:"session_mib_each_way"`
	SessionSeconds   float64 `json:"session_s"`
}

// spread is a distribution of per-Client times in milliseconds.
type spread struct {
	P50 float64 `json:"p50"`
	P95 float64 `json:"p95"`
	Max float64 `json:"max"`
	// Missing Clients never got there within the phase's limit.
	Missing int `json:"missing,omitempty"`
}

func spreadOf(ds []time.Duration, missing int) spread {
	slices.Sort(ds)
	ms := func(q float64) float64 {
		if len(ds) == 0 {
			return 0
		}
		i := int(float64(len(ds))*q+0.999999) - 1
		return float64(ds[min(max(i, 0), len(ds)-1)].Microseconds()) / 1e3
	}
	return spread{P50: ms(0.50), P95: ms(0.95), Max: ms(1), Missing: missing}
}

// crossResult compares, through one node, sessions to a Client on that
// node and to Clients on the other node, medians of interleaved rounds.
type crossResult struct {
	BulkMiB int          `json:"bulk_mib"`
	Paths   []*crossPath `json:"paths"`
}

// crossPath is one kind of session of the comparison.
type crossPath struct {
	Name string `json:"name"`
	// Hops says how the bytes go.
	Hops    string  `json:"hops"`
	Error   string  `json:"error,omitempty"`
	MBs     float64 `json:"bulk_mb_s"`
	PingP50 float64 `json:"ping_p50_us"`
	PingP99 float64 `json:"ping_p99_us"`
	// Sessions is how many sessions the path's samples opened; DialsToA is
	// how many times its Client dialled node A for one (refused, for the
	// relayed path): the proof of the path the bytes took.
	Sessions int   `json:"sessions"`
	DialsToA int64 `json:"dials_to_a"`
	samples  [3][]float64
	dialsToA atomic.Int64
}

// fleet is the in-process Client agents and where each one is.
type fleet struct {
	agents []*agent.Agent
	names  []string
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// startFleet runs n agents named fo-0000, ... with primary and secondary.
func startFleet(ctx context.Context, n int, primary, secondary peer.Dialer, services map[string]string, probe time.Duration) (*fleet, error) {
	ctx, cancel := context.WithCancel(ctx)
	f := &fleet{cancel: cancel}
	for i := range n {
		sec := secondary
		a, err := agent.New(agent.Config{
			Dialer: primary, Secondary: &sec, Key: benchKey, Name: fmt.Sprintf("fo-%04d", i),
			Services: services, Version: "bench", ProbeInterval: probe,
		})
		if err != nil {
			f.Stop()
			return nil, err
		}
		f.agents = append(f.agents, a)
		f.names = append(f.names, fmt.Sprintf("fo-%04d", i))
	}
	for _, a := range f.agents {
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			_ = a.Run(ctx)
		}()
	}
	return f, nil
}

// Stop ends every agent and waits for them.
func (f *fleet) Stop() {
	f.cancel()
	f.wg.Wait()
}

// waitAll polls the agents until each is registered with gw and returns,
// per agent, the time from t0 until it first was (agents never there
// within limit are counted as missing).
func (f *fleet) waitAll(ctx context.Context, gw string, t0 time.Time, limit time.Duration) ([]time.Duration, int, error) {
	at := make([]time.Duration, len(f.agents))
	left := len(f.agents)
	deadline := time.NewTimer(limit - time.Since(t0))
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		now := time.Since(t0)
		for i, a := range f.agents {
			if at[i] == 0 && a.Gateway() == gw {
				at[i] = now
				left--
			}
		}
		if left == 0 {
			return at, 0, nil
		}
		select {
		case <-ctx.Done():
			return nil, left, ctx.Err()
		case <-deadline.C:
			var got []time.Duration
			for _, d := range at {
				if d > 0 {
					got = append(got, d)
				}
			}
			return got, left, nil
		case <-tick.C:
		}
	}
}

// runFailover is the whole failover measurement.
func runFailover(ctx context.Context, o options, dir string, rep *report) (err error) {
	fo := o.failover
	res := &failoverResult{Clients: fo.clients, ProbeIntervalMs: float64(fo.probe.Milliseconds())}
	rep.Failover = res
	// Last, once every gateway has stopped: what their logs warned of.
	defer func() {
		for _, n := range []string{primaryNode, secondaryNode} {
			paths, _ := filepath.Glob(filepath.Join(dir, "gateway-"+n+"*.log"))
			res.LogNotes = append(res.LogNotes, logNotes(n, paths)...)
		}
	}()

	logf("failover: starting PostgreSQL")
	pgDir := filepath.Join(dir, "pg")
	pg, err := pgembed.Start(ctx, pgDir, nil)
	if err != nil {
		return fmt.Errorf("failover: PostgreSQL: %w", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if serr := pg.Stop(sctx); serr != nil {
			err = errors.Join(err, fmt.Errorf("failover: stop PostgreSQL: %w", serr))
		}
	}()

	pData, err := os.MkdirTemp(dir, "primary-data-")
	if err != nil {
		return err
	}
	sData, err := os.MkdirTemp(dir, "secondary-data-")
	if err != nil {
		return err
	}
	for _, d := range []string{pData, sData} {
		if err := os.Chmod(d, 0o755); err != nil {
			return err
		}
	}
	pAddr, err := freePort()
	if err != nil {
		return err
	}
	sAddr, err := freePort()
	if err != nil {
		return err
	}
	node := func(name, role, data, addr string, extra ...string) gatewayOpts {
		return gatewayOpts{bin: o.bin, key: benchKey, cmpi: 60, dataDir: data, addr: addr,
			extra: append([]string{"--database-url", pg.URL(), "--no-tls", "--node", name, "--role", role,
				"--advertise", "http://" + addr, "--shutdown-grace", "2s"}, extra...)}
	}
	primaryOpts := node(primaryNode, "primary", pData, pAddr)

	logf("failover: starting the primary %s and the secondary %s", primaryNode, secondaryNode)
	prim, err := startGateway(ctx, dir, "gateway-"+primaryNode, primaryOpts)
	if err != nil {
		return err
	}
	// prim changes at the restart; the deferred stop takes the one running.
	defer func() {
		if prim != nil {
			err = errors.Join(err, prim.Stop(stopGrace))
		}
	}()
	// The first start made the secrets key; every node of a cluster
	// needs the same one.
	sec, err := startGateway(ctx, dir, "gateway-"+secondaryNode,
		node(secondaryNode, "secondary", sData, sAddr, "--secrets-key-file", filepath.Join(pData, "secrets.key")))
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, sec.Stop(stopGrace)) }()

	tg, err := startTargets()
	if err != nil {
		return err
	}
	defer tg.Close()

	pd, sd := plainDialer(pAddr), plainDialer(sAddr)
	pGW, sGW := pd.Gateway.String(), sd.Gateway.String()

	// Every Client on the primary first.
	logf("failover: %d Clients registering on the primary", fo.clients)
	t0 := time.Now()
	fl, err := startFleet(ctx, fo.clients, pd, sd, tg.addrs(), fo.probe)
	if err != nil {
		return err
	}
	defer fl.Stop()
	at, missing, err := fl.waitAll(ctx, pGW, t0, 2*fo.limit)
	if err != nil {
		return err
	}
	if missing > 0 {
		return fmt.Errorf("failover: %d of %d Clients did not register on the primary within %s", missing, fo.clients, 2*fo.limit)
	}
	res.RegisterSeconds = slices.Max(at).Seconds()
	logf("failover: all %d on the primary after %.1f s", fo.clients, res.RegisterSeconds)
	sctl := &control.Control{Dialer: sd, Key: benchKey, Name: "bench-failover"}
	pctl := &control.Control{Dialer: pd, Key: benchKey, Name: "bench-failover"}
	res.StartPresenceMs = presenceAgrees(ctx, sctl, fl.names, primaryNode, 10*time.Second)
	res.StartState = readyState(ctx, sAddr, "standby", 5*time.Second)

	var failover, failback []time.Duration
	var foMissing, fbMissing int
	for c := range max(fo.cycles, 1) {
		cy, fo1, fb1, err := cycle(ctx, fo, c, fl, sctl, sAddr, pGW, sGW, func() error {
			err := prim.Kill()
			prim = nil
			return err
		}, func() error {
			var err error
			prim, err = startGateway(ctx, dir, fmt.Sprintf("gateway-%s-restart-%d", primaryNode, c+1), primaryOpts)
			return err
		})
		failover, failback = append(failover, fo1...), append(failback, fb1...)
		if fo1 != nil {
			foMissing += fo.clients - len(fo1)
		}
		if fb1 != nil {
			fbMissing += fo.clients - len(fb1)
		}
		if cy != nil {
			res.PerCycle = append(res.PerCycle, *cy)
			res.Sessions += cy.Sessions
			res.SessionsLost += cy.SessionsLost
		}
		res.Cycles = len(res.PerCycle)
		res.Failover, res.Failback = spreadOf(slices.Clone(failover), foMissing), spreadOf(slices.Clone(failback), fbMissing)
		if err != nil {
			var lost *sessionsLost
			if errors.As(err, &lost) {
				res.SessionFailures = append(res.SessionFailures, lost.failures...)
				continue
			}
			return err
		}
	}

	// Then cross-node sessions against a same-node one.
	res.Cross = crossNode(ctx, fo, sd, pAddr, pctl, fl.names[0], tg.addrs())
	return nil
}

// sessionsLost is a cycle's sessions that did not live through the
// fail-back: a figure, not a reason to stop.
type sessionsLost struct{ failures []string }

func (e *sessionsLost) Error() string { return strings.Join(e.failures, "; ") }

// cycle kills the primary, waits for every Client on the secondary, opens
// sessions through the secondary, restarts the primary, waits for every
// Client back and checks that the sessions lived through it. It returns the
// cycle's figures (nil when it could not finish) and the per-Client times.
func cycle(ctx context.Context, fo failoverOpts, c int, fl *fleet, sctl *control.Control, sAddr, pGW, sGW string,
	kill, restart func() error) (*cycleResult, []time.Duration, []time.Duration, error) {
	cy := &cycleResult{}
	n := len(fl.agents)

	logf("failover: cycle %d: kill -9 of the primary", c+1)
	t0 := time.Now()
	if err := kill(); err != nil {
		return nil, nil, nil, err
	}
	onSec, missing, err := fl.waitAll(ctx, sGW, t0, fo.limit)
	if err != nil {
		return nil, nil, nil, err
	}
	if missing > 0 {
		return nil, onSec, nil, fmt.Errorf("failover: %d of %d Clients not on the secondary within %s", missing, n, fo.limit)
	}
	cy.FailoverMaxMs = ms(slices.Max(onSec))
	logf("failover: cycle %d: all %d on the secondary after %.0f ms", c+1, n, cy.FailoverMaxMs)
	cy.PresenceSecondaryMs = presenceAgrees(ctx, sctl, fl.names, secondaryNode, 20*time.Second)
	cy.StateOnSecondary = readyState(ctx, sAddr, "active", 5*time.Second)

	// Sessions through the secondary, streaming through the fail-back,
	// each to another Client.
	k := min(fo.sessions, n)
	sessCtx, stopSess := context.WithCancel(ctx)
	defer stopSess()
	var streams []*stream
	var names []string
	defer func() {
		for _, s := range streams {
			s.abort()
		}
	}()
	for i := range k {
		name := fl.names[(c*k+i)%n]
		conn, err := sctl.Connect(ctx, name+"/"+svcEcho)
		if err != nil {
			return nil, onSec, nil, fmt.Errorf("failover: session to %s through the secondary: %w", name, err)
		}
		streams = append(streams, startStream(sessCtx, conn, fo.rate, uint64(c*k+i)))
		names = append(names, name)
	}
	sessStart := time.Now()
	// Let them run a little on the secondary alone.
	if err := sleepCtx(ctx, time.Second); err != nil {
		return nil, onSec, nil, err
	}

	logf("failover: cycle %d: restarting the primary", c+1)
	t0 = time.Now()
	if err := restart(); err != nil {
		return nil, onSec, nil, err
	}
	cy.PrimaryStartMs = ms(time.Since(t0))
	back, missing, err := fl.waitAll(ctx, pGW, t0, fo.limit)
	if err != nil {
		return nil, onSec, back, err
	}
	if missing > 0 {
		return nil, onSec, back, fmt.Errorf("failover: %d of %d Clients not back on the primary within %s", missing, n, fo.limit)
	}
	cy.FailbackMaxMs = ms(slices.Max(back))
	logf("failover: cycle %d: all %d back on the primary after %.0f ms (its /healthz after %.0f ms)", c+1, n, cy.FailbackMaxMs, cy.PrimaryStartMs)
	cy.PresencePrimaryMs = presenceAgrees(ctx, sctl, fl.names, primaryNode, 20*time.Second)
	cy.StateAfter = readyState(ctx, sAddr, "standby", 10*time.Second)

	// The sessions must still flow after the fail-back: each receives more
	// echoed bytes after it than it had, then ends byte-exact.
	mark := make([]int64, len(streams))
	for i, s := range streams {
		mark[i] = s.recv.Load()
	}
	if err := sleepCtx(ctx, 2*time.Second); err != nil {
		return nil, onSec, back, err
	}
	var sent int64
	var lost []string
	for i, s := range streams {
		if s.recv.Load() <= mark[i] && s.failure() == nil {
			s.fail(errors.New("no echoed bytes for 2 s after the fail-back"))
		}
		if err := s.finish(15 * time.Second); err != nil {
			lost = append(lost, fmt.Sprintf("cycle %d, %s: %v", c+1, names[i], err))
		}
		sent += s.sent.Load()
	}
	cy.Sessions, cy.SessionsLost = len(streams), len(lost)
	cy.SessionSeconds = time.Since(sessStart).Seconds()
	if len(streams) > 0 {
		cy.SessionMiB = float64(sent) / float64(len(streams)) / (1 << 20)
	}
	logf("failover: cycle %d: %d of %d sessions lost at the fail-back", c+1, cy.SessionsLost, cy.Sessions)
	if len(lost) > 0 {
		return cy, onSec, back, &sessionsLost{failures: lost}
	}
	return cy, onSec, back, nil
}

// logNotes counts the WARN and ERROR lines of a node's logs (slog text)
// by level, message and error, most frequent first.
func logNotes(node string, paths []string) []string {
	counts := map[string]int{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			level := ""
			for _, l := range []string{"WARN", "ERROR"} {
				if strings.Contains(line, " level="+l+" ") {
					level = l
				}
			}
			if level == "" {
				continue
			}
			key := level + " " + logField(line, "msg")
			if e := logField(line, "err"); e != "" {
				key += ": " + e
			}
			counts[key]++
		}
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		if c := counts[b] - counts[a]; c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		out = append(out, fmt.Sprintf("%s: %d× %s", node, counts[k], k))
	}
	return out
}

// logField is the value of key=... in a slog text line, unquoted.
func logField(line, key string) string {
	i := strings.Index(line, " "+key+"=")
	if i < 0 {
		return ""
	}
	v := line[i+len(key)+2:]
	if strings.HasPrefix(v, `"`) {
		if u, err := strconv.QuotedPrefix(v); err == nil {
			if s, err := strconv.Unquote(u); err == nil {
				return s
			}
		}
		return v
	}
	if j := strings.IndexByte(v, ' '); j >= 0 {
		v = v[:j]
	}
	return v
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1e3 }

// plainDialer reaches a plain-HTTP gateway at addr.
func plainDialer(addr string) peer.Dialer {
	return peer.Dialer{Gateway: peer.Gateway{Host: addr}, UserAgent: "switchboard-bench"}
}

// The kinds of session of the cross-node comparison.
const (
	pathSameNode     = "same-node"
	pathCrossNode    = "cross-node"
	pathCrossRelayed = "cross-node-relayed"
	relayedClient    = "fo-cross-relayed"
)

// crossNode measures, through the primary (node A), sessions to a Client
// the primary holds, to one the secondary (node B) holds that can dial A
// (its accept connection goes to A: no extra hop), and to one on B that
// cannot reach A (B relays over the node-to-node link: one extra hop). The
// last one's dialer refuses A's address as a firewall would, through the
// Dialer's Proxy hook, which the agent keeps for the nodes an Open names.
func crossNode(ctx context.Context, fo failoverOpts, secondary peer.Dialer, primaryAddr string, pctl *control.Control, sameClient string, services map[string]string) *crossResult {
	cr := &crossResult{BulkMiB: fo.crossMB}
	same := &crossPath{Name: pathSameNode, Hops: "Control → A → Client"}
	direct := &crossPath{Name: pathCrossNode, Hops: "Control → A → Client on B (accept dialled to A)"}
	relayed := &crossPath{Name: pathCrossRelayed, Hops: "Control → A → B → Client on B (it cannot reach A)"}
	cr.Paths = []*crossPath{same, direct, relayed}
	logf("failover: cross-node sessions (Control on %s, Clients %s and %s on %s)", primaryNode, crossClient, relayedClient, secondaryNode)

	actx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	// Both count their dials to A, through the Dialer's Proxy hook (no
	// proxy is used); the fenced one refuses them.
	open := secondary
	open.Proxy = func(g peer.Gateway) (*url.URL, error) {
		if g.Host == primaryAddr {
			direct.dialsToA.Add(1)
		}
		return nil, nil
	}
	fenced := secondary
	fenced.Proxy = func(g peer.Gateway) (*url.URL, error) {
		if g.Host == primaryAddr {
			relayed.dialsToA.Add(1)
			return nil, fmt.Errorf("switchboard-bench: %s is fenced off from %s", relayedClient, primaryNode)
		}
		return nil, nil
	}
	agents := map[*crossPath]*agent.Agent{}
	for _, c := range []struct {
		p    *crossPath
		name string
		d    peer.Dialer
	}{{direct, crossClient, open}, {relayed, relayedClient, fenced}} {
		a, err := agent.New(agent.Config{Dialer: c.d, Key: benchKey, Name: c.name, Services: services, Version: "bench"})
		if err != nil {
			c.p.Error = err.Error()
			continue
		}
		agents[c.p] = a
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = a.Run(actx)
		}()
	}
	clients := map[*crossPath]string{same: sameClient, direct: crossClient, relayed: relayedClient}
	var paths []path
	for _, cp := range cr.Paths {
		if cp.Error != "" {
			continue
		}
		if cp != same {
			// Listed by the primary, with the node that holds it.
			if err := waitListed(ctx, pctl, clients[cp], secondaryNode, 20*time.Second); err != nil {
				cp.Error = err.Error()
				logf("failover: %s: %v", cp.Name, err)
				continue
			}
			if gw := agents[cp].Gateway(); gw != secondary.Gateway.String() {
				cp.Error = fmt.Sprintf("the Client given only the secondary's address is registered with %q", gw)
				continue
			}
		}
		paths = append(paths, relayPath(cp.Name, pctl, clients[cp]))
	}
	byName := func(name string) *crossPath {
		for _, cp := range cr.Paths {
			if cp.Name == name {
				return cp
			}
		}
		return nil
	}
	for r := range fo.rounds {
		logf("failover: cross-node round %d of %d", r+1, fo.rounds)
		for _, p := range paths {
			cp := byName(p.Name)
			if cp.Error != "" {
				continue
			}
			v, err := bulk(ctx, p, 1, int64(fo.crossMB)<<20)
			var l latency
			if err == nil {
				l, err = pingPong(ctx, p, fo.pings, fo.pings/10, 1)
			}
			if err != nil {
				cp.Error = err.Error()
				logf("failover: %s: %v", cp.Name, err)
				continue
			}
			cp.Sessions += 2
			cp.samples[0] = append(cp.samples[0], v)
			cp.samples[1] = append(cp.samples[1], l.P50)
			cp.samples[2] = append(cp.samples[2], l.P99)
		}
	}
	for cp, a := range agents {
		if gw := a.Gateway(); cp.Error == "" && gw != secondary.Gateway.String() {
			cp.Error = fmt.Sprintf("the Client moved to %q during the measurement", gw)
		}
	}
	for _, cp := range cr.Paths {
		cp.DialsToA = cp.dialsToA.Load()
		if cp.Error == "" {
			cp.MBs, cp.PingP50, cp.PingP99 = median(cp.samples[0]), median(cp.samples[1]), median(cp.samples[2])
		}
	}
	return cr
}

// waitListed waits until a browse through ctl lists name on node.
func waitListed(ctx context.Context, ctl *control.Control, name, node string, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	var last string
	for {
		list, err := ctl.Browse(ctx)
		last = fmt.Sprint(err)
		for _, c := range list {
			if c.Name == name {
				if c.Node == node {
					return nil
				}
				last = "listed on node " + c.Node
			}
		}
		if err == nil && last == "<nil>" {
			last = "not listed"
		}
		if sleepCtx(ctx, 100*time.Millisecond) != nil {
			return fmt.Errorf("%s does not list Client %s on node %s within %s (last: %s)", ctl.Dialer.Gateway, name, node, limit, last)
		}
	}
}

// presenceAgrees waits until a browse through ctl lists every one of names
// on node, and returns how long that took in milliseconds, or -1 when it
// did not within limit.
func presenceAgrees(ctx context.Context, ctl *control.Control, names []string, node string, limit time.Duration) float64 {
	t0 := time.Now()
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	want := make(map[string]bool, len(names))
	for _, n := range names {
		want[n] = true
	}
	for {
		list, err := ctl.Browse(ctx)
		if err == nil {
			n := 0
			for _, c := range list {
				if want[c.Name] && c.Node == node {
					n++
				}
			}
			if n == len(names) {
				return float64(time.Since(t0).Microseconds()) / 1e3
			}
		}
		if sleepCtx(ctx, 100*time.Millisecond) != nil {
			return -1
		}
	}
}

// readyState polls the gateway's /readyz until its body names want, and
// returns the last body (trimmed) either way.
func readyState(ctx context.Context, addr, want string, limit time.Duration) string {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	// No keep-alive: nothing of this client outlives the call.
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	last := ""
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/readyz", nil)
		if resp, err := hc.Do(req); err == nil {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
			resp.Body.Close()
			last = strings.TrimSpace(string(b))
			if strings.Contains(last, want) {
				return last
			}
		} else if last == "" {
			last = err.Error()
		}
		if sleepCtx(ctx, 100*time.Millisecond) != nil {
			return last
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// patternSize is the period of a stream's bytes: not a power of two, so
// that a chunk lost or repeated anywhere shows as a mismatch.
const patternSize = 65521

// stream is one session to the echo service that sends a pseudo-random
// byte pattern at a steady rate and checks every echoed byte.
type stream struct {
	conn       net.Conn
	pattern    []byte
	sent, recv atomic.Int64
	stopWrite  chan struct{}
	wrote      chan struct{} // the writer ended (closed or half-closed)
	read       chan struct{} // the reader ended
	stopOnce   sync.Once
	mu         sync.Mutex
	err        error
	release    func() bool
}

func startStream(ctx context.Context, c net.Conn, rate int, seed uint64) *stream {
	s := &stream{conn: c, pattern: make([]byte, patternSize), stopWrite: make(chan struct{}),
		wrote: make(chan struct{}), read: make(chan struct{})}
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	for i := range s.pattern {
		s.pattern[i] = byte(r.Uint32())
	}
	s.release = context.AfterFunc(ctx, func() { c.Close() })
	go s.write(rate)
	go s.readBack()
	return s
}

// write sends rate bytes a second in 10 ms slices until stopWrite, then
// half-closes.
func (s *stream) write(rate int) {
	defer close(s.wrote)
	per := max(rate/100, 1)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-s.stopWrite:
			if err := closeWrite(s.conn); err != nil {
				s.fail(fmt.Errorf("half-close: %w", err))
			}
			return
		case <-tick.C:
		}
		for left := per; left > 0; {
			off := int(s.sent.Load() % patternSize)
			n := min(left, patternSize-off)
			_ = s.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
			k, err := s.conn.Write(s.pattern[off : off+n])
			s.sent.Add(int64(k))
			if err != nil {
				s.fail(fmt.Errorf("write after %d bytes: %w", s.sent.Load(), err))
				return
			}
			left -= k
		}
	}
}

// readBack reads the echo until EOF and checks it against the pattern.
func (s *stream) readBack() {
	defer close(s.read)
	buf := make([]byte, 32<<10)
	for {
		n, err := s.conn.Read(buf)
		for b := buf[:n]; len(b) > 0; {
			off := int(s.recv.Load() % patternSize)
			k := min(len(b), patternSize-off)
			if !bytes.Equal(b[:k], s.pattern[off:off+k]) {
				s.fail(fmt.Errorf("echoed bytes differ from those sent near byte %d", s.recv.Load()))
				s.conn.Close()
				return
			}
			s.recv.Add(int64(k))
			b = b[k:]
		}
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			s.fail(fmt.Errorf("read after %d bytes: %w", s.recv.Load(), err))
			return
		}
	}
}

func (s *stream) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = err
	}
}

func (s *stream) failure() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// finish stops sending, waits up to limit for the echo of every byte sent
// and the service's EOF, and closes the session; it returns why the
// session was not byte-exact, if it was not.
func (s *stream) finish(limit time.Duration) error {
	s.stopOnce.Do(func() { close(s.stopWrite) })
	_ = s.conn.SetReadDeadline(time.Now().Add(limit))
	<-s.wrote
	<-s.read
	s.release()
	s.conn.Close()
	if err := s.failure(); err != nil {
		return err
	}
	if sent, recv := s.sent.Load(), s.recv.Load(); sent != recv {
		return fmt.Errorf("sent %d bytes, %d echoed", sent, recv)
	}
	return nil
}

// abort closes the session at once and waits for its goroutines.
func (s *stream) abort() {
	s.stopOnce.Do(func() { close(s.stopWrite) })
	s.conn.Close()
	<-s.wrote
	<-s.read
	s.release()
}
