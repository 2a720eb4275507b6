package event

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestSafe(t *testing.T) {
	long := strings.Repeat("a", 2720)
	for _, tc := range []struct {
		name, in, want string
	}{
		{"plain name kept", "pc-17 (front desk)", "pc-17 (front desk)"},
		{"unicode kept", "Büro-Zürich", "Büro-Zürich"},
		{"newline escaped", "x\n01-Jan-26, 00:00:00, Gateway stopped", `x\n01-Jan-26, 00:00:00, Gateway stopped`},
		{"carriage return and tab", "a\rb\tc", `a\rb\tc`},
		{"escape sequence", "\x1b[2J", `\x1b[2J`},
		{"line separator", "a\u2028b", `a\u2028b`},
		{"bidi override", "a\u202eb", `a\u202eb`},
		{"invalid utf-8", "a\xffb", `a\xffb`},
		{"long cut", long, strings.Repeat("a", MaxField) + "…"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Safe(tc.in); got != tc.want {
				t.Errorf("Safe(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestConstructorsSanitise(t *testing.T) {
	e := ClientSecurityFailed(strings.Repeat("x", 5000)+"\n", "1.2.3.4\nforged", "5.6.7.8")
	if strings.ContainsAny(e.Message, "\r\n") || strings.ContainsAny(e.Client+e.RealIP, "\r\n") {
		t.Fatalf("control characters reached the event: %q", e.Message)
	}
	if len(e.Client) > MaxField+len("…") || len(e.Message) > 3*MaxField+200 {
		t.Fatalf("event not bounded: client %d bytes, message %d bytes", len(e.Client), len(e.Message))
	}
}

func FuzzSafe(f *testing.F) {
	f.Add("pc-1")
	f.Add("a\nb\x00\u2028\xff")
	f.Fuzz(func(t *testing.T, s string) {
		got := Safe(s)
		if !utf8.ValidString(got) {
			t.Fatalf("Safe(%q) = %q is not valid UTF-8", s, got)
		}
		if len(got) > MaxField+len("…") {
			t.Fatalf("Safe(%q) is %d bytes", s, len(got))
		}
		for _, r := range got {
			if !printable(r) {
				t.Fatalf("Safe(%q) = %q keeps %U", s, got, r)
			}
		}
		if len(s) <= MaxField && Safe(got) != got {
			t.Fatalf("Safe is not stable on %q", got)
		}
	})
}
