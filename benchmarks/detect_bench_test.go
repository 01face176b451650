package benchmarks

import (
	"fmt"
	"path/filepath"
	"testing"

	"gocv.io/x/gocv"

	"github.com/loopgate/loopgate/engine/detect"
	"github.com/loopgate/loopgate/internal/testenv"
)

// yunetFrames are the same scene at four camera resolutions.
var yunetFrames = []struct{ name, path string }{
	{"240p", "media/obama-240p.jpg"},
	{"480p", "media/obama-480p.jpg"},
	{"720p", "media/obama-720p.jpg"},
	{"1080p", "media/obama-1080p.jpg"},
}

func decodeFrame(b *testing.B, rel string) gocv.Mat {
	b.Helper()
	m, err := gocv.IMDecode(testenv.SharedFile(b, rel), gocv.IMReadColor)
	if err != nil || m.Empty() {
		b.Fatalf("decode %s: %v", rel, err)
	}
	return m
}

func benchDetect(b *testing.B, y *detect.YuNet, frame gocv.Mat) {
	b.Helper()
	for b.Loop() {
		faces, err := y.Detect(frame)
		if err != nil || len(faces) != 1 {
			b.Fatalf("%d faces, %v", len(faces), err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/op")
}

// BenchmarkYuNet is one Detect call on a decoded BGR frame (downscale to
// 640 wide, forward pass, decode, NMS), with OpenCV's default thread count
// (all cores).
func BenchmarkYuNet(b *testing.B) {
	y, err := detect.NewYuNet(filepath.Join(testenv.ModelDir(b), detect.ModelName), detect.Config{InputWidth: 640})
	if err != nil {
		b.Fatal(err)
	}
	defer y.Close()
	for _, c := range yunetFrames {
		frame := decodeFrame(b, c.path)
		b.Run(c.name, func(b *testing.B) { benchDetect(b, y, frame) })
		frame.Close()
	}
}

// BenchmarkYuNetThreads compares OpenCV limited to 1 and 2 threads on the
// 720p frame (the setting is process-wide; the previous one is restored).
func BenchmarkYuNetThreads(b *testing.B) {
	y, err := detect.NewYuNet(filepath.Join(testenv.ModelDir(b), detect.ModelName), detect.Config{InputWidth: 640})
	if err != nil {
		b.Fatal(err)
	}
	defer y.Close()
	frame := decodeFrame(b, "media/obama-720p.jpg")
	defer frame.Close()
	for _, n := range []int{1, 2} {
		b.Run(fmt.Sprintf("threads=%d/720p", n), func(b *testing.B) {
			prev, err := detect.SetOpenCVThreads(n)
			if err != nil {
				b.Fatal(err)
			}
			defer detect.SetOpenCVThreads(prev)
			benchDetect(b, y, frame)
		})
	}
}
