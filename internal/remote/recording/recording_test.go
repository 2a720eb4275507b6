package recording

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// readCast decodes a recording line by line: the header and the events.
func readCast(t testing.TB, path string) (map[string]any, [][]any) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	var hdr map[string]any
	var events [][]any
	for n := 0; sc.Scan(); n++ {
		if n == 0 {
			if err := json.Unmarshal(sc.Bytes(), &hdr); err != nil {
				t.Fatalf("header %q: %v", sc.Text(), err)
			}
			continue
		}
		var ev []any
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("line %d %q: %v", n+1, sc.Text(), err)
		}
		if len(ev) != 3 {
			t.Fatalf("line %d: %d elements", n+1, len(ev))
		}
		events = append(events, ev)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return hdr, events
}

// output concatenates the "o" events' data.
func output(events [][]any) string {
	var b strings.Builder
	for _, ev := range events {
		if ev[1] == "o" {
			b.WriteString(ev[2].(string))
		}
	}
	return b.String()
}

// valid is s with every byte that is not UTF-8 replaced by U+FFFD, as a
// range over a string decodes it.
func valid(s string) string {
	var b strings.Builder
	for _, r := range s {
		b.WriteRune(r)
	}
	return b.String()
}

func TestRecording(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "s.cast")
	start := time.Unix(1700000000, 0)
	w, err := Create(path, Header{Width: 80, Height: 24, Timestamp: start, Title: "alice@web/ssh",
		Env: map[string]string{"TERM": "xterm-256color"}})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Duration(0)
	w.since = func(time.Time) time.Duration { return now }
	w.Output([]byte("$ "))
	now = 1500 * time.Millisecond
	w.Output([]byte("caf\xc3")) // é cut in two
	w.Output([]byte("\xa9 \"q\"\r\n\x1b[0m\xff"))
	now = 2 * time.Second
	w.Resize(100, 40)
	w.Output([]byte("\xe2\x82")) // € cut, and the stream ends
	d, n, err := w.Close()
	if err != nil {
		t.Fatal(err)
	}
	if d != 2*time.Second {
		t.Errorf("duration %v", d)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Size() != n {
		t.Errorf("Close says %d bytes, file has %d", n, info.Size())
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", info.Mode())
	}
	hdr, events := readCast(t, path)
	if hdr["version"] != 2.0 || hdr["width"] != 80.0 || hdr["height"] != 24.0 ||
		hdr["timestamp"] != 1700000000.0 || hdr["title"] != "alice@web/ssh" {
		t.Errorf("header %v", hdr)
	}
	if env, _ := hdr["env"].(map[string]any); env["TERM"] != "xterm-256color" {
		t.Errorf("env %v", hdr["env"])
	}
	want := [][]any{
		{0.0, "o", "$ "},
		{1.5, "o", "caf"},
		{1.5, "o", "é \"q\"\r\n\x1b[0m\ufffd"},
		{2.0, "r", "100x40"},
		{2.0, "o", "\ufffd\ufffd"},
	}
	if len(events) != len(want) {
		t.Fatalf("events %q", events)
	}
	for i := range want {
		for j := range want[i] {
			if events[i][j] != want[i][j] {
				t.Errorf("event %d: %q, want %q", i, events[i], want[i])
				break
			}
		}
	}
	w.Output([]byte("after close"))
	if d2, n2, err := w.Close(); d2 != d || n2 != n || err != nil {
		t.Errorf("second Close: %v, %d, %v", d2, n2, err)
	}
}

func TestCreateRefusesExisting(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.cast")
	if err := os.WriteFile(path, []byte("evidence"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Create(path, Header{Width: 80, Height: 24}); err == nil {
		t.Fatal("Create overwrote a file")
	}
	if b, _ := os.ReadFile(path); string(b) != "evidence" {
		t.Errorf("file now %q", b)
	}
	if _, err := Create(filepath.Join(t.TempDir(), "x.cast"), Header{}); err == nil {
		t.Error("Create accepted a 0x0 terminal")
	}
}

func TestLimit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.cast")
	const limit = 4096
	w, err := Create(path, Header{Width: 80, Height: 24, Limit: limit})
	if err != nil {
		t.Fatal(err)
	}
	chunk := bytes.Repeat([]byte("y\r\n"), 100)
	for range 1000 {
		w.Output(chunk)
	}
	w.Resize(10, 10)
	_, n, err := w.Close()
	if err != nil {
		t.Fatal(err)
	}
	if n > limit {
		t.Errorf("%d bytes beyond the limit of %d", n, limit)
	}
	_, events := readCast(t, path)
	markers := 0
	for i, ev := range events {
		if ev[1] == "m" {
			markers++
			if i != len(events)-1 {
				t.Errorf("events after the marker: %q", events[i+1:])
			}
		}
	}
	if markers != 1 {
		t.Errorf("%d markers", markers)
	}
	if !strings.HasPrefix(output(events), string(chunk)) {
		t.Error("output before the limit is missing")
	}
}

func TestLargeOutputIsSplit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.cast")
	w, err := Create(path, Header{Width: 80, Height: 24})
	if err != nil {
		t.Fatal(err)
	}
	// 100 KiB of 3-byte characters: the splits at maxChunk cut them.
	in := strings.Repeat("€", 100<<10/3)
	w.Output([]byte(in))
	if _, _, err := w.Close(); err != nil {
		t.Fatal(err)
	}
	_, events := readCast(t, path)
	if len(events) < 100<<10/maxChunk {
		t.Errorf("%d events", len(events))
	}
	if output(events) != in {
		t.Error("output differs")
	}
}

func TestSweep(t *testing.T) {
	dir := t.TempDir()
	old := time.Now().Add(-48 * time.Hour)
	for _, name := range []string{"old.cast", "new.cast", "old.txt"} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(name, "old") {
			if err := os.Chtimes(p, old, old); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "dir.cast"), 0o700); err != nil {
		t.Fatal(err)
	}
	removed, err := Sweep(dir, time.Now().Add(-24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 1 || removed[0] != filepath.Join(dir, "old.cast") {
		t.Errorf("removed %q", removed)
	}
	left, _ := os.ReadDir(dir)
	if len(left) != 3 {
		t.Errorf("left %v", left)
	}
	if removed, err := Sweep(filepath.Join(dir, "missing"), time.Now()); err != nil || removed != nil {
		t.Errorf("missing dir: %q, %v", removed, err)
	}
}

// FuzzOutput writes input in random chunks and reads the file back: every
// line must decode as JSON, and the output must be the input with what is
// not UTF-8 replaced.
func FuzzOutput(f *testing.F) {
	f.Add([]byte("hello, wörld €𝄞"), []byte{1, 2, 3})
	f.Add([]byte("\xf0\x9f\x98\x80\xe2\x82\xac\xc3\xa9"), []byte{1, 1, 1, 1, 1})
	f.Add([]byte("\xff\xfe\xc3\x28\xe2\x28\xa1\xed\xa0\x80\xf4\x90\x80\x80"), []byte{2, 5})
	f.Add([]byte("\x00\x1b[31m\"\\\u2028\r\n"), []byte{0, 4})
	f.Fuzz(func(t *testing.T, in []byte, cuts []byte) {
		path := filepath.Join(t.TempDir(), "f.cast")
		w, err := Create(path, Header{Width: 80, Height: 24})
		if err != nil {
			t.Fatal(err)
		}
		rest := in
		for i := 0; len(rest) > 0; i++ {
			n := len(rest)
			if len(cuts) > 0 {
				n = min(n, 1+int(cuts[i%len(cuts)]))
			}
			w.Output(rest[:n])
			rest = rest[n:]
		}
		if _, _, err := w.Close(); err != nil {
			t.Fatal(err)
		}
		_, events := readCast(t, path)
		for _, ev := range events {
			if s, _ := ev[2].(string); !utf8.ValidString(s) {
				t.Fatalf("invalid UTF-8 in %q", s)
			}
		}
		if got, want := output(events), valid(string(in)); got != want {
			t.Fatalf("output %q, want %q", got, want)
		}
	})
}
