// Package recording writes recordings of browser terminal sessions in the
// asciicast v2 format (https://docs.asciinema.org/manual/asciicast/v2/),
// which asciinema and asciinema-player replay, and sweeps old ones away
// for the retention setting.
//
// A recording holds what the remote side sent to the terminal and never
// what the operator typed: input the remote did not echo (a password at a
// sudo prompt) is therefore never in a recording. What the remote did
// echo is in it, as the operator saw it.
//
// # Format
//
// The first line is the header (a JSON object), every following line one
// event, a JSON array [time, code, data]: time in seconds since the start
// of the recording, code "o" for output, "r" for a resize ("COLSxROWS")
// and "m" for the marker written when the size bound is reached.
//
// JSON strings must be valid UTF-8, and a terminal's output is read in
// chunks that may cut a character in two. An incomplete sequence at the
// end of a chunk is carried to the next one; bytes that are not UTF-8
// (never were, or the stream ended inside a sequence) become U+FFFD, one
// per byte, as Go's range over a string decodes them.
//
// # Bounds
//
// A recording never grows beyond its Limit (DefaultLimit, 64 MiB, unless
// the Header says otherwise): the event that would cross it is replaced by
// one marker event and nothing more is written, so a session that prints
// without end (yes, cat of a disk image) cannot fill the disk. Memory is
// bounded too: one event's line is built at a time, from at most
// maxChunk bytes of output.
package recording

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// DefaultLimit bounds a recording's file when the Header sets no Limit.
const DefaultLimit int64 = 64 << 20

// maxChunk is the most output one event holds; longer output is split
// into several events, so that the line being built stays small.
const maxChunk = 16 << 10

// markerReserve is kept free below the limit for the marker event.
const markerReserve = 256

// Header describes a recording; it becomes the file's first line.
type Header struct {
	// Width and Height are the terminal's columns and rows at the start.
	Width, Height int
	// Timestamp is when the session started; zero means now.
	Timestamp time.Time
	// Title is shown by players; optional.
	Title string
	// Env is the header's env (asciicast uses TERM and SHELL); optional.
	Env map[string]string
	// Limit bounds the file in bytes; zero means DefaultLimit. It is not
	// written to the file.
	Limit int64
}

// header is the header line as asciicast v2 spells it.
type header struct {
	Version   int               `json:"version"`
	Width     int               `json:"width"`
	Height    int               `json:"height"`
	Timestamp int64             `json:"timestamp"`
	Title     string            `json:"title,omitempty"`
	Env       map[string]string `json:"env,omitempty"`
}

// Writer appends one session's events to its file. Its methods may be
// called from several goroutines (output and resizes come from different
// ones).
type Writer struct {
	mu        sync.Mutex
	f         *os.File
	start     time.Time
	since     func(time.Time) time.Duration // time.Since; tests replace it
	limit     int64
	written   int64
	carry     [utf8.UTFMax]byte // an incomplete sequence from the last chunk
	ncarry    int
	line      []byte // reused for each event
	truncated bool   // the marker is written; nothing more will be
	err       error  // the first write error; nothing more is written
	closed    bool
	duration  time.Duration // as the first Close found it
	closeErr  error         // what the first Close returned
}

// Create creates the recording at path (mode 0600; its directory, if
// missing, with 0700) and writes the header. It refuses to overwrite an
// existing file: a recording is evidence and is never replaced.
func Create(path string, hdr Header) (*Writer, error) {
	if hdr.Width <= 0 || hdr.Height <= 0 {
		return nil, fmt.Errorf("recording %s: terminal size %dx%d", path, hdr.Width, hdr.Height)
	}
	if hdr.Timestamp.IsZero() {
		hdr.Timestamp = time.Now()
	}
	limit := hdr.Limit
	if limit <= 0 {
		limit = DefaultLimit
	}
	line, err := json.Marshal(header{
		Version:   2,
		Width:     hdr.Width,
		Height:    hdr.Height,
		Timestamp: hdr.Timestamp.Unix(),
		Title:     hdr.Title,
		Env:       hdr.Env,
	})
	if err != nil {
		return nil, fmt.Errorf("recording %s: header: %w", path, err)
	}
	line = append(line, '\n')
	if int64(len(line))+markerReserve > limit {
		return nil, fmt.Errorf("recording %s: limit of %d bytes is smaller than the header", path, limit)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("recording: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("recording: %w", err)
	}
	if _, err := f.Write(line); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("recording %s: header: %w", path, err)
	}
	return &Writer{
		f:       f,
		start:   time.Now(),
		since:   time.Since,
		limit:   limit,
		written: int64(len(line)),
	}, nil
}

// Output records p as output. A write error is kept and returned by Close;
// output after it, after the limit or after Close is dropped.
func (w *Writer) Output(p []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for len(p) > 0 && w.writable() {
		n := min(len(p), maxChunk)
		w.output(p[:n], false)
		p = p[n:]
	}
}

// output writes the carried bytes and chunk as one "o" event, carrying an
// incomplete sequence at chunk's end unless final.
func (w *Writer) output(chunk []byte, final bool) {
	// data is the carry followed by chunk; the carry is at most 3 bytes,
	// so this copies little beyond what the line needs anyway.
	data := chunk
	if w.ncarry > 0 {
		data = make([]byte, 0, w.ncarry+len(chunk))
		data = append(data, w.carry[:w.ncarry]...)
		data = append(data, chunk...)
		w.ncarry = 0
	}
	if !final {
		if i := incompleteTail(data); i < len(data) {
			w.ncarry = copy(w.carry[:], data[i:])
			data = data[:i]
		}
	}
	if len(data) == 0 {
		return
	}
	w.event('o', data)
}

// incompleteTail returns where data's trailing incomplete UTF-8 sequence
// starts, or len(data) if it ends with a complete (or invalid) one. Only
// the last byte that is not a continuation byte can start one.
func incompleteTail(data []byte) int {
	for i := len(data) - 1; i >= 0 && i >= len(data)-(utf8.UTFMax-1); i-- {
		if !utf8.RuneStart(data[i]) {
			continue
		}
		if !utf8.FullRune(data[i:]) {
			return i
		}
		break
	}
	return len(data)
}

// Resize records a change of the terminal's size.
func (w *Writer) Resize(cols, rows int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.writable() {
		return
	}
	w.event('r', []byte(strconv.Itoa(cols)+"x"+strconv.Itoa(rows)))
}

func (w *Writer) writable() bool {
	return !w.closed && !w.truncated && w.err == nil
}

// event writes one event line, or the marker instead if the line would
// take the file beyond its limit.
func (w *Writer) event(code byte, data []byte) {
	t := w.since(w.start).Seconds()
	w.line = appendEvent(w.line[:0], t, code, data)
	if w.written+int64(len(w.line)) > w.limit-markerReserve {
		w.truncated = true
		msg := fmt.Sprintf("recording stopped: the size limit of %d bytes was reached", w.limit)
		w.line = appendEvent(w.line[:0], t, 'm', []byte(msg))
	}
	n, err := w.f.Write(w.line)
	w.written += int64(n)
	if err != nil {
		w.err = err
	}
	// One event's line can be large (maxChunk of control characters is
	// six times that); do not keep an unusual one around.
	if cap(w.line) > 4*maxChunk {
		w.line = nil
	}
}

// appendEvent appends [t, "code", "data"] and a newline.
func appendEvent(b []byte, t float64, code byte, data []byte) []byte {
	b = append(b, '[')
	b = strconv.AppendFloat(b, t, 'f', 6, 64)
	b = append(b, ',', '"', code, '"', ',')
	b = appendString(b, data)
	return append(b, ']', '\n')
}

const hex = "0123456789abcdef"

// appendString appends data as a JSON string, invalid UTF-8 replaced by
// U+FFFD byte by byte.
func appendString(b []byte, data []byte) []byte {
	b = append(b, '"')
	for i := 0; i < len(data); {
		c := data[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c < 0x20 || c == 0x7f:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(data[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, "\ufffd"...)
		case r == '\u2028' || r == '\u2029':
			// Valid JSON, but not valid JavaScript before ES2019.
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
		default:
			b = append(b, data[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}

// Close writes what is still carried, syncs and closes the file. It
// returns the recording's duration and size, and the first error met
// while writing. Closing again returns the same.
func (w *Writer) Close() (duration time.Duration, bytes int64, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return w.duration, w.written, w.closeErr
	}
	if w.ncarry > 0 && w.writable() {
		w.output(nil, true)
	}
	w.closed = true
	duration = w.since(w.start)
	err = w.err
	if serr := w.f.Sync(); err == nil && serr != nil {
		err = serr
	}
	if cerr := w.f.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		err = fmt.Errorf("recording %s: %w", w.f.Name(), err)
	}
	w.duration, w.closeErr = duration, err
	return duration, w.written, err
}

// Sweep deletes the recordings (regular files named *.cast) in dir last
// modified before olderThan, and returns their paths. It goes on past a
// file it cannot delete and returns the errors together. A missing dir
// holds nothing to sweep.
func Sweep(dir string, olderThan time.Time) (removed []string, err error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("sweeping recordings: %w", err)
	}
	var errs []error
	for _, e := range entries {
		if !e.Type().IsRegular() || !strings.HasSuffix(e.Name(), ".cast") {
			continue
		}
		info, err := e.Info()
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("sweeping recordings: %w", err))
			continue
		}
		if !info.ModTime().Before(olderThan) {
			continue
		}
		path := filepath.Join(dir, e.Name())
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("sweeping recordings: %w", err))
			continue
		}
		removed = append(removed, path)
	}
	return removed, errors.Join(errs...)
}
