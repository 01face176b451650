package still_test

import (
	"context"
	"testing"

	"github.com/loopgate/loopgate/engine"
	"github.com/loopgate/loopgate/engine/vision"
	"github.com/loopgate/loopgate/internal/testenv"
)

var benchPhotos = []struct{ name, rel string }{
	{"lfw-250", "datasets/lfw/images/Colin_Powell/Colin_Powell_0001.jpg"},
	{"obama-1920x1080", "media/obama-1080p.jpg"},
	{"pristin-2100x1040-10faces", pristin},
}

// BenchmarkAnalyzeStill is the still path of identify and enrolment:
// full-resolution decode, YuNet, one crop and go-face run per face.
func BenchmarkAnalyzeStill(b *testing.B) {
	_, a := shared(b)
	for _, p := range benchPhotos {
		data := testenv.SharedFile(b, p.rel)
		b.Run(p.name, func(b *testing.B) {
			faces := 0
			for b.Loop() {
				st, err := a.AnalyzeStill(context.Background(), data, engine.StillOptions{})
				if err != nil {
					b.Fatal(err)
				}
				faces = len(st.Faces)
			}
			b.ReportMetric(float64(faces), "faces")
		})
	}
}

// BenchmarkDownscaledHOG is the path stills took before: decode to a
// 1024 px JPEG, then go-face's own detector on the whole image.
func BenchmarkDownscaledHOG(b *testing.B) {
	r, _ := shared(b)
	dec := vision.NewDecoder(engine.DefaultImageLimits)
	for _, p := range benchPhotos {
		data := testenv.SharedFile(b, p.rel)
		b.Run(p.name, func(b *testing.B) {
			faces := 0
			for b.Loop() {
				img, err := dec.Decode(data)
				if err != nil {
					b.Fatal(err)
				}
				fs, err := r.Faces(img.JPEG)
				if err != nil {
					b.Fatal(err)
				}
				faces = len(fs)
			}
			b.ReportMetric(float64(faces), "faces")
		})
	}
}
