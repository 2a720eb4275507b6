package eventlog

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/switchboard/switchboard/internal/audit/event"
)

func TestBound(t *testing.T) {
	long := strings.Repeat("x", 5000)
	tests := []struct {
		name, in, want string
		max            int
	}{
		{"short stays", "client-1", "client-1", 1024},
		{"at the limit stays", long[:1024], long[:1024], 1024},
		{"over the limit is cut and marked", long, long[:1024-len(TruncatedMark)] + TruncatedMark, 1024},
		{"cut at a rune boundary", strings.Repeat("é", 600), strings.Repeat("é", (1024-len(TruncatedMark))/2) + TruncatedMark, 1024},
		{"NUL becomes U+FFFD", "a\x00b", "a\uFFFDb", 1024},
		{"invalid UTF-8 becomes U+FFFD", "a\xffb", "a\uFFFDb", 1024},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := bound(tt.in, tt.max)
			if got != tt.want {
				t.Errorf("bound = %q (%d bytes), want %q", got, len(got), tt.want)
			}
			if len(got) > tt.max || !utf8.ValidString(got) {
				t.Errorf("bound = %d bytes, valid UTF-8 %v", len(got), utf8.ValidString(got))
			}
		})
	}
	t.Run("invalid bytes growing past the limit are cut", func(t *testing.T) {
		got := bound(strings.Repeat("\xff.", 1000), 1024)
		if len(got) > 1024 || !strings.HasSuffix(got, TruncatedMark) || !utf8.ValidString(got) {
			t.Errorf("bound = %d bytes %q...", len(got), got[:20])
		}
	})
}

func TestSanitizeBoundsEveryTextField(t *testing.T) {
	huge := strings.Repeat("A", 1<<20)
	e := event.Event{Time: time.Date(300000, 1, 1, 0, 0, 0, 0, time.UTC), Kind: event.Kind(huge), Message: huge,
		Client: huge, Control: huge, Operator: huge, RealIP: huge, PublicIP: huge, Node: huge, Check: huge}
	now := time.Now()
	sanitize(&e, func() time.Time { return now })
	if len(e.Message) != MaxMessageBytes || !strings.HasSuffix(e.Message, TruncatedMark) {
		t.Errorf("message %d bytes", len(e.Message))
	}
	for _, f := range []string{string(e.Kind), e.Client, e.Control, e.Operator, e.RealIP, e.PublicIP, e.Node, e.Check} {
		if len(f) != MaxFieldBytes || !strings.HasSuffix(f, TruncatedMark) {
			t.Errorf("field %d bytes", len(f))
		}
	}
	if !e.Time.Equal(now) {
		t.Errorf("time %v kept, want now", e.Time)
	}
	if s := size(&e); s > eventOverhead+MaxMessageBytes+int64(len(textFields))*MaxFieldBytes {
		t.Errorf("size %d", s)
	}
}

func TestLogLine(t *testing.T) {
	when := time.Date(2022, 6, 29, 16, 11, 20, 0, time.Local)
	tests := []struct {
		name, msg, want string
	}{
		{"ordinary", "Client pc-1 connected", "29-Jun-22, 16:11:20, Client pc-1 connected\n"},
		{"newline", "Client a\n29-Jun-22, 16:11:21, Gateway stopped connected", `29-Jun-22, 16:11:20, Client a\n29-Jun-22, 16:11:21, Gateway stopped connected` + "\n"},
		{"carriage return and tab", "a\rb\tc", `29-Jun-22, 16:11:20, a\rb\tc` + "\n"},
		{"escape and DEL", "a\x1b[2Jb\x7f", `29-Jun-22, 16:11:20, a\x1b[2Jb\x7f` + "\n"},
		{"C1 next line", "a\u0085b", `29-Jun-22, 16:11:20, a\u0085b` + "\n"},
		{"line and paragraph separators", "a\u2028b\u2029c", `29-Jun-22, 16:11:20, a\u2028b\u2029c` + "\n"},
		{"bidi override", "a\u202eb", `29-Jun-22, 16:11:20, a\u202eb` + "\n"},
		{"invalid UTF-8", "a\xffb", `29-Jun-22, 16:11:20, a\xffb` + "\n"},
		{"other Unicode stays", "Client Müller-PC 東京 connected", "29-Jun-22, 16:11:20, Client Müller-PC 東京 connected\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := logLine(event.Event{Time: when, Message: tt.msg}, MaxLineBytes); got != tt.want {
				t.Errorf("logLine = %q, want %q", got, tt.want)
			}
		})
	}
	t.Run("long line is cut and marked", func(t *testing.T) {
		for _, unit := range []string{"x", "é", "\n", "\x1b"} {
			got := logLine(event.Event{Time: when, Message: strings.Repeat(unit, 3000)}, MaxLineBytes)
			if len(got) > MaxLineBytes || !strings.HasSuffix(got, TruncatedMark+"\n") || strings.Count(got, "\n") != 1 || !utf8.ValidString(got) {
				t.Errorf("%q: %d bytes, ends %q", unit, len(got), got[max(0, len(got)-30):])
			}
			if len(got) < MaxLineBytes-8 {
				t.Errorf("%q: cut to %d bytes, far below the limit", unit, len(got))
			}
		}
	})
}

func TestControlCharactersCannotForgeALogLine(t *testing.T) {
	dir := t.TempDir()
	l, err := New(Config{Dir: dir, Store: &memStore{}})
	if err != nil {
		t.Fatal(err)
	}
	start(t, l)
	forgeries := []string{
		"evil\n29-Jun-22, 16:11:21, Gateway stopped",
		"evil\r29-Jun-22, 16:11:21, Gateway stopped",
		"evil\r\n29-Jun-22, 16:11:21, Gateway stopped",
		"evil\u202829-Jun-22, 16:11:21, Gateway stopped",
		"evil\u202929-Jun-22, 16:11:21, Gateway stopped",
		"evil\u008529-Jun-22, 16:11:21, Gateway stopped",
		"evil\x0b\x0c\x1b[1A\x1b[2K29-Jun-22, 16:11:21, Gateway stopped",
	}
	for _, f := range forgeries {
		l.Emit(event.Event{Kind: event.KindClientConnect, Message: "Client " + f + " connected", Client: f})
	}
	flush(t, l)
	b, err := os.ReadFile(filepath.Join(dir, "GW001.log"))
	if err != nil {
		t.Fatal(err)
	}
	// Split the way any reader might: every line terminator there is.
	lines := strings.FieldsFunc(string(b), func(r rune) bool {
		return r == '\n' || r == '\r' || r == '\v' || r == '\f' || r == 0x85 || r == 0x2028 || r == 0x2029
	})
	if len(lines) != len(forgeries) {
		t.Fatalf("%d lines for %d events:\n%s", len(lines), len(forgeries), b)
	}
	for i, line := range lines {
		if !strings.Contains(line, ", Client evil") || !strings.HasSuffix(line, "Gateway stopped connected") {
			t.Errorf("line %d = %q", i, line)
		}
		for _, r := range line {
			if r < 0x20 || (r >= 0x7f && r <= 0x9f) {
				t.Errorf("line %d holds control character %U: %q", i, r, line)
			}
		}
	}
}

func TestLogLinesAreBoundedToTheLineAndFileLimits(t *testing.T) {
	for _, maxKB := range []int{1, 1000} {
		dir := t.TempDir()
		l, err := New(Config{Dir: dir, MaxKB: maxKB, Store: &memStore{}})
		if err != nil {
			t.Fatal(err)
		}
		stop := start(t, l)
		huge := strings.Repeat("n", 1<<20)
		for range 20 {
			l.Emit(event.Event{Kind: event.KindClientConnect, Message: "Client " + huge + " connected", Client: huge})
		}
		flush(t, l)
		stop()
		limit := min(MaxLineBytes, maxKB*1024)
		files, _ := filepath.Glob(filepath.Join(dir, "GW*.log"))
		var lines int
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if len(b) > maxKB*1024 {
				t.Errorf("MaxKB %d: %s is %d bytes", maxKB, f, len(b))
			}
			for _, line := range strings.SplitAfter(string(b), "\n") {
				if line == "" {
					continue
				}
				lines++
				if len(line) > limit || !strings.HasSuffix(line, TruncatedMark+"\n") {
					t.Errorf("MaxKB %d: line of %d bytes, limit %d, ends %q", maxKB, len(line), limit, line[max(0, len(line)-20):])
				}
			}
		}
		if lines != 20 {
			t.Errorf("MaxKB %d: %d lines, want 20", maxKB, lines)
		}
		// 20 huge events used to be 20 files; now a file holds many lines.
		if maxKB == 1000 && len(files) != 1 {
			t.Errorf("MaxKB %d: %d files for 20 lines", maxKB, len(files))
		}
	}
}
