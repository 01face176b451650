//go:build matprofile

package camera

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"gocv.io/x/gocv"
)

// TestMatProfileSlowConsumer counts every Mat alive in the process with
// gocv's own profile (go test -tags matprofile): with a slow consumer on a
// fast file, at most 3 exist at once (the camera's read buffer, the
// mailbox slot and the frame the consumer holds), and none is left after.
func TestMatProfileSlowConsumer(t *testing.T) {
	cam := openClip(t, Options{Name: "profiled", Fast: true})
	baseline := gocv.MatProfile.Count()
	var peak atomic.Int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			if n := int64(gocv.MatProfile.Count() - baseline); n > peak.Load() {
				peak.Store(n)
			}
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Microsecond):
			}
		}
	}()
	r := running(t, cam)
	taken := 0
	for {
		f, err := cam.Next(context.Background())
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		taken++
		time.Sleep(100 * time.Millisecond)
		f.Close()
	}
	if err := r.wait(); err != nil {
		t.Fatal(err)
	}
	close(stop)
	<-sampled
	left := gocv.MatProfile.Count() - baseline
	t.Logf("took %d of %d frames, %d dropped; Mats alive peaked at %d above baseline, %d left", taken, clipFrames, cam.Stats().FramesDropped, peak.Load(), left)
	if peak.Load() > 3 {
		t.Errorf("%d Mats alive at once, want at most 3 (read buffer, mailbox, consumer's frame)", peak.Load())
	}
	if left != 0 {
		t.Errorf("%d Mats leaked", left)
	}
}
