package eventlog

import (
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/switchboard/switchboard/internal/audit/event"
)

// Size bounds of one event. The relay validates what peers send, but the
// log defends itself: an oversized field must not cost memory, disk or an
// index entry PostgreSQL refuses (a btree entry holds at most ~2.7 KB, and
// client and control are indexed).
const (
	// MaxFieldBytes bounds every text field but the message.
	MaxFieldBytes = 1024
	// MaxMessageBytes bounds the message, which quotes up to three fields.
	MaxMessageBytes = 4096
	// MaxLineBytes bounds one GW log line, newline included (and never more
	// than a whole log file).
	MaxLineBytes = 2048
	// TruncatedMark ends a field or line that was cut short.
	TruncatedMark = "...[truncated]"

	// eventOverhead approximates an event's memory beyond its text: the
	// struct with its string headers, the time and the queue entry.
	eventOverhead = 256
)

// textFields are the indexes of event.Event's text fields but the message.
// Found by reflection, once, so that a field added to Event is bounded too.
// Read only after initialisation.
var textFields = func() []int {
	var out []int
	t := reflect.TypeFor[event.Event]()
	for i := range t.NumField() {
		if f := t.Field(i); f.IsExported() && f.Type.Kind() == reflect.String && f.Name != "Message" {
			out = append(out, i)
		}
	}
	return out
}()

// sanitize bounds e's fields and makes them storable: PostgreSQL text holds
// neither NUL nor invalid UTF-8, so both become U+FFFD rather than an
// event the store rejects for good. A time outside years 1-9999 (which
// neither JSON nor every store can represent) becomes now(), which is
// only called then: Emit's events mostly carry their time.
func sanitize(e *event.Event, now func() time.Time) {
	if e.Time.IsZero() || e.Time.Year() < 1 || e.Time.Year() > 9999 {
		e.Time = now()
	}
	e.Message = bound(e.Message, MaxMessageBytes)
	v := reflect.ValueOf(e).Elem()
	for _, i := range textFields {
		f := v.Field(i)
		if s := f.String(); len(s) > MaxFieldBytes || !clean(s) {
			f.SetString(bound(s, MaxFieldBytes))
		}
	}
}

// size approximates the memory e holds.
func size(e *event.Event) int64 {
	n := int64(eventOverhead + len(e.Message))
	v := reflect.ValueOf(e).Elem()
	for _, i := range textFields {
		n += int64(v.Field(i).Len())
	}
	return n
}

// bound returns s as valid UTF-8 without NUL, at most max bytes long, cut
// at a rune boundary and marked when cut. A cut result is a new string, so
// that a short field never keeps a huge one reachable.
func bound(s string, max int) string {
	if len(s) <= max && clean(s) {
		return s
	}
	cut := false
	if len(s) > max {
		s, cut = s[:runeCut(s, max-len(TruncatedMark))], true
	}
	if !clean(s) {
		s = strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
		// A replacement is 3 bytes where an invalid byte was 1.
		if len(s) > max-len(TruncatedMark) && (cut || len(s) > max) {
			s, cut = s[:runeCut(s, max-len(TruncatedMark))], true
		}
	}
	if cut {
		return s + TruncatedMark
	}
	return strings.Clone(s)
}

func clean(s string) bool {
	return strings.IndexByte(s, 0) < 0 && utf8.ValidString(s)
}

// runeCut returns the largest n <= max at which s can be cut without
// splitting a rune.
func runeCut(s string, max int) int {
	if max >= len(s) {
		return len(s)
	}
	if max < 0 {
		return 0
	}
	n := max
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return n
}

// logLine renders e as one line of a GW log file, newline included, at
// most limit bytes. Control characters (C0, DEL, C1), the Unicode line and
// paragraph separators, bidirectional overrides and invalid UTF-8 are
// escaped (\n, \x1b, \u2028, ...), so no field can start a line of its own
// or make a line read differently from what it says. Ordinary lines are
// exactly e.LogLine().
func logLine(e event.Event, limit int) string {
	s := e.LogLine()
	if len(s) < limit && plain(s) {
		return s + "\n"
	}
	budget := limit - 1 // the newline
	var b strings.Builder
	b.Grow(min(len(s)+16, limit))
	last := 0 // b.Len() after the last piece that leaves room for the mark
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		piece := escape(s[i:i+n], r, n)
		if b.Len()+len(piece) > budget {
			// Not all of it fits: cut back to where the mark fits too.
			out := b.String()[:last]
			return out + TruncatedMark + "\n"
		}
		b.WriteString(piece)
		if b.Len() <= budget-len(TruncatedMark) {
			last = b.Len()
		}
		i += n
	}
	return b.String() + "\n"
}

// plain reports whether s is printable ASCII, which needs no escaping.
func plain(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// escape returns the text to write for the rune r encoded as raw (n bytes).
func escape(raw string, r rune, n int) string {
	switch {
	case r == utf8.RuneError && n == 1:
		return `\x` + hex2(raw[0])
	case r == '\n':
		return `\n`
	case r == '\r':
		return `\r`
	case r == '\t':
		return `\t`
	case r < 0x20 || r == 0x7f:
		return `\x` + hex2(byte(r))
	case r >= 0x80 && r <= 0x9f, // C1, NEL among them
		r == 0x2028, r == 0x2029, // line and paragraph separators
		r == 0x061c, r == 0x200e, r == 0x200f, // bidi marks
		r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069: // bidi embeddings, overrides, isolates
		return `\u` + strconv.FormatInt(int64(r)|0x10000, 16)[1:]
	}
	return raw
}

func hex2(b byte) string {
	const digits = "0123456789abcdef"
	return string([]byte{digits[b>>4], digits[b&0xf]})
}
