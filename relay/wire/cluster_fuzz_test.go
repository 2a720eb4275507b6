package wire

import (
	"bytes"
	"errors"
	"net/url"
	"strings"
	"testing"
)

// FuzzClusterFrames is what a Client does with the cluster frames a
// gateway sends (Open with a node's URL, Move, Nodes) and a node with a
// NodeOpen: decode, then check. No panic, every error a *FieldError, and
// whatever passes holds only an http(s) URL of a host and a fingerprint
// of 64 hex digits or none, so nothing else is ever dialled.
func FuzzClusterFrames(f *testing.F) {
	seed := func(t Type, v any) {
		var b bytes.Buffer
		if err := WriteFrame(&b, t, v); err != nil {
			f.Fatal(err)
		}
		f.Add(b.Bytes())
	}
	fp := strings.Repeat("ab", 32)
	seed(TypeOpen, Open{SessionID: "abcdef", Service: "vnc", Control: "op", Gateway: "https://gw-a.example:443", Fingerprint: fp})
	seed(TypeOpen, Open{SessionID: "abcdef", Service: "vnc", Control: "op", Gateway: "file:///etc/passwd"})
	seed(TypeMove, Move{Gateway: "http://10.0.0.2:3085", Reason: "load"})
	seed(TypeMove, Move{Gateway: "https://user@host/path?q"})
	seed(TypeNodes, Nodes{Nodes: []NodeAddr{{Name: "gw-b", URL: "https://gw-b:443", Fingerprint: fp}}})
	seed(TypeNodeOpen, NodeOpen{SessionID: "ab", Client: "pc", KeyID: "0123456789abcdef", Service: "ssh", Control: "op", ControlIP: "10.0.0.1"})
	f.Fuzz(func(t *testing.T, data []byte) {
		typ, payload, err := ReadFrameMax(bytes.NewReader(data), MaxHelloPayload)
		if err != nil {
			return
		}
		var urls, fps []string
		var check func() error
		switch typ {
		case TypeOpen:
			var o Open
			if Decode(typ, payload, &o) != nil {
				return
			}
			check, urls, fps = o.Check, []string{o.Gateway}, []string{o.Fingerprint}
		case TypeMove:
			var m Move
			if Decode(typ, payload, &m) != nil {
				return
			}
			check, urls, fps = m.Check, []string{m.Gateway}, []string{m.Fingerprint}
		case TypeNodes:
			var n Nodes
			if Decode(typ, payload, &n) != nil {
				return
			}
			check = n.Check
			for _, a := range n.Nodes {
				urls, fps = append(urls, a.URL), append(fps, a.Fingerprint)
			}
		case TypeNodeOpen:
			var o NodeOpen
			if Decode(typ, payload, &o) != nil {
				return
			}
			check, urls, fps = o.Check, []string{o.Gateway}, []string{o.Fingerprint}
		default:
			return
		}
		if err := check(); err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("Check returned %T, want *FieldError", err)
			}
			return
		}
		for _, s := range urls {
			if s == "" {
				continue
			}
			u, err := url.Parse(s)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || strings.Trim(u.Path, "/") != "" {
				t.Fatalf("Check passed URL %q", s)
			}
		}
		for _, s := range fps {
			if s != "" && (len(s) != 64 || strings.Trim(s, "0123456789abcdef") != "") {
				t.Fatalf("Check passed fingerprint %q", s)
			}
		}
	})
}
