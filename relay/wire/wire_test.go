package wire

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func TestFrameRoundTrip(t *testing.T) {
	var b bytes.Buffer
	in := Hello{Role: RoleClient, KeyID: "abc", Name: "pc-1", Services: []Service{{Name: "ssh"}}}
	if err := WriteFrame(&b, TypeHello, in); err != nil {
		t.Fatal(err)
	}
	var out Hello
	if err := Expect(&b, TypeHello, &out); err != nil {
		t.Fatal(err)
	}
	if out.Name != "pc-1" || len(out.Services) != 1 || out.Services[0].Name != "ssh" {
		t.Fatalf("round trip = %+v", out)
	}
}

func TestReadFrameRejects(t *testing.T) {
	tests := []struct {
		name  string
		input []byte
		want  error
	}{
		{"oversized length is refused before reading", []byte{2, 0xff, 0xff, 0xff, 0xff}, ErrFrameTooLarge},
		{"truncated header is an unexpected EOF", []byte{2, 0, 0}, io.ErrUnexpectedEOF},
		{"truncated payload is an unexpected EOF", []byte{2, 0, 0, 0, 9, '{'}, io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := ReadFrame(bytes.NewReader(tt.input))
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestExpectReturnsGatewayError(t *testing.T) {
	var b bytes.Buffer
	_ = WriteFrame(&b, TypeError, Error{Code: CodeLicence, Message: "full"})
	var w Welcome
	err := Expect(&b, TypeWelcome, &w)
	var we *Error
	if !errors.As(err, &we) || we.Code != CodeLicence {
		t.Fatalf("err = %v, want *Error with code licence", err)
	}
}

func TestProof(t *testing.T) {
	salt, nonce := []byte("salt"), []byte("nonce")
	h := NewHello(Challenge{Salt: salt, Nonce: nonce}, "the-right-key", RoleConnect, "op", "pc/ssh")
	v := Verifier(salt, "the-right-key")
	if h.KeyID != KeyID(v) {
		t.Fatal("key id does not match the verifier")
	}
	if !CheckProof(v, nonce, h) {
		t.Fatal("a correct proof is refused")
	}
	for name, mutate := range map[string]func(*Hello){
		"another target":       func(h *Hello) { h.Target = "pc/vnc" },
		"another name":         func(h *Hello) { h.Name = "op2" },
		"another role":         func(h *Hello) { h.Role = RoleBrowse },
		"shifted field bounds": func(h *Hello) { h.Name, h.Target = "o", "ppc/ssh" },
	} {
		t.Run(name+" is refused", func(t *testing.T) {
			h2 := h
			mutate(&h2)
			if CheckProof(v, nonce, h2) {
				t.Fatal("proof accepted")
			}
		})
	}
	if CheckProof(v, []byte("other nonce"), h) {
		t.Fatal("proof replayed against another nonce accepted")
	}
	if CheckProof(Verifier(salt, "the-wrong-key"), nonce, h) {
		t.Fatal("proof accepted by another key")
	}
}

func FuzzReadFrame(f *testing.F) {
	var b bytes.Buffer
	_ = WriteFrame(&b, TypeHello, Hello{Role: RoleClient})
	f.Add(b.Bytes())
	f.Add([]byte{2, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		typ, payload, err := ReadFrame(bytes.NewReader(data))
		if err != nil {
			return
		}
		var h Hello
		_ = Decode(typ, payload, &h)
		if len(payload) > MaxPayload {
			t.Fatal("payload over the limit accepted")
		}
	})
}
