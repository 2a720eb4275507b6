package event

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxField bounds one peer-supplied value inside an event. It is the
// relay's own limit on names, so a valid name is never cut; anything longer
// was refused and is kept only as evidence.
const MaxField = 128

// Safe is how a value that a peer sent appears in an event: control,
// format and line-separator characters and invalid UTF-8 are escaped
// (\n, \x1b, \u2028), so an event is always one line and shows what was
// sent, and it is cut at MaxField bytes with a trailing "…". Every
// constructor applies it to its text arguments: no caller can forget.
func Safe(s string) string { return escape(s, MaxField) }

// MaxMessage bounds an event's whole text.
const MaxMessage = 1024

// OneLine is Safe for a whole message composed elsewhere (the console's
// own events, whose parts an administrator typed): escaped the same way and
// cut at MaxMessage bytes.
func OneLine(s string) string { return escape(s, MaxMessage) }

func escape(s string, max int) string {
	// Only the first max bytes are ever looked at: a huge value costs no
	// more than a short one.
	clean := len(s) <= max
	for _, r := range s[:min(len(s), max)] {
		if r == utf8.RuneError || !printable(r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		var piece string
		switch {
		case r == utf8.RuneError && size <= 1:
			piece = fmt.Sprintf(`\x%02x`, s[i])
		case r == '\n':
			piece = `\n`
		case r == '\r':
			piece = `\r`
		case r == '\t':
			piece = `\t`
		case !printable(r) && r < 0x100:
			piece = fmt.Sprintf(`\x%02x`, r)
		case !printable(r):
			piece = fmt.Sprintf(`\u%04x`, r)
		default:
			piece = s[i : i+size]
		}
		if b.Len()+len(piece) > max {
			b.WriteString("…")
			break
		}
		b.WriteString(piece)
		i += size
	}
	return b.String()
}

func printable(r rune) bool {
	return r == ' ' || unicode.In(r, unicode.L, unicode.M, unicode.N, unicode.P, unicode.S)
}
