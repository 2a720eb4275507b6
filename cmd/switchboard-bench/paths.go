package main

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/switchboard/switchboard/internal/peer/control"
)

// The services every path reaches.
const (
	svcEcho = "echo"
	svcSink = "sink"
)

// path is one way from the load generator to the target services. Every
// measurement uses only Dial, so every path is measured the same way.
type path struct {
	Name string
	// Baseline paths are what the relay is compared with; info paths are
	// printed for context and carry no target.
	Info bool
	Dial func(ctx context.Context, service string) (net.Conn, error)
	// SetupDial, when set, is what the set-up test dials instead of Dial
	// (a relay's session as `control connect --listen` gives it).
	SetupDial func(ctx context.Context) (net.Conn, error)
	// SetupErr, with SetupDial, is why the last session of it failed.
	SetupErr func() error
	// Floor names the path of the same shape without the gateway, which
	// this one is also compared with.
	Floor string
	// GatewayPID and AgentPID, when set, are the processes in the
	// gateway's and the Client agent's places on the way to the sink:
	// their CPU time is read around the bulk test.
	GatewayPID, AgentPID int
}

// targets are the echo and sink services, in-process.
type targets struct {
	echo, sink *server
}

func startTargets() (*targets, error) {
	e, err := listen(echo)
	if err != nil {
		return nil, fmt.Errorf("echo service: %w", err)
	}
	s, err := listen(sink)
	if err != nil {
		e.Close()
		return nil, fmt.Errorf("sink service: %w", err)
	}
	return &targets{echo: e, sink: s}, nil
}

func (t *targets) addrs() map[string]string {
	return map[string]string{svcEcho: t.echo.Addr(), svcSink: t.sink.Addr()}
}

func (t *targets) Close() {
	t.echo.Close()
	t.sink.Close()
}

// forwarders is a plain TCP forwarder in front of each service, chained hops
// deep (one hop is the baseline; two hops is the relay's shape, Control →
// gateway → Client agent → service, without the gateway), copying each
// direction with half (pipeHalf: io.Copy, so splice(2); readWriteHalf: the
// gateway's buffer loop).
type forwarders struct {
	servers []*server
	front   map[string]string
}

func startForwarders(services map[string]string, hops int, half func(dst, src net.Conn)) (*forwarders, error) {
	f := &forwarders{front: make(map[string]string)}
	for name, addr := range services {
		for range hops {
			s, err := listen(forwardWith(addr, half))
			if err != nil {
				f.Close()
				return nil, fmt.Errorf("forwarder for %s: %w", name, err)
			}
			f.servers = append(f.servers, s)
			addr = s.Addr()
		}
		f.front[name] = addr
	}
	return f, nil
}

func (f *forwarders) Close() {
	for _, s := range f.servers {
		s.Close()
	}
}

// tcpPath dials the address that fronts each service.
func tcpPath(name string, info bool, front map[string]string) path {
	return path{Name: name, Info: info, Dial: func(ctx context.Context, service string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", front[service])
		if err != nil {
			return nil, fmt.Errorf("%s: dial %s: %w", name, service, err)
		}
		return c, nil
	}}
}

// tlsPath dials the address that fronts each service over TLS, handshake
// included, with a session cache as the relay's Control has.
func tlsPath(name string, info bool, front map[string]string, cert *benchCert) path {
	cfg := floorClientTLS(cert.pool)
	return path{Name: name, Info: info, Dial: func(ctx context.Context, service string) (net.Conn, error) {
		c, err := dialTLS(front[service], cfg)(ctx)
		if err != nil {
			return nil, fmt.Errorf("%s: dial %s: %w", name, service, err)
		}
		return c, nil
	}}
}

// procPath is a path through forwarder processes, with their PIDs.
func procPath(p path, f *procForwarders, floor string) path {
	p.GatewayPID, p.AgentPID = f.gatewayPID(svcSink), f.agentPID(svcSink)
	p.Floor = floor
	return p
}

// listenForward is a local listener turned into sessions to target by
// (*control.Control).Forward, the library call behind `switchboard
// control connect --listen`, until Close.
type listenForward struct {
	addr   string
	cancel context.CancelFunc
	done   chan error
	mu     sync.Mutex
	last   error // Forward's last session error
}

func startListenForward(ctx context.Context, ctl *control.Control, target string) (*listenForward, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen for %s: %w", target, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	f := &listenForward{addr: ln.Addr().String(), cancel: cancel, done: make(chan error, 1)}
	go func() {
		f.done <- ctl.Forward(ctx, ln, target, func(err error) {
			f.mu.Lock()
			f.last = err
			f.mu.Unlock()
		})
	}()
	return f, nil
}

// Dial opens a new local connection to the listener, as a user's program
// does.
func (f *listenForward) Dial(ctx context.Context) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "tcp", f.addr)
}

// Err is the last session error Forward reported, waiting a little for
// one to arrive after a local connection was closed on the user.
func (f *listenForward) Err() error {
	for range 20 {
		f.mu.Lock()
		last := f.last
		f.mu.Unlock()
		if last != nil {
			return fmt.Errorf("control.Forward: %w", last)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// Close stops Forward and waits for its sessions to end.
func (f *listenForward) Close() error {
	f.cancel()
	return <-f.done
}

// relayPath opens a session through a gateway to the bench Client.
func relayPath(name string, ctl *control.Control, client string) path {
	return path{Name: name, Dial: func(ctx context.Context, service string) (net.Conn, error) {
		c, err := ctl.Connect(ctx, client+"/"+service)
		if err != nil {
			return nil, fmt.Errorf("%s: connect %s/%s: %w", name, client, service, err)
		}
		return c, nil
	}}
}
