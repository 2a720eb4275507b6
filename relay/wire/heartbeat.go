package wire

import (
	"encoding/binary"
	"fmt"
	"io"
)

// The heartbeat is the only traffic of an idle Client's control channel,
// and idle Clients are what a gateway holds most of, so the gateway's side
// of it avoids the general path: the ack is written pre-encoded, and frames
// are read through a small carry (ChannelReader) that takes a heartbeat in
// one read and allocates nothing for it.

// heartbeatAck is WriteFrame(w, TypeHeartbeatAck, Empty{}), encoded once.
var heartbeatAck = [...]byte{byte(TypeHeartbeatAck), 0, 0, 0, 2, '{', '}'}

// WriteHeartbeatAck writes a HeartbeatAck frame, as WriteFrame(w,
// TypeHeartbeatAck, Empty{}) does, without encoding or allocating.
func WriteHeartbeatAck(w io.Writer) error {
	if _, err := w.Write(heartbeatAck[:]); err != nil {
		return fmt.Errorf("wire: write %s: %w", TypeHeartbeatAck, err)
	}
	return nil
}

// carrySize holds a whole heartbeat frame (5 + len("{}")) and a byte more,
// in the 8-byte size class a frame header takes anyway.
const carrySize = 8

// ChannelReader reads the frames of a long-lived channel as ReadFrameMax
// does, but a read asks for up to 8 bytes rather than exactly a header and
// then exactly the payload: a small frame such as a heartbeat costs one
// read instead of two and no allocation. The bytes of the next frame that
// come along stay in the carry for the next call, so a ChannelReader must
// be the only reader of R.
//
// Keep the ChannelReader itself in a local variable: only its 8-byte carry
// is on the heap, so an idle channel holds no more than the header buffer
// ReadFrameMax allocates for the read it waits in.
type ChannelReader struct {
	R      io.Reader
	carry  *[carrySize]byte
	lo, hi uint8 // carry[lo:hi] is unread
}

// NewChannelReader reads frames from r.
func NewChannelReader(r io.Reader) ChannelReader {
	return ChannelReader{R: r, carry: new([carrySize]byte)}
}

// Buffered is the number of bytes read from R and not yet returned.
func (c *ChannelReader) Buffered() int { return int(c.hi - c.lo) }

// Next reads one frame of at most max payload bytes. Unlike ReadFrameMax's,
// a payload of up to 3 bytes (a heartbeat's "{}") is not a copy: it stays
// valid only until the next call. Errors are ReadFrameMax's.
func (c *ChannelReader) Next(max uint32) (Type, []byte, error) {
	for c.hi-c.lo < 5 {
		if c.lo > 0 {
			c.hi = uint8(copy(c.carry[:], c.carry[c.lo:c.hi]))
			c.lo = 0
		}
		n, err := c.R.Read(c.carry[c.hi:])
		c.hi += uint8(n)
		if c.hi >= 5 {
			break // like io.ReadFull, ignore an error once there is enough
		}
		if err != nil {
			if err == io.EOF && c.hi > 0 {
				err = io.ErrUnexpectedEOF
			}
			return 0, nil, fmt.Errorf("wire: read header: %w", err)
		}
	}
	hdr := c.carry[c.lo : c.lo+5]
	t := Type(hdr[0])
	n := binary.BigEndian.Uint32(hdr[1:])
	c.lo += 5
	if n > max {
		return t, nil, fmt.Errorf("wire: %s of %d bytes: %w", t, n, ErrFrameTooLarge)
	}
	if have := uint32(c.hi - c.lo); n <= have {
		payload := c.carry[c.lo : uint32(c.lo)+n : uint32(c.lo)+n]
		c.lo += uint8(n)
		if c.lo == c.hi {
			c.lo, c.hi = 0, 0
		}
		return t, payload, nil
	}
	payload := make([]byte, n)
	have := copy(payload, c.carry[c.lo:c.hi])
	c.lo, c.hi = 0, 0
	if _, err := io.ReadFull(c.R, payload[have:]); err != nil {
		if err == io.EOF && have > 0 {
			err = io.ErrUnexpectedEOF
		}
		return t, nil, fmt.Errorf("wire: read %s payload: %w", t, err)
	}
	return t, payload, nil
}
