package handlers

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// Security is the part of the configuration the HTTP layer enforces.
type Security struct {
	// BlockUnencrypted refuses relay connections that do not use TLS.
	BlockUnencrypted bool
	// TrustedProxies may tell, with X-Forwarded-Proto and X-Forwarded-For,
	// that a request came encrypted and from whom.
	TrustedProxies []netip.Prefix
}

type encryptedKey struct{}

// forwarded settles who sent a request and whether it came encrypted,
// believing X-Forwarded-* only from trusted proxies; everything after it
// reads r.RemoteAddr and encrypted(r).
func (h *Handlers) forwarded(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sec := h.security()
		enc := r.TLS != nil
		if ip, ok := addrOf(r.RemoteAddr); ok && trusted(ip, sec.TrustedProxies) {
			if strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https") {
				enc = true
			}
			if client, ok := forwardedFor(r.Header.Values("X-Forwarded-For"), sec.TrustedProxies); ok {
				r.RemoteAddr = net.JoinHostPort(client.String(), "0")
			}
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), encryptedKey{}, enc)))
	})
}

func (h *Handlers) security() Security {
	if h.Security == nil {
		return Security{}
	}
	return h.Security()
}

// encrypted reports whether the request reached us (or the trusted proxy
// in front of us) over TLS.
func encrypted(r *http.Request) bool {
	enc, ok := r.Context().Value(encryptedKey{}).(bool)
	if !ok {
		return r.TLS != nil
	}
	return enc
}

func addrOf(hostport string) (netip.Addr, bool) {
	ap, err := netip.ParseAddrPort(hostport)
	if err != nil {
		return netip.Addr{}, false
	}
	return ap.Addr().Unmap(), true
}

func trusted(ip netip.Addr, list []netip.Prefix) bool {
	for _, p := range list {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// forwardedFor is the rightmost address in X-Forwarded-For that is not a
// trusted proxy: addresses further left were written by the client itself
// and prove nothing.
func forwardedFor(values []string, proxies []netip.Prefix) (netip.Addr, bool) {
	var hops []string
	for _, v := range values {
		hops = append(hops, strings.Split(v, ",")...)
	}
	for i := len(hops) - 1; i >= 0; i-- {
		ip, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			return netip.Addr{}, false
		}
		ip = ip.Unmap()
		if !trusted(ip, proxies) {
			return ip, true
		}
	}
	return netip.Addr{}, false
}
