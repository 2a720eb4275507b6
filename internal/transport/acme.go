package transport

import (
	"net/http"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"
)

// ACMEProtocols must be offered in ALPN for tls-alpn-01 challenges, which
// autocert answers on the gateway's own port.
var ACMEProtocols = []string{acme.ALPNProto}

// ACME returns a certificate manager for domains. Certificates are cached
// in cacheDir so restarts do not ask the authority again.
func ACME(domains []string, directoryURL, email, cacheDir string, client *http.Client) *autocert.Manager {
	return &autocert.Manager{
		Prompt:     autocert.AcceptTOS,
		HostPolicy: autocert.HostWhitelist(domains...),
		Cache:      autocert.DirCache(cacheDir),
		Email:      email,
		Client:     &acme.Client{DirectoryURL: directoryURL, HTTPClient: client},
	}
}
