package duotest_test

import (
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	duoapi "github.com/duosecurity/duo_api_golang"

	"github.com/switchboard/switchboard/internal/auth/duo/duotest"
)

const (
	ikey = "DIWJ8X6AEYOR5OMC6TQ1"
	skey = "Zh5eGmUq9zpfQnyUIu5OL9iWoMMv5ZNmk3zLJ4Ep"
)

// answer is Duo's envelope.
type answer struct {
	Stat     string          `json:"stat"`
	Code     int             `json:"code"`
	Message  string          `json:"message"`
	Detail   string          `json:"message_detail"`
	Response json.RawMessage `json:"response"`
}

// library returns Duo's own client for srv, signing with key.
func library(t *testing.T, srv *duotest.Server, host, key string) *duoapi.DuoApi {
	t.Helper()
	api := duoapi.NewDuoApi(ikey, key, host, "duotest")
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: srv.CertPool()}}
	t.Cleanup(tr.CloseIdleConnections)
	api.SetCustomHTTPClient(&http.Client{Transport: tr, Timeout: 5 * time.Second})
	return api
}

// decoder returns a function that takes the library's three results and
// returns the answer, failing t if there is none.
func decoder(t *testing.T) func(*http.Response, []byte, error) answer {
	return func(resp *http.Response, body []byte, err error) answer {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		var a answer
		if err := json.Unmarshal(body, &a); err != nil {
			t.Fatalf("HTTP %d, body %q: %v", resp.StatusCode, body, err)
		}
		return a
	}
}

// The server's signature check, written from Duo's description, agrees
// with the library on parameters that need escaping, sorting and several
// values, for POST (form body) and GET (query).
func TestSignatureMatchesLibrary(t *testing.T) {
	decode := decoder(t)
	srv := duotest.New(t, ikey, skey)
	api := library(t, srv, srv.Host(), skey)
	awkward := url.Values{
		"username":   {"ann o'neil+x@example.com"},
		"ipaddr":     {"2001:db8::1"},
		"a-b":        {"z", "A", "~ é/?&="},
		"a":          {"1"},
		"trusted_ok": {""},
	}
	a := decode(api.SignedCall(http.MethodPost, "/auth/v2/preauth", awkward))
	if a.Stat != "OK" {
		t.Errorf("POST: %+v", a)
	}
	// GET: an unknown txid is a parameter error, which comes after the
	// signature check; a bad signature would be 401 code 40103.
	a = decode(api.SignedCall(http.MethodGet, "/auth/v2/auth_status", url.Values{"txid": {"x y~%z"}, "b": {"+"}}))
	if a.Stat != "FAIL" || a.Code != 40002 || a.Detail != "txid" {
		t.Errorf("GET: %+v", a)
	}
	a = decode(api.SignedCall(http.MethodGet, "/auth/v2/check", nil))
	if a.Stat != "OK" {
		t.Errorf("check: %+v", a)
	}
	if n := srv.BadSignatures(); n != 0 {
		t.Errorf("%d bad signatures", n)
	}
}

func TestBadCredentials(t *testing.T) {
	decode := decoder(t)
	srv := duotest.New(t, ikey, skey)

	api := library(t, srv, srv.Host(), "wrong"+skey)
	resp, body, err := api.SignedCall(http.MethodGet, "/auth/v2/check", nil)
	a := decode(resp, body, err)
	if resp.StatusCode != http.StatusUnauthorized || a.Code != 40103 || a.Message != "Invalid signature in request credentials" {
		t.Errorf("wrong secret key: HTTP %d %+v", resp.StatusCode, a)
	}

	// The host, path and parameters are signed: a request changed on its
	// way fails.
	for name, tamper := range map[string]func(*http.Request){
		"host": func(r *http.Request) { r.Host = strings.Replace(r.Host, "127.0.0.1", "example.com", 1) },
		"path": func(r *http.Request) { r.URL.Path = "/auth/v2/preauth/" },
		"body": func(r *http.Request) {
			body := "username=mallory"
			r.Body, r.ContentLength = io.NopCloser(strings.NewReader(body)), int64(len(body))
		},
	} {
		api := library(t, srv, srv.Host(), skey)
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: srv.CertPool()}}
		t.Cleanup(tr.CloseIdleConnections)
		api.SetCustomHTTPClient(&http.Client{Transport: tamperer{tr, tamper}})
		if a := decode(api.SignedCall(http.MethodPost, "/auth/v2/preauth", url.Values{"username": {"alice"}})); a.Code != 40103 {
			t.Errorf("changed %s: %+v", name, a)
		}
	}

	// Hand-made requests: no credentials, no Date, a stale Date.
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: srv.CertPool()}}}
	t.Cleanup(client.CloseIdleConnections)
	for _, tc := range []struct {
		name string
		set  func(*http.Request)
		code int
	}{
		{"no credentials", func(r *http.Request) { r.Header.Set("Date", time.Now().Format(time.RFC1123Z)) }, 40101},
		{"no date", func(r *http.Request) { r.SetBasicAuth(ikey, "00") }, 40104},
		{"stale date", func(r *http.Request) {
			r.Header.Set("Date", time.Now().Add(-time.Hour).Format(time.RFC1123Z))
			r.SetBasicAuth(ikey, "00")
		}, 40105},
		{"wrong ikey", func(r *http.Request) {
			r.Header.Set("Date", time.Now().Format(time.RFC1123Z))
			r.SetBasicAuth("DIXXXXXXXXXXXXXXXXXX", "00")
		}, 40102},
	} {
		req, err := http.NewRequest(http.MethodGet, "https://"+srv.Host()+"/auth/v2/check", nil)
		if err != nil {
			t.Fatal(err)
		}
		tc.set(req)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var a answer
		err = json.NewDecoder(resp.Body).Decode(&a)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusUnauthorized || a.Stat != "FAIL" || a.Code != tc.code {
			t.Errorf("%s: HTTP %d %+v %v, want 401 code %d", tc.name, resp.StatusCode, a, err, tc.code)
		}
	}
	if n := srv.BadSignatures(); n != 8 {
		t.Errorf("%d bad signatures, want 8", n)
	}
}

// tamperer changes each request before sending it.
type tamperer struct {
	base   http.RoundTripper
	tamper func(*http.Request)
}

func (t tamperer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	t.tamper(r)
	return t.base.RoundTrip(r)
}

func TestPing(t *testing.T) {
	decode := decoder(t)
	srv := duotest.New(t, ikey, skey)
	api := library(t, srv, srv.Host(), "any")
	a := decode(api.Call(http.MethodGet, "/auth/v2/ping", nil))
	if a.Stat != "OK" || !strings.Contains(string(a.Response), `"time"`) {
		t.Errorf("ping: %+v", a)
	}
}

// A synchronous auth is held until the user answers, as Duo does.
func TestSynchronousAuth(t *testing.T) {
	decode := decoder(t)
	srv := duotest.New(t, ikey, skey)
	srv.SetUser("alice", duotest.Approve)
	srv.SetApproveAfter(100 * time.Millisecond)
	api := library(t, srv, srv.Host(), skey)
	began := time.Now()
	a := decode(api.SignedCall(http.MethodPost, "/auth/v2/auth",
		url.Values{"username": {"alice"}, "factor": {"push"}, "device": {"auto"}}))
	if a.Stat != "OK" || !strings.Contains(string(a.Response), `"result":"allow"`) {
		t.Errorf("auth: %+v", a)
	}
	if d := time.Since(began); d < 100*time.Millisecond {
		t.Errorf("answered after %v, before the approval", d)
	}
	if p := srv.Pushes(); len(p) != 1 || p[0].Async {
		t.Errorf("pushes = %+v", p)
	}
}
