package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/switchboard/switchboard/db"
	"github.com/switchboard/switchboard/event"
	"github.com/switchboard/switchboard/eventlog"
	"github.com/switchboard/switchboard/handlers"
	"github.com/switchboard/switchboard/metrics"
	"github.com/switchboard/switchboard/relay"
)

// serveConfig is everything `switchboard serve` is told at start.
type serveConfig struct {
	store       storeFlags
	listen      []string
	gatewayKeys []string
	tlsCert     string
	tlsKey      string
	maxClients  int
	cmpi        time.Duration
	logDir      string
	logMaxKB    int
	node        string
	grace       time.Duration
	logJSON     bool
	metrics     []netip.Prefix
	// keyPoll is how often stored keys are compared with the running set.
	// Half a second keeps "within a second" true at a negligible query rate.
	keyPoll time.Duration
}

func (e *cmdEnv) serve(ctx context.Context, args []string) error {
	fs := newFlagSet("serve", `Usage: switchboard serve [--listen ADDR]... [--database-url URL] [--data-dir DIR] [--gateway-key KEY]... [--tls-cert F --tls-key F]

Runs a gateway: the relay endpoint for Clients and Controls on every listen
address. Without --database-url it runs a private PostgreSQL in the data dir.
No Client or Control is admitted until a gateway key exists (--gateway-key
here, or switchboard keys add).`, e.stderr)
	var cfg serveConfig
	cfg.store.add(fs)
	var listen, keys listFlag
	fs.Var(&listen, "listen", "address to listen on, IP:PORT or :PORT (repeatable; default :443, all interfaces)")
	fs.Var(&keys, "gateway-key", "a gateway key to add at start, at least 8 characters (repeatable)")
	fs.StringVar(&cfg.tlsCert, "tls-cert", "", "PEM certificate (chain) file for https")
	fs.StringVar(&cfg.tlsKey, "tls-key", "", "PEM private key file for https")
	fs.IntVar(&cfg.maxClients, "max-clients", 0, "licensed maximum of concurrent Clients; 0 is unlimited")
	cmpi := fs.Int("cmpi", 60, "Comms Management Packet Interval: seconds between a Client's heartbeats")
	fs.StringVar(&cfg.logDir, "log-dir", "", "folder of the GW001.log, GW002.log, ... event logs (default DATA-DIR/logs)")
	fs.IntVar(&cfg.logMaxKB, "log-max-kb", 1000, "maximum size of one event log file in KB")
	host, _ := os.Hostname()
	fs.StringVar(&cfg.node, "node", host, "this gateway node's name in events")
	fs.DurationVar(&cfg.grace, "shutdown-grace", 10*time.Second, "how long sessions may go on after a stop is asked for")
	fs.BoolVar(&cfg.logJSON, "log-json", false, "log as JSON instead of text")
	metricsAllow := fs.String("metrics-allow", "127.0.0.0/8,::1/128", "addresses or CIDR prefixes allowed to read /metrics; empty disables /metrics")
	pos, err := fs.parse(args)
	if err != nil {
		return err
	}
	if cfg.metrics, err = metrics.ParseAllow(*metricsAllow); err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("serve takes no arguments (got %q)", pos)
	}
	cfg.listen, cfg.gatewayKeys = listen, keys
	if len(cfg.listen) == 0 {
		cfg.listen = []string{":443"}
	}
	if *cmpi < 1 {
		return fmt.Errorf("--cmpi must be at least 1 second")
	}
	cfg.cmpi = time.Duration(*cmpi) * time.Second
	if (cfg.tlsCert == "") != (cfg.tlsKey == "") {
		return fmt.Errorf("--tls-cert and --tls-key go together")
	}
	log := newLogger(e.stderr, cfg.logJSON)
	g, err := startGateway(ctx, cfg, log)
	if err != nil {
		return err
	}
	for _, a := range g.addrs {
		fmt.Fprintf(e.stderr, "gateway listening on %s\n", a)
	}
	if !g.relay.HasKeys() {
		fmt.Fprintln(e.stderr, "no gateway key is configured: Clients and Controls are refused until one is added with `switchboard keys add KEY`")
	}
	return g.wait(ctx)
}

// gateway is a running `serve`.
type gateway struct {
	cfg     serveConfig
	log     *slog.Logger
	relay   *relay.Server
	events  *eventlog.Log
	servers []*http.Server
	addrs   []net.Addr

	store      *lateStore
	closeStore func()
	stopPoll   context.CancelFunc
	stopEvents context.CancelFunc
	eventsDone chan struct{}
	bg         sync.WaitGroup
	serveErr   chan error
}

// startGateway brings a gateway up: event log, database, relay, listeners.
// On failure everything started so far is stopped again.
func startGateway(ctx context.Context, cfg serveConfig, log *slog.Logger) (g *gateway, err error) {
	if cfg.logDir == "" {
		cfg.logDir = filepath.Join(cfg.store.dataDir, "logs")
	}
	if cfg.keyPoll == 0 {
		cfg.keyPoll = 500 * time.Millisecond
	}
	if err := os.MkdirAll(cfg.store.dataDir, 0o755); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	store := &lateStore{}
	events, err := eventlog.New(eventlog.Config{
		Dir: cfg.logDir, MaxKB: cfg.logMaxKB, Store: store, Node: cfg.node, Logger: log,
		SpoolPath: filepath.Join(cfg.store.dataDir, "events.spool"),
	})
	if err != nil {
		return nil, err
	}
	g = &gateway{cfg: cfg, log: log, events: events, store: store, eventsDone: make(chan struct{}), serveErr: make(chan error, len(cfg.listen))}
	evCtx, stopEvents := context.WithCancel(context.WithoutCancel(ctx))
	g.stopEvents = stopEvents
	go func() {
		defer close(g.eventsDone)
		if err := events.Run(evCtx); err != nil {
			log.Error("event log", "err", err)
		}
	}()
	defer func() {
		if err != nil {
			events.Emit(event.FailedToStart())
			g.shutdown()
		}
	}()

	events.Emit(event.Running(product, version, runtime.GOOS+"/"+runtime.GOARCH))
	st, closeStore, err := cfg.store.open(ctx, log)
	if err != nil {
		return g, err
	}
	g.closeStore = closeStore
	store.db.Store(st)
	salt, err := keySalt(ctx, st)
	if err != nil {
		return g, err
	}
	for _, k := range cfg.gatewayKeys {
		if _, _, err := addKey(ctx, st, salt, k, "from --gateway-key"); err != nil {
			return g, fmt.Errorf("--gateway-key: %w", err)
		}
	}
	keys, err := st.Keys(ctx)
	if err != nil {
		return g, err
	}
	var m *metrics.Metrics
	var sink event.Sink = events
	if len(cfg.metrics) > 0 {
		m = metrics.New(metrics.Sources{
			Relay: func() relay.Stats { return g.relay.Stats() }, EventsPending: events.Pending, EventsWritten: events.Written,
		})
		sink = m.Sink(events)
	}
	g.relay = relay.New(relay.Config{
		Node: cfg.node, Salt: salt, MaxClients: cfg.maxClients, CMPI: cfg.cmpi,
		Events: sink, Logger: log,
	})
	g.relay.SetKeys(relayKeys(keys))
	if len(keys) == 0 {
		events.Emit(event.NoKeys())
	}

	var tlsCfg *tls.Config
	if cfg.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.tlsCert, cfg.tlsKey)
		if err != nil {
			return g, fmt.Errorf("load TLS certificate: %w", err)
		}
		// Only HTTP/1.1: the relay's Upgrade does not exist in HTTP/2.
		tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}, MinVersion: tls.VersionTLS12}
	}
	h := &handlers.Handlers{Relay: g.relay, Logger: log, Ready: g.ready}
	if m != nil {
		h.Metrics = m.Handler(cfg.metrics)
	}
	routes := h.Routes()
	var lns []net.Listener
	for _, addr := range cfg.listen {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			events.Emit(event.FailedToBind(portOf(addr)))
			for _, l := range lns {
				l.Close()
			}
			return g, fmt.Errorf("failed to bind to listening port %d (%s): %w", portOf(addr), addr, err)
		}
		lns = append(lns, ln)
	}
	for _, ln := range lns {
		srv := &http.Server{
			Handler: routes,
			// Slow clients must not hold a connection open before they have
			// even sent their headers (slowloris); relay connections are
			// hijacked and then governed by the relay's own deadlines.
			ReadHeaderTimeout: 10 * time.Second,
			// Idle keep-alive connections of the console cost little but
			// should not live forever.
			IdleTimeout:    2 * time.Minute,
			MaxHeaderBytes: 64 << 10,
			BaseContext:    func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
			ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelDebug),
			// A non-nil empty map disables HTTP/2, which has no Upgrade.
			TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
			TLSConfig:    tlsCfg,
		}
		g.servers = append(g.servers, srv)
		g.addrs = append(g.addrs, ln.Addr())
		events.Emit(event.Listening(ln.Addr().(*net.TCPAddr).Port))
		g.bg.Add(1)
		go func() {
			defer g.bg.Done()
			var err error
			if tlsCfg != nil {
				err = srv.ServeTLS(ln, "", "")
			} else {
				err = srv.Serve(ln)
			}
			if err != nil && !errors.Is(err, http.ErrServerClosed) {
				g.serveErr <- fmt.Errorf("serve %s: %w", ln.Addr(), err)
			}
		}()
	}
	events.Emit(event.GatewayStarted(cfg.maxClients))

	pollCtx, stopPoll := context.WithCancel(context.WithoutCancel(ctx))
	g.bg.Add(1)
	go func() {
		defer g.bg.Done()
		g.pollKeys(pollCtx)
	}()
	g.stopPoll = stopPoll
	return g, nil
}

func portOf(addr string) int {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(p)
	return n
}

// pollKeys applies keys added or removed by other processes (keys add, the
// console, another node) to the running relay.
func (g *gateway) pollKeys(ctx context.Context) {
	t := time.NewTicker(g.cfg.keyPoll)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		keys, err := g.storeDB().Keys(ctx)
		if err != nil {
			// The relay keeps its last known keys while the database is away.
			if !failing && ctx.Err() == nil {
				g.log.Warn("cannot read gateway keys; keeping the current ones", "err", err)
			}
			failing = true
			continue
		}
		if failing {
			g.log.Info("gateway keys readable again")
			failing = false
		}
		if g.relay.SetKeys(relayKeys(keys)) {
			g.events.Emit(event.ReloadingKeys())
			if len(keys) == 0 {
				g.events.Emit(event.NoKeys())
			}
		}
	}
}

func (g *gateway) storeDB() *db.DB { return g.store.db.Load() }

// ready is true while the gateway listens: with the database away it still
// relays, and its events wait in the queue and spool.
func (g *gateway) ready(ctx context.Context) error {
	if g.relay.Closed() {
		return errors.New("gateway is stopping")
	}
	return nil
}

// wait runs until ctx is done or a listener fails, then stops the gateway.
func (g *gateway) wait(ctx context.Context) error {
	var err error
	select {
	case <-ctx.Done():
	case err = <-g.serveErr:
	}
	g.shutdown()
	return err
}

// shutdown stops accepting, lets sessions finish within the grace period,
// writes the stop event and flushes the event log.
func (g *gateway) shutdown() {
	if g.stopPoll != nil {
		g.stopPoll()
	}
	if g.relay != nil {
		graceCtx, cancel := context.WithTimeout(context.Background(), g.cfg.grace)
		var wg sync.WaitGroup
		for _, srv := range g.servers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = srv.Shutdown(graceCtx)
			}()
		}
		g.relay.Shutdown(graceCtx)
		wg.Wait()
		cancel()
		for _, srv := range g.servers {
			srv.Close()
		}
		waitCtx, cancelWait := context.WithTimeout(context.Background(), 5*time.Second)
		if err := g.relay.Wait(waitCtx); err != nil {
			g.log.Warn("stopping", "err", err)
		}
		cancelWait()
		if len(g.servers) > 0 {
			g.events.Emit(event.GatewayStopped())
		}
	}
	g.bg.Wait()
	g.stopEvents()
	<-g.eventsDone
	if g.closeStore != nil {
		g.closeStore()
	}
}
