package eventlog

import (
	"encoding/binary"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/switchboard/switchboard/internal/audit/event"
)

// fuzzSegment is a valid segment of evs, numbered from 1.
func fuzzSegment(tb testing.TB, evs ...event.Event) []byte {
	tb.Helper()
	b := []byte(segmentMagic)
	for i := range evs {
		var err error
		if b, err = appendRecord(b, uint64(i+1), &evs[i]); err != nil {
			tb.Fatal(err)
		}
	}
	return b
}

// fixChecksums rewrites the checksum of every record whose length fits,
// so that the fuzzer gets past it to the payloads and sequence numbers.
func fixChecksums(data []byte) {
	off := len(segmentMagic)
	for off+recordHeaderSize <= len(data) {
		var h [recordHeaderSize]byte
		copy(h[:], data[off:])
		size := int(binary.LittleEndian.Uint32(h[0:]))
		if size == 0 || size > maxRecordPayload || off+recordHeaderSize+size > len(data) {
			return
		}
		binary.LittleEndian.PutUint32(data[off+4:], recordCRC(h, data[off+recordHeaderSize:off+recordHeaderSize+size]))
		off += recordHeaderSize + size
	}
}

// FuzzSpoolSegment opens arbitrary bytes as the spool's only segment and
// reads it all: it must never panic, never allocate far beyond the input,
// and yield only well-formed records (checksummed, increasing, bounded).
func FuzzSpoolSegment(f *testing.F) {
	when := time.Date(2022, 6, 29, 16, 11, 20, 0, time.UTC)
	valid := fuzzSegment(f,
		event.Event{Time: when, Kind: event.KindClientConnect, Message: "Client pc-1 connected", Client: "pc-1", RealIP: "10.0.0.1", PublicIP: "203.0.113.7", Node: "n1"},
		event.Event{Time: when, Kind: event.KindSecurity, Message: "Security check failed for Control browse. Terminating connection from 203.0.113.9"},
		event.Event{Time: when, Kind: event.KindGateway, Message: "Gateway stopped"},
	)
	f.Add(valid, false)
	f.Add(valid[:len(valid)-5], false) // torn last record
	f.Add(valid, true)
	f.Add([]byte(segmentMagic), false)
	f.Add([]byte(segmentMagic[:5]), false)
	f.Add([]byte{}, false)
	huge := append([]byte(segmentMagic), 0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0)
	f.Add(huge, true)
	f.Add(append([]byte(segmentMagic), make([]byte, 64)...), false) // zeroes, as after a power cut
	f.Add(fuzzSegment(f, event.Event{Message: "\x00\xff" + strings.Repeat("\u2028", 10), Client: strings.Repeat("c", 3000)}), false)
	// A payload that is not an event, and sequence numbers going back.
	bad := append([]byte(segmentMagic), 2, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, '[', ']')
	bad = append(bad, 2, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, '{', '}')
	f.Add(bad, true)

	log := slog.New(slog.DiscardHandler)
	// One folder for every input: a process runs its inputs one by one.
	dir := filepath.Join(f.TempDir(), "events.spool")
	f.Fuzz(func(t *testing.T, data []byte, fix bool) {
		if fix {
			data = append([]byte(nil), data...)
			fixChecksums(data)
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, segName(1)), data, 0o600); err != nil {
			t.Fatal(err)
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		s, st, err := openSpool(dir, defaultSegmentBytes, log, when)
		if err != nil {
			t.Fatalf("openSpool: %v", err)
		}
		var got []rec
		for {
			recs := s.read(batchSize, maxBatchBytes, when)
			if len(recs) == 0 {
				break
			}
			// Not acknowledged: that is a write (and an fsync at close)
			// per input, and has nothing to do with reading.
			got = append(got, recs...)
		}
		runtime.ReadMemStats(&after)
		if a := after.TotalAlloc - before.TotalAlloc; a > 8<<20+64*uint64(len(data)) {
			t.Errorf("%d bytes allocated reading %d bytes", a, len(data))
		}
		if err := s.closeFiles(); err != nil {
			t.Fatal(err)
		}

		if len(got) != st.pending {
			t.Errorf("%d records read, %d counted when opened", len(got), st.pending)
		}
		if max := (len(data) - len(segmentMagic)) / (recordHeaderSize + 1); len(got) > max {
			t.Fatalf("%d records from %d bytes", len(got), len(data))
		}
		var prev uint64
		for _, r := range got {
			if r.seq <= prev {
				t.Fatalf("sequence %d after %d", r.seq, prev)
			}
			prev = r.seq
			e := r.ev
			if len(e.Message) > MaxMessageBytes || !utf8.ValidString(e.Message) || strings.ContainsRune(e.Message, 0) {
				t.Errorf("message of %d bytes, %q", len(e.Message), e.Message)
			}
			for _, fld := range []string{string(e.Kind), e.Client, e.Control, e.Operator, e.RealIP, e.PublicIP, e.Node, e.Check} {
				if len(fld) > MaxFieldBytes || !utf8.ValidString(fld) || strings.ContainsRune(fld, 0) {
					t.Errorf("field of %d bytes, %q", len(fld), fld)
				}
			}
			if y := e.Time.Year(); y < 1 || y > 9999 {
				t.Errorf("time %v", e.Time)
			}
			if r.size != size(&e) || r.size > eventOverhead+MaxMessageBytes+int64(len(textFields))*MaxFieldBytes {
				t.Errorf("size %d", r.size)
			}
		}
		if len(got) > 0 && st.lastSeq != prev {
			t.Errorf("last sequence %d when opened, %d read", st.lastSeq, prev)
		}
		if !fix && len(data) >= len(valid) && string(data[:len(valid)]) == string(valid) && len(got) < 3 {
			t.Errorf("%d records from a segment that starts with 3 valid ones", len(got))
		}
	})
}
