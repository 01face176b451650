package vision

import (
	"time"

	"gocv.io/x/gocv"
)

// Frame is one decoded BGR frame from a camera. Whoever holds a Frame owns
// its Mat and must Close it exactly once.
type Frame struct {
	// Camera is the configured camera name.
	Camera string
	// Seq counts frames read from the source since it was first opened
	// (reconnects continue the count), so a gap in Seq is a dropped frame.
	Seq int64
	// Captured is the wall-clock time the frame was read from the source:
	// the start of every latency figure (capture → decision).
	Captured time.Time
	// PTS is the stream's presentation time, when it reports one.
	PTS time.Duration
	// Decode is how long reading and decoding the frame took at the source.
	Decode time.Duration
	Mat    gocv.Mat
}

// Close releases the frame's pixels.
func (f *Frame) Close() error { return f.Mat.Close() }
