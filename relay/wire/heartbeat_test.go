package wire

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"testing/iotest"
)

func TestWriteHeartbeatAck(t *testing.T) {
	var want, got bytes.Buffer
	if err := WriteFrame(&want, TypeHeartbeatAck, Empty{}); err != nil {
		t.Fatal(err)
	}
	if err := WriteHeartbeatAck(&got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Fatalf("WriteHeartbeatAck wrote % x, WriteFrame % x", got.Bytes(), want.Bytes())
	}
	if n := testing.AllocsPerRun(100, func() { _ = WriteHeartbeatAck(io.Discard) }); n != 0 {
		t.Fatalf("WriteHeartbeatAck allocates %v times", n)
	}
}

// frameStream is frames of every size around the carry's, back to back.
func frameStream(rng *rand.Rand, n int) []byte {
	var b bytes.Buffer
	for range n {
		size := rng.IntN(12)
		if rng.IntN(8) == 0 {
			size = rng.IntN(300)
		}
		payload := make([]byte, size)
		for i := range payload {
			payload[i] = byte(rng.Uint32())
		}
		b.WriteByte(byte(1 + rng.IntN(30)))
		b.Write([]byte{byte(size >> 24), byte(size >> 16), byte(size >> 8), byte(size)})
		b.Write(payload)
	}
	return b.Bytes()
}

// TestChannelReader: whatever the reads return, a ChannelReader yields the
// frames ReadFrameMax does, and the same errors at the end.
func TestChannelReader(t *testing.T) {
	readers := map[string]func(io.Reader) io.Reader{
		"whole":    func(r io.Reader) io.Reader { return r },
		"one-byte": iotest.OneByteReader,
		"half":     iotest.HalfReader,
		"data-err": iotest.DataErrReader,
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 50 {
		stream := frameStream(rng, 40)
		// Cut the stream anywhere: in a header, in a payload, or not at all.
		for _, cut := range []int{len(stream), len(stream) - 1, len(stream) - rng.IntN(len(stream)), 0} {
			for name, wrap := range readers {
				want := bytes.NewReader(stream[:cut])
				cr := NewChannelReader(wrap(bytes.NewReader(stream[:cut])))
				for i := 0; ; i++ {
					wt, wp, werr := ReadFrameMax(want, 200)
					gt, gp, gerr := cr.Next(200)
					if wt != gt || !bytes.Equal(wp, gp) || (werr == nil) != (gerr == nil) ||
						(werr != nil && werr.Error() != gerr.Error()) {
						t.Fatalf("round %d, cut %d, %s reader, frame %d: got %s % x %v; ReadFrameMax %s % x %v",
							round, cut, name, i, gt, gp, gerr, wt, wp, werr)
					}
					if werr != nil {
						if errors.Is(werr, io.EOF) != errors.Is(gerr, io.EOF) ||
							errors.Is(werr, io.ErrUnexpectedEOF) != errors.Is(gerr, io.ErrUnexpectedEOF) ||
							errors.Is(werr, ErrFrameTooLarge) != errors.Is(gerr, ErrFrameTooLarge) {
							t.Fatalf("round %d, cut %d, %s reader: error %v does not wrap what %v does", round, cut, name, gerr, werr)
						}
						break
					}
				}
			}
		}
	}
}

// TestChannelReaderHeartbeat: a heartbeat is one read and no allocation.
func TestChannelReaderHeartbeat(t *testing.T) {
	var hb bytes.Buffer
	_ = WriteFrame(&hb, TypeHeartbeat, Empty{})
	frames := bytes.Repeat(hb.Bytes(), 200)
	src := &countingReader{r: bytes.NewReader(frames)}
	// Each read hands out one frame, as a socket does for beats that arrive
	// one at a time.
	r := &chunkReader{r: src, n: hb.Len()}
	cr := NewChannelReader(r)
	allocs := testing.AllocsPerRun(100, func() {
		typ, payload, err := cr.Next(MaxPeerFrame)
		if err != nil || typ != TypeHeartbeat || string(payload) != "{}" {
			t.Fatalf("got %s %q %v, want a heartbeat", typ, payload, err)
		}
	})
	if allocs != 0 {
		t.Fatalf("reading a heartbeat allocates %v times", allocs)
	}
	if src.reads != 101 {
		t.Fatalf("101 heartbeats took %d reads", src.reads)
	}
}

type countingReader struct {
	r     io.Reader
	reads int
}

func (c *countingReader) Read(b []byte) (int, error) { c.reads++; return c.r.Read(b) }

type chunkReader struct {
	r io.Reader
	n int
}

func (c *chunkReader) Read(b []byte) (int, error) { return c.r.Read(b[:min(len(b), c.n)]) }
