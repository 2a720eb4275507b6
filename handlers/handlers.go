// Package handlers is the gateway's HTTP surface: the relay endpoint, which
// upgrades a request and hands the connection to the relay core, and the
// health endpoints. It holds no business rules of its own.
package handlers

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"

	"github.com/switchboard/switchboard/internal/audit/event"
	"github.com/switchboard/switchboard/relay/wire"
)

// Relay is the part of the relay core the HTTP layer needs.
type Relay interface {
	// Accept serves an upgraded connection on a goroutine of its own.
	Accept(ctx context.Context, conn net.Conn, r *bufio.Reader, publicIP string)
}

// Handlers serves the gateway's HTTP endpoints. Build it once in main.
type Handlers struct {
	Relay  Relay
	Logger *slog.Logger
	// Ready reports whether the gateway can do its job (listening, and its
	// events have somewhere safe to go); nil means always ready.
	Ready func(context.Context) error
	// State names the ready node's state in the /readyz body ("ready:
	// active", "ready: standby"); nil says just "ready".
	State func() string
	// Metrics serves /metrics; nil leaves the route out.
	Metrics http.Handler
	// Console is the admin console; nil leaves it out.
	Console *Console
	// Static serves the console's embedded assets.
	Static http.Handler
	// Security is read on every request, so the console's changes apply at
	// once; nil means no blocking and no trusted proxies.
	Security func() Security
	// Events receives the refusals of unencrypted peers.
	Events event.Sink
	// Node is this node's name, sent with /healthz as NodeHeader.
	Node string
	// NodeLink serves the other nodes of a cluster at NodeLinkPath; it
	// authenticates them itself. Nil leaves the route out.
	NodeLink http.Handler
}

// NodeHeader names the node that answered /healthz.
const NodeHeader = "Switchboard-Node"

// NodeLinkPath is where the nodes of a cluster reach each other.
const NodeLinkPath = "/cluster/v1/link"

// Routes declares every route of the gateway.
func (h *Handlers) Routes() http.Handler {
	r := chi.NewRouter()
	r.Use(middleware.Recoverer, h.forwarded)
	r.Get(wire.Path, h.relayUpgrade)
	if h.NodeLink != nil {
		r.Method(http.MethodGet, NodeLinkPath, h.NodeLink)
	}
	r.Get("/healthz", h.healthz)
	r.Get("/readyz", h.readyz)
	if h.Metrics != nil {
		r.Method(http.MethodGet, "/metrics", h.Metrics)
	}
	if h.Console != nil {
		r.Mount("/console", h.Console.routes())
		r.Handle("/static/*", h.Static)
		r.Get("/", http.RedirectHandler("/console/clients", http.StatusSeeOther).ServeHTTP)
	}
	return r
}

// relayUpgrade switches the connection to the relay protocol and hands it
// to its own goroutine. Returning frees net/http's connection goroutine, its
// grown stack and its buffers: an idle Client then costs one small
// goroutine blocked on its next frame, which matters at 100,000 Clients.
func (h *Handlers) relayUpgrade(w http.ResponseWriter, r *http.Request) {
	if !headerHas(r.Header, "Connection", "upgrade") || !strings.EqualFold(r.Header.Get("Upgrade"), wire.Protocol) {
		w.Header().Set("Upgrade", wire.Protocol)
		http.Error(w, "this endpoint speaks "+wire.Protocol+": use the switchboard client or control", http.StatusUpgradeRequired)
		return
	}
	if h.security().BlockUnencrypted && !encrypted(r) {
		if h.Events != nil {
			h.Events.Emit(event.UnencryptedRefused(remoteIP(r)))
		}
		http.Error(w, "this gateway accepts only encrypted connections: use an https:// gateway address", http.StatusForbidden)
		return
	}
	conn, br, err := SwitchProtocols(w, wire.Protocol, nil)
	if err != nil {
		h.Logger.Error("relay upgrade", "err", err)
		return
	}
	// The request's context ends when this handler returns; the relay ends
	// connections itself on Shutdown and Close.
	ctx := context.WithoutCancel(r.Context())
	h.Relay.Accept(ctx, conn, br, remoteIP(r))
}

// SwitchProtocols answers an Upgrade request with 101 for protocol (and
// header), takes the connection from net/http and returns it with its
// reader. net/http's reader is kept only if it holds bytes past the
// request (peers must not send before the 101's answer, so it normally
// holds none, and its 4 KiB buffer goes). On an error the caller has
// nothing to close; before a hijack the client got a 500.
func SwitchProtocols(w http.ResponseWriter, protocol string, header http.Header) (net.Conn, *bufio.Reader, error) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "connection cannot be upgraded", http.StatusInternalServerError)
		return nil, nil, errors.New("the connection cannot be hijacked")
	}
	conn, brw, err := hj.Hijack()
	if err != nil {
		return nil, nil, fmt.Errorf("hijack: %w", err)
	}
	var resp strings.Builder
	resp.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: " + protocol + "\r\n")
	for k, vs := range header {
		for _, v := range vs {
			resp.WriteString(k + ": " + v + "\r\n")
		}
	}
	resp.WriteString("\r\n")
	if _, err = brw.WriteString(resp.String()); err == nil {
		err = brw.Flush()
	}
	if err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("send 101: %w", err)
	}
	if brw.Reader.Buffered() > 0 {
		return conn, brw.Reader, nil
	}
	return conn, bufio.NewReaderSize(conn, 512), nil
}

func headerHas(hdr http.Header, name, token string) bool {
	for _, v := range hdr.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// remoteIP is the peer's public address as this gateway sees it.
func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func (h *Handlers) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if h.Node != "" {
		// A node checks its own --advertise URL by this.
		w.Header().Set(NodeHeader, h.Node)
	}
	_, _ = w.Write([]byte("ok\n"))
}

func (h *Handlers) readyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if h.Ready != nil {
		if err := h.Ready(r.Context()); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("not ready: " + err.Error() + "\n"))
			return
		}
	}
	if h.State != nil {
		_, _ = w.Write([]byte("ready: " + h.State() + "\n"))
		return
	}
	_, _ = w.Write([]byte("ready\n"))
}
