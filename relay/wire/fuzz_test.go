package wire

import (
	"bytes"
	"errors"
	"runtime"
	"testing"
	"time"
)

// frameValue gives, for each frame type, the value its payload decodes
// into; nil for a type that is not in the protocol.
func frameValue(t Type) any {
	switch t {
	case TypeChallenge:
		return new(Challenge)
	case TypeHello:
		return new(Hello)
	case TypeWelcome:
		return new(Welcome)
	case TypeError:
		return new(Error)
	case TypeHeartbeat, TypeHeartbeatAck:
		return new(Empty)
	case TypeOpen:
		return new(Open)
	case TypeOpenFailed:
		return new(OpenFailed)
	case TypeReady:
		return new(Ready)
	case TypeConfig:
		return new(Config)
	case TypeClientList:
		return new(ClientList)
	case TypeGoodbye:
		return new(Goodbye)
	case TypeAuthPrompt:
		return new(AuthPrompt)
	case TypeAuthAnswer:
		return new(AuthAnswer)
	case TypeAuthOK:
		return new(AuthOK)
	}
	return nil
}

func encodeFrame(tb testing.TB, t Type, v any) []byte {
	tb.Helper()
	var b bytes.Buffer
	if err := WriteFrame(&b, t, v); err != nil {
		tb.Fatalf("encode %s: %v", t, err)
	}
	return b.Bytes()
}

// seedFrames is one valid frame of every type, the gateway's inputs first.
func seedFrames(tb testing.TB) [][]byte {
	at := time.Date(2025, 6, 29, 16, 11, 20, 123456789, time.FixedZone("", 2*3600))
	return [][]byte{
		encodeFrame(tb, TypeHello, Hello{Role: RoleClient, KeyID: "0011223344556677", Proof: []byte{1, 2, 3}, Name: "pc-1",
			RealIP: "10.0.0.1", OS: "linux/amd64", Version: "1.0", Services: []Service{{Name: "ssh"}, {Name: "vnc"}}}),
		encodeFrame(tb, TypeHello, Hello{Role: RoleConnect, KeyID: "00", Proof: []byte{9}, Name: "op", Target: "pc-1/vnc",
			Operator: "alice", Password: "correct horse", Token: "tok"}),
		encodeFrame(tb, TypeHeartbeat, Empty{}),
		encodeFrame(tb, TypeOpenFailed, OpenFailed{SessionID: "abcdef", Message: "connection refused"}),
		encodeFrame(tb, TypeAuthAnswer, AuthAnswer{Code: "123456"}),
		encodeFrame(tb, TypeError, Error{Code: CodeBadRequest, Message: "no"}),
		encodeFrame(tb, TypeChallenge, Challenge{Version: 1, Nonce: make([]byte, 32), Salt: []byte("salt"), Node: "n1"}),
		encodeFrame(tb, TypeWelcome, Welcome{CMPISeconds: 60, Node: "n1"}),
		encodeFrame(tb, TypeHeartbeatAck, Empty{}),
		encodeFrame(tb, TypeOpen, Open{SessionID: "abcdef", Service: "vnc", Control: "op"}),
		encodeFrame(tb, TypeReady, Ready{SessionID: "abcdef"}),
		encodeFrame(tb, TypeConfig, Config{CMPISeconds: 30}),
		encodeFrame(tb, TypeClientList, ClientList{Clients: []ClientInfo{{Name: "pc-1", ConnectedSince: at, LastHeartbeat: at, Services: []string{"ssh"}}}, More: true}),
		encodeFrame(tb, TypeGoodbye, Goodbye{Reason: "bye"}),
		encodeFrame(tb, TypeAuthPrompt, AuthPrompt{Factor: FactorTOTP, Message: "code?", Answer: true, WaitSeconds: 120}),
		encodeFrame(tb, TypeAuthOK, AuthOK{Operator: "alice", Token: "tok", Expires: at}),
	}
}

// allocated is the number of bytes f allocates.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// maxDecodeAlloc bounds what reading and decoding one frame may allocate:
// the payload buffer, which ReadFrame sizes from the header but never
// beyond MaxPayload, and a fixed multiple of the bytes actually received
// (a browse result of empty objects is the worst: each 3-byte "{}," is a
// ClientInfo of a few hundred bytes).
func maxDecodeAlloc(received int) uint64 {
	return MaxPayload + 512*uint64(received) + 64<<10
}

// FuzzFrame reads one frame of any type and decodes its payload as the
// receiving side does. Neither may panic or allocate more than the input
// justifies, the payload must be the input's own bytes, and what decodes
// must re-encode to a frame that decodes to the same encoding.
func FuzzFrame(f *testing.F) {
	for _, b := range seedFrames(f) {
		f.Add(b)
	}
	f.Add([]byte{byte(TypeHello), 0, 0x10, 0, 0}) // claims MaxPayload, sends nothing
	f.Add([]byte{byte(TypeClientList), 0, 0, 0, 10, '{', '"', 'c', 'l', 'i', 'e', 'n', 't', 's', '"'})
	f.Fuzz(func(t *testing.T, data []byte) {
		var (
			typ     Type
			payload []byte
			err     error
			v       any
			decErr  error
		)
		n := allocated(func() {
			typ, payload, err = ReadFrame(bytes.NewReader(data))
			if err == nil {
				if v = frameValue(typ); v != nil {
					decErr = Decode(typ, payload, v)
				}
			}
		})
		if limit := maxDecodeAlloc(len(data)); n > limit {
			t.Fatalf("reading and decoding %d bytes allocated %d bytes (limit %d)", len(data), n, limit)
		}
		if err != nil {
			if len(data) >= 5 && errors.Is(err, ErrFrameTooLarge) != (uint64(data[1])<<24|uint64(data[2])<<16|uint64(data[3])<<8|uint64(data[4]) > MaxPayload) {
				t.Fatalf("ErrFrameTooLarge is %v for a header claiming %x", errors.Is(err, ErrFrameTooLarge), data[1:5])
			}
			return
		}
		if len(payload) > MaxPayload || !bytes.Equal(payload, data[5:5+len(payload)]) {
			t.Fatalf("payload of %d bytes is not the input's", len(payload))
		}
		if v == nil || decErr != nil {
			return
		}
		first, err := encode(typ, v)
		if errors.Is(err, ErrFrameTooLarge) {
			// JSON escaping can grow a payload near the limit past it.
			return
		}
		if err != nil {
			t.Fatalf("a decoded %s does not re-encode: %v", typ, err)
		}
		t2, p2, err := ReadFrame(bytes.NewReader(first))
		if err != nil || t2 != typ {
			t.Fatalf("re-encoded %s frame reads back as %s, %v", typ, t2, err)
		}
		v2 := frameValue(typ)
		if err := Decode(t2, p2, v2); err != nil {
			t.Fatalf("re-encoded %s %s does not decode: %v", typ, p2, err)
		}
		second, err := encode(typ, v2)
		if err != nil || !bytes.Equal(first, second) {
			t.Fatalf("%s is not stable through decode and encode:\n first  %s\n second %s (%v)", typ, first[5:], second, err)
		}
	})
}

func encode(t Type, v any) ([]byte, error) {
	var b bytes.Buffer
	err := WriteFrame(&b, t, v)
	return b.Bytes(), err
}

// FuzzExpectHello is the gateway's reading of a peer's first frame: only a
// Hello is accepted, an Error frame comes back as *Error, and anything else
// is an error.
func FuzzExpectHello(f *testing.F) {
	for _, b := range seedFrames(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var h Hello
		err := Expect(bytes.NewReader(data), TypeHello, &h)
		if len(data) == 0 {
			if err == nil {
				t.Fatal("nothing read as a Hello")
			}
			return
		}
		var we *Error
		switch typ := Type(data[0]); {
		case err == nil && typ != TypeHello:
			t.Fatalf("a %s frame accepted as a Hello", typ)
		case errors.As(err, &we) && typ != TypeError:
			t.Fatalf("a %s frame returned as a gateway error", typ)
		}
		if err != nil {
			return
		}
		b, err := encode(TypeHello, h)
		if errors.Is(err, ErrFrameTooLarge) {
			return
		}
		var h2 Hello
		if err := Expect(bytes.NewReader(b), TypeHello, &h2); err != nil {
			t.Fatalf("an accepted Hello does not survive encoding: %v", err)
		}
		if b2, _ := encode(TypeHello, h2); !bytes.Equal(b, b2) {
			t.Fatalf("Hello unstable through encode and decode:\n %s\n %s", b, b2)
		}
	})
}

// FuzzProof: a proof made for some fields verifies, and verifies for those
// fields only: moving the boundary between name and target, or changing
// the nonce, breaks it. The key is one of two fixed ones: deriving a key
// costs the KDF, which would leave the fuzzer nothing else to do, and the
// fields, not the key, are what a proof could get wrong.
func FuzzProof(f *testing.F) {
	f.Add(uint8(0), RoleConnect, "op", "pc/ssh", []byte("nonce"), 1)
	f.Add(uint8(1), "", "", "", []byte(nil), 0)
	f.Add(uint8(2), RoleAccept, "ab", "c", []byte{0}, -1)
	keys := []string{"the-right-key", "the-wrong-key"}
	f.Fuzz(func(t *testing.T, keyIndex uint8, role, name, target string, nonce []byte, shift int) {
		key := keys[int(keyIndex)%len(keys)]
		c := Challenge{Salt: []byte("salt"), Nonce: nonce}
		h := NewHello(c, key, role, name, target)
		v := Verifier(c.Salt, key)
		if h.KeyID != KeyID(v) || len(h.KeyID) != 16 {
			t.Fatalf("key id %q does not match the verifier", h.KeyID)
		}
		if !CheckProof(v, nonce, h) {
			t.Fatal("a correct proof is refused")
		}
		joined := name + target
		if cut := len(name) + shift; shift != 0 && cut >= 0 && cut <= len(joined) {
			h2 := h
			h2.Name, h2.Target = joined[:cut], joined[cut:]
			if CheckProof(v, nonce, h2) {
				t.Fatalf("proof for (%q, %q) accepted for (%q, %q)", name, target, h2.Name, h2.Target)
			}
		}
		if CheckProof(v, append(append([]byte(nil), nonce...), 0), h) {
			t.Fatal("proof accepted for another nonce")
		}
		if other := keys[(int(keyIndex)+1)%len(keys)]; CheckProof(Verifier(c.Salt, other), nonce, h) {
			t.Fatal("proof accepted by another key")
		}
	})
}
