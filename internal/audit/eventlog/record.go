package eventlog

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"time"

	"github.com/switchboard/switchboard/internal/audit/event"
)

// A spool segment is segmentMagic followed by records:
//
//	uint32 length of the payload, little endian
//	uint32 CRC-32C of the length, the sequence number and the payload
//	uint64 sequence number, increasing through the spool
//	payload: the event as JSON
//
// A record that is short, fails its checksum, claims an impossible length
// or does not increase the sequence ends the segment's valid part: after a
// crash that is the torn last record, and it is ignored.
const (
	segmentMagic     = "SBEVSPL1"
	recordHeaderSize = 16
	// maxRecordPayload is far above a sanitised event's JSON (~60 KiB when
	// every byte of every field is a control character escaped as \u00XX)
	// and bounds what a damaged length field can make the reader allocate.
	maxRecordPayload = 256 << 10
)

var (
	errCorrupt = errors.New("eventlog: torn or damaged spool record")
	// crcTable is read-only after initialisation.
	crcTable = crc32.MakeTable(crc32.Castagnoli)
)

// appendRecord appends the record of e with sequence number seq to dst.
func appendRecord(dst []byte, seq uint64, e *event.Event) ([]byte, error) {
	payload, err := json.Marshal(e)
	if err != nil {
		return dst, fmt.Errorf("eventlog: encode event: %w", err)
	}
	if len(payload) > maxRecordPayload {
		return dst, fmt.Errorf("eventlog: encode event: %d bytes, over %d", len(payload), maxRecordPayload)
	}
	var h [recordHeaderSize]byte
	binary.LittleEndian.PutUint32(h[0:], uint32(len(payload)))
	binary.LittleEndian.PutUint64(h[8:], seq)
	binary.LittleEndian.PutUint32(h[4:], recordCRC(h, payload))
	return append(append(dst, h[:]...), payload...), nil
}

func recordCRC(h [recordHeaderSize]byte, payload []byte) uint32 {
	c := crc32.Update(0, crcTable, h[0:4])
	c = crc32.Update(c, crcTable, h[8:16])
	return crc32.Update(c, crcTable, payload)
}

// recordReader reads the records of one segment, at most left bytes.
type recordReader struct {
	r    *bufio.Reader
	left int64
	buf  []byte
	last uint64 // the previous record's sequence number
}

// next returns the next record's sequence number, its payload (valid until
// the next call) and its size on disk. It returns io.EOF at the end of the
// segment and errCorrupt where the valid part ends early.
func (rr *recordReader) next() (seq uint64, payload []byte, n int64, err error) {
	if rr.left <= 0 {
		return 0, nil, 0, io.EOF
	}
	if rr.left < recordHeaderSize {
		return 0, nil, 0, errCorrupt
	}
	var h [recordHeaderSize]byte
	if _, err := io.ReadFull(rr.r, h[:]); err != nil {
		return 0, nil, 0, readErr(err)
	}
	size := int64(binary.LittleEndian.Uint32(h[0:]))
	if size == 0 || size > maxRecordPayload || size > rr.left-recordHeaderSize {
		return 0, nil, 0, errCorrupt
	}
	if int64(cap(rr.buf)) < size {
		rr.buf = make([]byte, size)
	}
	payload = rr.buf[:size]
	if _, err := io.ReadFull(rr.r, payload); err != nil {
		return 0, nil, 0, readErr(err)
	}
	if binary.LittleEndian.Uint32(h[4:]) != recordCRC(h, payload) {
		return 0, nil, 0, errCorrupt
	}
	seq = binary.LittleEndian.Uint64(h[8:])
	if seq <= rr.last {
		return 0, nil, 0, errCorrupt
	}
	rr.last = seq
	n = recordHeaderSize + size
	rr.left -= n
	return seq, payload, n, nil
}

// readErr maps a short read to errCorrupt: the file ended inside a record.
func readErr(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errCorrupt
	}
	return fmt.Errorf("eventlog: read spool: %w", err)
}

// decodeEvent decodes a record's payload. The fields are bounded again:
// the spool may have been written by an older version, or damaged in a way
// the checksum happens to miss.
func decodeEvent(payload []byte, now time.Time) (event.Event, error) {
	var e event.Event
	if err := json.Unmarshal(payload, &e); err != nil {
		return event.Event{}, fmt.Errorf("eventlog: decode spooled event: %w", err)
	}
	sanitize(&e, func() time.Time { return now })
	return e, nil
}
