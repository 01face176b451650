package camera

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
)

// BenchmarkFileFast reads the real clip through a Camera in fast mode with
// a consumer that takes and closes every frame it is given: decode
// throughput of the camera layer, and how many frames even an idle
// consumer misses (newest-wins hand-over).
func BenchmarkFileFast(b *testing.B) {
	spec := Spec{Kind: KindFile, Path: clipPath(b)}
	var read, dropped int64
	for b.Loop() {
		cam, err := New(spec, Options{Fast: true, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			b.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cam.Run(context.Background()) }()
		for {
			f, err := cam.Next(context.Background())
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			f.Close()
		}
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		st := cam.Stats()
		read += st.FramesRead
		dropped += st.FramesDropped
		cam.Close()
	}
	b.ReportMetric(float64(read)/b.Elapsed().Seconds(), "frames/s")
	b.ReportMetric(float64(dropped)/float64(read), "dropped/frame")
}
