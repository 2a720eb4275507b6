package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alexedwards/scs/pgxstore"
	"github.com/alexedwards/scs/v2"

	"github.com/switchboard/switchboard/db"
	"github.com/switchboard/switchboard/handlers"
	"github.com/switchboard/switchboard/internal/audit/event"
	"github.com/switchboard/switchboard/internal/audit/eventlog"
	"github.com/switchboard/switchboard/internal/auth/signin"
	"github.com/switchboard/switchboard/internal/config"
	"github.com/switchboard/switchboard/internal/metrics"
	"github.com/switchboard/switchboard/internal/transport"
	"github.com/switchboard/switchboard/relay"
	"github.com/switchboard/switchboard/static"
	"github.com/switchboard/switchboard/web"
)

// Gateway is one running gateway node.
type Gateway struct {
	cfg    Config
	log    *slog.Logger
	relay  *relay.Server
	events *eventlog.Log
	store  *lateStore
	routes http.Handler
	tls    *tls.Config
	certs  *transport.Manager // nil with --no-tls
	// certSource is the certificate source last applied from settings.
	certSource string
	security   atomic.Pointer[handlers.Security]

	mu      sync.Mutex
	servers []*http.Server
	addrs   []net.Addr
	runtime config.Config // as last applied

	closeStore   func()
	stopPoll     context.CancelFunc
	stopEvents   context.CancelFunc
	shutdownOnce sync.Once
	stopping     chan struct{}
	sessionStore *pgxstore.PostgresStore
	node         *nodeReg   // this node's row in the node registry (nodes.go)
	presence     *presence  // this node's Clients in the presence table (presence.go)
	placer       *placer    // where Clients belong among the nodes (placement.go)
	lease        leaseWatch // whether the lease is renewed (outage.go)
	peers        *peers     // links to the other nodes (nodelink.go)
	eventsDone   chan struct{}
	bg           sync.WaitGroup
	serveErr     chan error
}

// Start brings a gateway up: database, event log, relay, listeners. On
// failure everything started so far is stopped again, and the failure is
// still recorded (in the log files and the spool, if not the database).
func Start(ctx context.Context, cfg Config) (_ *Gateway, err error) {
	cfg = cfg.withDefaults()
	log := cfg.Logger
	if err := CheckRole(cfg.Role); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	g := &Gateway{cfg: cfg, log: log, store: &lateStore{}, stopping: make(chan struct{}),
		eventsDone: make(chan struct{}), serveErr: make(chan error, 16)}
	// Events before the event log exists wait here: its folder is part of
	// the stored configuration.
	early := []event.Event{event.Running(cfg.Product, cfg.Version, runtime.GOOS+"/"+runtime.GOARCH)}
	defer func() {
		if err != nil {
			if g.events == nil {
				if startErr := g.startEvents(ctx, cfg.LogDir, cfg.LogMaxKB, early); startErr != nil {
					log.Error("event log", "err", startErr)
				}
			}
			if g.events != nil {
				g.events.Emit(event.FailedToStart())
			}
			g.Shutdown()
		}
	}()

	st, closeStore, err := cfg.Store.Open(ctx, log)
	if err != nil {
		return nil, err
	}
	g.closeStore = closeStore
	g.store.db.Store(st)
	// TOTP secrets and the Duo secret key are sealed with a key kept out of the database.
	if err := signin.ProtectSecrets(ctx, st, cfg.SecretsKeyFile, cfg.DataDir, log); err != nil {
		return nil, err
	}
	// Before anything that stores settings or acts for this node name
	// (closePreviousRun): a refused start changes nothing.
	if err := g.checkClock(ctx, st); err != nil {
		return nil, err
	}
	if err := g.claimNode(ctx, st); err != nil {
		return nil, err
	}
	g.presence = newPresence(g)
	g.placer = newPlacer(g)
	if g.peers, err = newPeers(ctx, g, st); err != nil {
		return nil, err
	}
	if n, err := st.DeleteNodePresence(ctx, cfg.Node); err != nil {
		return nil, err
	} else if n > 0 {
		log.Info("presence: removed the Clients the previous run of this node left listed", "clients", n)
	}
	rc, stored, err := g.loadNodeConfig(ctx, st)
	if err != nil {
		return nil, err
	}
	g.runtime = stored
	if err := g.startEvents(ctx, rc.LogDir, rc.LogMaxKB, early); err != nil {
		return nil, err
	}
	salt, err := KeySalt(ctx, st)
	if err != nil {
		return nil, err
	}
	for _, k := range cfg.GatewayKeys {
		if _, _, err := AddKey(ctx, st, salt, k, "from --gateway-key"); err != nil {
			return nil, fmt.Errorf("--gateway-key: %w", err)
		}
	}
	keys, err := loadKeys(ctx, st, log) // converts version 1 keys first
	if err != nil {
		return nil, err
	}
	var m *metrics.Metrics
	// Repeats of one refusal fold into one event (event.Folder); metrics
	// count every one.
	folder := event.NewFolder(g.events, 0)
	var sink event.Sink = folder
	if len(cfg.MetricsAllow) > 0 {
		m = metrics.New(metrics.Sources{
			Relay: func() relay.Stats { return g.relay.Stats() }, EventsPending: g.events.Pending, EventsWritten: g.events.Written,
			EventsQuarantined: g.events.Quarantined, EventsDropped: g.events.Dropped,
			Standby: func() bool { return g.nodeState() == "standby" },
		})
		sink = m.Sink(folder)
	}
	duoRoots, err := cfg.duoRoots()
	if err != nil {
		return nil, err
	}
	nodeSink := event.SinkFunc(func(e event.Event) {
		if e.Node == "" {
			e.Node = cfg.Node
		}
		sink.Emit(e)
	})
	signins := signin.New(signin.Config{Store: st, Events: nodeSink, Logger: log, DuoRoots: duoRoots})
	// What admits Controls, in memory before anyone is admitted: it admits them through a database outage.
	if err := signins.Load(ctx); err != nil {
		return nil, err
	}
	g.relay = relay.New(relay.Config{
		Node: cfg.Node, Salt: salt, MaxClients: rc.MaxClients, CMPI: rc.CMPI,
		Events: sink, Logger: log, Auth: signins, Presence: g.presence, Directory: g.presence, Cluster: g.presence,
		Peers: g.peers, Placer: g.placer,
	})
	g.relay.SetKeys(relayKeys(keys))
	if len(keys) == 0 {
		g.events.Emit(event.NoKeys())
	}
	g.closePreviousRun(ctx, st)
	if err := g.setupTLS(ctx, rc); err != nil {
		return nil, err
	}
	if err := g.applySecurity(rc); err != nil {
		return nil, err
	}
	assets, err := static.New()
	if err != nil {
		return nil, err
	}
	// Interval 0: pgxstore's own cleanup goroutine races with its
	// StopCleanup; poll deletes expired sessions instead.
	g.sessionStore = pgxstore.NewWithCleanupInterval(st.Pool(), 0)
	sessions := scs.New()
	sessions.Store = g.sessionStore
	sessions.Lifetime = 12 * time.Hour      // absolute: sign in again every working day
	sessions.IdleTimeout = 30 * time.Minute // an unattended console signs itself out
	sessions.Cookie.Name = "switchboard_console"
	sessions.Cookie.HttpOnly = true
	sessions.Cookie.SameSite = http.SameSiteLaxMode
	// Browsers drop Secure cookies on plain http (but for localhost), so
	// the flag follows whether the gateway serves https.
	sessions.Cookie.Secure = g.tls != nil
	h := &handlers.Handlers{Relay: g.relay, Logger: log, Ready: g.ready, State: g.nodeState, Static: assets, Events: sink,
		NodeLink: g.peers, Node: cfg.Node,
		Security: func() handlers.Security { return *g.security.Load() },
		Console: &handlers.Console{
			Relay: g.relay, Store: st, Config: runtimeStore{st, cfg.runtimeConfig()}, Sessions: sessions, Events: nodeSink,
			Signin: signins, Cluster: g.peers,
			Remote: st, Connector: g.relay, RecordDir: g.recordDir(),
			Asset: assets.URL, Logger: log, Stopping: g.stopping, HTTPS: g.tls != nil,
			Certificate: g.certificateInfo,
			AddKey: func(ctx context.Context, key, label string) (string, bool, error) {
				return AddKey(ctx, st, salt, key, label)
			},
		}}
	if m != nil {
		h.Metrics = m.Handler(cfg.MetricsAllow)
	}
	if g.certs != nil {
		h.Console.UseCertificate = g.certs.Upload
	}
	if n, err := handlers.RecoverRecordings(ctx, st, g.recordDir()); err != nil {
		log.Warn("cannot store the terminal recordings an earlier run left", "dir", g.recordDir(), "err", err)
	} else if n > 0 {
		log.Info("stored terminal recordings an earlier run left unfinished", "recordings", n)
	}
	g.routes = h.Routes()
	if err := g.listen(rc.Listen); err != nil {
		return nil, err
	}
	g.events.Emit(event.GatewayStarted(rc.MaxClients))
	g.presence.start(ctx)
	g.joinNode(ctx)
	g.placer.start(ctx)

	pollCtx, stopPoll := context.WithCancel(context.WithoutCancel(ctx))
	g.stopPoll = stopPoll
	g.bg.Add(1)
	go func() {
		defer g.bg.Done()
		g.poll(pollCtx)
	}()
	g.bg.Add(1)
	go func() {
		defer g.bg.Done()
		signins.Run(pollCtx)
	}()
	g.bg.Add(1)
	go func() {
		defer g.bg.Done()
		folder.Run(pollCtx)
	}()
	g.bg.Add(1)
	go func() {
		defer g.bg.Done()
		g.peers.checkAdvertise(pollCtx)
	}()
	return g, nil
}

// startEvents starts the event log and emits the events that waited.
func (g *Gateway) startEvents(ctx context.Context, dir string, maxKB int, early []event.Event) error {
	events, err := eventlog.New(eventlog.Config{
		Dir: dir, MaxKB: maxKB, Store: g.store, Node: g.cfg.Node, Logger: g.log,
		SpoolPath: filepath.Join(g.cfg.DataDir, "events.spool"),
	})
	if err != nil {
		return err
	}
	g.events = events
	evCtx, stopEvents := context.WithCancel(context.WithoutCancel(ctx))
	g.stopEvents = stopEvents
	go func() {
		defer close(g.eventsDone)
		if err := events.Run(evCtx); err != nil {
			g.log.Error("event log", "err", err)
		}
	}()
	for _, e := range early {
		events.Emit(e)
	}
	return nil
}

// loadRuntimeConfig reads the stored configuration. What was given
// explicitly at start (flag or environment) wins and is stored, so the
// console shows what runs; everything else keeps the stored value, so a
// change made in the console survives a restart. On the first start the
// flags' defaults seed the store.
func loadRuntimeConfig(ctx context.Context, st *db.DB, flags config.Config, explicit func(flag string) bool) (config.Config, error) {
	rows, err := st.Settings(ctx, config.Names)
	if err != nil {
		return config.Config{}, err
	}
	cur, err := config.FromRows(flags, rows)
	if err != nil {
		return config.Config{}, err
	}
	if explicit == nil {
		explicit = func(string) bool { return true }
	}
	if explicit("listen") {
		cur.Listen = flags.Listen
	}
	if explicit("role") {
		cur.ServerRole = flags.ServerRole
	}
	if explicit("cmpi") {
		cur.CMPI = flags.CMPI
	}
	if explicit("max-clients") {
		cur.MaxClients = flags.MaxClients
	}
	if explicit("log-dir") {
		cur.LogDir = flags.LogDir
	}
	if explicit("log-max-kb") {
		cur.LogMaxKB = flags.LogMaxKB
	}
	if explicit("block-unencrypted") {
		cur.BlockUnencrypted = flags.BlockUnencrypted
	}
	if explicit("trusted-proxy") {
		cur.TrustedProxies = flags.TrustedProxies
	}
	if explicit("acme-domain") && len(flags.ACMEDomains) > 0 {
		cur.TLSSource, cur.ACMEDomains = transport.SourceACME, flags.ACMEDomains
	}
	if explicit("acme-email") {
		cur.ACMEEmail = flags.ACMEEmail
	}
	if explicit("acme-directory") || cur.ACMEDirectory == "" {
		cur.ACMEDirectory = flags.ACMEDirectory
	}
	if err := cur.Validate(); err != nil {
		return config.Config{}, fmt.Errorf("configuration: %w", err)
	}
	if !maps.Equal(cur.Rows(), rows) {
		if err := st.SetSettings(ctx, cur.Rows()); err != nil {
			return config.Config{}, err
		}
	}
	return cur, nil
}

// runtimeStore is the console's view of the stored configuration.
type runtimeStore struct {
	db   *db.DB
	base config.Config
}

func (r runtimeStore) Config(ctx context.Context) (config.Config, error) {
	rows, err := r.db.Settings(ctx, config.Names)
	if err != nil {
		return config.Config{}, err
	}
	return config.FromRows(r.base, rows)
}

func (r runtimeStore) SaveConfig(ctx context.Context, c config.Config) error {
	return r.db.SetSettings(ctx, c.Rows())
}

// listen binds every address and serves on it. All or nothing: if one
// address cannot be bound, none is served.
func (g *Gateway) listen(addrs []string) error {
	var lns []net.Listener
	for _, addr := range addrs {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			g.events.Emit(event.FailedToBind(portOf(addr)))
			for _, l := range lns {
				l.Close()
			}
			return fmt.Errorf("failed to bind to listening port %d (%s): %w", portOf(addr), addr, err)
		}
		lns = append(lns, ln)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.servers, g.addrs = nil, nil
	for _, raw := range lns {
		// One port speaks TLS to peers that start a handshake and plain
		// HTTP to the others (refused or not, as the Security settings say).
		ln := transport.Listen(raw, g.tls)
		srv := &http.Server{
			Handler: g.routes,
			// Slow clients must not hold a connection open before they have
			// even sent their headers (slowloris); relay connections are
			// hijacked and then governed by the relay's own deadlines, and
			// the console's live streams must not be cut by a write timeout.
			ReadHeaderTimeout: 10 * time.Second,
			// Idle keep-alive connections of the console cost little but
			// should not live forever.
			IdleTimeout:    2 * time.Minute,
			MaxHeaderBytes: 64 << 10,
			ErrorLog:       slog.NewLogLogger(g.log.Handler(), slog.LevelDebug),
			// HTTP/2 for browsers that negotiate it (transport.ServerConfig);
			// relay peers negotiate HTTP/1.1 for their Upgrade.
			Protocols: transport.Protocols(),
		}
		g.servers = append(g.servers, srv)
		g.addrs = append(g.addrs, ln.Addr())
		g.events.Emit(event.Listening(ln.Addr().(*net.TCPAddr).Port))
		g.bg.Add(1)
		go func() {
			defer g.bg.Done()
			err := srv.Serve(ln)
			if err != nil && !errors.Is(err, http.ErrServerClosed) {
				select {
				case g.serveErr <- fmt.Errorf("serve %s: %w", ln.Addr(), err):
				default:
				}
			}
		}()
	}
	return nil
}

func portOf(addr string) int {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(p)
	return n
}

// DB is the gateway's store.
func (g *Gateway) DB() *db.DB { return g.store.db.Load() }

// recordDir holds terminal recordings while they are written; they are
// stored in PostgreSQL when their session ends.
func (g *Gateway) recordDir() string {
	if g.cfg.DataDir != "" {
		return filepath.Join(g.cfg.DataDir, "recordings")
	}
	return filepath.Join(os.TempDir(), "switchboard-recordings-"+g.cfg.Node)
}

// Relay is the gateway's relay core.
func (g *Gateway) Relay() *relay.Server { return g.relay }

// poll applies what other processes changed in the database: keys (keys
// add, the console, another node) and the runtime configuration.
func (g *Gateway) poll(ctx context.Context) {
	t := time.NewTicker(g.cfg.KeyPoll)
	defer t.Stop()
	expire := time.NewTicker(10 * time.Minute)
	defer expire.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-expire.C:
			if err := g.DB().DeleteExpiredSessions(ctx); err != nil && ctx.Err() == nil {
				g.log.Warn("cannot delete expired console sessions", "err", err)
			}
			if n, err := handlers.SweepRecordings(ctx, g.DB(), g.DB(), time.Now()); err != nil && ctx.Err() == nil {
				g.log.Warn("cannot delete recordings past their retention", "err", err)
			} else if n > 0 {
				g.log.Info("deleted recordings past their retention", "recordings", n)
			}
			continue
		case <-t.C:
		}
		err := g.pollOnce(ctx)
		switch {
		case err != nil && !failing && ctx.Err() == nil:
			// The relay keeps its keys and settings while the database is away.
			g.log.Warn("cannot read keys and settings; keeping the current ones", "err", err)
			failing = true
		case err == nil && failing:
			g.log.Info("keys and settings readable again")
			failing = false
		}
	}
}

func (g *Gateway) pollOnce(ctx context.Context) error {
	keys, err := loadKeys(ctx, g.DB(), g.log)
	if err != nil {
		return err
	}
	if g.relay.SetKeys(relayKeys(keys)) {
		g.events.Emit(event.ReloadingKeys())
		if len(keys) == 0 {
			g.events.Emit(event.NoKeys())
		}
	}
	rows, err := g.DB().Settings(ctx, config.Names)
	if err != nil {
		return err
	}
	next, err := config.FromRows(g.cfg.runtimeConfig(), rows)
	if err != nil {
		return err
	}
	g.mu.Lock()
	cur := g.runtime
	g.runtime = next
	g.mu.Unlock()
	if maps.Equal(cur.Rows(), next.Rows()) {
		return nil
	}
	g.events.Emit(event.ReloadingConfiguration())
	g.relay.SetCMPI(next.CMPI)
	g.relay.SetMaxClients(next.MaxClients)
	if err := g.applySecurity(next); err != nil {
		g.log.Error("stored security settings are invalid; keeping the current ones", "err", err)
	}
	if err := g.applyCertSource(next); err != nil {
		g.log.Error("cannot switch the certificate source; keeping the current certificate", "err", err)
	}
	if !config.SameListen(cur, next) {
		g.rebind(next.Listen)
	}
	return nil
}

// rebind moves the gateway to new listening addresses. Every connection and
// session ends, as the design says and the event announces; Clients
// reconnect by themselves.
func (g *Gateway) rebind(addrs []string) {
	g.events.Emit(event.ListenPortChanged())
	g.mu.Lock()
	old := g.servers
	g.mu.Unlock()
	for _, srv := range old {
		srv.Close()
	}
	g.relay.DropAll()
	if err := g.listen(addrs); err != nil {
		g.log.Error("cannot listen on the new addresses; the gateway listens nowhere until they are fixed", "err", err)
	}
}

// FlushEvents waits until every event emitted so far is stored (or ctx
// ends).
func (g *Gateway) FlushEvents(ctx context.Context) error { return g.events.Flush(ctx) }

// StoredConfig is the runtime configuration as stored now, which the
// console edits and every node applies.
func (g *Gateway) StoredConfig(ctx context.Context) (config.Config, error) {
	return runtimeStore{g.DB(), g.cfg.runtimeConfig()}.Config(ctx)
}

// LogDir is the folder of the GW log files.
func (g *Gateway) LogDir() string { return g.cfg.LogDir }

// ready is true while the gateway listens: with the database away it still
// relays, and its events wait in the queue and spool.
func (g *Gateway) ready(context.Context) error {
	if g.relay.Closed() {
		return errors.New("gateway is stopping")
	}
	return g.nodeTaken()
}

// Addrs are the addresses the gateway listens on now.
func (g *Gateway) Addrs() []net.Addr {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]net.Addr(nil), g.addrs...)
}

// Run serves until ctx is done or a listener fails, then shuts the gateway
// down.
func (g *Gateway) Run(ctx context.Context) error {
	var err error
	select {
	case <-ctx.Done():
	case err = <-g.serveErr:
	}
	g.Shutdown()
	return err
}

// Shutdown stops accepting, lets sessions finish within the grace period,
// writes the stop event and flushes the event log. Calling it again does
// nothing.
func (g *Gateway) Shutdown() {
	g.shutdownOnce.Do(g.shutdown)
}

func (g *Gateway) shutdown() {
	close(g.stopping)
	if g.stopPoll != nil {
		g.stopPoll()
	}
	g.stopHeartbeat()
	if g.placer != nil {
		g.placer.stopPlacer()
	}
	if g.certs != nil {
		g.certs.Close()
	}
	g.mu.Lock()
	servers := g.servers
	g.mu.Unlock()
	if g.relay != nil {
		graceCtx, cancel := context.WithTimeout(context.Background(), g.cfg.Grace)
		var wg sync.WaitGroup
		for _, srv := range servers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = srv.Shutdown(graceCtx)
			}()
		}
		g.relay.Shutdown(graceCtx)
		wg.Wait()
		cancel()
		for _, srv := range servers {
			srv.Close()
		}
		waitCtx, cancelWait := context.WithTimeout(context.Background(), 5*time.Second)
		if err := g.relay.Wait(waitCtx); err != nil {
			g.log.Warn("stopping", "err", err)
		}
		cancelWait()
		g.leaveNode() // before the stop event, which ends a run's history
		if len(servers) > 0 {
			g.events.Emit(event.GatewayStopped())
		}
	}
	g.bg.Wait()
	g.leaveNode() // a start that failed before the relay existed
	if g.stopEvents != nil {
		g.stopEvents()
		<-g.eventsDone
	}
	if g.closeStore != nil {
		g.closeStore()
	}
}

// setupTLS chooses the certificate: the administrator's files (a start
// flag, watched for replacement), or the stored source (ACME, a certificate
// uploaded in the console, or a self-signed one made once and kept).
// --no-tls is the only way to have none.
func (g *Gateway) setupTLS(ctx context.Context, rc config.Config) error {
	cfg := g.cfg
	if cfg.NoTLS {
		return nil
	}
	g.certs = transport.NewManager(filepath.Join(cfg.DataDir, "tls"), g.cfg.ACMEClient, g.log)
	g.tls = g.certs.TLSConfig()
	if cfg.TLSCert != "" {
		return g.certs.UseFiles(context.WithoutCancel(ctx), cfg.TLSCert, cfg.TLSKey)
	}
	return g.applyCertSource(rc)
}

// applyCertSource switches to the stored certificate source when it
// changed (from the console, or on another node).
func (g *Gateway) applyCertSource(rc config.Config) error {
	if g.certs == nil || g.cfg.TLSCert != "" {
		return nil
	}
	key := rc.TLSSource + "|" + strings.Join(rc.ACMEDomains, ",") + "|" + rc.ACMEEmail + "|" + rc.ACMEDirectory
	g.mu.Lock()
	same := g.certSource == key
	g.mu.Unlock()
	if same {
		return nil
	}
	var err error
	switch rc.TLSSource {
	case transport.SourceACME:
		err = g.certs.UseACME(rc.ACMEDomains, rc.ACMEDirectory, rc.ACMEEmail)
	case transport.SourceUploaded:
		if err = g.certs.UseUploaded(); err != nil {
			g.log.Warn("no uploaded certificate in this node's data dir; using the self-signed one", "err", err)
			err = g.useSelfSigned()
		}
	default:
		err = g.useSelfSigned()
	}
	if err != nil {
		return err
	}
	g.mu.Lock()
	g.certSource = key
	g.mu.Unlock()
	return nil
}

func (g *Gateway) useSelfSigned() error {
	host, _ := os.Hostname()
	return g.certs.UseSelfSigned([]string{host})
}

// Fingerprint is the SHA-256 fingerprint that peers pin, or "" without TLS.
func (g *Gateway) Fingerprint() string {
	if g.certs == nil {
		return ""
	}
	return g.certs.Fingerprint()
}

// SelfSigned reports whether the certificate in use is the gateway's own.
func (g *Gateway) SelfSigned() bool {
	return g.certs != nil && g.certs.Info().Source == transport.SourceSelfSigned
}

// certificateInfo describes the certificate in use, for the console.
func (g *Gateway) certificateInfo() web.CertInfo {
	if g.certs == nil {
		return web.CertInfo{Source: "none: plain HTTP only (--no-tls)"}
	}
	in := g.certs.Info()
	info := web.CertInfo{Fingerprint: in.Fingerprint, Subject: in.Subject, Names: in.Names, NotAfter: in.NotAfter, Uploadable: true}
	switch in.Source {
	case transport.SourceSelfSigned:
		info.Source = "self-signed, made by this gateway"
	case transport.SourceUploaded:
		info.Source = "own certificate, uploaded in the console"
	case transport.SourceFiles:
		info.Source = "own certificate from " + in.Detail + " (reloaded when the file changes)"
	case transport.SourceACME:
		info.Source = "ACME: " + in.Detail
	}
	return info
}

// applySecurity installs blocking and trusted proxies for the HTTP layer.
func (g *Gateway) applySecurity(c config.Config) error {
	proxies, err := config.ParsePrefixes(c.TrustedProxies)
	if err != nil {
		return err
	}
	g.security.Store(&handlers.Security{BlockUnencrypted: c.BlockUnencrypted && g.tls != nil, TrustedProxies: proxies})
	return nil
}

// closeRunWait bounds how long a start waits for the previous run's spooled
// events to be stored before it checks how that run ended.
const closeRunWait = 3 * time.Second

// closePreviousRun records as ended what this node's previous run left
// open when it died without its stop event (kill -9, power loss), so the
// history has no Client that connected and never left. It runs after the
// event log has delivered what the previous run spooled, and before this
// run's start event. If the store cannot be read now, the holes stay and
// the next start tries again. It holds up the start by at most
// closeRunWait, so a start during a database outage is barely delayed.
func (g *Gateway) closePreviousRun(ctx context.Context, st *db.DB) {
	fctx, cancel := context.WithTimeout(ctx, closeRunWait)
	defer cancel()
	if err := g.events.Flush(fctx); err != nil {
		g.log.Warn("cannot check how the previous run ended: spooled events are not stored yet", "err", err)
		return
	}
	lo, err := st.LeftOpenBy(fctx, g.cfg.Node, event.GatewayStartedPrefix, event.StopTexts())
	if err != nil {
		g.log.Warn("cannot check how the previous run ended", "err", err)
		return
	}
	if !lo.Abnormal {
		return
	}
	g.log.Warn("the previous run of this node stopped abnormally; recording its Clients and sessions as ended",
		"clients", len(lo.Clients), "sessions", len(lo.Sessions))
	// In the order of an orderly stop: sessions, Clients, then the stop.
	for _, s := range lo.Sessions {
		e := event.SessionEnded(s.Control, s.Client, s.PublicIP)
		e.Time, e.Reason = lo.LastEvent, event.ReasonAbnormalStop
		g.events.Emit(e)
	}
	for _, c := range lo.Clients {
		e := event.ClientDisconnected(c.Client, c.RealIP, c.PublicIP)
		e.Time, e.Reason = lo.LastEvent, event.ReasonAbnormalStop
		g.events.Emit(e)
	}
	g.events.Emit(event.GatewayStoppedAbnormally(lo.LastEvent))
}
