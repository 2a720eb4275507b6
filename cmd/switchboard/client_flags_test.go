package main

import "testing"

// TestParseServices: NAME=HOST:PORT with an optional kind for the browser
// console, and clear refusals of anything else.
func TestParseServices(t *testing.T) {
	addrs, kinds, err := parseServices([]string{"desk=127.0.0.1:5900,kind=vnc", "ssh=127.0.0.1:22", "web=10.0.0.1:80"})
	if err != nil {
		t.Fatal(err)
	}
	if addrs["desk"] != "127.0.0.1:5900" || addrs["ssh"] != "127.0.0.1:22" || len(addrs) != 3 {
		t.Fatalf("addresses = %v", addrs)
	}
	if len(kinds) != 1 || kinds["desk"] != "vnc" {
		t.Fatalf("kinds = %v, want only the one given (names imply the others at the gateway)", kinds)
	}
	for _, bad := range []string{"desk=127.0.0.1:5900,kind=rdp", "desk=127.0.0.1:5900,vnc", "desk", "=1.2.3.4:5", "desk=,kind=vnc"} {
		if _, _, err := parseServices([]string{bad}); err == nil {
			t.Errorf("%q was taken", bad)
		}
	}
	if _, _, err := parseServices([]string{"a=1.1.1.1:1", "a=2.2.2.2:2"}); err == nil {
		t.Error("a service given twice was taken")
	}
}
