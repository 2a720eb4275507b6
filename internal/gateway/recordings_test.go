package gateway

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/switchboard/switchboard/db"
	"github.com/switchboard/switchboard/internal/pg/pgtest"
	"github.com/switchboard/switchboard/internal/remote/recording"
)

// TestUnfinishedRecordingIsStoredAtStart: a gateway killed while a
// terminal was recorded leaves the recording's file; the next start of a
// gateway on that data dir stores it in the session's row and removes it.
func TestUnfinishedRecordingIsStoredAtStart(t *testing.T) {
	url := pgtest.MustURL(t)
	cfg := nodeConfig(t, url, "gw-rec", NodeBalanced)
	first := mustStartNode(t, cfg)
	ctx := context.Background()
	id, err := first.DB().StartRecording(ctx, db.Recording{Kind: "terminal", Operator: "alice", Client: "pc", Service: "ssh", Started: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(first.recordDir(), strconv.FormatInt(id, 10)+".cast")
	w, err := recording.Create(path, recording.Header{Width: 80, Height: 24})
	if err != nil {
		t.Fatal(err)
	}
	w.Output([]byte("echo left-behind\r\nleft-behind\r\n"))
	// No Close, as after a kill: what was written is in the file.
	first.Shutdown()

	second := mustStartNode(t, cfg)
	x, gz, err := second.DB().RecordingCast(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if gz == nil || x.Ended.IsZero() || x.CastBytes == 0 {
		t.Fatalf("recording %d after the restart: %+v, cast %d bytes", id, x, len(gz))
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	cast, _ := io.ReadAll(zr)
	if !bytes.Contains(cast, []byte("left-behind")) {
		t.Fatalf("stored cast lacks the output: %q", cast)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("the file is still there: %v", err)
	}
	_, _, _ = w.Close()
}
