package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/switchboard/switchboard/relay/wire"
)

// perSourceIP is how many Clients share one 127.x source address, well
// inside the 28,000 ephemeral ports Linux gives each source address.
const perSourceIP = 10000

// sourceIP spreads Client i over 127.1.0.1, 127.1.0.2, ...
func sourceIP(i int) net.IP {
	return net.IPv4(127, 1, byte(i/perSourceIP/250), byte(1+i/perSourceIP%250))
}

// idleClient is a minimal Client speaking the protocol with relay/wire: the
// agent's dialler has no source-address hook, and a goroutine and buffers
// per Client in the bench would only muddy the figures of the gateway.
//
// After the handshake the Client's socket leaves the bench's netpoller:
// the heartbeater polls it anyway, and on loopback the gateway's write of
// each ack would otherwise also pay for waking the bench's epoll_wait (a
// cross-CPU wake-up, about a tenth of the gateway's CPU per heartbeat on a
// VM), which a real Client's host pays for itself.
type idleClient struct {
	fd int // non-blocking, in no epoll set
}

// dialIdle registers one Client named name from source address src.
func dialIdle(ctx context.Context, gw, key, name string, src net.IP) (*idleClient, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src}, Timeout: 15 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", gw)
	if err != nil {
		return nil, fmt.Errorf("dial from %s: %w", src, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	req := "GET " + wire.Path + " HTTP/1.1\r\nHost: " + gw + "\r\nConnection: Upgrade\r\nUpgrade: " + wire.Protocol + "\r\n\r\n"
	if _, err := conn.Write([]byte(req)); err != nil {
		return nil, fmt.Errorf("send upgrade: %w", err)
	}
	br := bufio.NewReaderSize(conn, 512)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodGet})
	if err != nil {
		return nil, fmt.Errorf("read upgrade response: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return nil, fmt.Errorf("upgrade refused: %s", resp.Status)
	}
	var ch wire.Challenge
	if err := wire.Expect(br, wire.TypeChallenge, &ch); err != nil {
		return nil, fmt.Errorf("read challenge: %w", err)
	}
	h := wire.NewHello(ch, key, wire.RoleClient, name, "")
	h.RealIP = src.String()
	h.OS = "linux/amd64"
	h.Version = "bench"
	h.Services = []wire.Service{{Name: "vnc"}}
	if err := wire.WriteFrame(conn, wire.TypeHello, h); err != nil {
		return nil, fmt.Errorf("send hello: %w", err)
	}
	var w wire.Welcome
	if err := wire.Expect(br, wire.TypeWelcome, &w); err != nil {
		return nil, fmt.Errorf("read welcome: %w", err)
	}
	if br.Buffered() > 0 {
		return nil, errors.New("gateway sent frames before the first heartbeat")
	}
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return nil, errors.New("connection has no file descriptor")
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("raw connection: %w", err)
	}
	// A duplicate keeps the socket open (and non-blocking) once conn's
	// Close has taken its descriptor out of the netpoller and closed it;
	// closing a descriptor sends nothing while another refers to the socket.
	fd, derr := -1, error(nil)
	if err := raw.Control(func(s uintptr) { fd, derr = syscall.Dup(int(s)) }); err != nil {
		return nil, fmt.Errorf("raw connection: %w", err)
	}
	if derr != nil {
		return nil, fmt.Errorf("dup: %w", derr)
	}
	syscall.CloseOnExec(fd)
	return &idleClient{fd: fd}, nil
}

// drain reads whatever acks wait on the socket without blocking and reports
// how many bytes it read; EOF or an error means the gateway dropped us.
func (c *idleClient) drain(buf []byte) (int, error) {
	total := 0
	for {
		n, err := syscall.Read(c.fd, buf)
		if n > 0 {
			total += n
			continue
		}
		switch {
		case errors.Is(err, syscall.EAGAIN):
			return total, nil
		case errors.Is(err, syscall.EINTR):
			continue
		case err != nil:
			return total, err
		default:
			return total, errors.New("gateway closed the connection")
		}
	}
}

// write sends one frame; a heartbeat fits any socket's send buffer, so a
// short or refused write means the connection is in trouble.
func (c *idleClient) write(b []byte) error {
	for {
		n, err := syscall.Write(c.fd, b)
		switch {
		case errors.Is(err, syscall.EINTR):
			continue
		case err != nil:
			return err
		case n < len(b):
			return fmt.Errorf("short write of %d of %d bytes", n, len(b))
		}
		return nil
	}
}

func (c *idleClient) close() { _ = syscall.Close(c.fd) }

// heartbeater sends each connected Client a heartbeat frame every interval,
// spread evenly over the interval, and drains the gateway's acks. Interval
// zero pauses it.
type heartbeater struct {
	mu       sync.Mutex
	clients  []*idleClient
	interval atomic.Int64 // nanoseconds; 0 pauses
	sent     atomic.Int64
	ackBytes atomic.Int64
	dropped  atomic.Int64
}

func (h *heartbeater) add(c *idleClient) {
	h.mu.Lock()
	h.clients = append(h.clients, c)
	h.mu.Unlock()
}

func (h *heartbeater) setInterval(d time.Duration) { h.interval.Store(int64(d)) }

func (h *heartbeater) run(ctx context.Context) {
	var frame bytes.Buffer
	_ = wire.WriteFrame(&frame, wire.TypeHeartbeat, wire.Empty{})
	hb := frame.Bytes()
	buf := make([]byte, 4096)
	const tick = 10 * time.Millisecond
	t := time.NewTicker(tick)
	defer t.Stop()
	next, owed := 0, 0.0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		iv := time.Duration(h.interval.Load())
		h.mu.Lock()
		cs := h.clients
		h.mu.Unlock()
		if iv <= 0 || len(cs) == 0 {
			owed = 0
			continue
		}
		owed += float64(len(cs)) * float64(tick) / float64(iv)
		for ; owed >= 1; owed-- {
			c := cs[next%len(cs)]
			next++
			n, err := c.drain(buf)
			h.ackBytes.Add(int64(n))
			if err != nil {
				h.dropped.Add(1)
				continue
			}
			if err := c.write(hb); err != nil {
				h.dropped.Add(1)
				continue
			}
			h.sent.Add(1)
		}
	}
}

func (h *heartbeater) closeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, c := range h.clients {
		c.close()
	}
	h.clients = nil
}

// idleResult is what N idle Clients cost the gateway.
type idleResult struct {
	Clients              int     `json:"clients"`
	ConnectSeconds       float64 `json:"connect_seconds"`
	RSSBeforeKiB         int64   `json:"rss_before_kib"`
	RSSAfterKiB          int64   `json:"rss_after_kib"`
	RSSPerClientKiB      float64 `json:"rss_per_client_kib"`
	GoroutinesBefore     float64 `json:"goroutines_before"`
	GoroutinesAfter      float64 `json:"goroutines_after"`
	GoroutinesPerClient  float64 `json:"goroutines_per_client"`
	StackPerClientKiB    float64 `json:"go_stack_inuse_per_client_kib"`
	HeapPerClientKiB     float64 `json:"go_heap_inuse_per_client_kib"`
	WindowSeconds        float64 `json:"cpu_window_seconds"`
	HeartbeatEverySecond float64 `json:"cpu_window_heartbeat_interval_seconds"`
	HeartbeatsSent       int64   `json:"cpu_window_heartbeats"`
	CPUQuietSeconds      float64 `json:"cpu_quiet_window_seconds"`
	CPUBusySeconds       float64 `json:"cpu_heartbeat_window_seconds"`
	CPUPerHeartbeatUs    float64 `json:"cpu_per_heartbeat_us"`
	CPUPerMinuteAt60s    float64 `json:"cpu_seconds_per_minute_at_60s_cmpi"`
	Dropped              int64   `json:"dropped"`
	// The cost of a warm Client: one that had a session lately and keeps
	// a standby connection on the gateway.
	WarmClients       int     `json:"warm_clients"`
	RSSPerWarmKiB     float64 `json:"rss_per_warm_client_kib"`
	GoroutinesPerWarm float64 `json:"goroutines_per_warm_client"`
	HeapPerWarmKiB    float64 `json:"go_heap_inuse_per_warm_client_kib"`
	StackPerWarmKiB   float64 `json:"go_stack_inuse_per_warm_client_kib"`
}

type idleOpts struct {
	clients, workers int
	warm             int // of the clients, how many open a standby afterwards
	key              string
	window, hbEvery  time.Duration
	settle           time.Duration
	logf             func(string, ...any)
}

// measureIdle connects o.clients Clients to g, lets the gateway settle and
// measures its memory and goroutines per Client; then compares its CPU over
// a window with heartbeats paused and a window with every Client sending one
// every o.hbEvery. The CPU a heartbeat costs is (busy − quiet) / heartbeats;
// at the default CMPI of 60 s each Client sends one a minute, so a minute of
// N idle Clients costs N × that.
func measureIdle(ctx context.Context, g *gateway, o idleOpts) (idleResult, error) {
	res := idleResult{Clients: o.clients}
	hc := g.HTTPClient()
	metricsURL := "http://" + g.addr + "/metrics"
	m, err := scrapeMetrics(ctx, hc, metricsURL)
	if err != nil {
		return res, err
	}
	res.GoroutinesBefore = m["go_goroutines"]
	stack0, heap0 := m["go_memstats_stack_inuse_bytes"], m["go_memstats_heap_inuse_bytes"]
	if res.RSSBeforeKiB, err = rssKiB(g.PID()); err != nil {
		return res, err
	}

	hb := &heartbeater{}
	hb.setInterval(60 * time.Second)
	hctx, stopHB := context.WithCancel(ctx)
	var hwg sync.WaitGroup
	hwg.Add(1)
	go func() { defer hwg.Done(); hb.run(hctx) }()
	defer func() { stopHB(); hwg.Wait(); hb.closeAll() }()

	start := time.Now()
	var next atomic.Int64
	var firstErr error
	var emu sync.Mutex
	var wg sync.WaitGroup
	for range o.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= o.clients || ctx.Err() != nil {
					return
				}
				c, err := dialIdle(ctx, g.addr, o.key, fmt.Sprintf("idle-%06d", i), sourceIP(i))
				if err != nil {
					emu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("idle Client %d: %w", i, err)
					}
					emu.Unlock()
					next.Store(int64(o.clients)) // stop the others
					return
				}
				hb.add(c)
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return res, firstErr
	}
	res.ConnectSeconds = time.Since(start).Seconds()
	o.logf("idle: %d Clients connected in %.1fs; settling", o.clients, res.ConnectSeconds)

	// Settle: the connect burst queued events for PostgreSQL and left garbage.
	if err := settle(ctx, hc, metricsURL, o.clients, o.settle); err != nil {
		return res, err
	}
	if m, err = scrapeMetrics(ctx, hc, metricsURL); err != nil {
		return res, err
	}
	res.GoroutinesAfter = m["go_goroutines"]
	if res.RSSAfterKiB, err = rssKiB(g.PID()); err != nil {
		return res, err
	}
	n := float64(o.clients)
	res.RSSPerClientKiB = float64(res.RSSAfterKiB-res.RSSBeforeKiB) / n
	res.GoroutinesPerClient = (res.GoroutinesAfter - res.GoroutinesBefore) / n
	// The Go runtime's own split of the growth: goroutine stacks and heap
	// (heap in use includes garbage not yet collected).
	res.StackPerClientKiB = (m["go_memstats_stack_inuse_bytes"] - stack0) / 1024 / n
	res.HeapPerClientKiB = (m["go_memstats_heap_inuse_bytes"] - heap0) / 1024 / n

	res.WindowSeconds = o.window.Seconds()
	res.HeartbeatEverySecond = o.hbEvery.Seconds()
	o.logf("idle: CPU window with heartbeats paused (%s)", o.window)
	hb.setInterval(0)
	quiet, _, err := cpuWindow(ctx, g.PID(), o.window, hb)
	if err != nil {
		return res, err
	}
	o.logf("idle: CPU window with a heartbeat every %s per Client (%s)", o.hbEvery, o.window)
	hb.setInterval(o.hbEvery)
	busy, sent, err := cpuWindow(ctx, g.PID(), o.window, hb)
	hb.setInterval(60 * time.Second)
	if err != nil {
		return res, err
	}
	res.CPUQuietSeconds, res.CPUBusySeconds, res.HeartbeatsSent = quiet.Seconds(), busy.Seconds(), sent
	if sent > 0 {
		per := (busy - quiet).Seconds() / float64(sent)
		res.CPUPerHeartbeatUs = per * 1e6
		res.CPUPerMinuteAt60s = per * n
	}
	res.Dropped = hb.dropped.Load()
	if o.warm > 0 {
		if err := measureWarm(ctx, g, o, &res); err != nil {
			return res, err
		}
	}
	return res, nil
}

// measureWarm has the first o.warm idle Clients open a standby connection
// each, as the agent does after a session, and charges the gateway's growth
// to them: what a Client with recent sessions costs beyond an idle one.
func measureWarm(ctx context.Context, g *gateway, o idleOpts, res *idleResult) error {
	hc := g.HTTPClient()
	metricsURL := "http://" + g.addr + "/metrics"
	m, err := scrapeMetrics(ctx, hc, metricsURL)
	if err != nil {
		return err
	}
	rss0, err := rssKiB(g.PID())
	if err != nil {
		return err
	}
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := range min(o.warm, o.clients) {
		c, err := dialStandby(ctx, g.addr, o.key, fmt.Sprintf("idle-%06d", i), sourceIP(i))
		if err != nil {
			return fmt.Errorf("standby of idle Client %d: %w", i, err)
		}
		conns = append(conns, c)
	}
	o.logf("idle: %d standby connections open; settling", len(conns))
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(5 * time.Second):
	}
	m1, err := scrapeMetrics(ctx, hc, metricsURL)
	if err != nil {
		return err
	}
	rss1, err := rssKiB(g.PID())
	if err != nil {
		return err
	}
	n := float64(len(conns))
	res.WarmClients = len(conns)
	res.RSSPerWarmKiB = float64(rss1-rss0) / n
	res.GoroutinesPerWarm = (m1["go_goroutines"] - m["go_goroutines"]) / n
	res.HeapPerWarmKiB = (m1["go_memstats_heap_inuse_bytes"] - m["go_memstats_heap_inuse_bytes"]) / 1024 / n
	res.StackPerWarmKiB = (m1["go_memstats_stack_inuse_bytes"] - m["go_memstats_stack_inuse_bytes"]) / 1024 / n
	return nil
}

// dialStandby opens Client name's standby connection (role standby) from
// src and leaves it waiting for an Open.
func dialStandby(ctx context.Context, gw, key, name string, src net.IP) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src}, Timeout: 15 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", gw)
	if err != nil {
		return nil, fmt.Errorf("dial from %s: %w", src, err)
	}
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	req := "GET " + wire.Path + " HTTP/1.1\r\nHost: " + gw + "\r\nConnection: Upgrade\r\nUpgrade: " + wire.Protocol + "\r\n\r\n"
	br := bufio.NewReaderSize(conn, 512)
	var ch wire.Challenge
	if _, err := conn.Write([]byte(req)); err != nil {
		conn.Close()
		return nil, fmt.Errorf("send upgrade: %w", err)
	}
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodGet})
	if err == nil && resp.StatusCode != http.StatusSwitchingProtocols {
		err = fmt.Errorf("upgrade refused: %s", resp.Status)
	}
	if err == nil {
		err = wire.Expect(br, wire.TypeChallenge, &ch)
	}
	if err == nil {
		err = wire.WriteFrame(conn, wire.TypeHello, wire.NewHello(ch, key, wire.RoleStandby, name, ""))
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	_ = conn.SetDeadline(time.Time{})
	return conn, nil
}

// settle waits until every Client is registered, the event queue is empty
// and the gateway's CPU has been quiet for a second, or until limit.
func settle(ctx context.Context, hc *http.Client, url string, clients int, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		m, err := scrapeMetrics(ctx, hc, url)
		if err != nil {
			return err
		}
		if int(m["switchboard_clients_connected"]) >= clients && m["switchboard_events_queued"] == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
	// A little longer for the last batch of GC and database writes.
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(5 * time.Second):
		return nil
	}
}

// cpuWindow measures the gateway's CPU time and the heartbeats sent over d.
func cpuWindow(ctx context.Context, pid int, d time.Duration, hb *heartbeater) (time.Duration, int64, error) {
	c0, err := cpuTime(pid)
	if err != nil {
		return 0, 0, err
	}
	s0 := hb.sent.Load()
	select {
	case <-ctx.Done():
		return 0, 0, ctx.Err()
	case <-time.After(d):
	}
	c1, err := cpuTime(pid)
	if err != nil {
		return 0, 0, err
	}
	return c1 - c0, hb.sent.Load() - s0, nil
}
