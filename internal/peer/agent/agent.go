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
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard/switchboard/internal/peer"
	"github.com/switchboard/switchboard/relay/wire"
)

// Config is what a Client needs to run.
type Config struct {
	Dialer   peer.Dialer
	Key      string
	Name     string
	Services map[string]string // service name → local host:port
	Version  string
	Logger   *slog.Logger

	// MinBackoff and MaxBackoff bound the jittered exponential wait between
	// reconnection attempts. Zero means 500 ms and 30 s: quick after a blip,
	// and gentle on a gateway that thousands of Clients reconnect to at once.
	MinBackoff, MaxBackoff time.Duration
	// ServiceDialTimeout bounds dialling a local service; zero means 5 s.
	ServiceDialTimeout time.Duration
}

// Agent runs a Client. Create it with New and call Run.
type Agent struct {
	cfg Config
	// keys derives the key's ClientKey on the first handshake and keeps it
	// for the life of the process: the KDF is slow on purpose, and a Client
	// handshakes again for every session and every reconnection.
	keys      *peer.ClientKeys
	log       *slog.Logger
	connected atomic.Bool
	sessions  sync.WaitGroup
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
	if cfg.Dialer.UserAgent == "" {
		cfg.Dialer.UserAgent = "switchboard-client/" + cfg.Version
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Agent{cfg: cfg, keys: &peer.ClientKeys{Key: cfg.Key}, log: log}, nil
}

// Connected reports whether the Client is registered with the gateway now.
func (a *Agent) Connected() bool { return a.connected.Load() }

// Run keeps the Client connected until ctx is done, reconnecting with
// jittered exponential backoff. It returns nil when ctx ends, after the
// sessions in progress have ended too (they end with ctx).
func (a *Agent) Run(ctx context.Context) error {
	defer a.sessions.Wait()
	backoff := a.cfg.MinBackoff
	for {
		registered, err := a.runOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if registered {
			backoff = a.cfg.MinBackoff
		}
		var we *wire.Error
		switch {
		case errors.As(err, &we):
			a.log.Error("gateway refused the Client", "gateway", a.cfg.Dialer.Gateway.String(), "code", we.Code, "reason", we.Message)
		case err != nil:
			a.log.Warn("connection to gateway lost", "gateway", a.cfg.Dialer.Gateway.String(), "err", err)
		}
		// Full jitter: a gateway restart must not see every Client return in
		// the same millisecond.
		wait := time.Duration(rand.Int64N(int64(backoff))) + a.cfg.MinBackoff/2
		a.log.Info("reconnecting", "in", wait.Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		backoff = min(backoff*2, a.cfg.MaxBackoff)
	}
}

func (a *Agent) serviceList() []wire.Service {
	names := make([]string, 0, len(a.cfg.Services))
	for n := range a.cfg.Services {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]wire.Service, len(names))
	for i, n := range names {
		out[i] = wire.Service{Name: n}
	}
	return out
}

// channel is one registration's control connection.
type channel struct {
	conn *peer.Conn
	wmu  sync.Mutex
}

func (ch *channel) send(t wire.Type, v any) error {
	ch.wmu.Lock()
	defer ch.wmu.Unlock()
	_ = ch.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	return wire.WriteFrame(ch.conn.Conn, t, v)
}

// runOnce connects, registers and serves until the channel ends.
func (a *Agent) runOnce(ctx context.Context) (registered bool, err error) {
	conn, err := a.cfg.Dialer.Dial(ctx)
	if err != nil {
		return false, err
	}
	defer conn.Close()
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
		return false, err
	}
	var w wire.Welcome
	if err := wire.Expect(conn.Reader(), wire.TypeWelcome, &w); err != nil {
		return false, err
	}
	conn.ClearDeadline()
	a.connected.Store(true)
	defer a.connected.Store(false)
	a.log.Info("connected to gateway", "gateway", a.cfg.Dialer.Gateway.String(), "name", a.cfg.Name, "cmpi_seconds", w.CMPISeconds)

	ch := &channel{conn: conn}
	// Sessions have connections of their own and outlive this channel: a
	// gateway that stops or a Client that moves to another gateway must not
	// break the sessions in progress.
	sessCtx := ctx
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
			return true, err
		}
		switch t {
		case wire.TypeHeartbeatAck:
		case wire.TypeOpen:
			var o wire.Open
			if err := wire.Decode(t, payload, &o); err != nil {
				return true, err
			}
			a.sessions.Add(1)
			go func() {
				defer a.sessions.Done()
				a.session(sessCtx, ch, o)
			}()
		case wire.TypeConfig:
			var c wire.Config
			if err := wire.Decode(t, payload, &c); err != nil {
				return true, err
			}
			interval = seconds(c.CMPISeconds)
			a.log.Info("gateway changed the heartbeat interval", "cmpi_seconds", c.CMPISeconds)
			select {
			case <-cmpi:
			default:
			}
			cmpi <- interval
		case wire.TypeGoodbye:
			var g wire.Goodbye
			_ = wire.Decode(t, payload, &g)
			return true, fmt.Errorf("gateway closed the connection: %s", g.Reason)
		case wire.TypeError:
			var e wire.Error
			_ = wire.Decode(t, payload, &e)
			return true, &e
		default:
			return true, fmt.Errorf("unexpected %s frame from gateway", t)
		}
	}
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
		err  error
	}
	gw := make(chan dialed, 1)
	go func() {
		c, err := a.cfg.Dialer.Dial(ctx) // bounded by the dialer's timeout and ctx
		gw <- dialed{c, err}
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
	log.Info("session started")
	stop := context.AfterFunc(ctx, func() { local.Close(); remote.Close() })
	defer stop()
	peer.Pipe(local, remote.Stream())
	log.Info("session ended")
}
