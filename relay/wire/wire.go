// Package wire is the protocol spoken between the gateway and its peers: the
// Client agent and the Control. Both sides import it; it knows nothing of
// either side's logic.
//
// # Transport
//
// Every peer connection is one outbound HTTP/1.1 request to the gateway,
//
//	GET /relay/v1 HTTP/1.1
//	Connection: Upgrade
//	Upgrade: switchboard-relay/1
//
// answered with "101 Switching Protocols", after which the TCP (or TLS)
// connection carries frames. Using a plain HTTP upgrade rather than a
// WebSocket keeps a session's connection a bare TCP stream once the
// handshake is done, so the gateway can splice it to the other side with
// io.Copy (splice(2) on Linux) and add nothing per byte.
//
// # Frames
//
// A frame is a one-byte type, a four-byte big-endian payload length and a
// JSON payload of at most MaxPayload bytes:
//
//	+------+----------------+------------------+
//	| type | length (uint32)| payload (JSON)   |
//	+------+----------------+------------------+
//
// # Handshake
//
// Right after the 101 the gateway sends a Challenge: the handshake version
// (HandshakeVersion), a fresh random nonce and the installation's salt. The
// peer answers with a Hello naming its role (client, browse, connect or
// accept) and proving it holds a gateway key without sending it, SCRAM-style
// (RFC 5802): the peer derives
//
//	ClientKey = argon2id(HMAC-SHA256(salt, key), salt)   (slow, cached)
//	StoredKey = SHA-256(ClientKey)                       (what the gateway stores)
//	KeyID     = first 16 hex digits of HMAC-SHA256(StoredKey, "switchboard key id v2")
//	Proof     = ClientKey XOR HMAC-SHA256(StoredKey, AuthMessage)
//
// where AuthMessage binds the version, the nonce, the key ID, the role, the
// name and the target. The gateway finds StoredKey by KeyID, recovers
// ClientKey from the proof and checks that it hashes to StoredKey: two fast
// hashes per handshake. What the gateway stores does not let anyone prove a
// key (that takes ClientKey), and every guess at a key, against a stored
// value or a captured handshake, costs the KDF. A failed check ends with an
// Error frame and the connection. See keys.go.
//
// # Roles
//
//   - client: a Client agent registers (name, LAN address, OS, version,
//     services). The gateway answers Welcome (carrying the CMPI), then the
//     connection stays open as the Client's control channel: the Client sends
//     Heartbeat every CMPI seconds and the gateway answers HeartbeatAck; the
//     gateway sends Open to ask for a session, Config when the CMPI changes,
//     and Goodbye before it closes the channel on purpose.
//   - browse: a Control lists the Clients holding its key. The gateway sends
//     ClientList frames (More=true on all but the last) and closes.
//   - connect: a Control asks for a session to Target ("client" or
//     "client/service"). The gateway sends Open to the Client, waits for its
//     accept connection and then sends Ready on both; from then on each
//     connection carries the session's raw bytes and nothing else.
//   - accept: the Client's side of one session, naming the SessionID it got
//     in Open. Before accepting, the Client has dialled its local service; if
//     that failed it sends OpenFailed on its control channel instead.
//
// # Operators
//
// Once a gateway has operators, a browse or connect Hello must also name an
// Operator and carry either a Password or a Token from an earlier sign-in;
// otherwise the gateway answers Error auth_required (token_invalid for a
// token it no longer accepts, locked while the account or the address is
// locked out). When the operator's second factor is needed the gateway
// sends AuthPrompt: for TOTP the Control answers AuthAnswer with the code;
// for Duo Push it waits. A sign-in with a password ends with AuthOK
// carrying a fresh Token. The role then proceeds as usual. The key check
// comes first, so nobody without a gateway key learns anything about
// operators.
//
// A peer must not send anything after its Hello until it has read Welcome or
// Ready: that keeps the gateway's buffers empty when it starts splicing.
package wire

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// Protocol identifies this version of the protocol in the Upgrade header.
const Protocol = "switchboard-relay/1"

// Path is the HTTP path of the relay endpoint.
const Path = "/relay/v1"

// MaxPayload bounds one frame. Control frames are small; browse results are
// split into several frames so no single frame needs to be large.
const MaxPayload = 1 << 20

// MinKeyLength is the shortest gateway key accepted anywhere.
const MinKeyLength = 8

// DefaultCMPI is the Comms Management Packet Interval used when none is set.
const DefaultCMPI = 60 * time.Second

// Type is a frame type.
type Type uint8

// Frame types. Values are part of the protocol: never renumber.
const (
	TypeChallenge    Type = 1
	TypeHello        Type = 2
	TypeWelcome      Type = 3
	TypeError        Type = 4
	TypeHeartbeat    Type = 5
	TypeHeartbeatAck Type = 6
	TypeOpen         Type = 7
	TypeOpenFailed   Type = 8
	TypeReady        Type = 9
	TypeConfig       Type = 10
	TypeClientList   Type = 11
	TypeGoodbye      Type = 12
	TypeAuthPrompt   Type = 13
	TypeAuthAnswer   Type = 14
	TypeAuthOK       Type = 15
	// Clusters of gateway nodes; see cluster.go.
	TypeMove         Type = 16
	TypeNodes        Type = 17
	TypePrimaryAlive Type = 18
	TypeNodeOpen     Type = 19
	TypeNodeSessions Type = 20
	TypeSessionList  Type = 21
	TypeNodeEnd      Type = 22
	TypeNodeDrop     Type = 23
	// Warm paths (see "Warm connections" in docs/protocol.md).
	TypeStandby   Type = 24
	TypeConnectTo Type = 25
	TypeAccept    Type = 26
)

func (t Type) String() string {
	switch t {
	case TypeChallenge:
		return "challenge"
	case TypeHello:
		return "hello"
	case TypeWelcome:
		return "welcome"
	case TypeError:
		return "error"
	case TypeHeartbeat:
		return "heartbeat"
	case TypeHeartbeatAck:
		return "heartbeat-ack"
	case TypeOpen:
		return "open"
	case TypeOpenFailed:
		return "open-failed"
	case TypeReady:
		return "ready"
	case TypeConfig:
		return "config"
	case TypeClientList:
		return "client-list"
	case TypeGoodbye:
		return "goodbye"
	case TypeAuthPrompt:
		return "auth-prompt"
	case TypeAuthAnswer:
		return "auth-answer"
	case TypeAuthOK:
		return "auth-ok"
	case TypeMove:
		return "move"
	case TypeNodes:
		return "nodes"
	case TypePrimaryAlive:
		return "primary-alive"
	case TypeNodeOpen:
		return "node-open"
	case TypeNodeSessions:
		return "node-sessions"
	case TypeSessionList:
		return "session-list"
	case TypeNodeEnd:
		return "node-end"
	case TypeNodeDrop:
		return "node-drop"
	case TypeStandby:
		return "standby"
	case TypeConnectTo:
		return "connect-to"
	case TypeAccept:
		return "accept"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Roles a peer can take in its Hello.
const (
	RoleClient  = "client"
	RoleBrowse  = "browse"
	RoleConnect = "connect"
	RoleAccept  = "accept"
	// RoleWarm is a Control's connection verified ahead of a session: the
	// gateway checks its key and sign-in, answers Standby and waits for a
	// ConnectTo naming the target, which it then serves as a connect.
	RoleWarm = "warm"
	// RoleStandby is a Client's session connection opened ahead of a
	// session: the gateway keeps it and sends Open on it instead of on the
	// control channel; the Client answers Accept (or OpenFailed) on it.
	RoleStandby = "standby"
)

// Challenge is the gateway's first frame.
type Challenge struct {
	Version int    `json:"version"`
	Nonce   []byte `json:"nonce"`
	Salt    []byte `json:"salt"`
	Node    string `json:"node,omitempty"`
}

// Hello is the peer's answer to a Challenge.
type Hello struct {
	// Handshake is the handshake version the proof follows. Peers older
	// than version 2 do not send it, which lets the gateway tell them to
	// upgrade instead of calling their key wrong.
	Handshake int    `json:"handshake,omitempty"`
	Role      string `json:"role"`
	KeyID     string `json:"key_id"`
	Proof     []byte `json:"proof"`
	// Name is the Client's name (client, accept) or the Control's (browse, connect).
	Name string `json:"name"`
	// Target is "client" or "client/service" (connect) or the session ID (accept).
	Target string `json:"target,omitempty"`

	// Operator sign-in, roles browse and connect only; see "Operators".
	// The password travels inside the connection, which is TLS whenever
	// the gateway URL is https (the Control refuses to send one in clear
	// to anything but the loopback).
	Operator string `json:"operator,omitempty"`
	Password string `json:"password,omitempty"`
	Token    string `json:"token,omitempty"`

	// Registration details, role client only.
	RealIP   string    `json:"real_ip,omitempty"`
	OS       string    `json:"os,omitempty"`
	Version  string    `json:"version,omitempty"`
	Services []Service `json:"services,omitempty"`
}

// Service is one local service a Client offers. Its address stays on the
// Client: the gateway and Controls only ever see the name.
type Service struct {
	Name string `json:"name"`
	// Kind says how the console can open the service in a browser:
	// KindVNC, KindSSH, or empty for what its name implies (ServiceKind).
	Kind string `json:"kind,omitempty"`
}

// Kinds of services the browser console opens: a desktop (RFB, through
// noVNC) or a terminal (the gateway is the SSH client).
const (
	KindVNC = "vnc"
	KindSSH = "ssh"
)

// ServiceKind is the kind of service name given explicitly as kind, or
// else the one its name implies: "vnc", "ssh" and names starting with
// them. "" for services the browser console does not open.
func ServiceKind(name, kind string) string {
	switch kind {
	case KindVNC, KindSSH:
		return kind
	case "":
	default:
		return ""
	}
	lower := strings.ToLower(name)
	switch {
	case strings.HasPrefix(lower, KindVNC):
		return KindVNC
	case strings.HasPrefix(lower, KindSSH):
		return KindSSH
	}
	return ""
}

// Welcome accepts a Client's registration.
type Welcome struct {
	CMPISeconds int    `json:"cmpi_seconds"`
	Node        string `json:"node,omitempty"`
}

// Config carries settings that changed while a Client is connected.
type Config struct {
	CMPISeconds int `json:"cmpi_seconds"`
}

// Error codes, stable for scripts and tests; messages are for people.
const (
	CodeBadRequest   = "bad_request"
	CodeNoKeys       = "no_keys"
	CodeUnauthorized = "unauthorized"
	CodeKeyMismatch  = "key_mismatch"
	CodeNotFound     = "not_found"
	CodeLicence      = "licence"
	CodeUnavailable  = "unavailable"
	CodeShutdown     = "shutdown"
	CodeVersion      = "version" // the peer speaks another handshake version: upgrade it
	// Operator sign-in (roles browse and connect).
	CodeAuthRequired = "auth_required" // operators exist: sign in
	CodeTokenInvalid = "token_invalid" // the kept token expired or was revoked: sign in again
	CodeLocked       = "locked"        // too many failures: wait
)

// Error ends a handshake or a channel; it is also returned as a Go error by
// the peer-side helpers so callers can switch on Code.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return "gateway: " + e.Message }

// Open asks a Client for a session to one of its services.
type Open struct {
	SessionID string `json:"session_id"`
	Service   string `json:"service"`
	Control   string `json:"control"`
	// Gateway, when set, is the advertised URL of the node of the cluster
	// that brokers the session (the Control's), which the Client dials for
	// the session's accept connection so that node splices it with no
	// extra hop. Fingerprint pins that node's certificate when it is
	// self-signed. A Client that cannot reach Gateway accepts on the
	// gateway it got Open from, which relays to the brokering node.
	Gateway     string `json:"gateway,omitempty"`
	Fingerprint string `json:"fingerprint,omitempty"`
}

// ConnectTo names a warm connection's target: what a connect's Hello
// carries in Target ("client" or "client/service").
type ConnectTo struct {
	Target string `json:"target"`
}

// Accept is a Client's yes to an Open received on a standby connection:
// the service is dialled and the connection carries the session once the
// gateway sends Ready.
type Accept struct {
	SessionID string `json:"session_id"`
}

// OpenFailed tells the gateway a Client could not start a session.
type OpenFailed struct {
	SessionID string `json:"session_id"`
	Message   string `json:"message"`
}

// Ready starts the raw byte stream of a session.
type Ready struct {
	SessionID string `json:"session_id"`
}

// ClientInfo is one Client in a browse result.
type ClientInfo struct {
	Name           string    `json:"name"`
	RealIP         string    `json:"real_ip"`
	PublicIP       string    `json:"public_ip"`
	OS             string    `json:"os,omitempty"`
	Version        string    `json:"version,omitempty"`
	ConnectedSince time.Time `json:"connected_since"`
	LastHeartbeat  time.Time `json:"last_heartbeat"`
	Services       []string  `json:"services"`
	// ServiceKinds maps each service the browser console opens to its
	// kind (KindVNC, KindSSH); services of no kind are absent.
	ServiceKinds map[string]string `json:"service_kinds,omitempty"`
	Node         string            `json:"node,omitempty"`
}

// ClientList is one page of a browse result.
type ClientList struct {
	Clients []ClientInfo `json:"clients"`
	More    bool         `json:"more"`
}

// Second factors named in AuthPrompt.
const (
	FactorTOTP = "totp"
	FactorDuo  = "duo"
)

// AuthPrompt asks a signing-in Control for a second factor. With Answer
// the Control replies with AuthAnswer (a TOTP code); without, it only shows
// Message (a Duo Push is on its way) and waits.
type AuthPrompt struct {
	Factor  string `json:"factor"`
	Message string `json:"message"`
	Answer  bool   `json:"answer"`
	// WaitSeconds is how long the gateway waits, so the Control can wait
	// as long.
	WaitSeconds int `json:"wait_seconds"`
}

// AuthAnswer is a Control's reply to an AuthPrompt.
type AuthAnswer struct {
	Code string `json:"code"`
}

// AuthOK ends a sign-in with a password: Token may be presented instead of
// the password until Expires.
type AuthOK struct {
	Operator string    `json:"operator"`
	Token    string    `json:"token"`
	Expires  time.Time `json:"expires"`
}

// Goodbye tells a Client why the gateway closes its channel.
type Goodbye struct {
	Reason string `json:"reason"`
}

// Empty is the payload of frames that carry nothing (heartbeats).
type Empty struct{}

// ErrFrameTooLarge reports a frame longer than MaxPayload.
var ErrFrameTooLarge = errors.New("wire: frame too large")

// WriteFrame writes one frame. It does not flush a buffered writer.
func WriteFrame(w io.Writer, t Type, v any) error {
	payload, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("wire: encode %s: %w", t, err)
	}
	if len(payload) > MaxPayload {
		return fmt.Errorf("wire: encode %s: %w", t, ErrFrameTooLarge)
	}
	buf := make([]byte, 5+len(payload))
	buf[0] = byte(t)
	binary.BigEndian.PutUint32(buf[1:5], uint32(len(payload)))
	copy(buf[5:], payload)
	if _, err := w.Write(buf); err != nil {
		return fmt.Errorf("wire: write %s: %w", t, err)
	}
	return nil
}

// ReadFrame reads one frame's header and payload. The payload slice is
// freshly allocated and owned by the caller.
func ReadFrame(r io.Reader) (Type, []byte, error) {
	return ReadFrameMax(r, MaxPayload)
}

// Decode unmarshals a payload into v, naming the frame type on failure.
func Decode(t Type, payload []byte, v any) error {
	if err := json.Unmarshal(payload, v); err != nil {
		return fmt.Errorf("wire: malformed %s frame: %w", t, err)
	}
	return nil
}

// Expect reads one frame and decodes it into v when it has type want. An
// Error frame is returned as *Error; any other type is a protocol error.
func Expect(r io.Reader, want Type, v any) error {
	t, payload, err := ReadFrame(r)
	if err != nil {
		return err
	}
	switch t {
	case want:
		return Decode(t, payload, v)
	case TypeError:
		var e Error
		if err := Decode(t, payload, &e); err != nil {
			return err
		}
		return &e
	default:
		return fmt.Errorf("wire: got %s frame, want %s", t, want)
	}
}
