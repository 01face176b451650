package camera

import (
	"context"
	"fmt"
	"image"
	"image/color"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"gocv.io/x/gocv"
)

// mjpegFrames encodes n JPEG frames from a real LFW photo, each with its
// number drawn in, as an IP camera would stream them.
func mjpegFrames(t *testing.T, n int) [][]byte {
	t.Helper()
	photo := lfwImage(t)
	frames := make([][]byte, n)
	for i := range frames {
		m := photo.Clone()
		gocv.PutText(&m, fmt.Sprint(i), image.Pt(10, 40), gocv.FontHersheySimplex, 1.2, color.RGBA{255, 255, 0, 0}, 2)
		buf, err := gocv.IMEncode(gocv.JPEGFileExt, m)
		m.Close()
		if err != nil {
			t.Fatal(err)
		}
		frames[i] = append([]byte(nil), buf.GetBytes()...)
		buf.Close()
	}
	return frames
}

// l1 is the L1 distance between m and a JPEG decoded by OpenCV.
func l1(t *testing.T, m gocv.Mat, jpg []byte) float64 {
	t.Helper()
	want, err := gocv.IMDecode(jpg, gocv.IMReadColor)
	if err != nil {
		t.Fatal(err)
	}
	defer want.Close()
	return gocv.NormWithMats(m, want, gocv.NormL1)
}

// TestMJPEGOverHTTP serves multipart/x-mixed-replace MJPEG from an
// httptest server, the way IP cameras do, and reads it through OpenCV's
// FFmpeg backend. Each connection serves 20 frames and ends, so the camera
// must reconnect to go on; Seq continues across connections.
func TestMJPEGOverHTTP(t *testing.T) {
	const perConn = 20
	frames := mjpegFrames(t, perConn)
	var conns atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conns.Add(1)
		w.Header().Set("Content-Type", "multipart/x-mixed-replace; boundary=gateframe")
		for _, jpg := range frames {
			if _, err := fmt.Fprintf(w, "--gateframe\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n", len(jpg)); err != nil {
				return
			}
			w.Write(jpg)
			w.Write([]byte("\r\n"))
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}))
	defer srv.Close()

	spec, err := ParseURI(srv.URL + "/video.mjpg")
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	cam, err := New(spec, Options{Name: "ipcam", Backoff: Backoff{Initial: 20 * time.Millisecond, Max: 100 * time.Millisecond}, Metrics: NewMetrics(reg)})
	if err != nil {
		t.Fatal(err)
	}
	r := running(t, cam)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var lastSeq int64 = -1
	taken := 0
	for lastSeq < perConn+5 {
		f, err := cam.Next(ctx)
		if err != nil {
			t.Fatalf("Next after seq %d: %v (stats %+v)", lastSeq, err, cam.Stats())
		}
		if f.Mat.Cols() != 250 || f.Mat.Rows() != 250 || f.Mat.Channels() != 3 || f.Seq <= lastSeq {
			t.Fatalf("frame seq %d after %d: %dx%dx%d", f.Seq, lastSeq, f.Mat.Cols(), f.Mat.Rows(), f.Mat.Channels())
		}
		// Seq counts every frame read, so frame Seq is the server's frame
		// Seq mod perConn: it must match that JPEG better than the next one.
		same, next := l1(t, f.Mat, frames[f.Seq%perConn]), l1(t, f.Mat, frames[(f.Seq+1)%perConn])
		if same >= next {
			t.Fatalf("frame seq %d: distance %.0f to its source JPEG, %.0f to the next one", f.Seq, same, next)
		}
		lastSeq = f.Seq
		taken++
		f.Close()
	}
	info := cam.Info()
	st := cam.Stats()
	up, _ := metric(t, reg, "loopgate_camera_up", "ipcam")
	t.Logf("read %d frames over %d connections, took %d (last seq %d); info %+v; stats %+v; up %v",
		st.FramesRead, conns.Load(), taken, lastSeq, info, st, up)
	if info.Width != 250 || info.Height != 250 {
		t.Errorf("Info() = %+v, want 250x250", info)
	}
	if conns.Load() < 2 || st.Reconnects < 1 || st.ReadErrors < 1 {
		t.Errorf("%d connections, stats %+v: want a reconnect after the stream ended", conns.Load(), st)
	}
	r.cancel()
	if err := r.wait(); err != nil {
		t.Fatalf("Run = %v", err)
	}
	if n := cam.liveMats.Load(); n != 0 {
		t.Errorf("%d camera-owned Mats open after Run returned", n)
	}
}
