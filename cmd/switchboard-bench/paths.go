package main

import (
	"context"
	"fmt"
	"net"

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
