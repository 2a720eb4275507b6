package peer

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/relay/wire"
)

// fuzzFrame is one wire frame, built by hand so that seeds can also be
// malformed.
func fuzzFrame(t wire.Type, payload []byte) []byte {
	b := make([]byte, 5, 5+len(payload))
	b[0] = byte(t)
	binary.BigEndian.PutUint32(b[1:], uint32(len(payload)))
	return append(b, payload...)
}

func fuzzJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// serveOnce plays a gateway for the next connection to ln: it reads the
// upgrade request, writes resp and closes.
func serveOnce(ln net.Listener, resp []byte) <-chan error {
	served := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			served <- err
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		// Read the whole request first: closing with unread bytes would
		// reset the connection before the answer is read.
		br := bufio.NewReader(c)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				served <- err
				return
			}
			if line == "\r\n" {
				break
			}
		}
		_, err = c.Write(resp)
		served <- err
	}()
	return served
}

const switching = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: " + wire.Protocol + "\r\n\r\n"

func testChallenge() []byte {
	return fuzzFrame(wire.TypeChallenge, fuzzJSON(wire.Challenge{Version: wire.HandshakeVersion, Nonce: make([]byte, 32), Salt: []byte("salt"), Node: "n1"}))
}

// The fuzz target's fake gateway, answering as a real one does.
func TestDialReadsChallengeAndKeepsWhatFollows(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	resp := append([]byte(switching), testChallenge()...)
	resp = append(resp, "after the challenge"...)
	served := serveOnce(ln, resp)
	d := Dialer{Gateway: Gateway{Host: ln.Addr().String()}, Timeout: 5 * time.Second}
	conn, err := d.Dial(context.Background())
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer conn.Close()
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	if conn.Challenge.Node != "n1" || conn.Challenge.Version != wire.HandshakeVersion || len(conn.Challenge.Nonce) != 32 {
		t.Fatalf("challenge = %+v", conn.Challenge)
	}
	if s, ok := conn.Stream().(*Conn); !ok || s != conn {
		t.Fatalf("Stream() = %T while bytes are buffered, want the *Conn that drains them", conn.Stream())
	}
	got, err := io.ReadAll(conn)
	if err != nil || string(got) != "after the challenge" {
		t.Fatalf("read %q, %v; want the bytes after the challenge", got, err)
	}
}

// FuzzDialUpgradeResponse plays a gateway that answers the upgrade request
// with arbitrary bytes (status line, headers, then frames) and closes. The
// dialler must neither panic nor hang: it returns a Conn only for a 101
// followed by a challenge frame, and otherwise an error that names the
// gateway. Answering the challenge it returned must not panic either.
func FuzzDialUpgradeResponse(f *testing.F) {
	challenge := testChallenge()
	for _, seed := range [][]byte{
		append([]byte(switching), challenge...),
		append([]byte(switching), fuzzFrame(wire.TypeError, fuzzJSON(wire.Error{Code: wire.CodeShutdown, Message: "gateway is shutting down"}))...),
		append([]byte(switching), challenge[:7]...),
		append([]byte(switching), 1, 0xff, 0xff, 0xff, 0xff),
		append([]byte(switching), fuzzFrame(wire.TypeChallenge, []byte(`{"nonce":`))...),
		append([]byte(switching), fuzzFrame(wire.TypeWelcome, []byte(`{}`))...),
		[]byte("HTTP/1.1 426 Upgrade Required\r\nUpgrade: " + wire.Protocol + "\r\nContent-Length: 26\r\n\r\nuse the switchboard client"),
		[]byte("HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
		[]byte("HTTP/1.1 502 Bad Gateway\r\nContent-Length: 99999999999\r\n\r\nshort"),
		[]byte("HTTP/1.0 200 OK\r\n\r\n"),
		[]byte("HTTP/1.1 101\r\n\r\n"),
		[]byte("SSH-2.0-OpenSSH_9.6\r\n"),
		{},
	} {
		f.Add(seed)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { ln.Close() })
	d := Dialer{Gateway: Gateway{Host: ln.Addr().String()}, UserAgent: "fuzz", Timeout: 10 * time.Second}

	f.Fuzz(func(t *testing.T, resp []byte) {
		served := serveOnce(ln, resp)
		conn, err := d.Dial(context.Background())
		if serr := <-served; serr != nil {
			t.Fatalf("fake gateway: %v", serr)
		}
		if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Dial waited for more than a closed connection holds: %v", err)
		}
		if err != nil {
			if !strings.Contains(err.Error(), d.Gateway.String()) {
				t.Fatalf("error %q does not name the gateway %s", err, d.Gateway)
			}
			return
		}
		defer conn.Close()
		if !bytes.Contains(resp, []byte(" 101")) || !bytes.Contains(resp, []byte{byte(wire.TypeChallenge)}) {
			t.Fatalf("Dial accepted %q as an upgrade with a challenge", resp)
		}
		// Answering whatever challenge came must not panic either; a
		// version this peer does not speak is refused before anything is
		// derived or sent. The KDF is faked: fuzzed salts would each cost it.
		derived := false
		keys := &ClientKeys{Key: "fuzz-key", Derive: func([]byte, string) []byte {
			derived = true
			return make([]byte, wire.KeySize)
		}}
		err = conn.SendKey(keys, wire.RoleBrowse, "fuzz", "", nil)
		if conn.Challenge.Version != wire.HandshakeVersion {
			if err == nil || derived || !strings.Contains(err.Error(), d.Gateway.String()) {
				t.Fatalf("challenge version %d: SendKey = %v (derived %v), want a refusal naming the gateway", conn.Challenge.Version, err, derived)
			}
		}
	})
}
