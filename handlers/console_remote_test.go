package handlers

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// TestTruncReason: a close reason fits a control frame, cut at a rune.
func TestTruncReason(t *testing.T) {
	if got := truncReason("Session ended by admin bob."); got != "Session ended by admin bob." {
		t.Errorf("a short reason became %q", got)
	}
	for _, s := range []string{strings.Repeat("a", 200), strings.Repeat("é", 100), strings.Repeat("ab€", 40)} {
		got := truncReason(s)
		if len(got) > 123 || !utf8.ValidString(got) || !strings.HasSuffix(got, "…") || !strings.HasPrefix(s, strings.TrimSuffix(got, "…")) {
			t.Errorf("truncReason(%d bytes) = %q (%d bytes)", len(s), got, len(got))
		}
	}
}
