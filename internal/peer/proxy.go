package peer

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"net/url"

	"golang.org/x/net/http/httpproxy"
)

// ProxyFromEnvironment picks the proxy for a gateway from HTTPS_PROXY,
// HTTP_PROXY and NO_PROXY (upper or lower case), read at each call.
func ProxyFromEnvironment(g Gateway) (*url.URL, error) {
	scheme := "https"
	if !g.TLS {
		scheme = "http"
	}
	return httpproxy.FromEnvironment().ProxyFunc()(&url.URL{Scheme: scheme, Host: g.Host})
}

// dialProxy opens a tunnel to target through an HTTP proxy with CONNECT.
func dialProxy(ctx context.Context, nd *net.Dialer, proxy *url.URL, target string) (net.Conn, error) {
	if proxy.Scheme != "http" {
		return nil, fmt.Errorf("proxy %s: only http:// proxies are supported", proxy.Redacted())
	}
	addr := proxy.Host
	if proxy.Port() == "" {
		addr = net.JoinHostPort(proxy.Hostname(), "80")
	}
	conn, err := nd.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connect to proxy %s: %w", proxy.Redacted(), err)
	}
	req := "CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n"
	if u := proxy.User; u != nil {
		pw, _ := u.Password()
		req += "Proxy-Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(u.Username()+":"+pw)) + "\r\n"
	}
	req += "\r\n"
	if _, err := conn.Write([]byte(req)); err != nil {
		conn.Close()
		return nil, fmt.Errorf("proxy %s: %w", proxy.Redacted(), err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("proxy %s: read CONNECT answer: %w", proxy.Redacted(), err)
	}
	resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusProxyAuthRequired:
		conn.Close()
		return nil, fmt.Errorf("proxy %s wants authentication: give --proxy http://USER:PASSWORD@host:port", proxy.Redacted())
	case resp.StatusCode != http.StatusOK:
		conn.Close()
		return nil, fmt.Errorf("proxy %s refused the tunnel to %s: %s", proxy.Redacted(), target, resp.Status)
	case br.Buffered() > 0:
		// The gateway speaks only after we do; bytes here are not its.
		conn.Close()
		return nil, fmt.Errorf("proxy %s sent data before the tunnel opened", proxy.Redacted())
	}
	return conn, nil
}
