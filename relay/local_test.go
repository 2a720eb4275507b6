package relay_test

import (
	"bufio"
	"context"
	"errors"
	"testing"

	"github.com/switchboard/switchboard/relay"
	"github.com/switchboard/switchboard/relay/wire"
)

// TestConnectLocal: the console's sessions are sessions like any other —
// the Client gets an Open and accepts, bytes pass both ways, the events
// name the Control console:<operator>, Active Sessions lists it, and an
// admin's termination ends it and says by whom.
func TestConnectLocal(t *testing.T) {
	g := MustStartGateway(t, []string{keyAlpha, keyBravo})
	c := g.MustRegister(t, keyAlpha, "pc-1", "10.0.0.5", "203.0.113.7", "vnc")
	lc := relay.LocalControl{Name: "console:alice", Operator: "alice", KeyID: keyFor(keyAlpha).KeyID, PublicIP: "192.0.2.10"}

	type result struct {
		ls  *relay.LocalSession
		err error
	}
	res := make(chan result, 1)
	go func() {
		ls, err := g.ConnectLocal(context.Background(), lc, "pc-1/vnc")
		res <- result{ls, err}
	}()
	open := c.MustNextOpen(t)
	if open.Control != "console:alice" || open.Service != "vnc" {
		t.Fatalf("open = %+v", open)
	}
	acc := g.MustDial(t, c.PublicIP)
	acc.MustSendHello(t, c.Secret, wire.RoleAccept, c.Name, open.SessionID, nil)
	acc.MustExpect(t, wire.TypeReady, &wire.Ready{})
	r := <-res
	if r.err != nil {
		t.Fatalf("ConnectLocal: %v", r.err)
	}
	ls := r.ls
	defer ls.Close()
	if ls.ID != open.SessionID {
		t.Fatalf("session ID %q, want %q", ls.ID, open.SessionID)
	}
	e := g.Events.MustWait(t, "Control console:alice connected to Client pc-1")
	if e.Operator != "alice" || e.PublicIP != "192.0.2.10" {
		t.Fatalf("event = %+v", e)
	}
	MustExchange(t, &testPeer{Conn: ls, r: bufio.NewReader(ls)}, acc, []byte("RFB 003.008\n"), []byte("RFB 003.008\n"))
	ss := g.Sessions()
	if len(ss) != 1 || ss[0].Control != "console:alice" || ss[0].Operator != "alice" || ss[0].Service != "vnc" {
		t.Fatalf("sessions = %+v", ss)
	}
	if !g.TerminateSessionBy(ls.ID, "bob") {
		t.Fatal("TerminateSessionBy found no session")
	}
	acc.MustBeClosed(t)
	g.Events.MustWait(t, "Control console:alice disconnected from Client pc-1")
	if by := ls.EndedBy(); by != "bob" {
		t.Fatalf("EndedBy = %q, want bob", by)
	}

	// Refusals come back as the gateway's errors.
	var we *wire.Error
	_, err := g.ConnectLocal(context.Background(), lc, "pc-9/vnc")
	if !errors.As(err, &we) || we.Code != wire.CodeNotFound {
		t.Fatalf("unknown Client: %v", err)
	}
	other := lc
	other.KeyID = keyFor(keyBravo).KeyID
	_, err = g.ConnectLocal(context.Background(), other, "pc-1/vnc")
	if !errors.As(err, &we) || we.Code != wire.CodeKeyMismatch {
		t.Fatalf("another key: %v", err)
	}
	if _, err := g.ConnectLocal(context.Background(), lc, "pc-1/\x1b"); err == nil {
		t.Fatal("a bad target was taken")
	}
}
