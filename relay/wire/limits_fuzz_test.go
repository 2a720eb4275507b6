package wire

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzReadHello is the gateway's reading of an unauthenticated peer's
// first frame (ReadHello) and its field check (Hello.Check): no panic, no
// payload beyond MaxHelloPayload, and a Hello that passes the check holds
// only values within the limits docs/protocol.md promises.
func FuzzReadHello(f *testing.F) {
	for _, b := range seedFrames(f) {
		f.Add(b)
	}
	f.Add([]byte{byte(TypeHello), 0, 0, 0x40, 0x01}) // one byte over MaxHelloPayload
	f.Fuzz(func(t *testing.T, data []byte) {
		var (
			h   Hello
			err error
		)
		n := allocated(func() { h, err = ReadHello(bytes.NewReader(data)) })
		if limit := MaxHelloPayload + 512*uint64(len(data)) + 64<<10; n > limit {
			t.Fatalf("reading a %d-byte hello allocated %d bytes (limit %d)", len(data), n, limit)
		}
		if err != nil {
			return
		}
		if len(data) < 5 || data[0] != byte(TypeHello) {
			t.Fatalf("ReadHello accepted a frame of type %d", data[0])
		}
		if err := h.Check(); err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("Check returned %T, want *FieldError", err)
			}
			return
		}
		mustName := func(field, s string) {
			t.Helper()
			if s == "" || len(s) > MaxNameLen || strings.ContainsRune(s, '/') || !printableText(s) {
				t.Fatalf("Check passed %s %q", field, s)
			}
		}
		mustName("name", h.Name)
		switch h.Role {
		case RoleClient, RoleBrowse, RoleConnect, RoleAccept:
		default:
			t.Fatalf("Check passed role %q", h.Role)
		}
		if h.Role == RoleConnect {
			client, service, ok := strings.Cut(h.Target, "/")
			mustName("target client", client)
			if ok {
				mustName("target service", service)
			}
		}
		if len(h.Services) > MaxServices {
			t.Fatalf("Check passed %d services", len(h.Services))
		}
		for _, s := range h.Services {
			mustName("service", s.Name)
		}
		for _, s := range []string{h.KeyID, h.OS, h.Version, h.RealIP, h.Operator} {
			if len(s) > MaxIDLen || !printableText(s) {
				t.Fatalf("Check passed %q", s)
			}
		}
	})
}

func printableText(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if !Printable(r) {
			return false
		}
	}
	return true
}

// FuzzCleanMessage: what a Client says in OpenFailed reaches a Control's
// screen as printable text of bounded length, whatever it was.
func FuzzCleanMessage(f *testing.F) {
	f.Add("connection refused")
	f.Add("a\nb\x1b[2J\u202e\xff")
	f.Add(strings.Repeat("é", MaxMessageLen))
	f.Fuzz(func(t *testing.T, s string) {
		got := CleanMessage(s)
		if len(got) > MaxMessageLen+utf8.UTFMax+len("…") {
			t.Fatalf("CleanMessage of %d bytes is %d bytes", len(s), len(got))
		}
		if !printableText(got) {
			t.Fatalf("CleanMessage(%q) = %q holds unprintable text", s, got)
		}
		if len(s) <= MaxMessageLen && printableText(s) && !strings.ContainsRune(s, utf8.RuneError) && got != s {
			t.Fatalf("CleanMessage changed the clean message %q to %q", s, got)
		}
	})
}
