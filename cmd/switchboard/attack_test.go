package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/db"
	"github.com/switchboard/switchboard/internal/audit/event"
	"github.com/switchboard/switchboard/relay/wire"
)

// TestUnauthenticatedAttacks sends, without a gateway key (and once with
// one), what an attacker on the internet sent to an earlier version, and
// checks afterwards that the audit store, the GW log files, memory and
// goroutines came through: every refusal is audited in a bounded, escaped
// form, no line is forged, and events behind the attack are still stored.
func TestUnauthenticatedAttacks(t *testing.T) {
	g := mustStartGateway(t)
	ctx := context.Background()
	baseGoroutines := runtime.NumGoroutine()
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	hello := func(key, role, name, target string, fill func(*wire.Hello)) error {
		t.Helper()
		d := g.dialer()
		conn, err := d.Dial(ctx)
		if err != nil {
			return err
		}
		defer conn.Close()
		if err := conn.Send(key, role, name, target, fill); err != nil {
			return err
		}
		var ok wire.Welcome
		return wire.Expect(conn.Reader(), wire.TypeWelcome, &ok)
	}
	refusedWith := func(err error, code string) bool {
		var we *wire.Error
		return errors.As(err, &we) && we.Code == code
	}

	// 1. A name long enough to break the events index jammed the store.
	long := strings.Repeat("n", 2720)
	if err := hello("wrong-key-attacker", wire.RoleClient, long, "", nil); !refusedWith(err, wire.CodeBadRequest) {
		t.Fatalf("2,720-character name: %v, want bad_request", err)
	}
	// 2. Many hellos with names as large as a frame allows, and one far
	// larger than the hello limit.
	huge := strings.Repeat("h", wire.MaxHelloPayload-512)
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = hello("wrong-key-attacker", wire.RoleClient, fmt.Sprintf("%d%s", i, huge), "", nil)
		}()
	}
	wg.Wait()
	if err := hello("wrong-key-attacker", wire.RoleClient, strings.Repeat("m", 1<<19), "", nil); err == nil {
		t.Fatal("a 512 KiB hello was admitted")
	}
	// 3. Newlines meant to forge log lines, in every field that reaches one.
	forged := "x\n01-Jan-26, 00:00:00, Gateway stopped"
	_ = hello("wrong-key-attacker", wire.RoleClient, forged, "", nil)
	_ = hello("wrong-key-attacker", wire.RoleClient, "pc-a", "", func(h *wire.Hello) { h.RealIP = forged })
	_ = hello("wrong-key-attacker", wire.RoleConnect, forged, "pc-a/ssh", nil)
	_ = hello("wrong-key-attacker", wire.RoleConnect, "op", forged, nil)
	_ = hello("wrong-key-attacker", wire.RoleAccept, forged, "00ff", nil)
	// With a valid key the Control name reached session events.
	if err := hello(testKey, wire.RoleConnect, forged, "pc-a/ssh", nil); !refusedWith(err, wire.CodeBadRequest) {
		t.Fatalf("valid key, forged Control name: %v, want bad_request", err)
	}

	// The store is not jammed: a real Client after the attack is recorded.
	a := g.startAgent(t, testKey, "after-the-attack", map[string]string{"echo": echoServer(t)})
	g.waitConnected(t, a)
	g.waitEvent(t, "Client after-the-attack connected")

	evs := g.events(t, db.EventFilter{Kind: event.KindSecurity, Limit: 1000})
	if len(evs) < 200 {
		t.Errorf("%d security events stored, want every refusal audited (>= 200)", len(evs))
	}
	for _, e := range evs {
		for _, f := range []string{e.Message, e.Client, e.Control, e.RealIP} {
			if strings.ContainsAny(f, "\r\n") {
				t.Fatalf("stored event holds a line break: %q", e.Message)
			}
		}
		if len(e.Client) > event.MaxField+3 || len(e.Control) > event.MaxField+3 || len(e.Message) > 600 {
			t.Fatalf("stored event not bounded: %d-byte message", len(e.Message))
		}
	}

	logs := g.logFileText(t)
	line := regexp.MustCompile(`^\d\d-[A-Z][a-z]{2}-\d\d, \d\d:\d\d:\d\d, .+$`)
	for _, l := range strings.Split(strings.TrimSuffix(logs, "\n"), "\n") {
		if !line.MatchString(l) {
			t.Fatalf("GW log holds a line not of the gateway's making: %q", l)
		}
		if strings.HasPrefix(l, "01-Jan-26, 00:00:00") {
			t.Fatalf("forged line in the GW log: %q", l)
		}
	}
	if !strings.Contains(logs, "Gateway started") {
		t.Error("the attack rotated \"Gateway started\" out of the GW log")
	}
	if files, _ := filepath.Glob(filepath.Join(g.LogDir(), "GW*.log")); len(files) != 1 {
		t.Errorf("the attack made %d GW log files, want 1", len(files))
	}

	waitFor(t, "goroutines to return to their level", 10*time.Second, func() bool {
		return runtime.NumGoroutine() <= baseGoroutines+10 // the agent's own
	})
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	grown := int64(after.HeapInuse) - int64(before.HeapInuse)
	t.Logf("heap in use grew by %d KiB over the attack", grown>>10)
	if grown > 64<<20 {
		t.Errorf("heap in use grew by %d MiB over the attack", grown>>20)
	}
}
