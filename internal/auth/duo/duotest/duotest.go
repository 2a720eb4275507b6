// Package duotest is a local stand-in for Duo's Auth API, for tests: an
// HTTPS server that speaks /auth/v2/ping, check, preauth, auth and
// auth_status with JSON shaped like Duo's, and checks every request's
// signature the way Duo does, so that a wrong key fails here as it would
// against Duo. Duo's real service cannot be reached from test machines, and
// would need a phone to answer the pushes anyway.
//
// Each user is given a Behaviour (Approve, Deny, Timeout, Enroll, Bypass, ...)
// that decides what preauth says and how a push is answered. Like Duo's,
// auth_status long-polls: the first call for a push answers at once, later
// ones are held until the push's status changes or the client gives up.
//
// What it does not do: factors other than push, the v5 signature of JSON
// requests (duo_api_golang's authapi does not send them), enrollment, or any
// of Duo's policies beyond the per-user Behaviour.
package duotest

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha512"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"net/url"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// Behaviour is what a user does, as far as Duo can tell.
type Behaviour int

// The behaviours. Enroll is the zero value because a user Duo does not
// know is, to Duo, a user who has not enrolled.
const (
	// Enroll: preauth answers "enroll" (the user has no Duo account or
	// device yet). Users never given to SetUser behave so.
	Enroll Behaviour = iota
	// Approve: preauth answers "auth" with a push-capable phone, and the
	// push is approved (after SetApproveAfter's delay).
	Approve
	// Deny: like Approve, but the user denies the push at once.
	Deny
	// Timeout: like Approve, but the push stays "waiting" forever.
	Timeout
	// Bypass: preauth answers "allow" (a bypass user); no push is sent.
	Bypass
	// Locked: preauth answers "deny" (locked out or disabled).
	Locked
	// NoPush: preauth answers "auth" but the user's only device is a phone
	// that takes calls and SMS, not pushes.
	NoPush
)

// String names b.
func (b Behaviour) String() string {
	switch b {
	case Enroll:
		return "Enroll"
	case Approve:
		return "Approve"
	case Deny:
		return "Deny"
	case Timeout:
		return "Timeout"
	case Bypass:
		return "Bypass"
	case Locked:
		return "Locked"
	case NoPush:
		return "NoPush"
	}
	return fmt.Sprintf("Behaviour(%d)", int(b))
}

// Push is one push the server was asked to send (an accepted /auth/v2/auth).
type Push struct {
	TxID            string
	User            string // the username parameter
	IP              string // ipaddr, "" if not sent
	PushInfo        string // pushinfo as sent: URL-encoded key=value pairs
	Type            string // type, shown in Duo Mobile as the kind of request
	DisplayUsername string // display_username
	Device          string // device, e.g. "auto"
	Async           bool   // async=1: answered with a txid at once
	Time            time.Time
}

// Server is a fake Duo Auth API. All its methods are safe for concurrent use.
type Server struct {
	ts         *httptest.Server
	ikey, skey string
	closing    chan struct{} // closed by Close, to release held long polls
	closeOnce  sync.Once

	mu           sync.Mutex
	users        map[string]Behaviour
	approveAfter time.Duration
	delay        time.Duration
	down         bool
	rateLimited  bool
	drop         bool
	pushes       []Push
	txs          map[string]*transaction
	badSigs      int
	requests     map[string]int
}

// transaction is one push's state. reported is the status last given to
// auth_status, so that the next call can be held until there is news.
type transaction struct {
	push      Push
	behaviour Behaviour
	reported  string
}

// New starts a fake Duo with the application's integration and secret
// keys, on an HTTPS port of 127.0.0.1. t's cleanup closes it.
func New(t testing.TB, ikey, skey string) *Server {
	t.Helper()
	s := &Server{
		ikey:     ikey,
		skey:     skey,
		closing:  make(chan struct{}),
		users:    make(map[string]Behaviour),
		txs:      make(map[string]*transaction),
		requests: make(map[string]int),
	}
	s.ts = httptest.NewUnstartedServer(s)
	// TLS handshake failures are expected in tests of certificate checks,
	// and the server's log would only add noise to the test output.
	s.ts.Config.ErrorLog = log.New(io.Discard, "", 0)
	s.ts.StartTLS()
	t.Cleanup(s.Close)
	return s
}

// Host returns the server's host:port, for duo.Config.APIHost.
func (s *Server) Host() string { return s.ts.Listener.Addr().String() }

// CertPool returns a pool holding the server's certificate, for
// duo.Config.RootCAs.
// Certificate is the server's certificate, for a gateway process that must
// be told to trust it through a file (serve --duo-ca).
func (s *Server) Certificate() *x509.Certificate { return s.ts.Certificate() }

func (s *Server) CertPool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(s.ts.Certificate())
	return pool
}

// Close stops the server: later requests are refused (connection refused),
// which also simulates Duo being unreachable. Held long polls are answered
// first. It is safe to call more than once.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.closing)
		s.ts.Close()
	})
}

// SetUser sets how name behaves from now on. A push already sent keeps the
// behaviour it was sent with.
func (s *Server) SetUser(name string, b Behaviour) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users[name] = b
}

// SetApproveAfter makes Approve users answer "waiting" until d after the
// push, then approve. The default is 0: approved at once.
func (s *Server) SetApproveAfter(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.approveAfter = d
}

// SetDelay holds every request for d before handling it, like a slow
// network or an overloaded Duo.
func (s *Server) SetDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
}

// SetDown makes every request answer HTTP 503 with a non-JSON body, as a
// load balancer in front of a failed service would.
func (s *Server) SetDown(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = down
}

// SetDropConnections makes the server close each request's connection
// without answering, like a network that fails mid-request.
func (s *Server) SetDropConnections(drop bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.drop = drop
}

// SetRateLimited makes every request answer HTTP 429, as Duo does when an
// application calls too often.
func (s *Server) SetRateLimited(limited bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rateLimited = limited
}

// Pushes returns the pushes sent so far, oldest first.
func (s *Server) Pushes() []Push {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Push(nil), s.pushes...)
}

// BadSignatures returns how many requests were rejected for their
// credentials: none, a wrong integration key, a bad signature or a bad Date.
func (s *Server) BadSignatures() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.badSigs
}

// Requests returns how many requests reached path (e.g. "/auth/v2/auth_status"),
// whatever their answer.
func (s *Server) Requests(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[path]
}

// ServeHTTP answers one Auth API request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests[r.URL.Path]++
	delay, down, limited, drop := s.delay, s.down, s.rateLimited, s.drop
	s.mu.Unlock()

	if delay > 0 && !s.wait(r, time.Now().Add(delay)) {
		return
	}
	switch {
	case drop:
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				conn.Close()
				return
			}
		}
		panic(http.ErrAbortHandler) // closes the connection where hijacking cannot
	case down:
		http.Error(w, "503 Service Temporarily Unavailable", http.StatusServiceUnavailable)
		return
	case limited:
		fail(w, http.StatusTooManyRequests, 42901, "Too Many Requests", "")
		return
	}

	if r.URL.Path == "/auth/v2/ping" { // the one unsigned call
		if r.Method != http.MethodGet {
			fail(w, http.StatusMethodNotAllowed, 40501, "Method not allowed", "")
			return
		}
		ok(w, map[string]any{"time": time.Now().Unix()})
		return
	}
	params, authorised := s.authenticate(w, r)
	if !authorised {
		return
	}
	route := map[string]struct {
		method  string
		handler func(http.ResponseWriter, *http.Request, url.Values)
	}{
		"/auth/v2/check":       {http.MethodGet, s.check},
		"/auth/v2/preauth":     {http.MethodPost, s.preauth},
		"/auth/v2/auth":        {http.MethodPost, s.auth},
		"/auth/v2/auth_status": {http.MethodGet, s.authStatus},
	}[r.URL.Path]
	switch {
	case route.handler == nil:
		fail(w, http.StatusNotFound, 40401, "Resource not found", "")
	case r.Method != route.method:
		fail(w, http.StatusMethodNotAllowed, 40501, "Method not allowed", "")
	default:
		route.handler(w, r, params)
	}
}

// maxSkew is how far a request's Date may be from the server's clock.
const maxSkew = 5 * time.Minute

// authenticate checks r's Date and Authorization headers and returns its
// parameters, or answers 401 and returns false.
//
// Duo's scheme (the one duo_api_golang's SignedCall uses, "v2" with
// HMAC-SHA512): Authorization is HTTP Basic with the integration key as user
// and, as password, the hex HMAC-SHA512, keyed with the secret key, of
//
//	Date header \n METHOD \n lower-case host \n path \n canonical parameters
//
// where the canonical parameters are the query's (GET) or the form body's
// (POST), sorted by name then value, each name and value percent-encoded
// except for A-Z a-z 0-9 - _ . ~ (so a space is %20), joined with & and =.
// This is written from Duo's description rather than from the library's
// code, so that the two check each other.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) (url.Values, bool) {
	reject := func(code int, msg string) (url.Values, bool) {
		s.mu.Lock()
		s.badSigs++
		s.mu.Unlock()
		fail(w, http.StatusUnauthorized, code, msg, "")
		return nil, false
	}
	date := r.Header.Get("Date")
	if date == "" {
		return reject(40104, "Missing required request header")
	}
	when, err := mail.ParseDate(date)
	if err != nil {
		return reject(40105, "Invalid request date header")
	}
	if skew := time.Since(when); skew > maxSkew || skew < -maxSkew {
		return reject(40105, "Request date header is too far from the current time")
	}
	user, password, hasAuth := r.BasicAuth()
	if !hasAuth {
		return reject(40101, "Missing request credentials")
	}
	if user != s.ikey {
		return reject(40102, "Invalid integration key in request credentials")
	}

	var params url.Values
	switch r.Method {
	case http.MethodPost, http.MethodPut:
		if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
			fail(w, http.StatusBadRequest, 40003, "Invalid request content type", ct)
			return nil, false
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err == nil {
			params, err = url.ParseQuery(string(body))
		}
		if err != nil {
			fail(w, http.StatusBadRequest, 40002, "Invalid request parameters", "body")
			return nil, false
		}
	default:
		params = r.URL.Query()
	}

	canon := strings.Join([]string{
		date,
		strings.ToUpper(r.Method),
		strings.ToLower(r.Host),
		r.URL.Path,
		canonicalParams(params),
	}, "\n")
	mac := hmac.New(sha512.New, []byte(s.skey))
	mac.Write([]byte(canon))
	want := hex.EncodeToString(mac.Sum(nil))
	if !hmac.Equal([]byte(strings.ToLower(password)), []byte(want)) {
		return reject(40103, "Invalid signature in request credentials")
	}
	return params, true
}

// canonicalParams encodes params as Duo signs them (see authenticate):
// sorted by the raw name, then the raw value, before encoding, as Duo's
// clients do (encoding does not keep byte order: "%" sorts below letters).
func canonicalParams(params url.Values) string {
	names := make([]string, 0, len(params))
	for name := range params {
		names = append(names, name)
	}
	sort.Strings(names)
	var pairs []string
	for _, name := range names {
		values := append([]string(nil), params[name]...)
		sort.Strings(values)
		for _, v := range values {
			pairs = append(pairs, percentEncode(name)+"="+percentEncode(v))
		}
	}
	return strings.Join(pairs, "&")
}

// percentEncode escapes every byte of s but RFC 3986's unreserved ones.
func percentEncode(s string) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_', c == '.', c == '~':
			b.WriteByte(c)
		default:
			b.WriteByte('%')
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&15])
		}
	}
	return b.String()
}

func (s *Server) check(w http.ResponseWriter, _ *http.Request, _ url.Values) {
	ok(w, map[string]any{"time": time.Now().Unix()})
}

// device is a phone as preauth describes it.
type device struct {
	Device       string   `json:"device"`
	Type         string   `json:"type"`
	Name         string   `json:"name"`
	Number       string   `json:"number"`
	DisplayName  string   `json:"display_name"`
	Capabilities []string `json:"capabilities"`
}

func (s *Server) preauth(w http.ResponseWriter, r *http.Request, p url.Values) {
	user := p.Get("username")
	if user == "" {
		fail(w, http.StatusBadRequest, 40002, "Invalid request parameters", "username")
		return
	}
	switch b := s.behaviour(user); b {
	case Approve, Deny, Timeout:
		ok(w, map[string]any{
			"result":     "auth",
			"status_msg": "Account is active",
			"devices": []device{{
				Device: deviceID(user), Type: "phone", Number: "XXX-XXX-0100",
				DisplayName:  "iOS (XXX-XXX-0100)",
				Capabilities: []string{"auto", "push", "sms", "phone", "mobile_otp"},
			}},
		})
	case NoPush:
		ok(w, map[string]any{
			"result":     "auth",
			"status_msg": "Account is active",
			"devices": []device{{
				Device: deviceID(user), Type: "phone", Number: "XXX-XXX-0199",
				DisplayName:  "Landline (XXX-XXX-0199)",
				Capabilities: []string{"sms", "phone"},
			}},
		})
	case Bypass:
		ok(w, map[string]any{"result": "allow", "status_msg": "Allowing unknown user"})
	case Locked:
		ok(w, map[string]any{"result": "deny", "status_msg": "Your account is disabled."})
	default: // Enroll
		ok(w, map[string]any{
			"result":            "enroll",
			"status_msg":        "Enroll an authentication device to proceed",
			"enroll_portal_url": "https://" + r.Host + "/portal?code=" + deviceID(user),
		})
	}
}

func (s *Server) auth(w http.ResponseWriter, r *http.Request, p url.Values) {
	user := p.Get("username")
	switch {
	case p.Get("factor") != "push":
		fail(w, http.StatusBadRequest, 40002, "Invalid request parameters", "factor")
		return
	case user == "":
		fail(w, http.StatusBadRequest, 40002, "Invalid request parameters", "username")
		return
	case p.Get("device") == "":
		fail(w, http.StatusBadRequest, 40002, "Invalid request parameters", "device")
		return
	}
	b := s.behaviour(user)
	switch b {
	case Approve, Deny, Timeout:
	case NoPush:
		fail(w, http.StatusBadRequest, 40002, "Invalid request parameters", "device")
		return
	default: // Duo does not push to users that preauth would not send to auth
		fail(w, http.StatusBadRequest, 40002, "Invalid request parameters", "username")
		return
	}
	tx := &transaction{behaviour: b, push: Push{
		TxID:            newTxID(),
		User:            user,
		IP:              p.Get("ipaddr"),
		PushInfo:        p.Get("pushinfo"),
		Type:            p.Get("type"),
		DisplayUsername: p.Get("display_username"),
		Device:          p.Get("device"),
		Async:           p.Get("async") == "1",
		Time:            time.Now(),
	}}
	s.mu.Lock()
	s.txs[tx.push.TxID] = tx
	s.pushes = append(s.pushes, tx.push)
	s.mu.Unlock()

	if tx.push.Async {
		ok(w, map[string]any{"txid": tx.push.TxID})
		return
	}
	// Synchronous: held until the user answers, like Duo.
	st, ready := s.hold(r, tx, true)
	if !ready {
		return
	}
	ok(w, map[string]any{"result": st.result, "status": st.status, "status_msg": st.msg})
}

func (s *Server) authStatus(w http.ResponseWriter, r *http.Request, p url.Values) {
	s.mu.Lock()
	tx := s.txs[p.Get("txid")]
	s.mu.Unlock()
	if tx == nil {
		fail(w, http.StatusBadRequest, 40002, "Invalid request parameters", "txid")
		return
	}
	st, ready := s.hold(r, tx, false)
	if !ready {
		return
	}
	ok(w, map[string]any{"result": st.result, "status": st.status, "status_msg": st.msg})
}

// status is a push's state as auth_status reports it. next is when it will
// change by itself, zero if never.
type status struct {
	result, status, msg string
	next                time.Time
}

// state is tx's status at now.
func (s *Server) state(tx *transaction, now time.Time) status {
	waiting := status{result: "waiting", status: "pushed", msg: "Pushed a login request to your device..."}
	switch tx.behaviour {
	case Approve:
		s.mu.Lock()
		at := tx.push.Time.Add(s.approveAfter)
		s.mu.Unlock()
		if now.Before(at) {
			waiting.next = at
			return waiting
		}
		return status{result: "allow", status: "allow", msg: "Success. Logging you in..."}
	case Deny:
		return status{result: "deny", status: "deny", msg: "Login request denied."}
	}
	return waiting // Timeout: waiting forever
}

// hold returns tx's status once it is news: at once for the first call of
// a transaction (or, with final, once it is decided), otherwise when it
// differs from what was last reported. It gives up, returning false, when
// the client goes away; the server closing ends the hold with the current
// status.
func (s *Server) hold(r *http.Request, tx *transaction, final bool) (status, bool) {
	for {
		st := s.state(tx, time.Now())
		s.mu.Lock()
		news := tx.reported != st.status
		if final {
			news = st.result != "waiting"
		}
		if news {
			tx.reported = st.status
		}
		s.mu.Unlock()
		if news {
			return st, true
		}
		until := st.next
		if until.IsZero() {
			until = time.Now().Add(time.Hour)
		}
		if !s.wait(r, until) {
			return st, r.Context().Err() == nil
		}
	}
}

// wait sleeps until t; false if the client went away or the server is
// closing first.
func (s *Server) wait(r *http.Request, t time.Time) bool {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-r.Context().Done():
		return false
	case <-s.closing:
		return false
	}
}

func (s *Server) behaviour(user string) Behaviour {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.users[user] // unknown users: Enroll, the zero value
}

// deviceID makes a stable Duo-looking device ID ("DP" and 18 characters).
func deviceID(user string) string {
	sum := sha512.Sum512([]byte(user))
	return "DP" + strings.ToUpper(hex.EncodeToString(sum[:9]))
}

// newTxID makes a Duo-looking transaction ID (a random UUID).
func newTxID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// ok writes Duo's success answer around response.
func ok(w http.ResponseWriter, response any) {
	writeJSON(w, http.StatusOK, map[string]any{"stat": "OK", "response": response})
}

// fail writes Duo's failure answer.
func fail(w http.ResponseWriter, httpStatus, code int, message, detail string) {
	body := map[string]any{"stat": "FAIL", "code": code, "message": message}
	if detail != "" {
		body["message_detail"] = detail
	}
	writeJSON(w, httpStatus, body)
}

func writeJSON(w http.ResponseWriter, httpStatus int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(httpStatus)
	_ = json.NewEncoder(w).Encode(v)
}
