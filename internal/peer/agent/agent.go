// Package agent is the Client: the program on a remote machine that keeps an
// outbound connection to a gateway, confirms every CMPI that it is alive, and
// for each session the gateway asks for dials one of its configured local
// services and pipes the bytes. It never dials anything but those services.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard/switchboard/internal/peer"
	"github.com/switchboard/switchboard/relay/wire"
)

// Config is what a Client needs to run.
type Config struct {
	// Dialer reaches the primary gateway: the one the Client uses whenever
	// it answers.
	Dialer peer.Dialer
	// Secondary, when set, reaches the gateway the Client falls back to
	// while the primary is unreachable. It must be another gateway than
	// the primary.
	Secondary *peer.Dialer
	Key       string
	Name      string
	Services  map[string]string // service name → local host:port
	// Kinds gives services a kind for the browser console (wire.KindVNC,
	// wire.KindSSH) that their names do not imply.
	Kinds   map[string]string
	Version string
	Logger  *slog.Logger

	// MinBackoff and MaxBackoff bound the jittered exponential wait between
	// reconnection attempts. Zero means 500 ms and 30 s: quick after a blip,
	// and gentle on a gateway that thousands of Clients reconnect to at once.
	MinBackoff, MaxBackoff time.Duration
	// ServiceDialTimeout bounds dialling a local service; zero means 5 s.
	ServiceDialTimeout time.Duration
	// ProbeInterval is how often a Client on the secondary dials the
	// primary to see whether it is back; zero means 2 s. A probe that gets
	// the primary's challenge goes on to register on that connection.
	ProbeInterval time.Duration
	// RefusedMaxBackoff bounds the wait after a refusal that asking again
	// soon cannot change (a key the gateway does not have, a full licence,
	// a name or version it refuses): the wait doubles from MaxBackoff up
	// to it, so a forgotten Client costs its gateway a few events an
	// hour, not one every half minute. Zero means 10 minutes.
	RefusedMaxBackoff time.Duration
	// StandbyIdle is how long after its last session a Client keeps a
	// standby connection to the gateway that brokered it, so that the
	// next session there opens without a handshake on its critical path;
	// zero means 2 minutes, a negative value keeps none.
	StandbyIdle time.Duration
}

// Agent runs a Client. Create it with New and call Run.
type Agent struct {
	cfg                Config
	primary, secondary *peer.Dialer // secondary is nil without one
	// keys derives the key's ClientKey on the first handshake and keeps it
	// for the life of the process: the KDF is slow on purpose, and a Client
	// handshakes again for every session and every reconnection. A cluster's
	// gateways share one salt, so one derivation serves both; gateways
	// with salts of their own each get theirs (ClientKeys keeps one per salt).
	keys     *peer.ClientKeys
	log      *slog.Logger
	current  atomic.Pointer[channel] // the registration in use, nil while none
	sessions sync.WaitGroup
	// learned is the other nodes of the cluster as the last gateway that
	// sent Nodes listed them: where the Client registers when both its
	// primary and its secondary (if any) are gone.
	learned atomic.Pointer[[]*peer.Dialer]

	standbyMu sync.Mutex
	standbys  map[string]*standbyState // by gateway URL
}

// New checks cfg and returns an Agent.
func New(cfg Config) (*Agent, error) {
	if cfg.Name == "" {
		return nil, errors.New("agent: a Client name is required")
	}
	if cfg.Key == "" {
		return nil, errors.New("agent: a gateway key is required")
	}
	for name, addr := range cfg.Services {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("agent: service %s: address %q must be HOST:PORT: %w", name, addr, err)
		}
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = 500 * time.Millisecond
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	if cfg.ServiceDialTimeout == 0 {
		cfg.ServiceDialTimeout = 5 * time.Second
	}
	if cfg.ProbeInterval == 0 {
		cfg.ProbeInterval = 2 * time.Second
	}
	if cfg.RefusedMaxBackoff == 0 {
		cfg.RefusedMaxBackoff = 10 * time.Minute
	}
	if cfg.StandbyIdle == 0 {
		cfg.StandbyIdle = 2 * time.Minute
	}
	if cfg.Dialer.UserAgent == "" {
		cfg.Dialer.UserAgent = "switchboard-client/" + cfg.Version
	}
	a := &Agent{cfg: cfg, keys: &peer.ClientKeys{Key: cfg.Key}, standbys: make(map[string]*standbyState)}
	a.primary = &a.cfg.Dialer
	if cfg.Secondary != nil {
		if SameGateway(cfg.Dialer.Gateway, cfg.Secondary.Gateway) {
			return nil, fmt.Errorf("agent: the secondary gateway %s is the primary gateway: give the secondary another gateway's address, or no secondary", cfg.Secondary.Gateway)
		}
		sec := *cfg.Secondary
		if sec.UserAgent == "" {
			sec.UserAgent = cfg.Dialer.UserAgent
		}
		a.secondary = &sec
	}
	a.log = cfg.Logger
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	return a, nil
}

// SameGateway reports whether a and b name the same gateway: the same
// host and port, whatever the scheme (one listener does not serve both).
func SameGateway(a, b peer.Gateway) bool { return strings.EqualFold(a.Host, b.Host) }

// Connected reports whether the Client is registered with a gateway now.
func (a *Agent) Connected() bool { return a.current.Load() != nil }

// Gateway is the address of the gateway the Client is registered with now
// (the primary or the secondary), or "" while it is registered with none.
func (a *Agent) Gateway() string {
	if ch := a.current.Load(); ch != nil {
		return ch.d.Gateway.String()
	}
	return ""
}

// Run keeps the Client connected until ctx is done, reconnecting with
// jittered exponential backoff. It returns nil when ctx ends, after the
// sessions in progress have ended too (they end with ctx, and only with
// it: a control channel that ends, or moves to another gateway, leaves
// them running on their own connections).
//
// With a secondary, a primary that cannot be reached (its dial fails, or
// its registered channel ends) is tried once more after the shortest
// backoff, and then the Client registers on the secondary. A refusal by
// the primary (wrong key, licence full, shutting down: *wire.Error) goes
// to the secondary at once, since asking the primary again right away
// would get the same answer. While on the secondary the Client probes the
// primary every ProbeInterval; when it answers, the Client registers there
// first and only then closes its secondary channel (make-before-break), so
// it is never absent. A primary that answers but refuses the Client is
// probed with backoff instead (up to MaxBackoff), so that a wrong key on
// the primary costs it one security event per backoff, not one every
// ProbeInterval. When both refuse or both are down, the normal backoff
// applies between rounds.
func (a *Agent) Run(ctx context.Context) error {
	defer a.sessions.Wait()
	defer a.current.Store(nil)
	backoff := a.cfg.MinBackoff
	var next *channel // a primary registration made while on the secondary
	fails := 0        // primary attempts in a row that ended without registering, plus the channel's end
	var refusedWait time.Duration
	for {
		ch, err := next, error(nil)
		next = nil
		if ch == nil {
			ch, err = a.register(ctx, a.primary)
		}
		if ch != nil {
			backoff, fails, refusedWait = a.cfg.MinBackoff, 0, 0
			err = a.serve(ctx, ctx, ch)
			if mv := ch.moved.Load(); mv != nil && ctx.Err() == nil {
				next = mv
				continue
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		a.logLost(a.primary, err)
		fails++
		var we *wire.Error
		refused := ch == nil && errors.As(err, &we)
		if a.secondary == nil && (fails >= 2 || refused) {
			if other := a.registerLearned(ctx); other != nil {
				fails = 0
				next = other
				continue
			}
		}
		if refused && a.secondary == nil && lasting(we.Code) {
			refusedWait = min(max(refusedWait*2, a.cfg.MaxBackoff), a.cfg.RefusedMaxBackoff)
			a.log.Error("the gateway refuses this Client, and asking again soon would not change that; waiting longer before each try",
				"gateway", a.primary.Gateway.String(), "code", we.Code, "retry_within", refusedWait)
			if !a.pause(ctx, refusedWait) {
				return nil
			}
			continue
		}
		if a.secondary == nil || (fails < 2 && !refused) {
			if !a.pause(ctx, backoff) {
				return nil
			}
			backoff = min(backoff*2, a.cfg.MaxBackoff)
			continue
		}

		// The primary is unreachable or refuses: the secondary, at once.
		fails = 0
		sec, serr := a.register(ctx, a.secondary)
		if serr != nil {
			if ctx.Err() != nil {
				return nil
			}
			a.logLost(a.secondary, serr)
			if !a.pause(ctx, backoff) {
				return nil
			}
			backoff = min(backoff*2, a.cfg.MaxBackoff)
			continue
		}
		backoff = a.cfg.MinBackoff
		reason := "primary unreachable: " + errText(err)
		if refused {
			reason = "primary refused the Client: " + errText(err)
		}
		a.log.Warn("switched to the secondary gateway", "gateway", a.secondary.Gateway.String(),
			"primary", a.primary.Gateway.String(), "reason", reason)
		next, err = a.onSecondary(ctx, sec)
		if ctx.Err() != nil {
			if next != nil {
				a.drop(next)
			}
			return nil
		}
		if next != nil {
			a.log.Info("returned to the primary gateway", "gateway", a.primary.Gateway.String(),
				"secondary", a.secondary.Gateway.String())
			continue
		}
		a.logLost(a.secondary, err)
		// The secondary went too: start over at the primary, after the
		// shortest wait (so that a secondary that drops every Client it
		// accepts does not become a busy loop).
		if !a.pause(ctx, backoff) {
			return nil
		}
		backoff = min(backoff*2, a.cfg.MaxBackoff)
	}
}

// lasting reports whether a refusal stays what it is until an
// administrator acts: asking again soon would get the same answer.
func lasting(code string) bool {
	switch code {
	case wire.CodeUnauthorized, wire.CodeLicence, wire.CodeNoKeys, wire.CodeVersion, wire.CodeBadRequest:
		return true
	}
	return false
}

func errText(err error) string {
	if err == nil {
		return "closed"
	}
	return err.Error()
}

// logLost says why a registration attempt or a channel ended.
func (a *Agent) logLost(d *peer.Dialer, err error) {
	var we *wire.Error
	switch {
	case errors.As(err, &we):
		a.log.Error("gateway refused the Client", "gateway", d.Gateway.String(), "code", we.Code, "reason", we.Message)
	case err != nil:
		a.log.Warn("connection to gateway lost", "gateway", d.Gateway.String(), "err", err)
	}
}

// pause waits a jittered backoff, or until ctx ends (false).
func (a *Agent) pause(ctx context.Context, backoff time.Duration) bool {
	// Full jitter: a gateway restart must not see every Client return in
	// the same millisecond.
	wait := time.Duration(rand.Int64N(int64(backoff))) + a.cfg.MinBackoff/2
	a.log.Info("reconnecting", "in", wait.Round(time.Millisecond))
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// registerLearned registers with the first node of the cluster the last
// Nodes frame listed that takes the Client, starting at a random one so
// that the Clients of a dead node spread over the others. Nil when none
// does (or none is known).
func (a *Agent) registerLearned(ctx context.Context) *channel {
	lp := a.learned.Load()
	if lp == nil || len(*lp) == 0 {
		return nil
	}
	ds := *lp
	start := rand.IntN(len(ds))
	for i := range ds {
		d := ds[(start+i)%len(ds)]
		if SameGateway(d.Gateway, a.primary.Gateway) {
			continue
		}
		ch, err := a.register(ctx, d)
		if err == nil {
			a.log.Warn("the gateway is unreachable; registered with another node of its cluster",
				"gateway", d.Gateway.String(), "primary", a.primary.Gateway.String())
			return ch
		}
		if ctx.Err() != nil {
			return nil
		}
		a.log.Debug("another node of the cluster did not take the Client", "gateway", d.Gateway.String(), "err", err)
	}
	return nil
}

// onSecondary serves the secondary channel sec while probing the primary.
// It returns a registration on the primary once one succeeded (sec is
// closed by then), or nil and why sec ended.
func (a *Agent) onSecondary(ctx context.Context, sec *channel) (*channel, error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var back *channel
	probed := make(chan struct{})
	go func() {
		defer close(probed)
		if back = a.probePrimary(sctx, sec.probeNow); back != nil {
			cancel() // make-before-break: the primary holds the Client now
		}
	}()
	err := a.serve(sctx, ctx, sec)
	cancel()
	<-probed
	return back, err
}

// probePrimary dials the primary every ProbeInterval until it answers and
// registers the Client there, or ctx ends (nil). A dial that fails is all
// a probe costs the primary while it is down. now probes at once: the
// secondary saw the primary's node alive again (PrimaryAlive).
func (a *Agent) probePrimary(ctx context.Context, now <-chan struct{}) *channel {
	wait := a.cfg.ProbeInterval
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-now:
			if !t.Stop() {
				select {
				case <-t.C:
				default:
				}
			}
		}
		ch, err := a.register(ctx, a.primary)
		if err == nil {
			return ch
		}
		if ctx.Err() != nil {
			return nil
		}
		var we *wire.Error
		if errors.As(err, &we) && we.Code != wire.CodeShutdown {
			// It answers but will not take the Client: asking every few
			// seconds would not change that.
			wait = min(max(wait*2, a.cfg.ProbeInterval), a.cfg.MaxBackoff)
			a.log.Error("the primary gateway refused the Client; staying on the secondary", "gateway", a.primary.Gateway.String(),
				"code", we.Code, "reason", we.Message, "retry_in", wait)
		} else {
			wait = a.cfg.ProbeInterval
			a.log.Debug("the primary gateway is still unreachable", "gateway", a.primary.Gateway.String(), "err", err)
		}
		t.Reset(wait)
	}
}

// channel is one registration's control connection, on the gateway d.
type channel struct {
	d       *peer.Dialer
	conn    *peer.Conn
	welcome wire.Welcome
	wmu     sync.Mutex
	// probeNow is poked when the gateway says the primary is alive.
	probeNow chan struct{}
	// moved is the registration a Move led to; set before conn closes.
	moved  atomic.Pointer[channel]
	moving atomic.Bool
}

func (ch *channel) send(t wire.Type, v any) error {
	ch.wmu.Lock()
	defer ch.wmu.Unlock()
	_ = ch.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	return wire.WriteFrame(ch.conn.Conn, t, v)
}

// register connects to d and registers the Client. The channel it returns
// is the agent's current one; serve it or drop it.
func (a *Agent) register(ctx context.Context, d *peer.Dialer) (*channel, error) {
	conn, err := d.Dial(ctx)
	if err != nil {
		return nil, err
	}
	realIP := ""
	if ta, ok := conn.LocalAddr().(*net.TCPAddr); ok {
		// The address this machine uses to reach the gateway is its LAN
		// address as far as the gateway's administrator cares.
		realIP = ta.IP.String()
	}
	err = conn.SendKey(a.keys, wire.RoleClient, a.cfg.Name, "", func(h *wire.Hello) {
		h.RealIP = realIP
		h.OS = runtime.GOOS + "/" + runtime.GOARCH
		h.Version = a.cfg.Version
		h.Services = a.serviceList()
	})
	if err != nil {
		conn.Close()
		return nil, err
	}
	var w wire.Welcome
	if err := wire.Expect(conn.Reader(), wire.TypeWelcome, &w); err != nil {
		conn.Close()
		return nil, err
	}
	conn.ClearDeadline()
	ch := &channel{d: d, conn: conn, welcome: w, probeNow: make(chan struct{}, 1)}
	a.current.Store(ch)
	return ch, nil
}

// drop closes a registration that will not be served.
func (a *Agent) drop(ch *channel) {
	a.current.CompareAndSwap(ch, nil)
	ch.conn.Close()
}

func (a *Agent) serviceList() []wire.Service {
	names := make([]string, 0, len(a.cfg.Services))
	for n := range a.cfg.Services {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]wire.Service, len(names))
	for i, n := range names {
		out[i] = wire.Service{Name: n, Kind: a.cfg.Kinds[n]}
	}
	return out
}

// serve runs a registered channel until it ends or ctx does. The sessions
// it brokers run under sessCtx, Run's context, and not under ctx: they have
// connections of their own and outlive this channel, so that a gateway
// that stops or a Client that moves to another gateway does not break the
// sessions in progress.
func (a *Agent) serve(ctx, sessCtx context.Context, ch *channel) error {
	defer a.drop(ch)
	conn, w := ch.conn, ch.welcome
	a.log.Info("connected to gateway", "gateway", ch.d.Gateway.String(), "name", a.cfg.Name, "cmpi_seconds", w.CMPISeconds)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	cmpi := make(chan time.Duration, 1)
	cmpi <- seconds(w.CMPISeconds)
	var hb sync.WaitGroup
	hb.Add(1)
	go func() {
		defer hb.Done()
		a.heartbeat(ctx, ch, cmpi)
	}()
	defer hb.Wait()
	defer cancel()

	interval := seconds(w.CMPISeconds)
	for {
		// The gateway answers every heartbeat, so three intervals without a
		// frame means it is gone even if the TCP connection looks open.
		_ = conn.SetReadDeadline(time.Now().Add(3 * interval))
		t, payload, err := wire.ReadFrame(conn.Reader())
		if err != nil {
			return err
		}
		switch t {
		case wire.TypeHeartbeatAck:
		case wire.TypeOpen:
			var o wire.Open
			if err := wire.Decode(t, payload, &o); err != nil {
				return err
			}
			if err := o.Check(); err != nil {
				a.log.Warn("gateway sent an open frame the Client refuses", "err", err)
				_ = ch.send(wire.TypeOpenFailed, wire.OpenFailed{SessionID: cleanID(o.SessionID), Message: "the Client refused the request: " + err.Error()})
				continue
			}
			a.sessions.Add(1)
			go func() {
				defer a.sessions.Done()
				a.session(sessCtx, ch, o)
			}()
		case wire.TypeConfig:
			var c wire.Config
			if err := wire.Decode(t, payload, &c); err != nil {
				return err
			}
			interval = seconds(c.CMPISeconds)
			a.log.Info("gateway changed the heartbeat interval", "cmpi_seconds", c.CMPISeconds)
			select {
			case <-cmpi:
			default:
			}
			cmpi <- interval
		case wire.TypeMove:
			var m wire.Move
			if err := wire.Decode(t, payload, &m); err != nil {
				return err
			}
			a.move(ctx, ch, m)
		case wire.TypeNodes:
			var n wire.Nodes
			if err := wire.Decode(t, payload, &n); err != nil {
				return err
			}
			a.learn(ch, n)
		case wire.TypePrimaryAlive:
			select {
			case ch.probeNow <- struct{}{}:
			default:
			}
		case wire.TypeGoodbye:
			var g wire.Goodbye
			_ = wire.Decode(t, payload, &g)
			return fmt.Errorf("gateway closed the connection: %s", g.Reason)
		case wire.TypeError:
			var e wire.Error
			_ = wire.Decode(t, payload, &e)
			return &e
		default:
			return fmt.Errorf("unexpected %s frame from gateway", t)
		}
	}
}

// cleanID is a session ID fit to send back, or "" when it is not one.
func cleanID(id string) string {
	if wire.CheckSessionID(id) != nil {
		return ""
	}
	return id
}

// move registers at the node a Move names, on a goroutine of its own so
// that this channel keeps serving meanwhile, and closes this channel once
// the other node holds the Client (make-before-break). A Move that cannot
// be followed leaves the Client where it is. A Client on its secondary
// stays there: it waits for its primary, not for a balanced pool.
func (a *Agent) move(ctx context.Context, ch *channel, m wire.Move) {
	if err := m.Check(); err != nil {
		a.log.Warn("gateway asked the Client to move to an address it refuses", "err", err)
		return
	}
	if ch.d == a.secondary || !ch.moving.CompareAndSwap(false, true) {
		return
	}
	d, err := ch.d.To(m.Gateway, m.Fingerprint)
	if err != nil || SameGateway(d.Gateway, ch.d.Gateway) {
		ch.moving.Store(false)
		return
	}
	go func() {
		defer ch.moving.Store(false)
		next, err := a.register(ctx, d)
		if err != nil {
			a.log.Warn("cannot move to the node the gateway named; staying", "gateway", d.Gateway.String(), "err", err)
			return
		}
		a.log.Info("moved to another node of the cluster", "from", ch.d.Gateway.String(), "to", d.Gateway.String(),
			"reason", wire.CleanMessage(m.Reason))
		ch.moved.Store(next)
		ch.conn.Close()
	}()
}

// learn keeps the nodes a Nodes frame lists, leaving out bad entries.
func (a *Agent) learn(ch *channel, n wire.Nodes) {
	if len(n.Nodes) > wire.MaxNodes {
		n.Nodes = n.Nodes[:wire.MaxNodes]
	}
	ds := make([]*peer.Dialer, 0, len(n.Nodes))
	for _, addr := range n.Nodes {
		one := wire.Nodes{Nodes: []wire.NodeAddr{addr}}
		if err := one.Check(); err != nil {
			a.log.Warn("gateway listed a node the Client ignores", "err", err)
			continue
		}
		d, err := ch.d.To(addr.URL, addr.Fingerprint)
		if err != nil {
			continue
		}
		ds = append(ds, d)
	}
	a.learned.Store(&ds)
}

func seconds(n int) time.Duration {
	if n <= 0 {
		return wire.DefaultCMPI
	}
	return time.Duration(n) * time.Second
}

func (a *Agent) heartbeat(ctx context.Context, ch *channel, cmpi <-chan time.Duration) {
	t := time.NewTicker(<-cmpi)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case d := <-cmpi:
			t.Reset(d)
		case <-t.C:
			if err := ch.send(wire.TypeHeartbeat, wire.Empty{}); err != nil {
				ch.conn.Close()
				return
			}
		}
	}
}

// directDialTimeout bounds the Client's try at the brokering node's own
// address, leaving the rest of the node's open timeout (15 s) for the
// relayed way.
const directDialTimeout = 5 * time.Second

// directDialer is the Dialer for the node Open names, or nil when it names
// none, or this channel's own gateway.
func (a *Agent) directDialer(ch *channel, o wire.Open) *peer.Dialer {
	if o.Gateway == "" {
		return nil
	}
	d, err := ch.d.To(o.Gateway, o.Fingerprint)
	if err != nil || SameGateway(d.Gateway, ch.d.Gateway) {
		return nil
	}
	if d.Timeout == 0 || d.Timeout > directDialTimeout {
		d.Timeout = directDialTimeout
	}
	return d
}

// session dials the local service first, so that a service that is down is
// reported to the Control at once instead of as a broken session. The
// session's connection to the gateway is dialled meanwhile: on a good day
// both are needed, and dialling them one after the other would add the
// local dial to every session's set-up.
func (a *Agent) session(ctx context.Context, ch *channel, o wire.Open) {
	log := a.log.With("session", o.SessionID, "service", o.Service, "control", o.Control)
	addr, ok := a.cfg.Services[o.Service]
	if !ok {
		_ = ch.send(wire.TypeOpenFailed, wire.OpenFailed{SessionID: o.SessionID, Message: "service not offered"})
		return
	}
	type dialed struct {
		conn *peer.Conn
		d    *peer.Dialer
		err  error
	}
	gw := make(chan dialed, 1)
	go func() {
		// The node that brokers the session splices it: another node of
		// the cluster when Open names one (the Control's), else the
		// gateway this channel is on, whichever the Client is on by now.
		// A node the Client cannot reach is relayed to by its own.
		if direct := a.directDialer(ch, o); direct != nil {
			c, err := direct.Dial(ctx)
			if err == nil {
				gw <- dialed{c, direct, nil}
				return
			}
			log.Info("cannot reach the node that brokers the session; accepting through this gateway", "node", direct.Gateway.String(), "err", err)
		}
		c, err := ch.d.Dial(ctx) // bounded by the dialer's timeout and ctx
		gw <- dialed{c, ch.d, err}
	}()
	d := net.Dialer{Timeout: a.cfg.ServiceDialTimeout}
	local, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		log.Warn("cannot reach local service", "addr", addr, "err", err)
		_ = ch.send(wire.TypeOpenFailed, wire.OpenFailed{SessionID: o.SessionID, Message: "the service is not reachable on the Client"})
		if r := <-gw; r.conn != nil {
			r.conn.Close()
		}
		return
	}
	defer local.Close()
	// Whatever stops the session's own connection, the Control hears it
	// at once (open-failed on the control channel) rather than waiting
	// for the gateway's open timeout.
	failed := func(msg string) {
		_ = ch.send(wire.TypeOpenFailed, wire.OpenFailed{SessionID: o.SessionID, Message: msg})
	}
	dial := <-gw
	if dial.err != nil {
		log.Warn("cannot open session connection", "err", dial.err)
		failed("the Client could not open the session's connection to the gateway")
		return
	}
	remote := dial.conn
	defer remote.Close()
	if err := remote.SendKey(a.keys, wire.RoleAccept, a.cfg.Name, o.SessionID, nil); err != nil {
		log.Warn("session handshake failed", "err", err)
		failed("the Client's session connection failed its handshake")
		return
	}
	var r wire.Ready
	if err := wire.Expect(remote.Reader(), wire.TypeReady, &r); err != nil {
		log.Warn("session refused", "err", err)
		return
	}
	remote.ClearDeadline()
	// More sessions are likely to follow this one: the next opens on a
	// standby connection to the node that brokered this one.
	a.keepStandby(ctx, dial.d)
	a.pipe(ctx, log, local, remote)
}

// pipe runs an accepted session until both directions end.
func (a *Agent) pipe(ctx context.Context, log *slog.Logger, local net.Conn, remote *peer.Conn) {
	log.Info("session started")
	stop := context.AfterFunc(ctx, func() { local.Close(); remote.Close() })
	defer stop()
	peer.Pipe(local, remote.Stream())
	log.Info("session ended")
}
