package wire

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits on what a peer may send. The gateway checks every field of a Hello
// against them (Hello.Check) before the value is used in an event, a log
// line, a lookup or a reply; docs/protocol.md lists them for authors of
// other peers. Lengths are in bytes of UTF-8.
const (
	// MaxHelloPayload bounds the first frame a peer sends, before it has
	// proved anything: an unauthenticated peer costs at most this much.
	MaxHelloPayload = 16 << 10
	// MaxNameLen bounds Client, Control and service names.
	MaxNameLen = 128
	// MaxServices bounds the services one Client offers.
	MaxServices = 64
	// MaxOperatorLen bounds an operator name in a Hello.
	MaxOperatorLen = 64
	// MaxSecretLen bounds a password or token in a Hello.
	MaxSecretLen = 1024
	// MaxInfoLen bounds a Client's OS and version texts.
	MaxInfoLen = 64
	// MaxIDLen bounds key IDs and session IDs (hex).
	MaxIDLen = 64
	// MaxProofLen bounds a key proof.
	MaxProofLen = 64
	// MaxMessageLen bounds a message a Client sends for a Control to read
	// (OpenFailed); longer ones are cut, not refused.
	MaxMessageLen = 512
)

// FieldError says which field of a peer's frame is unacceptable and why.
// Its text is safe to send back to the peer: it never repeats the value.
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return e.Field + " " + e.Reason }

// Check validates every field of a Hello for its role. It does not check
// the proof: that is the keyring's job, and it runs after this.
func (h *Hello) Check() error {
	switch h.Role {
	case RoleClient, RoleBrowse, RoleConnect, RoleAccept, RoleWarm, RoleStandby:
	default:
		return &FieldError{"role", "must be client, browse, connect, accept, warm or standby"}
	}
	if err := checkHex("key_id", h.KeyID); err != nil {
		return err
	}
	if len(h.Proof) == 0 || len(h.Proof) > MaxProofLen {
		return &FieldError{"proof", fmt.Sprintf("must be 1 to %d bytes", MaxProofLen)}
	}
	if err := CheckName("name", h.Name); err != nil {
		return err
	}
	switch h.Role {
	case RoleConnect:
		if err := CheckTarget(h.Target); err != nil {
			return err
		}
	case RoleAccept:
		if err := checkHex("target", h.Target); err != nil {
			return err
		}
	default:
		if h.Target != "" {
			return &FieldError{"target", "is only for connect and accept"}
		}
	}
	if h.Operator != "" || h.Password != "" || h.Token != "" {
		if h.Role != RoleBrowse && h.Role != RoleConnect && h.Role != RoleWarm {
			return &FieldError{"operator", "sign-in is only for browse, connect and warm"}
		}
		if err := CheckText("operator", h.Operator, MaxOperatorLen); err != nil && h.Operator != "" {
			return err
		}
		if len(h.Password) > MaxSecretLen || !utf8.ValidString(h.Password) {
			return &FieldError{"password", fmt.Sprintf("must be valid UTF-8 of at most %d bytes", MaxSecretLen)}
		}
		if len(h.Token) > MaxSecretLen || !printableASCII(h.Token) {
			return &FieldError{"token", fmt.Sprintf("must be printable ASCII of at most %d bytes", MaxSecretLen)}
		}
	}
	if h.Role != RoleClient {
		if h.RealIP != "" || h.OS != "" || h.Version != "" || len(h.Services) > 0 {
			return &FieldError{"registration", "details are only for role client"}
		}
		return nil
	}
	if h.RealIP != "" {
		if len(h.RealIP) > 64 {
			return &FieldError{"real_ip", "must be an IP address"}
		}
		if _, err := netip.ParseAddr(h.RealIP); err != nil {
			return &FieldError{"real_ip", "must be an IP address"}
		}
	}
	if h.OS != "" {
		if err := CheckText("os", h.OS, MaxInfoLen); err != nil {
			return err
		}
	}
	if h.Version != "" {
		if err := CheckText("version", h.Version, MaxInfoLen); err != nil {
			return err
		}
	}
	if len(h.Services) > MaxServices {
		return &FieldError{"services", fmt.Sprintf("at most %d", MaxServices)}
	}
	seen := make(map[string]bool, len(h.Services))
	for _, sv := range h.Services {
		if err := CheckName("service name", sv.Name); err != nil {
			return err
		}
		if seen[sv.Name] {
			return &FieldError{"services", "must not repeat a name"}
		}
		switch sv.Kind {
		case "", KindVNC, KindSSH:
		default:
			return &FieldError{"service kind", "must be vnc, ssh or empty"}
		}
		seen[sv.Name] = true
	}
	return nil
}

// CheckTarget accepts a connect's target, "client" or "client/service",
// from a Hello or a ConnectTo.
func CheckTarget(target string) error {
	client, service, hasService := strings.Cut(target, "/")
	if err := CheckName("target client", client); err != nil {
		return err
	}
	if hasService {
		if err := CheckName("target service", service); err != nil {
			return err
		}
	}
	return nil
}

// CheckName accepts a Client, Control or service name: 1 to MaxNameLen
// bytes of printable UTF-8 without '/', which separates Client and service.
func CheckName(field, s string) error {
	if err := CheckText(field, s, MaxNameLen); err != nil {
		return err
	}
	if strings.ContainsRune(s, '/') {
		return &FieldError{field, "must not contain '/'"}
	}
	return nil
}

// CheckText accepts 1 to max bytes of valid UTF-8 with no control, format
// or line-separator characters: nothing that could break a log line, hide
// text or reorder it on screen.
func CheckText(field, s string, max int) error {
	if s == "" || len(s) > max {
		return &FieldError{field, fmt.Sprintf("must be 1 to %d bytes", max)}
	}
	if !utf8.ValidString(s) {
		return &FieldError{field, "must be valid UTF-8"}
	}
	for _, r := range s {
		if !Printable(r) {
			return &FieldError{field, "must not contain control or invisible characters"}
		}
	}
	return nil
}

// Printable reports whether r may appear in a name or text a peer sends:
// letters, marks, digits, punctuation, symbols and the plain space.
func Printable(r rune) bool {
	if r == ' ' {
		return true
	}
	return unicode.In(r, unicode.L, unicode.M, unicode.N, unicode.P, unicode.S)
}

func checkHex(field, s string) error {
	if s == "" || len(s) > MaxIDLen {
		return &FieldError{field, fmt.Sprintf("must be 1 to %d hex digits", MaxIDLen)}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return &FieldError{field, "must be lower-case hex digits"}
		}
	}
	return nil
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// ReadHello reads a peer's first frame with the smaller MaxHelloPayload
// limit and decodes it; the caller still runs Hello.Check.
func ReadHello(r io.Reader) (Hello, error) {
	t, payload, err := ReadFrameMax(r, MaxHelloPayload)
	if err != nil {
		return Hello{}, err
	}
	if t != TypeHello {
		return Hello{}, fmt.Errorf("wire: got %s frame, want %s", t, TypeHello)
	}
	var h Hello
	if err := Decode(t, payload, &h); err != nil {
		return Hello{}, err
	}
	return h, nil
}

// MaxPeerFrame bounds the frames a registered Client sends on its control
// channel (heartbeats, open-failed): all small.
const MaxPeerFrame = 16 << 10

// ReadFrameMax is ReadFrame with a lower bound on the payload, checked
// before anything is allocated.
func ReadFrameMax(r io.Reader, max uint32) (Type, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, fmt.Errorf("wire: read header: %w", err)
	}
	t := Type(hdr[0])
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > max {
		return t, nil, fmt.Errorf("wire: %s of %d bytes: %w", t, n, ErrFrameTooLarge)
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		return t, nil, fmt.Errorf("wire: read %s payload: %w", t, err)
	}
	return t, payload, nil
}

// CleanMessage makes a peer's free text (an OpenFailed message) safe to
// show: control characters become spaces and it is cut at MaxMessageLen.
func CleanMessage(s string) string {
	var b bytes.Buffer
	for _, r := range s {
		if b.Len() >= MaxMessageLen {
			b.WriteString("…")
			break
		}
		if r == utf8.RuneError || !Printable(r) {
			r = ' '
		}
		b.WriteRune(r)
	}
	return b.String()
}
