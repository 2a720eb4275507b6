// Package control is the operator's side of Switchboard as a library: it
// browses the Clients a gateway key can see and opens sessions to their
// services. The `switchboard control` commands and the tests are built on it.
package control

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"

	"github.com/switchboard/switchboard/relay/peer"
	"github.com/switchboard/switchboard/relay/wire"
)

// Control talks to one gateway with one key.
type Control struct {
	Dialer peer.Dialer
	Key    string
	// Name identifies this Control in the gateway's events and console.
	Name string
}

// Browse lists the Clients that hold the Control's key.
func (c *Control) Browse(ctx context.Context) ([]wire.ClientInfo, error) {
	conn, err := c.Dialer.Dial(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if err := conn.Send(c.Key, wire.RoleBrowse, c.Name, "", nil); err != nil {
		return nil, err
	}
	var out []wire.ClientInfo
	for {
		var list wire.ClientList
		if err := wire.Expect(conn.Reader(), wire.TypeClientList, &list); err != nil {
			return nil, fmt.Errorf("browse %s: %w", c.Dialer.Gateway, err)
		}
		out = append(out, list.Clients...)
		if !list.More {
			return out, nil
		}
	}
}

// Connect opens one session to target ("client" or "client/service") and
// returns its byte stream.
func (c *Control) Connect(ctx context.Context, target string) (net.Conn, error) {
	conn, err := c.Dialer.Dial(ctx)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if err := conn.Send(c.Key, wire.RoleConnect, c.Name, target, nil); err != nil {
		conn.Close()
		return nil, err
	}
	var r wire.Ready
	if err := wire.Expect(conn.Reader(), wire.TypeReady, &r); err != nil {
		conn.Close()
		return nil, fmt.Errorf("connect to %s via %s: %w", target, c.Dialer.Gateway, err)
	}
	if ctx.Err() != nil {
		conn.Close()
		return nil, ctx.Err()
	}
	conn.ClearDeadline()
	return conn.Stream(), nil
}

// Forward accepts connections on ln until ctx is done and turns each into a
// session to target, like ssh -L. A session that cannot be opened closes its
// local connection and is reported to onError; the listener keeps going.
func (c *Control) Forward(ctx context.Context, ln net.Listener, target string, onError func(error)) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	for {
		local, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("accept on %s: %w", ln.Addr(), err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer local.Close()
			remote, err := c.Connect(ctx, target)
			if err != nil {
				if onError != nil {
					onError(err)
				}
				return
			}
			defer remote.Close()
			unstop := context.AfterFunc(ctx, func() { local.Close(); remote.Close() })
			defer unstop()
			peer.Pipe(local, remote)
		}()
	}
}
